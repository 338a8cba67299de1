"""The app tunes the collector for as long as it serves as its own process, and leaves it as it
found it; an app inside another program leaves the collector alone."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from conftest import FakeClock
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.gc_tuning import YOUNG_THRESHOLD
from gateway.settings import Settings


def test_a_serving_app_freezes_startup_objects_and_collects_young_ones_less_often(
    settings: Settings, clock: FakeClock
) -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(settings, clock, tune_collector=True)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000  # the app, its routes and the runtime
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
        assert gc.isenabled()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_an_app_inside_another_program_leaves_its_garbage_to_be_collected(
    settings: Settings, clock: FakeClock
) -> None:
    """Frozen while an app ran, the host's garbage was never collected: the test process held
    millions of dead objects and then collected them in one pause of 10 s."""
    before = gc.get_threshold()
    with TestClient(create_app(settings, clock)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == before


def test_an_app_a_runner_makes_from_the_environment_is_its_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`uvicorn --factory gateway.app:create_app` calls it with no settings: the app is the
    process, tuned as `serve` is (review: it was left untuned)."""
    monkeypatch.setenv("CGW_DATA_DIR", str(tmp_path / "data"))
    # Such a call sets up the process's logging too (tests/e2e/test_other_runner_logs.py); here
    # it would stay so for the rest of the run, our DEBUG lines out of later tests' caplog.
    monkeypatch.setattr("gateway.app.configure_logging", lambda level: None)
    with TestClient(create_app()) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0
