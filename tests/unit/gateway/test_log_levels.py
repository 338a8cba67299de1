"""The levels configure_logging leaves a server runner's loggers at: never below INFO (below,
uvicorn logs each ASGI message with its query string), and, where the runner set none, the
root's, so that CGW_LOG_LEVEL=warning quiets them as it quiets every library."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from gateway.logs import configure_logging

RUNNER = ("uvicorn", "uvicorn.error", "uvicorn.asgi")
TRACE = 5  # uvicorn's


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    names = [*logging.root.manager.loggerDict, *RUNNER]
    saved = root.handlers[:], root.level, {name: logging.getLogger(name).level for name in names}
    # configure_logging turns off the records' source and thread lookups, which pytest's own
    # log report shows: back on for the tests after these.
    switches = logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)
    logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = switches


@pytest.mark.parametrize(
    ("runner_set", "ours", "expected"),
    [
        (logging.NOTSET, "warning", logging.WARNING),  # `serve`: uvicorn sets none
        (logging.NOTSET, "info", logging.INFO),
        (TRACE, "info", logging.INFO),  # `uvicorn --log-level trace --factory ...`
        (TRACE, "debug", logging.INFO),
        (logging.WARNING, "info", logging.WARNING),  # `--log-level warning` is not lowered
    ],
)
def test_a_runners_loggers_are_never_below_info_and_follow_the_root_when_unset(
    runner_set: int, ours: str, expected: int
) -> None:
    for name in RUNNER:
        logging.getLogger(name).setLevel(runner_set)
    configure_logging(ours)
    assert [logging.getLogger(name).getEffectiveLevel() for name in RUNNER] == [expected] * 3
