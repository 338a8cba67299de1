"""wrk, from Debian's package: installed when missing, run pinned to the load core, parsed.

The Lua script (`lua/push.lua`) prints one `BENCH_JSON {...}` line from wrk's `done()` hook with
the request count and latency percentiles, so nothing depends on wrk's human-readable output.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from typing import Any

from procs import BENCH_DIR, LOAD_CORE, CpuMeter, pinned

SCRIPT = BENCH_DIR / "lua" / "push.lua"


def ensure_wrk() -> str:
    """The path of wrk; installs Debian's package when absent and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit(
            "wrk is not installed and this is not root: run `sudo apt-get install -y wrk` and retry"
        )
    print("installing wrk from Debian's packages ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get install wrk did not provide a wrk binary")
    return found


def wrk_version(binary: str) -> str:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def run_wrk(
    binary: str,
    base: str,
    path: str,
    *,
    seconds: float,
    connections: int,
    users: int,
    key: str = "",
    timeout: float = 5.0,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """One wrk run (one thread, `connections` keep-alive connections) on the load core; with
    `server_pid`, also the server's CPU µs per request and the share of its core it got."""
    env = {
        **os.environ,
        "BENCH_PATH": path,
        "BENCH_KEY": key,
        "BENCH_USERS": str(users),
        "BENCH_NONCE": secrets.token_hex(6),  # idempotency keys never repeat across runs
    }
    argv = [
        binary, "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", f"{timeout:g}s",
        "-s", str(SCRIPT), base,
    ]  # fmt: skip
    meter = CpuMeter(server_pid) if server_pid else None
    out = subprocess.run(pinned(LOAD_CORE, argv), env=env, capture_output=True, text=True, check=True)
    cpu = meter.stop(1) if meter else None
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            raw: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            seconds_run = raw["duration_us"] / 1e6
            errors = sum(raw[k] for k in ("non2xx", "connect_errors", "read_errors", "write_errors"))
            if cpu and meter:
                cpu = meter_per_request(cpu, raw["requests"])
            return {
                **(cpu or {}),
                "rps": round(raw["requests"] / seconds_run, 1),
                "requests": raw["requests"],
                "p50_ms": raw["p50_us"] / 1000,
                "p90_ms": raw["p90_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000,
                "p999_ms": raw["p999_us"] / 1000,
                "max_ms": raw["max_us"] / 1000,
                "errors": errors,
                "timeouts": raw["timeouts"],
            }
    raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{out.stdout}\n{out.stderr}")


def meter_per_request(cpu: dict[str, float], requests: int) -> dict[str, float]:
    """`CpuMeter.stop(1)` gave the total CPU µs; spread it over the requests wrk counted."""
    return {
        "server_cpu_us_per_req": round(cpu["cpu_us_per_unit"] / max(requests, 1), 1),
        "server_cpu_share": cpu["cpu_share_of_core"],
    }
