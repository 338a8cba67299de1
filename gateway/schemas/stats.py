"""Wire models of campaign statistics."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["DEFAULT_VARIANT", "CampaignStats", "Comparison", "Metric", "VariantStats"]

DEFAULT_VARIANT = "default"
"""The group campaign statistics give pushes sent without a variant; no variant may take it."""

Metric = Literal["open_rate", "click_through_rate", "conversion_rate", "complaint_rate", "opt_out_rate"]


class VariantStats(msgspec.Struct, kw_only=True):
    submitted: int = 0
    queued: int = 0
    deferred: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = {}
    stopped_at_dispatch: int = 0
    """Queued or deferred at submission, then rejected by dispatch's own check."""
    stopped_at_dispatch_by_reason: dict[str, int] = {}
    expired: int = 0
    delivered: int = 0
    failed: int = 0
    opened: int = 0
    clicked: int = 0
    converted: int = 0
    dismissed: int = 0
    complaints: int = 0
    opted_out_after_receipt: int = 0
    """Delivered pushes whose recipient withdrew `marketing` consent after one of their devices had it."""
    rates: dict[str, float | None] = {}
    """Each over `delivered`: null with no delivery, where a rate is not 0 but unknown."""


class Comparison(msgspec.Struct, kw_only=True):
    metric: Metric
    control: str
    variant: str
    control_rate: float | None
    """Null, as `variant_rate` and `difference`, for a variant with no delivery."""
    variant_rate: float | None
    difference: float | None
    ci95: tuple[float, float]
    z: float | None
    p_value: float | None
    p_value_adjusted: float | None = None
    """`p_value` adjusted (Holm) for the campaign's comparisons on this metric the test holds for
    (the same with one); null where it does not hold (too few deliveries or events)."""
    significant: bool
    """`p_value_adjusted` < 0.05 and the 95% interval excludes no difference. Near p = 0.05 the
    two can disagree (they are different methods): then neither is called, and the verdict says
    borderline."""
    verdict: str


class CampaignStats(msgspec.Struct, kw_only=True):
    campaign_id: str
    status: str
    metric: Metric
    variants: dict[str, VariantStats]
    comparisons: list[Comparison]
