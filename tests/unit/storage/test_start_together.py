"""Two processes starting on one new data dir both switch it to WAL and migrate it: neither may
fail for the other's lock (one of them did, with "database is locked", in four runs of six)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from storage.keys import KeyStore

pytestmark = pytest.mark.slow

OPEN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from storage.keys import KeyStore
    from storage.store import Store
    data = Path(sys.argv[1])
    while not (data / "go").exists():
        time.sleep(0.001)
    Store(data, KeyStore.load(data / "keys.json")).close()
    """
)


@pytest.mark.parametrize("attempt", range(4))
def test_two_processes_starting_together_both_open_the_store(tmp_path: Path, attempt: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    KeyStore.create(data / "keys.json")
    starting = [
        subprocess.Popen([sys.executable, "-c", OPEN, str(data)], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    (data / "go").touch()
    for process in starting:
        _, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors[-2000:]
