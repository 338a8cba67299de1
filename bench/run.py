"""`make bench`: the floor beside the gateway, latency at half load, batches, delivery, a campaign.

Layout of one run (server processes on core 0, every load generator on core 1, this script
too; data in a fresh temporary directory):

1. HTTP: users created through the gateway's services; then the bare Litestar floor
   (`floor_app.py`) and `consent-gateway serve` (worker off) are both up and wrk runs
   alternate between them — floor, gateway, floor, gateway ... — so both see the same
   background load. Then a py-spy profile run of the gateway (not counted), latency at 50% of
   each server's median maximum (`rate.py`) and a profile of the gateway at that rate, then at
   25% and 10% with the CPU each request cost (`--curve`), and `POST /v1/pushes/batch` of
   10,000 durable and dry-run (plus a profiled batch).
2. Delivery: the same data, whose outbox now holds every push queued in step 1, served with the
   worker on and the webhook URL pointing at `receiver.py` (core 1); pushes/s counted at the
   receiver. Then `ceiling.py` drives the receiver from core 0 with the worker's HTTP client
   settings (and once with the single httpx client the adapters used before).
3. Campaign: `seed.py` writes N subjects straight into storage; a campaign is created over
   HTTP and sent to all of them in batches of 10,000; total time to decide and enqueue.

Results: `bench/results/<YYYY-MM-DD>.json`; `python bench/report.py <file>` renders the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import batch
import httpx
import report
import sampling
import seed
import users
import wrk
from faults import faults
from procs import (
    BENCH_DIR,
    LOAD_CORE,
    SERVER_CORE,
    VENV_BIN,
    CpuMeter,
    RssWatch,
    Server,
    free_port,
    load_average,
    pinned,
    uvicorn_argv,
)
from prometheus_client.parser import text_string_to_metric_families

from gateway.settings import Settings

Result = dict[str, Any]
WEBHOOK_SECRET = "bench-secret-bench-secret-bench-secret"  # noqa: S105 - a local test receiver


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="wrk runs per server (issue: >= 5)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (issue: 10)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=20_000, help="users the single pushes rotate over")
    parser.add_argument("--rate-seconds", type=float, default=20.0, help="length of the 50%%-load run")
    parser.add_argument(
        "--curve",
        type=float,
        nargs="*",
        default=[0.25, 0.1],
        help="further fractions of each server's maximum offered at a constant rate, besides 0.5",
    )
    parser.add_argument("--curve-seconds", type=float, default=10.0, help="length of each --curve run")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--batch-runs", type=int, default=3)
    parser.add_argument("--delivery-seconds", type=float, default=15.0)
    parser.add_argument(
        "--campaign", type=int, default=100_000,
        help="recipients seeded and sent to (the issue's figure is 1,000,000; see docs/performance.md)",
    )  # fmt: skip
    parser.add_argument("--skip", nargs="*", default=[], choices=["http", "delivery", "campaign"])
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    parser.add_argument("--work-dir", type=Path, help="where data and logs go (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/<date>.json)")
    return parser


# -- machine -------------------------------------------------------------------------------------


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed"


def _sqlcipher_version() -> str:
    import sqlcipher3

    conn = sqlcipher3.connect(":memory:")
    try:
        cipher = conn.execute("PRAGMA cipher_version").fetchone()
        sqlite = conn.execute("SELECT sqlite_version()").fetchone()[0]
    finally:
        conn.close()
    return f"SQLCipher {cipher[0] if cipher else '?'} (SQLite {sqlite})"


def _pressure() -> float | None:
    """CPU pressure (share of the last 10 s some task waited for a CPU): a shared machine's noise."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return float(first.split()[1].split("=")[1])


def machine(wrk_binary: str) -> Result:
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "litestar": _version("litestar"),
        "msgspec": _version("msgspec"),
        "uvicorn": _version("uvicorn"),
        "uvloop": _version("uvloop"),
        "httptools": _version("httptools"),
        "httpx": _version("httpx"),
        "sqlcipher3": _version("sqlcipher3"),
        "sqlcipher": _sqlcipher_version(),
        "wrk": wrk.wrk_version(wrk_binary),
        "load_average_at_start": load_average(),
        "cpu_pressure_at_start": _pressure(),
    }


