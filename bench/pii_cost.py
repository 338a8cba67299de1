"""The minimization rule's PII scan: what a typical push costs beside the worst text a sender can send.

Every push's title, body and data are scanned (`policies.minimization.ContentVerdicts.of`), and
the edge admits a body of up to 16,384 characters (larger than the rule's 500, which it rejects
after scanning). A detector whose cost grows faster than its text is a way for one API key to
hold the core: the card check once joined and Luhn-checked every span of digit groups anew, and
a body of single digits ("1 1 1 ...") cost 8 ms at 500 characters and about a third of a second
at the edge's limit. This prints, in µs per push, a typical push and adversarial bodies of
growing size, and each one's ratio to the typical push measured in the same run: a linear
detector's µs per character stays flat as the body grows. Numbers only, no pass or fail; a few
seconds.

    python bench/pii_cost.py
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

from policies import PolicySettings, PushRequest
from policies.minimization import ContentVerdicts

SETTINGS = PolicySettings()

ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "single digits": lambda n: "1 " * (n // 2),
    "digit pairs, dashes": lambda n: "12-" * (n // 3),
    "plus and parentheses": lambda n: "+1 (2) " * (n // 7),
    "at signs and dots": lambda n: "a@b." * (n // 4),
    # Escapes that take every decoding pass to undo, with digits between: the second reading.
    "escapes in escapes": lambda n: "%252540&amp;#37;1 " * (n // 18),
}


def _push(body: str) -> PushRequest:
    return PushRequest(
        topic="transactional", campaign_id=None, title="Your order has shipped", body=body,
        data={"deeplink": "wallet://orders/1234"}, ttl_seconds=3600,
    )  # fmt: skip


def _per_push(push: PushRequest, budget: float = 0.3) -> float:
    """µs per check, repeated for about `budget` seconds of CPU time. Each check is a unit of
    decisions of its own (`ContentVerdicts`), so none is answered from the last one's verdict."""
    runs, spent = 0, 0.0
    while spent < budget:
        verdicts = ContentVerdicts()
        started = time.process_time()
        verdicts.of(push, SETTINGS)
        spent += time.process_time() - started
        runs += 1
    return spent / runs * 1e6


def main() -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, one thread")
    typical = _per_push(_push("Order 1234 is on its way and arrives on Friday between 9 and 12."))
    print(f"{'typical push':<32} {typical:>10.1f} µs {1:>8.0f}×")
    for name, make in ADVERSARIAL.items():
        for size in (500, 4_000, 16_384):
            cost = _per_push(_push(make(size)))
            label = f"{name} ({size:,})"
            print(f"{label:<32} {cost:>10.1f} µs {cost / typical:>8.0f}×  {cost / size:.2f} µs/char")


if __name__ == "__main__":
    main()
