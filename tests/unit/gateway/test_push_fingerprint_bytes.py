"""The bytes a push's fingerprint hashes: stored with every push and compared on each replay of
its idempotency key, so they may never change. They were once the request struct, changed and
encoded with sorted keys; they are built from a dict now, and must be those same bytes."""

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.schemas.pushes import Near, PushCreate
from gateway.services.pushes import fingerprinted

REF = "s" * 52


def as_first_written(request: PushCreate, subject_ref: str, ttl_seconds: int | None) -> bytes:
    changed = msgspec.structs.replace(
        request, user_id=None, subject_ref=subject_ref, dry_run=False, ttl_seconds=ttl_seconds
    )
    return msgspec.json.encode(changed, order="sorted")


text = st.text(max_size=12)
requests = st.builds(
    PushCreate,
    idempotency_key=st.text(min_size=1, max_size=12),
    user_id=st.text(alphabet="abc", min_size=1, max_size=3),
    topic=st.sampled_from(["promotions", "transactional", "nearby_offers"]),
    title=text,
    body=text,
    data=st.dictionaries(st.text(alphabet="xyz_é", min_size=1, max_size=4), text, max_size=3),
    campaign_id=st.sampled_from([None, "cmp_0123456789abcdef"]),
    personalized=st.booleans(),
    near=st.sampled_from([None, Near(geohash="u33dc")]),
    ttl_seconds=st.sampled_from([None, 60, 604800]),
    dry_run=st.just(False),  # a dry run `near` is refused; the bytes say false either way
)


@settings(max_examples=200, deadline=None)
@given(requests, st.sampled_from([None, 3600]))
def test_the_bytes_are_those_first_written(request: PushCreate, ttl_seconds: int | None) -> None:
    assert fingerprinted(request, REF, ttl_seconds) == as_first_written(request, REF, ttl_seconds)


def test_the_bytes_of_one_push_as_pinned() -> None:
    request = PushCreate(
        idempotency_key="k1", user_id="ann", topic="promotions", title="Sale", body="20% off",
        data={"z": "1", "a": "ü"}, campaign_id="cmp_0123456789abcdef", variant="A", ttl_seconds=60,
    )  # fmt: skip
    assert fingerprinted(request, REF, 60) == (
        b'{"body":"20% off","campaign_id":"cmp_0123456789abcdef","data":{"a":"\xc3\xbc","z":"1"},'
        b'"dry_run":false,"idempotency_key":"k1","near":null,"personalized":false,'
        b'"subject_ref":"' + REF.encode() + b'","title":"Sale","topic":"promotions","ttl_seconds":60,'
        b'"user_id":null,"variant":"A"}'
    )