def product_state() -> Result:
    """Which code was measured: the commit, and a hash of the product's working tree (another
    session may be changing it; a different hash at the end means the run measured a moving tree)."""
    import hashlib

    repo = BENCH_DIR.parent
    digest = hashlib.sha256()
    for folder in ("gateway", "storage", "policies", "clients"):
        for path in sorted((repo / folder).rglob("*.py")):
            digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "gateway", "storage", "policies", "clients"],
        cwd=repo, capture_output=True, text=True,
    )  # fmt: skip
    return {
        "commit": head.stdout.strip() or "unknown",
        "modified_files": [line[3:] for line in dirty.stdout.splitlines()],
        "tree_sha256": digest.hexdigest()[:16],
    }


def _noise() -> Result:
    return {"load_average": load_average(), "cpu_pressure_pct": _pressure()}


# -- helpers -------------------------------------------------------------------------------------


def summarize_runs(runs: Sequence[Result]) -> Result:
    def stat(key: str) -> Result:
        values = [r[key] for r in runs]
        return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}

    return {
        "rps": stat("rps"),
        "p50_ms": stat("p50_ms"),
        "p99_ms": stat("p99_ms"),
        "server_cpu_us_per_req": stat("server_cpu_us_per_req"),
        "server_cpu_share": stat("server_cpu_share"),
        "errors": sum(r["errors"] + r["timeouts"] for r in runs),
        "runs": list(runs),
    }


def gateway_server(data_dir: Path, logs: Path, name: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    argv = [str(VENV_BIN / "consent-gateway"), "serve", "--port", str(port), "--data-dir", str(data_dir)]
    # No checkpoint signed mid-phase: the first one after a start hashes the whole seeded ledger.
    server = Server(
        name,
        argv,
        port,
        logs,
        env={"CGW_WORKER_ENABLED": "false", "CGW_CHECKPOINT_SECONDS": "0", **(env or {})},
    )
    server.wait_ready()
    return server


def run_json(argv: list[str], env: dict[str, str] | None = None) -> Result:
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})})
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            parsed: Result = json.loads(line.removeprefix("BENCH_JSON "))
            return parsed
    raise RuntimeError(f"{argv[2:4]} printed no result:\n{out.stdout}\n{out.stderr}")


