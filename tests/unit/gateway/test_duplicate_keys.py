"""Bodies with a repeated key in any object are refused, naming the key; no other body is."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.body import _refuse_duplicate_keys, decode_strict
from gateway.errors import InvalidInput
from gateway.schemas.pushes import BatchCreate

NAMES = st.sampled_from(["a", "b", "granted", "data", "ü", "k"])


def _encode(value: Any) -> str:
    """Objects are lists of pairs here, so that a key may repeat in what is encoded."""
    if isinstance(value, tuple):
        return "{" + ",".join(f"{json.dumps(k)}:{_encode(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


def _repeats(value: Any) -> bool:
    if isinstance(value, tuple):
        names = [k for k, _ in value]
        return len(set(names)) != len(names) or any(_repeats(v) for _, v in value)
    if isinstance(value, list):
        return any(_repeats(v) for v in value)
    return False


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(NAMES, inner), max_size=4).map(tuple),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_refused_exactly_when_some_object_repeats_a_key(value: Any) -> None:
    raw = _encode(value).encode()
    if _repeats(value):
        with pytest.raises(InvalidInput):
            _refuse_duplicate_keys(raw)
    else:
        _refuse_duplicate_keys(raw)


def test_the_first_object_finished_with_a_repeat_is_the_one_named() -> None:
    raw = b'{"pushes": [{"title": "t", "data": {"deeplink": "a", "deeplink": "b"}}], "pushes": []}'
    with pytest.raises(InvalidInput) as refused:
        _refuse_duplicate_keys(raw)
    assert refused.value.field == "pushes[0].data.deeplink"  # its path, not the bare key


def test_the_same_key_in_sibling_objects_is_no_repeat() -> None:
    _refuse_duplicate_keys(b'{"pushes": [{"title": "a"}, {"title": "b"}], "title": "c"}')


def test_malformed_json_is_left_to_the_decoder() -> None:
    _refuse_duplicate_keys(b'{"a": 1, "a": ')


PUSH = '{"idempotency_key": "k1", "user_id": "u1", "topic": "promotions", "title": "t", "body": "b"'


def test_a_repeat_in_a_body_the_model_accepts_is_refused_naming_it() -> None:
    raw = ('{"pushes": [' + PUSH + ', "data": {"deeplink": "a", "deeplink": "b"}}]}').encode()
    assert decode_strict(('{"pushes": [' + PUSH + "}]}").encode(), BatchCreate).pushes[0].title == "t"

    with pytest.raises(InvalidInput) as refused:
        decode_strict(raw, BatchCreate)
    assert refused.value.field == "pushes[0].data.deeplink"


def test_a_body_the_model_refuses_is_not_scanned_whole() -> None:
    """Ten million values in the wrong place: read whole, as a tree, they would take far more
    memory than the body (and seconds of the event loop); the model refuses them at the first."""
    raw = b'{"pushes": [[' + b",".join([b"0"] * 10_000_000) + b"]]}"
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput) as refused:
            decode_strict(raw, BatchCreate)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.field == "pushes[0]"
    assert peak < len(raw) // 10


def test_one_key_repeated_many_times_is_named_by_its_path() -> None:
    """Past the pairs any model holds, the object is named without visiting each pair (the walk
    took seconds over one key repeated millions of times); its path is the same."""
    many = ", ".join(['"deeplink": "a"'] * 1_000)
    raw = ('{"pushes": [' + PUSH + ', "data": {' + many + "}}]}").encode()
    with pytest.raises(InvalidInput) as refused:
        decode_strict(raw, BatchCreate)
    assert (refused.value.detail, refused.value.field) == (
        "duplicate key `deeplink` in the JSON body", "pushes[0].data.deeplink",
    )  # fmt: skip


@pytest.mark.parametrize(
    "key", ["bob@example.com", "13800138000", "4111 1111 1111 1111", "a key with spaces"]
)
def test_a_key_that_may_hold_personal_data_is_not_repeated_in_the_refusal(key: str) -> None:
    """A body's keys are the sender's text: an unknown or repeated one was named word for word,
    where a refused value never is. The refusal names the object that holds it instead."""
    unknown = ('{"pushes": [' + PUSH + ", " + json.dumps(key) + ": 1}]}").encode()
    with pytest.raises(InvalidInput) as refused:
        decode_strict(unknown, BatchCreate)
    assert (refused.value.field, key in refused.value.detail) == ("pushes[0]", False)
    assert "unknown field (a name not repeated)" in refused.value.detail

    repeated = (
        '{"pushes": [' + PUSH + ', "data": {' + f'{json.dumps(key)}: "a", {json.dumps(key)}: "b"' + "}}]}"
    ).encode()
    with pytest.raises(InvalidInput) as refused:
        decode_strict(repeated, BatchCreate)
    assert (refused.value.field, refused.value.detail) == (
        "pushes[0].data", "duplicate key (a name not repeated) in the JSON body",
    )  # fmt: skip


@pytest.mark.parametrize("key", ["x` bob@example.com", "x` 4111 1111 1111 1111"])
def test_a_key_holding_a_backtick_is_read_whole(key: str) -> None:
    """The name was read up to its first backtick (`x`), which looked like a field's: the rest,
    an e-mail address, was repeated in the detail."""
    for raw in ('{"pushes": [' + PUSH + ", " + json.dumps(key) + ": 1}]}", "{" + json.dumps(key) + ": 1}"):
        with pytest.raises(InvalidInput) as refused:
            decode_strict(raw.encode(), BatchCreate)
        assert key.split("` ")[1] not in refused.value.detail
        assert refused.value.field in ("pushes[0]", "body")


def test_a_data_key_whose_value_is_refused_is_named_only_if_it_may_be() -> None:
    """A value of the wrong type in `data` is named by its key (`data.deeplink`), unless the key
    may hold personal data: then by the mapping."""
    named = '{"pushes": [' + PUSH + ', "data": {"deeplink": 5}}]}'
    unnamed = '{"pushes": [' + PUSH + ', "data": {"bob@example.com": 5}}]}'
    found = []
    for raw in (named, unnamed):
        with pytest.raises(InvalidInput) as refused:
            decode_strict(raw.encode(), BatchCreate)
        found.append(refused.value.field)
    assert found == ["pushes[0].data.deeplink", "pushes[0].data"]


def test_a_key_of_a_field_s_shape_is_still_named() -> None:
    unknown = ('{"pushes": [' + PUSH + ', "priority": 1}]}').encode()
    with pytest.raises(InvalidInput) as refused:
        decode_strict(unknown, BatchCreate)
    assert (refused.value.field, "`priority`" in refused.value.detail) == ("pushes[0].priority", True)
