"""Render a results file as the Markdown tables of docs/performance-history.md.

python bench/report.py bench/results/2026-11-23.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

Result = dict[str, Any]


def _worker_cpu(delivery: Result) -> str:
    """The worker's CPU per push beside two yardsticks of the host's speed: the ceiling's client,
    which is the worker's own HTTP client (so a change to that client moves both), and the
    receiver, which runs none of our code."""
    worker = _get(delivery, "gateway_cpu", "cpu_us_per_unit")
    client = _get(delivery, "receiver_ceiling", "client_cpu_us_per_req")
    receiver = _get(delivery, "receiver_cpu", "cpu_us_per_unit")
    if not (worker and client and receiver):
        return ""
    return (
        f"; worker {_fmt(worker, 1)} µs CPU a push, {worker / client:.1f}× the ceiling client's per "
        f"request, {worker / receiver:.1f}× the receiver's"
    )


def _get(results: Result, *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _verdict(measured: float | None, target: float, higher_is_better: bool = True) -> str:
    if measured is None:
        return "not run"
    met = measured >= target if higher_is_better else measured <= target
    if met:
        return "met"
    if higher_is_better:
        return f"missed: {measured / target:.0%} of target ({target / measured:.1f}× short)"
    return f"missed: {measured / target:.1f}× the limit"


def render(results: Result) -> str:
    m = results.get("machine", {})
    lines = [
        f"Run of {results.get('started_at', '?')} — {m.get('cores')} cores, {m.get('cpu')}, "
        f"Python {m.get('python')}, Litestar {m.get('litestar')}, msgspec {m.get('msgspec')}, "
        f"{m.get('sqlcipher')}, uvicorn {m.get('uvicorn')} + uvloop {m.get('uvloop')} + httptools "
        f"{m.get('httptools')}, {m.get('wrk')}; load average at start {m.get('load_average_at_start')}, "
        f"CPU pressure {m.get('cpu_pressure_at_start')}%; total {results.get('total_seconds')} s.",
        "",
    ]
    # Older results have no list; a run with any is not to be quoted as a figure.
    if found := results.get("faults"):
        lines += ["**Faults: these figures are not valid as they stand.**", *(f"- {f}" for f in found), ""]
    lines += ["| measure | floor (bare Litestar) | gateway | ratio |", "|---|---|---|---|"]
    http = results.get("http") or {}
    if http:
        f, g = http["floor"], http["gateway"]
        n = len(f["runs"])

        def cell(side: Result, key: str, digits: int) -> str:
            s = side[key]
            return f"{_fmt(s['median'], digits)} ({_fmt(s['min'], digits)}–{_fmt(s['max'], digits)})"

        lines += [
            f"| req/s, median of {n} (min–max) | {cell(f, 'rps', 0)} | {cell(g, 'rps', 0)} "
            f"| {http['ratio']:.0%} |",
            f"| p50 ms | {cell(f, 'p50_ms', 1)} | {cell(g, 'p50_ms', 1)} | |",
            f"| p99 ms | {cell(f, 'p99_ms', 1)} | {cell(g, 'p99_ms', 1)} | |",
            f"| server CPU µs per request | {cell(f, 'server_cpu_us_per_req', 0)} | "
            f"{cell(g, 'server_cpu_us_per_req', 0)} | {_fmt(http.get('cpu_ratio', 0) * 100)}% by CPU |",
            f"| share of core 0 the server got | {cell(f, 'server_cpu_share', 2)} | "
            f"{cell(g, 'server_cpu_share', 2)} | |",
        ]
        for name in ("floor", "gateway"):
            h = http["half_load"][name]
            lines.append(
                f"| {name} at 50% load ({_fmt(h['offered_rps'])} req/s offered, {_fmt(h['achieved_rps'])} "
                f"done): p50 / p99 / p99.9 ms | "
                + (" | " if name == "gateway" else "")
                + f"{_fmt(h['p50_ms'], 1)} / {_fmt(h['p99_ms'], 1)} / {_fmt(h['p999_ms'], 1)}"
                + (" | |" if name == "floor" else " |")
            )
        lines.append(
            f"| peak RSS MiB (whole phase) | {_fmt(f.get('peak_rss_mib'), 1)} | "
            f"{_fmt(g.get('peak_rss_mib'), 1)} | |"
        )
        lines += _load_curve(http)
    lines += ["", "| target (issue 8) | measured | verdict |", "|---|---|---|"]
    ratio = _get(results, "http", "ratio")
    lines.append(f"| durable POST /v1/pushes ≥ 60% of the floor | {_fmt(ratio and ratio * 100)}% | "
                 f"{_verdict(ratio, 0.60)} |")  # fmt: skip
    p99 = _get(results, "http", "half_load", "gateway", "p99_ms")
    lines.append(f"| p99 ≤ 10 ms at 50% of max load | {_fmt(p99, 1)} ms | {_verdict(p99, 10.0, False)} |")
    durable = _get(results, "http", "batch_durable", "decisions_per_s")
    size = _get(results, "http", "batch_durable", "size") or 10_000
    lines.append(f"| batch of {size:,} ≥ 40,000 decisions/s durable | {_fmt(durable)} /s | "
                 f"{_verdict(durable, 40_000)} |")  # fmt: skip
    dry = _get(results, "http", "batch_dry_run", "decisions_per_s")
    lines.append(f"| batch ≥ 100,000 decisions/s dry-run | {_fmt(dry)} /s | {_verdict(dry, 100_000)} |")
    camp = _get(results, "campaign", "campaign")
    if camp:
        projected = 1_000_000 / camp["decisions_per_s"]
        lines.append(
            f"| 1M campaign ≤ 25 s | {camp['recipients']:,} recipients in {camp['seconds']} s "
            f"({_fmt(camp['decisions_per_s'])} /s; 1M at that rate {projected:,.0f} s, a lower bound: "
            "a decision costs more as subjects grow) "
            f"| {_verdict(projected, 25, False)} |"
        )
    delivery = results.get("delivery")
    if delivery:
        ceiling = delivery["receiver_ceiling"]["requests_per_s"]
        # Older results compared other httpx set-ups: the key says which.
        label, other = next(
            (text, delivery[key])
            for key, text in (
                ("receiver_ceiling_httpx", "with one httpx client"),
                ("receiver_ceiling_one_client", "with one httpx client"),
                ("receiver_ceiling_keepalive_64", "with 64 kept alive"),
            )
            if key in delivery
        )
        lines.append(
            f"| delivery ≥ 5,000 pushes/s | {_fmt(delivery['pushes_per_s'])} /s (receiver ceiling with the "
            f"same client {_fmt(ceiling)} /s; {label} {_fmt(other['requests_per_s'])} /s"
            f"{_worker_cpu(delivery)}) | "
            f"{_verdict(delivery['pushes_per_s'], 5_000)} |"
        )
    seeded = _get(results, "campaign", "seed")
    if seeded:
        lines.append(
            f"| ≤ 2 KB of database per subject | {_fmt(seeded['bytes_per_subject'])} B "
            f"({seeded['count']:,} subjects) | {_verdict(seeded['bytes_per_subject'], 2048, False)} |"
        )
    rss = [
        (
            f"push server ({_get(results, 'http', 'users') or 20_000:,} users)",  # older results: 20,000
            _get(results, "http", "gateway", "lifetime_peak_rss_mib"),
        ),
        ("campaign server", _get(results, "campaign", "lifetime_peak_rss_mib")),
        ("delivery server", _get(results, "delivery", "lifetime_peak_rss_mib")),
    ]
    lines.append(
        "| server RSS flat as subjects grow | "
        + ", ".join(f"{name} {_fmt(v, 1)} MiB" for name, v in rss if v is not None)
        + " | see text |"
    )
    return "\n".join(lines)


def _load_curve(http: Result) -> list[str]:
    """Server CPU per request and latency at each constant offered rate, 50% included."""
    curve = http.get("load_curve")
    if not curve:
        return []
    lines = [
        "",
        "| offered (share of the server's max) | server CPU µs per request | share of the core | "
        "p50 / p99 / p99.9 ms |",
        "|---|---|---|---|",
    ]
    for name in ("floor", "gateway"):
        points = [{"fraction": 0.5, **http["half_load"][name]}, *curve[name]]
        for point in sorted(points, key=lambda p: -p["fraction"]):
            lines.append(
                f"| {name}, {_fmt(point['offered_rps'])} req/s ({point['fraction']:.0%}) | "
                f"{_fmt(point['cpu_us_per_unit'])} | {_fmt(point['cpu_share_of_core'], 2)} | "
                f"{_fmt(point['p50_ms'], 1)} / {_fmt(point['p99_ms'], 1)} / {_fmt(point['p999_ms'], 1)} |"
            )
    return lines


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else max(Path(__file__).parent.glob("results/*.json"))
    print(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
