"""Sampling profiles of a running server with py-spy, summarized to where the time goes.

py-spy attaches to the server's pid with `--nonblocking` (it never pauses the process, so the
run it watches is not slowed), samples every thread at `rate` Hz and writes collapsed stacks.
The summary gives, per thread kind, the share of samples spent *inside* each function
(inclusive) and *in* each function itself (self), for the project's code and the libraries it
calls. py-spy is a measurement-only tool: `pip install py-spy` into the venv; without it the
profiles are skipped and the report says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from procs import VENV_BIN

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*?)(?::(?P<line>\d+))?\)$")
_TRIM = re.compile(r"^.*?/(site-packages|lib/python3\.\d+|main)/")


def py_spy() -> str | None:
    local = VENV_BIN / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Recording:
    def __init__(self, pid: int, out: Path, seconds: float, rate: int = 200) -> None:
        binary = py_spy()
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        if binary is None:
            return
        argv = [
            binary, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
            "--nonblocking", "--threads", "--format", "raw", "--output", str(out),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self) -> dict[str, Any] | None:
        if self.proc is None:
            return None
        _, err = self.proc.communicate()
        if not self.out.exists():
            return {"error": err.decode(errors="replace")[-500:]}
        return summarize(self.out)


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = _TRIM.sub("", match.group("file"))
    return f"{match.group('func')} ({path})"


def _thread_kind(first_frame: str) -> str:
    """py-spy's first frame is `thread (<tid>): <name>`."""
    name = first_frame.rpartition(": ")[2]
    if name == "MainThread":
        return "event loop"
    if name.startswith("writer-"):
        return name
    if name.startswith(("ThreadPoolExecutor", "AnyIO", "asyncio", "uvloop_")):
        return "thread pool"
    return "other"


def summarize(path: Path, top: int = 25) -> dict[str, Any]:
    inclusive: dict[str, Counter[str]] = {}
    leaf: Counter[str] = Counter()
    leaf_lines: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw = stack.split(";")
        frames = [_name(f) for f in raw[1:]]
        kind = _thread_kind(raw[0])
        total += count
        threads[kind] += count
        for name in set(frames):
            inclusive.setdefault(kind, Counter())[name] += count
        if frames:
            leaf[frames[-1]] += count
            leaf_lines[_TRIM.sub("", raw[-1])] += count

    def share(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, round(100 * c / total, 1)) for name, c in counter.most_common(n)]

    return {
        "samples": total,
        "threads_pct": {k: round(100 * v / max(total, 1), 1) for k, v in threads.most_common()},
        "self_pct": share(leaf, top),
        "self_lines_pct": share(leaf_lines, 12),
        "inclusive_pct": {kind: share(counter, top) for kind, counter in inclusive.items()},
    }
