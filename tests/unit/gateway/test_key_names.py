"""One rule for an API key's name, whether the admin route or `keys create` makes the key.

`keys create` checked nothing: "", 5,000 characters, a newline or "<script>" became key names. And
the route's pattern let a trailing newline through (Python's `$` matches before one).
"""

from __future__ import annotations

import msgspec
import pytest

from gateway.errors import InvalidInput
from gateway.schemas.admin import ApiKeyCreate
from gateway.services.api_keys import check_name

REFUSED = ["", "x" * 101, "x" * 5000, "evil\nname", "evil\n", "<script>", "tab\there", "nul\x00"]
ACCEPTED = ["x", "x" * 100, "marketing", "svc: push-relay.v2", "营销 服务", "a_b"]


@pytest.mark.parametrize("name", REFUSED)
def test_names_refused_by_both(name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_name(name)
    assert refused.value.field == "name"
    assert refused.value.detail.startswith("name: ")
    body = msgspec.json.encode({"name": name, "scopes": ["admin"]})
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.name`"):
        msgspec.json.decode(body, type=ApiKeyCreate)


@pytest.mark.parametrize("name", ACCEPTED)
def test_names_accepted_by_both(name: str) -> None:
    check_name(name)
    body = msgspec.json.encode({"name": name, "scopes": ["admin"]})
    assert msgspec.json.decode(body, type=ApiKeyCreate).name == name
