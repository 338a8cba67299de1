"""Prometheus metrics, in a registry per app (no module-level singletons).

Labels are route templates, methods, status codes, outcomes and reason codes — never a user
id, subject_ref, device, or any free text.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import Literal, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["UNAVAILABLE_CAUSES", "Metrics", "SharedTimeHistogram", "UnavailableCause"]

UnavailableCause = Literal["storage_failed", "storage_full", "storage_busy", "batches_busy"]
UNAVAILABLE_CAUSES: tuple[UnavailableCause, ...] = get_args(UnavailableCause)


class SharedTimeHistogram(Collector):
    """A histogram whose observations come many at once with one value: a batch's decisions
    share one time a push. prometheus_client's `Histogram` takes each in a call of its own, two
    locks each, ~1.2 µs a decision (2-3% of a dry-run batch's); here a batch is one. It exposes
    the series a `Histogram` with these buckets would (`_bucket`, `_count`, `_sum`, `_created`),
    `_created` even where PROMETHEUS_DISABLE_CREATED_SERIES drops the library's own."""

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name, self._documentation = name, documentation
        self._bounds = (*buckets, float("inf"))
        # `Histogram`'s own spelling of the bounds ("+Inf"); the library leaves it unannotated.
        self._les = [floatToGoString(bound) for bound in self._bounds]  # type: ignore[no-untyped-call]
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._created = time.time()
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, value: float, times: int = 1) -> None:
        """`times` observations of `value`."""
        index = bisect_left(self._bounds, value)  # the first bound >= value: `le` is inclusive
        with self._lock:
            self._counts[index] += times
            self._sum += value * times

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        family = HistogramMetricFamily(
            self._name,
            self._documentation,
            buckets=list(zip(self._les, accumulate(counts), strict=True)),
            sum_value=total,
        )
        family.add_sample(f"{self._name}_created", {}, self._created)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # The process's own: memory, CPU, open files against their limit (which the gateway
        # raises for its connections), start time, the collector's passes, Python's version.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = Counter(
            "cgw_http_requests", "HTTP requests by route template and status", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "cgw_http_request_seconds", "HTTP request latency by method and route template",
            ["method", "route"], registry=self.registry,
        )  # fmt: skip

        self.decisions = Counter(
            "cgw_decisions", "Push decisions by outcome", ["outcome"], registry=self.registry
        )
        self.decision_reasons = Counter(
            "cgw_decision_reasons", "Reasons given in push decisions, at submission and at dispatch, by code",
            ["code"],
            registry=self.registry,
        )  # fmt: skip
        self.decision_seconds = SharedTimeHistogram(
            "cgw_decision_seconds", "Time to decide and record one push (batches: per push)",
            (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25), self.registry,
        )  # fmt: skip

        self.deliveries = Counter(
            "cgw_deliveries", "Delivery attempts by provider and result", ["provider", "result"],
            registry=self.registry,
        )  # fmt: skip
        self.delivery_seconds = Histogram(
            "cgw_delivery_seconds", "Time for one provider call", ["provider"], registry=self.registry
        )
        self.dispatch_ends = Counter(
            "cgw_push_end_states",
            "Pushes reaching an end state at dispatch",
            ["status"],
            registry=self.registry,
        )
        self.open_breakers = Gauge(
            "cgw_open_circuit_breakers",
            "Circuits open or half-open, by provider (Web Push has one per push service)",
            ["provider"],
            registry=self.registry,
        )
        self.outbox_behind = Gauge(
            "cgw_outbox_oldest_due_seconds",
            "How long the earliest push due in the outbox has waited past its time, in or out of a "
            "worker's round (0 if none is due): how far delivery is behind",
            registry=self.registry,
        )
        self.damaged_pages = Gauge(
            "cgw_storage_damaged_page_errors",
            "Reads and writes that met a database page failing its check, since start (the file "
            "needs restoring from a backup)",
            registry=self.registry,
        )

        self.complaints = Counter(
            "cgw_complaints", "Complaints filed, by reason", ["reason"], registry=self.registry
        )
        self.unavailable = Counter(
            "cgw_unavailable_answers",
            "Requests refused 503, by cause: storage_failed (a disk sync failed: restart), "
            "storage_full, storage_busy (another process held the write lock), batches_busy (as "
            "many batches as the process takes at once). Not /readyz's or /healthz's verdicts",
            ["cause"],
            registry=self.registry,
        )
        for cause in UNAVAILABLE_CAUSES:  # each shown from the start, at 0: what an alert's rate reads
            self.unavailable.labels(cause)

    def render(self) -> bytes:
        return generate_latest(self.registry)
