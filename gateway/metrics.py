"""Prometheus metrics, in a registry per app (no module-level singletons).

Labels are route templates, methods, status codes, outcomes and reason codes — never a user
id, subject_ref, device, or any free text.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
