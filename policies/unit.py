"""What one unit of decisions (a submission, a dispatch round) works out once for all its pushes.

A campaign's pushes come together and share their content, and its subjects share a few zones
and quiet windows, so each rule whose verdict depends on those alone keeps it for the unit.
Nothing is kept past the unit: the next one sees a user's or an admin's change.
"""

from policies.minimization import ContentVerdicts
from policies.quiet_hours import QuietTimes


class DecisionUnit:
    __slots__ = ("content", "quiet")

    def __init__(self) -> None:
        self.content = ContentVerdicts()
        self.quiet = QuietTimes()
