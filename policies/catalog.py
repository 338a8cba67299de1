"""Purposes and topics from the spec's vocabulary table.

The table is the contract: a topic's purposes decide which consents a push needs, so the
mapping lives in one place and every rule reads it from here.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, get_args

Purpose = Literal["marketing", "personalization", "location"]
PURPOSES: tuple[Purpose, ...] = get_args(Purpose)

Topic = Literal[
    "transactional",
    "promotions",
    "flash_sales",
    "cart_reminders",
    "recommendations",
    "nearby_offers",
    "product_tips",
    "feedback_requests",
]
TOPICS: tuple[Topic, ...] = get_args(Topic)

TOPIC_PURPOSES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "transactional": frozenset(),
        "promotions": frozenset({"marketing"}),
        "flash_sales": frozenset({"marketing"}),
        "cart_reminders": frozenset({"marketing", "personalization"}),
        "recommendations": frozenset({"marketing", "personalization"}),
        "nearby_offers": frozenset({"marketing", "location"}),
        "product_tips": frozenset({"marketing"}),
        "feedback_requests": frozenset({"marketing"}),
    }
)


def is_marketing(topic: str) -> bool:
    """Everything but `transactional` is marketing, so an unknown topic is treated as the stricter kind."""
    return topic != "transactional"
