"""Prometheus metrics, in a registry per app (no module-level singletons).

Labels are route templates, methods, status codes, outcomes and reason codes — never a user
id, subject_ref, device, or any free text.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "cgw_http_requests", "HTTP requests by route template and status", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "cgw_http_request_seconds", "HTTP request latency by route template", ["route"],
            registry=self.registry,
        )  # fmt: skip

        self.decisions = Counter(
            "cgw_decisions", "Push decisions by outcome", ["outcome"], registry=self.registry
        )
        self.decision_reasons = Counter(
            "cgw_decision_reasons", "Reasons given in push decisions, by reason code", ["code"],
            registry=self.registry,
        )  # fmt: skip
        self.decision_seconds = Histogram(
            "cgw_decision_seconds", "Time to decide and record one push (batches: per push)",
            registry=self.registry,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
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
            "Providers whose circuit is open or half-open",
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
