"""`Streaks`: an event said once per window while it goes on, then with how many went unsaid."""

from __future__ import annotations

import time

from gateway.logs import Streaks


def test_an_event_is_said_once_a_window_with_the_count_unsaid_since() -> None:
    streaks = Streaks(every=0.2)
    assert streaks.unsaid("storage full") == 0  # said
    assert streaks.unsaid("storage full") is None
    assert streaks.unsaid("storage full") is None
    assert streaks.unsaid("storage busy") == 0  # another event, its own streak
    time.sleep(0.25)
    assert streaks.unsaid("storage full") == 2  # said again, with the two not said
    assert streaks.unsaid("storage full") is None
