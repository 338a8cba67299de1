"""The card detector against the plainest reading of its rule.

`find_pii` flags a card when some span of whole digit groups in a run holds 13-19 digits and
passes Luhn. The detector sums spans from prefix sums, so that a long run of tiny groups costs
steps per group instead of a Luhn check per span; here every span is joined and checked anew,
as the rule reads, and the two must agree on any run.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.pii import find_pii, luhn_valid


def has_card_span(groups: list[str]) -> bool:
    for start in range(len(groups)):
        for stop in range(start + 1, len(groups) + 1):
            digits = "".join(groups[start:stop])
            if 13 <= len(digits) <= 19 and luhn_valid(digits):
                return True
    return False


GROUPS = st.lists(st.text(alphabet="0123456789", min_size=1, max_size=20), min_size=1, max_size=14)


@settings(max_examples=400, deadline=None)
@given(groups=GROUPS, separator=st.sampled_from([" ", "-"]))
def test_a_card_is_found_exactly_when_a_span_of_groups_passes_luhn(groups: list[str], separator: str) -> None:
    text = "pay " + separator.join(groups) + " now"
    assert ("card" in find_pii(text)) == has_card_span(groups)


def test_a_card_deep_in_a_long_run_of_single_digits_is_found() -> None:
    noise = "1 " * 3000
    assert "card" not in find_pii(noise)
    assert "card" in find_pii(noise + "4111 1111 1111 1111")
    assert "card" in find_pii("4111-1111-1111-1111-" + "2-" * 3000 + "2")
