"""The card detector against the plainest reading of its rule.

`find_pii` flags a card when some span of whole digit groups in a run is written as cards are
(one run of 13-19 digits; groups of four, the last of one to four, 13-19 digits in all; or
4-6-5 and 4-6-4; 13 digits only starting with a 4) and passes Luhn. The detector walks only
those spans and sums them from prefix sums, so that a long run of tiny groups costs steps per
group instead of a Luhn check per span; here every span is joined, its shape read from its
groups and checked anew, as the rule reads, and the two must agree on any run.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.pii import find_pii


def luhn_valid(digits: str) -> bool:
    """The Luhn check as written: double every second digit from the right, sum, divide by 10."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_shaped(groups: list[str]) -> bool:
    lengths = [len(group) for group in groups]
    if not 13 <= sum(lengths) <= 19:
        return False
    if sum(lengths) == 13 and not groups[0].startswith("4"):  # only Visa wrote 13 digits
        return False
    if len(lengths) == 1 or lengths in ([4, 6, 5], [4, 6, 4]):
        return True
    if lengths == [4, 3, 3, 3]:
        return groups[0].startswith("4")
    return all(length == 4 for length in lengths[:-1]) and 1 <= lengths[-1] <= 4


def has_card_span(groups: list[str]) -> bool:
    for start in range(len(groups)):
        for stop in range(start + 1, len(groups) + 1):
            span = groups[start:stop]
            if card_shaped(span) and luhn_valid("".join(span)):
                return True
    return False


GROUPS = st.lists(st.text(alphabet="0123456789", min_size=1, max_size=20), min_size=1, max_size=14)
# Groups of the lengths cards are written in, so that card-shaped spans come up often.
CARD_LIKE = st.lists(
    st.sampled_from([1, 2, 3, 3, 4, 4, 4, 5, 6, 13, 16]).flatmap(
        lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(groups=st.one_of(GROUPS, CARD_LIKE), separator=st.sampled_from([" ", "-"]))
def test_a_card_is_found_exactly_when_a_card_shaped_span_passes_luhn(
    groups: list[str], separator: str
) -> None:
    text = "pay " + separator.join(groups) + " now"
    assert ("card" in find_pii(text)) == has_card_span(groups)


def test_lists_of_small_numbers_and_date_ranges_are_no_card() -> None:
    """Regression: any span of groups passing Luhn was a card, so a quarter of lists of eight
    shoe sizes, and some date ranges, were rejected as card numbers."""
    assert find_pii("Winter boots back in sizes 36 37 38 39 40 41 42 43") == []
    assert find_pii("Valid 20241225-20250101, show this code at checkout") == []
    for written in ("4111 1111 1111 1111", "4111111111111111", "3782 822463 10005", "4222 222 222 222"):
        assert find_pii(f"pay {written} now") == ["card"], written


def test_a_card_deep_in_a_long_run_of_single_digits_is_found() -> None:
    noise = "1 " * 3000
    assert "card" not in find_pii(noise)
    assert "card" in find_pii(noise + "4111 1111 1111 1111")
    assert "card" in find_pii("4111-1111-1111-1111-" + "2-" * 3000 + "2")
