"""Stand-ins the adapters take as parameters: a clock the test moves, a secret, a message."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from clients.delivery import DeliveryMessage


class FakeClock:
    """Starts at the real time (servers check JWT exp against it) and moves only when told."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class PlainSecret:
    """The gateway passes its masked `Secret`; adapters only need `reveal()`."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value


def make_message(clock: FakeClock, **changes: object) -> DeliveryMessage:
    fields: dict[str, object] = {
        "push_id": "psh_01HZX",
        "device_id": "dev_42",
        "platform": "fcm",
        "token": "tok-" + "a" * 60 + "wxyz",
        "topic": "promotions",
        "title": "Weekend offer",
        "body": "10% off at partner stores",
        "data": {"deeplink": "wallet://offers/7"},
        "campaign_id": "cmp_1",
        "variant": "A",
        "expires_at": datetime.fromtimestamp(clock.now, UTC) + timedelta(hours=1),
    }
    fields.update(changes)
    return DeliveryMessage(**fields)  # type: ignore[arg-type]
