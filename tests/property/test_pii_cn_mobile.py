"""The mainland-China mobile detector against the plainest reading of its rule.

A run of digits, standing alone, is a mobile number when it is 11 digits 1[3-9]..., alone or
after the country code written without a "+": "86" or "0086". Any other run is not one, however
much of a mobile it holds. No "+" is drawn here, so the E.164 detector finds nothing.
"""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.pii import find_pii


def reads_as_cn_mobile(run: str) -> bool:
    return any(
        run.startswith(prefix) and re.fullmatch(r"1[3-9][0-9]{9}", run[len(prefix) :]) is not None
        for prefix in ("", "86", "0086")
    )


DIGITS = st.text(alphabet="0123456789", max_size=6)
RUNS = st.one_of(
    # A mobile, or something near one, with or without a prefix and stray digits on either side.
    st.builds(
        lambda before, prefix, second, rest, after: before + prefix + "1" + second + rest + after,
        st.sampled_from(["", "", "", "0", "9", "8", "6", "00", "86"]),
        st.sampled_from(["", "86", "0086", "086", "00086", "8", "6"]),
        st.sampled_from("0123456789"),
        st.text(alphabet="0123456789", min_size=8, max_size=10),
        st.sampled_from(["", "", "", "0", "1"]),
    ),
    st.text(alphabet="01368", min_size=8, max_size=16),
    DIGITS.map(lambda digits: "8613800138000"[: len(digits) + 7] + digits),
)


@settings(max_examples=600, deadline=None)
@given(
    run=RUNS,
    before=st.sampled_from(["", "Call ", "电话", "x", "(", "tel:", "。"]),
    after=st.sampled_from(["", " now", ".", "元", ")"]),
)
def test_a_phone_is_found_exactly_when_the_run_reads_as_a_mobile(run: str, before: str, after: str) -> None:
    assert ("phone" in find_pii(before + run + after)) == reads_as_cn_mobile(run)
