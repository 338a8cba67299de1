"""The SDK's copies of the gateway's types are the gateway's types.

The SDK keeps its own `Topic` and statistics answers rather than importing `policies` and
`gateway` (a service needs only the SDK, msgspec and httpx), so nothing but this test keeps the
copies from drifting: a topic added on one side only, a field renamed, retyped or given another
default on one side only fails here.
"""

from __future__ import annotations

from typing import get_args, get_origin

import msgspec
import pytest

from clients.sdk import models as sdk
from gateway.schemas import complaints, pushes, stats
from policies import catalog


def _shape(annotation: object) -> object:
    """A field's type, comparable across the two sides: a struct by its name (each side has its
    own class, compared field by field below), a `Literal` by its values in order."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation.__name__
    args = get_args(annotation)
    if not args:
        return annotation
    return get_origin(annotation), tuple(_shape(arg) for arg in args)


def _fields(struct: type[msgspec.Struct]) -> list[tuple[object, ...]]:
    return [
        (field.name, field.encode_name, _shape(field.type), field.default, field.default_factory)
        for field in msgspec.structs.fields(struct)
    ]


def test_the_sdk_s_topics_are_the_catalog_s() -> None:
    assert get_args(sdk.Topic) == get_args(catalog.Topic)


@pytest.mark.parametrize("name", ["VariantStats", "Comparison", "CampaignStats"])
def test_the_sdk_s_statistics_answers_are_the_gateway_s(name: str) -> None:
    assert _fields(getattr(sdk, name)) == _fields(getattr(stats, name))


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (sdk.PushAnswer, pushes.PushAnswer),
        (sdk.BatchAnswer, pushes.BatchAnswer),
        (sdk.Push, pushes.PushRead),
        (sdk.CampaignCreated, pushes.CampaignCreated),
        (sdk.Campaign, pushes.CampaignRead),
        (sdk.PauseEvidence, pushes.PauseEvidence),
        (sdk.Complaint, complaints.ComplaintRead),
    ],
    ids=lambda struct: struct.__name__,
)
def test_the_sdk_s_answers_carry_every_field_the_gateway_answers(
    ours: type[msgspec.Struct], theirs: type[msgspec.Struct]
) -> None:
    """By name only: the SDK reads times as datetimes and some strings as Literals. `Complaint`
    lost the gateway's `complainant_erased`: a service could not tell why its resolution went."""
    names = [field.encode_name for field in msgspec.structs.fields(theirs)]
    assert [field.encode_name for field in msgspec.structs.fields(ours)] == names
