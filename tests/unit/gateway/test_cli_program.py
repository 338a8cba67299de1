"""How serve's banner names this command, so that the line can be pasted as it is (a newcomer
who ran `make run` has `.venv/bin/consent-gateway`, not `consent-gateway`, on hand)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import pytest

from gateway.cli import _key_command, _moment, _program
from gateway.settings import Settings

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


def test_the_key_command_names_the_key_store_it_was_given(tmp_path: Path) -> None:
    """A key store set by `CGW_KEYSTORE_FILE` is said too: `keys create` run without it finds
    none in the data dir, or another gateway's."""
    store = tmp_path / "secrets dir" / "keys.json"
    settings = Settings.from_env({"CGW_KEYSTORE_FILE": str(store)}, data_dir=tmp_path / "data")
    words = shlex.split(_key_command(settings))
    assert words[0] == f"CGW_KEYSTORE_FILE={store}"
    assert words[words.index("--data-dir") + 1] == str(tmp_path / "data")


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01T00:00:00Z"])
def test_a_time_that_is_not_one_says_what_is_wanted(text: str) -> None:
    """argparse named the parsing function instead: "invalid _moment value"."""
    with pytest.raises(
        argparse.ArgumentTypeError, match=r"not an RFC 3339 time; e\.g\. 2026-11-23T10:00:00Z"
    ):
        _moment(text)
