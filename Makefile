# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/consent-gateway serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Three runs, one cache, the settings of pyproject.toml's [tool.mypy]: the product packages, then
# tests/ and bench/ as pytest and python import them (flat modules beside each other, e.g.
# `from conftest import ...`, `import batch`). One run cannot hold both tests/ and bench/: each has
# a top-level `receiver` module.
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy tests
	$(BIN)/mypy bench

# The tests start a few hundred `consent-gateway` processes (the CLI, real servers). Where
# PYTHONDONTWRITEBYTECODE is set (this machine sets it) none writes its bytecode, so without this
# step each one compiled our ~120 modules again: 0.15 s a process, most of a minute a run.
# compileall rewrites only what changed.
# Two processes, as this machine has two cores: much of a test is building an app (Litestar's
# route registration, ~75 ms) or waiting on a server process, and one process left a core idle
# (8.6 → 5.5 minutes). By file (`loadfile`): a module's fixtures (a browser, a real server) are
# built once, in one process. `pytest` alone still runs everything in one.
pytest: $(STAMP)
	$(BIN)/python -m compileall -q gateway storage policies clients
	$(BIN)/pytest -n 2 --dist loadfile

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
