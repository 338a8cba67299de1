"""How serve's banner names this command, so that the line can be pasted as it is (a newcomer
who ran `make run` has `.venv/bin/consent-gateway`, not `consent-gateway`, on hand)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway.cli import _program

CLI = Path(sys.executable).with_name("consent-gateway")


def test_from_the_repository_it_is_the_relative_path(monkeypatch: pytest.MonkeyPatch) -> None:
    repository = CLI.parent.parent.parent
    monkeypatch.chdir(repository)
    monkeypatch.setattr(sys, "argv", [str(CLI)])
    assert _program() == str(CLI.relative_to(repository))  # .venv/bin/consent-gateway


def test_from_its_own_directory_it_keeps_a_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare `consent-gateway` would be looked up on PATH, where it is not."""
    monkeypatch.chdir(CLI.parent)
    monkeypatch.setattr(sys, "argv", [str(CLI)])
    assert _program() == "./consent-gateway"


def test_from_elsewhere_it_is_the_absolute_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(CLI)])
    assert _program() == str(CLI.absolute())


def test_run_another_way_it_is_the_command_s_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/somewhere/gateway/cli.py"])
    assert _program() == "consent-gateway"
