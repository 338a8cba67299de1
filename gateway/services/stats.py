"""Campaign statistics per variant, and the A/B verdict on a chosen rate.

Rates are over deliveries, so each counts delivered pushes only (complaints too, though a
user may complain about a push not yet delivered). "Opted out after receipt" counts delivered
pushes whose recipient withdrew marketing consent after the push first reached one of their
devices, even if they gave it again or erased their data since (topic switches live in the
sealed preference document and are not counted).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import msgspec

from gateway.abtest import MIN_EXPECTED, MIN_SAMPLE, TwoProportion, holm, two_proportion
from gateway.errors import InvalidInput, NotFound
from gateway.schemas.stats import DEFAULT_VARIANT, CampaignStats, Comparison, Metric, VariantStats
from storage.connections import Connection
from storage.repositories import campaigns
from storage.repositories import stats as stats_repo
from storage.store import Store

__all__ = ["StatsService"]

_RATE_OF: dict[str, str] = {
    "open_rate": "opened",
    "click_through_rate": "clicked",
    "conversion_rate": "converted",
    "complaint_rate": "complaints",
    "opt_out_rate": "opted_out_after_receipt",
}
_EVENTS_OF: dict[str, str] = {
    "open_rate": "opens",
    "click_through_rate": "clicks",
    "conversion_rate": "conversions",
    "complaint_rate": "complaints",
    "opt_out_rate": "opt-outs",
}
_SIGNIFICANCE = 0.05


class StatsService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def campaign(self, campaign_id: str, metric: Metric, control: str | None) -> CampaignStats:
        """Counted in a worker thread: the counts read every push of the campaign, over a second
        at 300,000, and on the event loop every other request waited for them."""
        return await asyncio.to_thread(self.compute, campaign_id, metric, control)

    def compute(self, campaign_id: str, metric: Metric, control: str | None) -> CampaignStats:
        with self._store.data.snapshot() as conn:
            row = campaigns.get(conn, campaign_id)
            if row is None:
                raise NotFound("no such campaign", "campaign_id")
            variants = _count(conn, campaign_id)
        for stats in variants.values():
            stats.rates = {
                name: (getattr(stats, field) / stats.delivered if stats.delivered else None)
                for name, field in _RATE_OF.items()
            }
        if control is not None and control not in variants:
            raise InvalidInput("control: no such variant in this campaign", "control")
        return CampaignStats(
            campaign_id=campaign_id,
            status=row.status,
            metric=metric,
            variants=variants,
            comparisons=_comparisons(metric, variants, control or min(variants, default=DEFAULT_VARIANT)),
        )


def _comparisons(metric: Metric, variants: dict[str, VariantStats], control: str) -> list[Comparison]:
    """Each variant against the control. Significance is judged on p-values adjusted over the
    comparisons the test holds for (`holm`); the others are called nothing anyway."""
    a = variants.get(control)
    if a is None:
        return []
    field = _RATE_OF[metric]
    tests = {
        name: two_proportion(getattr(a, field), a.delivered, getattr(b, field), b.delivered)
        for name, b in sorted(variants.items())
        if name != control
    }
    family = {name: p for name, test in tests.items() if test.enough_data and (p := test.p_value) is not None}
    adjusted = dict(zip(family, holm(list(family.values())), strict=True))
    return [
        _compare(metric, (control, a), (name, variants[name]), test, adjusted.get(name), len(family))
        for name, test in tests.items()
    ]


def _add_codes(counts: dict[str, int], reasons: str | None, n: int) -> None:
    """Pushes per code, not reasons: a push may carry one code twice (two purposes missing, the
    day's and the week's cap)."""
    for code in dict.fromkeys(reason["code"] for reason in msgspec.json.decode(reasons or "[]")):
        counts[code] = counts.get(code, 0) + n


def _count(conn: Connection, campaign_id: str) -> dict[str, VariantStats]:
    stats: dict[str, VariantStats] = defaultdict(VariantStats)
    for row in stats_repo.outcome_counts(conn, campaign_id, DEFAULT_VARIANT):
        s, n = stats[row.variant], row.n
        s.submitted += n
        setattr(s, row.outcome, getattr(s, row.outcome) + n)
        if row.outcome == "rejected":
            _add_codes(s.rejected_by_reason, row.reasons, n)
        elif row.status == "rejected":
            s.stopped_at_dispatch += n
            _add_codes(s.stopped_at_dispatch_by_reason, row.final_reasons, n)
        elif row.status in ("delivered", "failed", "expired"):
            setattr(s, row.status, getattr(s, row.status) + n)
    for event in stats_repo.event_counts(conn, campaign_id, DEFAULT_VARIANT):
        setattr(stats[event.variant], event.type, event.n)
    for complained in stats_repo.complaint_counts(conn, campaign_id, DEFAULT_VARIANT):
        stats[complained.variant].complaints = complained.n
    for opted_out in stats_repo.opted_out_after_receipt_counts(conn, campaign_id, DEFAULT_VARIANT):
        stats[opted_out.variant].opted_out_after_receipt = opted_out.n
    return dict(stats)


def _compare(
    metric: Metric,
    control_group: tuple[str, VariantStats],
    variant_group: tuple[str, VariantStats],
    test: TwoProportion,
    adjusted: float | None,
    family: int,
) -> Comparison:
    """`adjusted`: the p-value adjusted for the `family` of comparisons made (Holm), None where
    the test does not hold. Significant needs it under 0.05 and the 95% interval to exclude no
    difference: the test and the interval are two methods (pooled z, Newcombe's score
    interval), and near p = 0.05 they can disagree, "higher" beside an interval reaching below
    zero. Called only where both say so; where they disagree, neither is. Where both would call it
    alone but the adjustment does not, the verdict says that, not that the methods disagree."""
    (control, a), (variant, b) = control_group, variant_group
    tested = adjusted is not None and adjusted < _SIGNIFICANCE
    excludes_zero = test.enough_data and (test.ci_low > 0 or test.ci_high < 0)
    significant = tested and excludes_zero
    if not test.enough_data or test.difference is None:
        deliveries = f"control {a.delivered} deliveries, {variant} {b.delivered}"
        if min(a.delivered, b.delivered) < MIN_SAMPLE:
            verdict = (
                f"sample too small to tell: each variant needs {MIN_SAMPLE} deliveries or more ({deliveries})"
            )
        else:
            events = _EVENTS_OF[metric]
            verdict = (
                f"too few {events} to tell: at the rate of both variants together, each needs at least "
                f"{MIN_EXPECTED} deliveries expected with {events} and {MIN_EXPECTED} without ({deliveries})"
            )
    else:
        p = f"p = {test.p_value:.3g}" + (
            f", {adjusted:.3g} adjusted for {family} comparisons" if family > 1 else ""
        )
        # In percentage points: "+3.10%" read as a relative lift of 3.1%, not 10% against 13.1%.
        difference = f"{test.difference * 100:+.2f} percentage points"
        ci = f"95% CI {test.ci_low * 100:+.2f} to {test.ci_high * 100:+.2f}"
        alone = test.p_value is not None and test.p_value < _SIGNIFICANCE and excludes_zero
        if significant:
            direction = "higher" if test.difference > 0 else "lower"
            verdict = f"{variant} has a {direction} {metric} than {control}: {difference} ({ci}, {p})"
        elif alone:  # both methods say so, but not once the other comparisons are counted
            verdict = (
                f"no significant difference in {metric} between {variant} and {control} once adjusted for "
                f"{family} comparisons: {difference} ({ci}, {p}); alone it would be"
            )
        elif tested or excludes_zero:
            verdict = (
                f"borderline difference in {metric} between {variant} and {control}: {difference}; "
                f"the test ({p}) and the {ci} disagree, so it is not called significant: more deliveries "
                "will tell"
            )
        else:
            verdict = f"no significant difference in {metric} between {variant} and {control}: "
            verdict += f"{difference} ({ci}, {p})"
    return Comparison(
        metric=metric, control=control, variant=variant, control_rate=test.rate_a, variant_rate=test.rate_b,
        difference=test.difference, ci95=(test.ci_low, test.ci_high), z=test.z, p_value=test.p_value,
        p_value_adjusted=adjusted, significant=significant, verdict=verdict,
    )  # fmt: skip
