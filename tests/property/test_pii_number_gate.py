"""The number gate's digit count against the pattern it stands before.

`_number_like` reads a looser shape of the text before trying `_NUMBER_LIKE`, and must answer
exactly as the pattern alone: any text it turned away with a number in it would skip every number detector.
"""

from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies.pii import _NUMBER_LIKE, _number_like

# Digits, the gap's characters, other digits Unicode has (Arabic-Indic, full-width), letters,
# a line break, a character beyond the BMP and a lone surrogate.
pieces = st.sampled_from(
    ["4", "1", "0", "9", " ", ".", "-", "(", ")", "\u0664", "\uff11", "a", "\n", "😀", "\ud800"]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(pieces, max_size=40).map("".join))
@example("4111 1111")
@example("411111\ud8001")
@example("(41) 1111-11")
def test_the_gate_answers_as_the_pattern(text: str) -> None:
    assert _number_like(text) == (_NUMBER_LIKE.search(text) is not None)
