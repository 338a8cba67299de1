"""A campaign's opt-outs stay counted: they were read from the subjects' consents as they are
now, so an erasure (which deletes the consents) or a later grant took back an opt-out already
counted, and an A/B comparison on `opt_out_rate` changed after the fact. The recipients most
annoyed by a variant, who leave and erase, vanished from it."""

from __future__ import annotations

from collections.abc import Callable

from conftest import FakeClock, Headers
from test_campaign_opt_out_after_receipt import Client, consent, dispatch, submit, user_with
from test_engagement_stats import create_campaign, item, stats

from gateway.runtime import Runtime


def _opt_outs(client: Client, reader: Headers, campaign_id: str) -> tuple[int, int]:
    counted = stats(client, reader, campaign_id)["variants"]["default"]
    return counted["delivered"], counted["opted_out_after_receipt"]


def _received_then_withdrawn(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> tuple[str, Headers]:
    """(campaign, ada): ada had the campaign's push, then withdrew marketing consent."""
    cid = create_campaign(client, as_key("campaigns:write"))
    ada = as_user("ada")
    user_with(client, ada, "fcm")
    submit(client, as_key("pushes:write"), item("a1", "ada", campaign_id=cid))
    assert dispatch(client, runtime) == 1
    clock.advance(minutes=1)
    consent(client, ada, granted=False)
    return cid, ada


def test_an_opt_out_stays_counted_after_the_user_erases_their_data(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    cid, ada = _received_then_withdrawn(client, runtime, clock, as_user, as_key)
    reader = as_key("campaigns:read")
    assert _opt_outs(client, reader, cid) == (1, 1)

    assert client.delete("/v1/me", headers=ada).status_code in (200, 202, 204)

    assert _opt_outs(client, reader, cid) == (1, 1)


def test_an_opt_out_stays_counted_after_the_user_consents_again(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    cid, ada = _received_then_withdrawn(client, runtime, clock, as_user, as_key)
    clock.advance(days=2)
    consent(client, ada, granted=True)

    assert _opt_outs(client, as_key("campaigns:read"), cid) == (1, 1)


def test_a_withdrawal_before_the_push_was_received_marks_nothing_it_later_gets(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """Withdrawn, then given again before the next push: that push was received under consent
    and its recipient has not opted out since."""
    cid = create_campaign(client, as_key("campaigns:write"))
    ada = as_user("ada")
    user_with(client, ada, "fcm")
    consent(client, ada, granted=False)
    consent(client, ada, granted=True)
    submit(client, as_key("pushes:write"), item("a1", "ada", campaign_id=cid))
    assert dispatch(client, runtime) == 1

    assert _opt_outs(client, as_key("campaigns:read"), cid) == (1, 0)
