"""Handler dependencies, marked for name-based injection (Litestar 3 drops inferred ones)."""

from __future__ import annotations

from litestar.di import NamedDependency

from gateway.metrics import Metrics
from gateway.runtime import Runtime

__all__ = ["MetricsDep", "RuntimeDep"]

RuntimeDep = NamedDependency[Runtime]
MetricsDep = NamedDependency[Metrics]