def scraped(server: Server, name: str, label: str | None = None) -> dict[str, float]:
    """A metric's samples on the server's own `/metrics`, by the value of `label` ("" without)."""
    text = httpx.get(f"{server.base}/metrics", timeout=10).text
    return {
        sample.labels.get(label, "") if label else "": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def profiled(enabled: bool, pid: int, out: Path, seconds: float, work: Callable[[], Any]) -> tuple[Any, Any]:
    recording = sampling.Recording(pid, out, seconds) if enabled else None
    value = work()
    return value, (recording.wait() if recording else None)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- phases --------------------------------------------------------------------------------------


def phase_http(args: argparse.Namespace, wrk_binary: str, work: Path, logs: Path) -> tuple[Result, str]:
    data_dir = work / "push"
    say(f"creating {args.users:,} users through the gateway's services ...")
    key, seconds = users.prepare(data_dir, args.users)
    out: Result = {"users": args.users, "users_seconds": round(seconds, 1), "noise_before": _noise()}

    floor_port = free_port()
    # Same server settings as `consent-gateway serve`: uvicorn, uvloop, httptools, one worker, core 0.
    floor = Server("floor", uvicorn_argv("floor_app:app", floor_port, app_dir=BENCH_DIR), floor_port, logs)
    floor.wait_ready()
    gateway = gateway_server(data_dir, logs, "gateway-push")
    targets = {"floor": (floor, "/echo"), "gateway": (gateway, "/v1/pushes")}
    watches = {name: RssWatch(server.pid).start() for name, (server, _) in targets.items()}
    say("warming up both servers ...")
    for server, path in targets.values():
        wrk.run_wrk(wrk_binary, server.base, path, seconds=2, connections=args.connections, users=args.users,
                    key=key)  # fmt: skip
    runs: dict[str, list[Result]] = {"floor": [], "gateway": []}
    for i in range(args.runs):
        for name, (server, path) in targets.items():
            result = wrk.run_wrk(
                wrk_binary, server.base, path, seconds=args.duration, connections=args.connections,
                users=args.users, key=key, server_pid=server.pid,
            )  # fmt: skip
            runs[name].append(result)
            say(f"run {i + 1}/{args.runs} {name}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
                f"p99 {result['p99_ms']:.1f} ms, {result['server_cpu_us_per_req']:.0f} CPU µs/req, "
                f"{result['server_cpu_share']:.0%} of core 0")  # fmt: skip
    for name in targets:
        out[name] = summarize_runs(runs[name])
    out["ratio"] = round(out["gateway"]["rps"]["median"] / out["floor"]["rps"]["median"], 3)
    # The same ratio from CPU per request: what it would be if each server had its core to itself.
    out["cpu_ratio"] = round(
        out["floor"]["server_cpu_us_per_req"]["median"] / out["gateway"]["server_cpu_us_per_req"]["median"], 3
    )

    if not args.no_profile:
        say("profiling the gateway under wrk (py-spy, run not counted) ...")
        _, out["gateway_profile"] = profiled(
            True, gateway.pid, logs / "gateway-push.raw", args.duration,
            lambda: wrk.run_wrk(wrk_binary, gateway.base, "/v1/pushes", seconds=args.duration,
                                connections=args.connections, users=args.users, key=key),
        )  # fmt: skip

    def constant_rate(server: Server, path: str, rate: int, seconds: float) -> Result:
        meter = CpuMeter(server.pid)
        result = run_json(
            pinned(LOAD_CORE, [
                str(VENV_BIN / "python"), str(BENCH_DIR / "rate.py"), "--port", str(server.port),
                "--path", path, "--rate", str(rate), "--seconds", str(seconds),
                "--connections", str(args.connections), "--users", str(args.users),
            ]),
            env={"BENCH_KEY": key},
        )  # fmt: skip
        result.update(meter.stop(result["requests"]))
        return result

    out["half_load"] = {}
    for name, (server, path) in targets.items():
        rate = round(out[name]["rps"]["median"] / 2)
        say(f"{name}: constant {rate} req/s for {args.rate_seconds:g} s ...")
        out["half_load"][name] = constant_rate(server, path, rate, args.rate_seconds)
    if not args.no_profile:
        # Where the p99 target is decided: a request costs more CPU at half load than flat out.
        rate = round(out["gateway"]["rps"]["median"] / 2)
        say(f"profiling the gateway at {rate} req/s (py-spy, run not counted) ...")
        _, out["gateway_half_load_profile"] = profiled(
            True, gateway.pid, logs / "gateway-half-load.raw", args.rate_seconds,
            lambda: constant_rate(gateway, "/v1/pushes", rate, args.rate_seconds),
        )  # fmt: skip
    # CPU per request as the offered rate falls: on this machine it rises for both servers, so
    # "50% of the maximum rate" keeps the gateway's core nearly busy (docs/performance.md).
    out["load_curve"] = {name: [] for name in targets}
    for fraction in args.curve:
        for name, (server, path) in targets.items():
            rate = max(1, round(out[name]["rps"]["median"] * fraction))
            say(f"{name}: constant {rate} req/s ({fraction:.0%} of max) for {args.curve_seconds:g} s ...")
            point = constant_rate(server, path, rate, args.curve_seconds)
            out["load_curve"][name].append({"fraction": fraction, **point})
    # What the single pushes above came to: wrk and rate.py see a push refused by a rule as a 200.
    out["gateway_decisions"] = scraped(gateway, "cgw_decisions_total", "outcome")
    out["floor"]["peak_rss_mib"] = watches["floor"].stop()
    out["floor"]["lifetime_peak_rss_mib"] = floor.stop()

    say(f"batches of {args.batch_size:,}: durable and dry-run ...")
    batch_watch = RssWatch(gateway.pid).start()
    out["batch_durable"] = batch.run_batches(
        gateway.base,
        key,
        size=args.batch_size,
        users=args.users,
        runs=args.batch_runs,
        dry_run=False,
        server_pid=gateway.pid,
    )
    out["batch_dry_run"] = batch.run_batches(
        gateway.base,
        key,
        size=args.batch_size,
        users=args.users,
        runs=args.batch_runs,
        dry_run=True,
        server_pid=gateway.pid,
    )
    if not args.no_profile:
        # One profiled batch of each kind (not counted): py-spy for as long as a batch takes.
        for kind, dry in (("durable", False), ("dry_run", True)):
            expected = args.batch_size / out[f"batch_{kind}"]["decisions_per_s"] + 1
            _, out[f"batch_{kind}_profile"] = profiled(
                True, gateway.pid, logs / f"batch-{kind}.raw", expected,
                functools.partial(
                    batch.run_batches, gateway.base, key, size=args.batch_size, users=args.users, runs=1,
                    dry_run=dry,
                ),
            )  # fmt: skip
    out["batch_peak_rss_mib"] = batch_watch.stop()
    out["gateway"]["peak_rss_mib"] = watches["gateway"].stop()
    out["gateway"]["lifetime_peak_rss_mib"] = gateway.stop()
    out["noise_after"] = _noise()
    return out, key


def phase_delivery(args: argparse.Namespace, work: Path, logs: Path) -> Result:
    out: Result = {"noise_before": _noise()}
    receiver_port = free_port()
    receiver = Server(
        "receiver", uvicorn_argv("receiver:app", receiver_port, app_dir=BENCH_DIR), receiver_port, logs,
        core=LOAD_CORE,
    )  # fmt: skip
    receiver.wait_ready()
    url = f"{receiver.base}/hook"

    def received() -> int:
        return int(httpx.get(f"{receiver.base}/count", timeout=10).text)

    say(f"delivery: worker on, webhook to the local receiver, {args.delivery_seconds:g} s ...")
    gateway = gateway_server(
        work / "push", logs, "gateway-delivery",
        env={"CGW_WORKER_ENABLED": "true", "CGW_DELIVERY_WEBHOOK_URL": url,
             "CGW_DELIVERY_WEBHOOK_SECRET": WEBHOOK_SECRET},
    )  # fmt: skip
    watch = RssWatch(gateway.pid).start()
    time.sleep(2.0)  # the worker's first rounds: connection set-up, caches
    start_count, started = received(), time.perf_counter()
    gateway_cpu, receiver_cpu = CpuMeter(gateway.pid), CpuMeter(receiver.pid)
    time.sleep(args.delivery_seconds)
    end_count, elapsed = received(), time.perf_counter() - started
    # 0 once nothing is due: the outbox ran dry inside the window, which then counted idle time.
    out["outbox_behind_s_at_end"] = scraped(gateway, "cgw_outbox_oldest_due_seconds").get("", 0.0)
    delivered = end_count - start_count
    out["pushes_per_s"] = round(delivered / elapsed, 1)
    out["delivered_in_window"] = delivered
    out["gateway_cpu"] = gateway_cpu.stop(delivered)
    out["receiver_cpu"] = receiver_cpu.stop(delivered)
    say(f"delivery: {out['pushes_per_s']:.0f} pushes/s")
    if not args.no_profile:
        # After the counted window, not in it: py-spy runs on the load core, the receiver's.
        seconds = min(args.delivery_seconds, 10.0)
        say(f"profiling the worker for {seconds:g} s (py-spy, not counted) ...")
        _, out["profile"] = profiled(
            True, gateway.pid, logs / "delivery.raw", seconds, functools.partial(time.sleep, seconds)
        )
    out["peak_rss_mib"] = watch.stop()
    out["lifetime_peak_rss_mib"] = gateway.stop()
    say("delivery: now the receiver's ceiling ...")
    # The pushes one worker round claims, and the connections the gateway's client keeps for them.
    concurrency = str(Settings.from_env(os.environ, data_dir=work).worker_concurrency)
    base_argv = [str(VENV_BIN / "python"), str(BENCH_DIR / "ceiling.py"), "--url", url,
                 "--seconds", str(args.delivery_seconds), "--concurrency", concurrency]  # fmt: skip
    ceiling_cpu = CpuMeter(receiver.pid)
    out["receiver_ceiling"] = run_json(pinned(SERVER_CORE, base_argv))
    out["receiver_ceiling"]["receiver_cpu"] = ceiling_cpu.stop(out["receiver_ceiling"]["requests"])
    out["receiver_ceiling_httpx"] = run_json(pinned(SERVER_CORE, [*base_argv, "--httpx"]))
    out["ratio"] = round(out["pushes_per_s"] / out["receiver_ceiling"]["requests_per_s"], 3)
    receiver.stop()
    out["noise_after"] = _noise()
    return out


def phase_campaign(args: argparse.Namespace, work: Path, logs: Path) -> Result:
    data_dir = work / "campaign"
    out: Result = {"noise_before": _noise()}
    say(f"seeding {args.campaign:,} subjects straight into storage ...")
    seeded = seed.seed(data_dir, args.campaign, verify=False)
    out["seed"] = {**seeded.__dict__, "bytes_per_subject": seeded.bytes_per_subject,
                   "subjects_per_s": round(seeded.count / max(seeded.seconds, 1e-9), 1)}  # fmt: skip
    say(
        f"seeded in {seeded.seconds:.0f} s, {seeded.bytes_per_subject:.0f} bytes/subject; "
        "sending the campaign ..."
    )
    key = users.api_key(data_dir)
    gateway = gateway_server(data_dir, logs, "gateway-campaign")
    watch = RssWatch(gateway.pid).start()
    campaign_id = batch.create_campaign(gateway.base, key)
    meter = CpuMeter(gateway.pid)

    def send() -> dict[str, Any]:
        sent = batch.run_campaign(gateway.base, key, campaign_id, args.campaign, seed.USER_PREFIX,
                                  size=args.batch_size)  # fmt: skip
        # Read as soon as the campaign is sent: the profile below may go on sampling the idle
        # server to the end of its budget, which would count in the share of the core.
        sent["server_cpu"] = meter.stop(args.campaign)
        return sent

    # Profiled while it runs: py-spy --nonblocking never stops the process it samples.
    budget = max(10.0, min(120.0, args.campaign / 2000))
    out["campaign"], out["profile"] = profiled(
        not args.no_profile, gateway.pid, logs / "campaign.raw", budget, send
    )
    out["peak_rss_mib"] = watch.stop()
    out["lifetime_peak_rss_mib"] = gateway.stop()
    out["mix"] = seed.MIX
    out["noise_after"] = _noise()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        raise SystemExit("needs Linux with at least 2 cores (servers on core 0, load on core 1)")
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # this script and its clients live on the load core
    wrk_binary = wrk.ensure_wrk()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="cgw-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    if not args.no_profile and sampling.py_spy() is None:
        say("py-spy not found: profiles skipped (pip install py-spy into the venv to get them)")
        args.no_profile = True
    results: Result = {
        "date": dt.date.today().isoformat(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(wrk_binary),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "work_dir": str(work),
        "product_at_start": product_state(),
    }
    say(f"work dir {work}; load average {results['machine']['load_average_at_start']}")
    started = time.perf_counter()
    try:
        if "http" not in args.skip:
            results["http"], _ = phase_http(args, wrk_binary, work, logs)
        if "delivery" not in args.skip and "http" not in args.skip:
            results["delivery"] = phase_delivery(args, work, logs)
        if "campaign" not in args.skip:
            results["campaign"] = phase_campaign(args, work, logs)
    finally:
        results["faults"] = faults(results)
        for fault in results["faults"]:
            say(f"FAULT: {fault}")
        results["total_seconds"] = round(time.perf_counter() - started, 1)
        results["product_at_end"] = product_state()
        out = args.out or BENCH_DIR / "results" / f"{results['date']}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
        say(f"results in {out}")
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(report.render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
