"""`SharedTimeHistogram` takes a batch's observations in one call and must expose what
prometheus_client's `Histogram` would have after as many calls: the same buckets (a value on a
bound counts in that bound's bucket), count, sum, and a `_created` series."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gateway.metrics import SharedTimeHistogram

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.25)
# Values on the bounds, between them, past the last one, and zero; each observed `times` times.
OBSERVED = [(0.0001, 3), (0.0003, 2), (0.00025, 1), (0.25, 1), (7.0, 4), (0.0, 1), (0.001, 0)]


def _text(registry: CollectorRegistry) -> str:
    """The exposition, with the creation time (which differs between the two) as a placeholder."""
    return re.sub(r"(_created) \S+", r"\1 T", generate_latest(registry).decode())


def test_many_at_once_exposes_what_one_at_a_time_would() -> None:
    one_by_one, shared = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("cgw_x_seconds", "doc", registry=one_by_one, buckets=BUCKETS)
    many = SharedTimeHistogram("cgw_x_seconds", "doc", BUCKETS, shared)
    for value, times in OBSERVED:
        for _ in range(times):
            histogram.observe(value)
        many.observe(value, times)
    assert _text(shared) == _text(one_by_one)
    assert 'cgw_x_seconds_bucket{le="0.0001"} 4.0' in _text(shared)
    assert "cgw_x_seconds_count 12.0" in _text(shared)


@pytest.mark.parametrize("times", [1, 10_000])
def test_a_batch_counts_each_decision(times: int) -> None:
    registry = CollectorRegistry()
    SharedTimeHistogram("cgw_x_seconds", "doc", BUCKETS, registry).observe(0.0002, times)
    text = _text(registry)
    assert 'cgw_x_seconds_bucket{le="0.0001"} 0.0' in text
    assert f'cgw_x_seconds_bucket{{le="0.00025"}} {float(times)}' in text
    assert f"cgw_x_seconds_count {float(times)}" in text
