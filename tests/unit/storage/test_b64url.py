"""The one base64url the key store, JWS segments and cursors are written in: unpadded, and read
back padded or not."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage import b64url


@given(st.binary(max_size=100))
def test_round_trip_without_padding(raw: bytes) -> None:
    text = b64url.encode(raw)
    assert "=" not in text
    assert b64url.decode(text) == raw == b64url.decode(base64.urlsafe_b64encode(raw).decode())


@pytest.mark.parametrize("text", ["a", "abcde"])
def test_a_length_base64url_cannot_have_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (binascii.Error, whatever its message)
        b64url.decode(text)
