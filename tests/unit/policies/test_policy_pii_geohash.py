"""PII detection and geohash encoding, driven by vectors so near-misses are written down once."""

import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import geohash, pii
from policies.pii import PII_KINDS, find_pii

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[2] / "data" / "pii_vectors.json").read_text(encoding="utf-8")
)["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_pii_vector(vector: dict[str, Any]) -> None:
    assert find_pii(vector["text"]) == vector["kinds"]


def test_vectors_cover_every_kind_and_negatives() -> None:
    kinds = {kind for vector in VECTORS for kind in vector["kinds"]}
    assert kinds == set(PII_KINDS)
    assert sum(1 for vector in VECTORS if not vector["kinds"]) >= 10


@pytest.mark.parametrize(
    ("lat", "lon", "precision", "expected"),
    [
        (57.64911, 10.40744, 11, "u4pruydqqvj"),
        (42.6, -5.6, 5, "ezs42"),
        (39.9042, 116.4074, 6, "wx4g0b"),
        (-25.382708, -49.265506, 7, "6gkzwgj"),
        (0.0, 0.0, 1, "s"),
    ],
)
def test_geohash_known_values(lat: float, lon: float, precision: int, expected: str) -> None:
    assert geohash.encode(lat, lon, precision) == expected


@pytest.mark.parametrize(
    ("lat", "lon", "precision"), [(91.0, 0.0, 6), (0.0, 181.0, 6), (0.0, 0.0, 0), (0.0, 0.0, 13)]
)
def test_geohash_rejects_out_of_range(lat: float, lon: float, precision: int) -> None:
    with pytest.raises(ValueError, match="must be within"):
        geohash.encode(lat, lon, precision)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("wx4g0b", True),
        ("u4pruydqqvj", True),
        ("", False),
        ("wx4a0b", False),
        ("WX4G0B", False),
        ("s" * 13, False),
    ],
)
def test_geohash_is_valid(value: str, valid: bool) -> None:
    assert geohash.is_valid(value) is valid


# -- the shortcuts change no answer --------------------------------------------------------------

_UNANCHORED_EMAIL = re.compile("{}+{}".format(*pii._email_parts()))


def _folded(text: str) -> str:
    """The folding as specified, char by char, with no shortcut for ASCII text: then controls
    dropped, spacing made single and an ideographic full stop between Latin letters a dot, each
    whether or not the text seems to need it."""
    out = []
    for char in unicodedata.normalize("NFKC", text):
        category = unicodedata.category(char)
        if category == "Pd":
            out.append("-")
        elif category == "Nd":
            out.append(str(unicodedata.digit(char)))
        elif (category not in ("Cf", "Cc") and ord(char) not in pii._INVISIBLE) or char in "\n\t\x0b\x0c\r":
            out.append(char)
    folded = pii._SPACES.sub(" ", "".join(out))
    return re.sub(r"(?<=[A-Za-z0-9])\u3002(?=[A-Za-z])", ".", folded)


def _every_detector(text: str) -> list[str]:
    """`find_pii` without its ASCII, "@" and eight-digit shortcuts and with the email pattern as
    first written (free to start inside a run), over each reading of the text: the reference
    the fast path must agree with."""
    found = {kind for reading in pii._readings(text) for kind in _detectors(_folded(reading))}
    return [kind for kind in PII_KINDS if kind in found]


def _detectors(text: str) -> list[str]:
    found = []
    if _UNANCHORED_EMAIL.search(text):
        found.append("email")
    if pii._e164_found(text) or pii._CN_MOBILE.search(text):
        found.append("phone")
    if pii._contains_card(text):
        found.append("card")
    if pii._contains_resident_id(text):
        found.append("cn_resident_id")
    return found


_PIECES = st.sampled_from(
    ["4111 1111 1111 1111", "+86 138 0013 8000", "13800138000", "11010519491231002X", "a.b@example.org",
     "@", ".", "-", " ", "+", "x", "Order", "2024-06-15", "1234567", "12345678", "0", "9",
     "１３８００１３８０００", "a.b＠example.org", "4111\u20111111\u20111111\u20111111", "١٣٨٠٠١٣٨٠٠٠",
     "\u200b", "\u00a0", "\u2013", "＋", "．", "年", "😀",
     # escapes and what folding drops or joins since
     "%40", "%20", "%2540", "&#64;", "&nbsp;", "&amp;", "\u034f", "\ufe0f\u20e3", "\x01", "\t", "  ", "。"]
)  # fmt: skip
# What the text strategies draw from: ASCII, and look-alikes of each separator and digit in it
# (full-width, Arabic-Indic, Devanagari), invisible format characters, no-break spaces, dashes.
_ALPHABET = (
    "0123456789 -+@.xX" + "０１３８９Ｘｘ＋＠．" + "٠١٣٨۱१" + "，！（）①😀"
    + "\u200b\u200d\u2060\u00ad\u200f" + "\u00a0\u202f\u3000" + "\u2011\u2013"
    + "\u034f\ufe0f\u20e3\u3164\x01\t%&#;" + "。"
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(alphabet=_ALPHABET, max_size=12)), max_size=12))
def test_find_pii_agrees_with_every_detector_run_unconditionally(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert find_pii(text) == _every_detector(text)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(_PIECES, st.text(alphabet=_ALPHABET + "\n", max_size=12)), max_size=6),
        max_size=4,
    )
)
def test_fields_ruled_out_together_hold_no_pii_apart(fields: list[list[str]]) -> None:
    """The minimization rule scans a push's fields joined with newlines once, and looks at each
    field only if that scan might find something: it must never rule out a field that has PII."""
    texts = ["".join(pieces) for pieces in fields]
    if not pii.could_hold_pii("\n".join(texts)):
        assert all(_every_detector(text) == [] for text in texts)


def _read_the_long_way(text: str) -> bool:
    """`could_hold_pii` as it reads text that is not plain: every reading, folded."""
    return any("@" in folded or pii._number_like(folded) for folded in map(pii._fold, pii._readings(text)))


# Plain text (ASCII, no "@", escape or control) and the bytes that make text not plain, mostly
# digits and what a gap or a run of spaces holds, so that numbers half-form and form.
_PLAIN_ALPHABET = "0123456789" * 3 + "     .-()+_/:xX\n"


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet=_PLAIN_ALPHABET + "@%&#;\t\r\x01\x7f\u00a0\u3000１", max_size=48))
def test_plain_text_is_judged_as_the_long_way_judges_it(text: str) -> None:
    assert pii.could_hold_pii(text) is _read_the_long_way(text)


@pytest.mark.parametrize(
    "text",
    [
        "4111   1111   1111   1111",  # runs of spaces fold to one: a card
        "Call 138    0013    8000",
        "4111 1111\t1111 1111",
        "4111 1111 1111 1111\r",
        "a.b@example.org",
        "a.b%40example.org",
        "4111&#32;1111&#32;1111&#32;1111",
        "４１１１ １１１１ １１１１ １１１１",
        "4111\x7f1111\x7f1111\x7f1111",
    ],
)
def test_text_that_might_hold_pii_is_not_ruled_out(text: str) -> None:
    assert pii.could_hold_pii(text)
    assert _read_the_long_way(text)


@pytest.mark.parametrize("text", ["Order 1234 is on its way", "Tickets 12 34 56", "v1.2.3-rc(4)\nsee 12345"])
def test_plain_text_without_a_number_like_shape_is_ruled_out(text: str) -> None:
    assert not pii.could_hold_pii(text)
