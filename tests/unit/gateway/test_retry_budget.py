"""The default retries outlast a provider's brown-out of minutes.

Eight attempts with a one-second base spent all seven retries within about a minute (127 s at
most), so a provider failing half its requests for a few minutes (not each in a row, so its
circuit stays closed and every failure costs an attempt) dead-lettered pushes with most of a
day's TTL left.
"""

from __future__ import annotations

from gateway.services.dispatch import BACKOFF_CAP_SECONDS
from gateway.settings import Settings


def test_the_default_retries_wait_ten_minutes_on_average_and_the_first_comes_within_a_second() -> None:
    settings = Settings()
    windows = [
        min(BACKOFF_CAP_SECONDS, settings.delivery_backoff_seconds * 2 ** (failed - 1))
        for failed in range(1, settings.delivery_max_attempts)
    ]
    assert sum(windows) / 2 >= 10 * 60  # full jitter: each wait is on average half its window
    assert windows[0] <= 1.0  # a one-off failure is tried again at once
