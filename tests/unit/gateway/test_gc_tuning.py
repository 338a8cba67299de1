"""The app tunes the collector for as long as it serves, and leaves it as it found it."""

from __future__ import annotations

import gc

from litestar import Litestar
from litestar.testing import TestClient

from gateway.gc_tuning import YOUNG_THRESHOLD


def test_a_serving_app_freezes_startup_objects_and_collects_young_ones_less_often(app: Litestar) -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000  # the app, its routes and the runtime
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
        assert gc.isenabled()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
