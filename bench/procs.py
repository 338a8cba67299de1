"""Processes the benchmark starts: pinned to a core, waited for, watched for memory, stopped.

Every server gets `taskset -c <core>`; its peak RSS is sampled from /proc (psutil when it is
installed) ten times a second, and `VmHWM` (the kernel's own high-water mark) is read before it
stops, so a peak between two samples is not missed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV_BIN = Path(sys.executable).parent
SERVER_CORE = "0"
LOAD_CORE = "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(core: str, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", core, *argv]


def _rss_kib(pid: int, field: str) -> int:
    """VmRSS or VmHWM of a process in KiB, 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _current_rss_kib(pid: int) -> int:
    try:
        import psutil  # optional: measurement-only dependency
    except ImportError:
        return _rss_kib(pid, "VmRSS")
    try:
        return int(psutil.Process(pid).memory_info().rss // 1024)
    except psutil.Error:
        return 0


class RssWatch:
    """Peak RSS of one process between `start()` and `stop()` (a window, unlike VmHWM)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self._pid = pid
        self._interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _current_rss_kib(self._pid))
            self._stop.wait(self._interval)

    def start(self) -> RssWatch:
        self._thread.start()
        return self

    def stop(self) -> float:
        """Peak RSS in MiB over the window."""
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _current_rss_kib(self._pid))
        return round(self._peak / 1024, 1)


class Server:
    """A server process pinned to one core, with its log in a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        core: str = SERVER_CORE,
        ready_path: str = "/",
    ) -> None:
        self.name = name
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_dir / f"{name}.log"
        self._ready_path = ready_path
        full_env = {**os.environ, **(env or {})}
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            pinned(core, argv), env=full_env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} did not listen on {self.port} within {timeout}s; see {self.log_path}"
        )

    def hwm_mib(self) -> float:
        """The kernel's peak RSS for the whole life of the process."""
        return round(_rss_kib(self.pid, "VmHWM") / 1024, 1)

    def stop(self, timeout: float = 30.0) -> float:
        """Stop with SIGINT (uvicorn's graceful shutdown) and return the lifetime peak RSS in MiB."""
        hwm = self.hwm_mib()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return hwm


def uvicorn_argv(app: str, port: int, *, factory: bool = False, app_dir: Path | None = None) -> list[str]:
    """The server settings shared by the floor and the receiver: one worker, uvloop, httptools."""
    argv = [
        str(VENV_BIN / "python"), "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--workers", "1", "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip
    if factory:
        argv.append("--factory")
    if app_dir is not None:
        argv += ["--app-dir", str(app_dir)]
    return argv


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far.

    On a shared machine wall-clock rates fall when other work takes the core; CPU time per
    request does not, so every figure is reported with it as well.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


class CpuMeter:
    """CPU seconds a process uses between construction and `stop()`, with the wall time."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._cpu = cpu_seconds(pid)
        self._wall = time.perf_counter()

    def stop(self, units: int) -> dict[str, float]:
        """CPU µs per unit (request, decision, push) and the share of one core the process got."""
        cpu = cpu_seconds(self._pid) - self._cpu
        wall = time.perf_counter() - self._wall
        return {
            "cpu_us_per_unit": round(cpu / max(units, 1) * 1e6, 1),
            "cpu_share_of_core": round(cpu / wall, 2) if wall > 0 else 0.0,
        }


def load_average() -> float:
    return round(os.getloadavg()[0], 2)
