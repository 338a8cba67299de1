"""What would make a run's figures wrong without anyone noticing, found in its results.

A rate counts answers, not accepted pushes: wrk counts a 4xx or 5xx as a request done, a push
refused by a rule is a 200, and a delivery window that outlasts the outbox counts idle seconds.
Each check here names what it found; `run.py` keeps the list in the results and `report.py`
prints it above the tables, so a run with any is not quoted as a figure.
"""

from __future__ import annotations

from typing import Any

import seed

Result = dict[str, Any]

__all__ = ["faults"]


def faults(results: Result) -> list[str]:
    found: list[str] = []
    http = results.get("http") or {}
    for name in ("floor", "gateway"):
        if errors := (http.get(name) or {}).get("errors"):
            found.append(f"{name}: {errors} requests failed or answered other than 2xx under wrk")
    for name, point in (http.get("half_load") or {}).items():
        found += _rate_faults(f"{name} at half load", point)
    for name, points in (http.get("load_curve") or {}).items():
        for point in points:
            found += _rate_faults(f"{name} at {point['fraction']:.0%} of max", point)
    if refused := {k: v for k, v in (http.get("gateway_decisions") or {}).items() if k != "queued" and v}:
        found.append(f"single pushes not all queued: {refused}")
    for kind in ("batch_durable", "batch_dry_run"):
        if kind in http:
            found += _batch_faults(kind, http[kind])
    found += _delivery_faults(results.get("delivery"))
    found += _campaign_faults(results.get("campaign"))
    return found


def _rate_faults(what: str, point: Result) -> list[str]:
    found = []
    if point.get("errors"):
        found.append(f"{what}: {point['errors']} errors ({point.get('unfinished', 0)} never answered)")
    if point.get("saturated"):
        found.append(f"{what}: saturated, a backlog of {point['max_backlog']} requests")
    return found


def _batch_faults(kind: str, batch: Result) -> list[str]:
    expected = batch["size"] * batch["runs"]
    counts = batch.get("counts") or {}
    if counts.get("queued", 0) != expected:
        return [f"{kind}: {counts} where {expected:,} queued were expected"]
    return []


def _delivery_faults(delivery: Result | None) -> list[str]:
    if not delivery:
        return []
    if not delivery.get("delivered_in_window"):
        return ["delivery: nothing delivered in the window"]
    if delivery.get("outbox_behind_s_at_end") == 0:
        return ["delivery: the outbox ran dry before the window ended, so its rate is a lower bound"]
    return []


def _campaign_faults(campaign: Result | None) -> list[str]:
    sent = (campaign or {}).get("campaign")
    if not sent:
        return []
    kinds = [seed.kind_of(i) for i in range(sent["recipients"])]
    expected = {
        "queued": kinds.count("consented"),
        "quiet_hours": kinds.count("quiet_hours"),
        "frequency_capped": kinds.count("capped"),
        "no_consent": kinds.count("no_consent"),
    }
    got = {k: sent["counts"].get(k, 0) for k in expected}
    return [] if got == expected else [f"campaign: outcomes {got} where the seed's mix gives {expected}"]
