"""Step 1 of dispatch, read for a whole round at once (`Round`): the claimed pushes' rows, their
subjects' keys, states and devices, and the delivery records, a few `IN` queries per round instead
of a dozen per push; kept true to what step 1 concludes as it goes (`Round.replan`). And what step
1 hands to step 2 for each push it lets go (`Send`). See `gateway.services.dispatch`."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import msgspec

from clients.delivery import DeliveryMessage
from policies import (
    CampaignState,
    DecisionUnit,
    PolicySettings,
    PushNeeds,
    Scheduled,
    SubjectState,
    state_parts_for,
)
from policies.catalog import is_marketing
from policies.quiet_hours import QuietWindow
from storage.connections import Connection
from storage.directory import SubjectKey
from storage.outbox import Claim
from storage.repositories import campaigns, deliveries, devices, pushes, subject_state
from storage.repositories.devices import DeviceRow
from storage.repositories.pushes import PushRow
from storage.store import Store

__all__ = ["Round", "Send", "already_delivered"]


class Send(msgspec.Struct, frozen=True):
    """What step 1 hands to step 2: the messages still to be delivered, and the push's delivery
    records as step 1 read them (step 3 adds this round's results to them). `campaign_id` is
    the push's, for step 3 to count its delivery even when no message is left to send, and for
    the round claimed meanwhile (`Holding`), as `subject_id` is. `quiet`: a marketing push's
    quiet window, `rowid` its place in `pushes`, which a campaign's pause mark is compared
    with, `seen` the subject's choices as its decision read them, if it read them, and
    `registered` when each device's token was last registered: each send asks again, as it
    starts, whether they let it go (`SendChecks`)."""

    messages: tuple[DeliveryMessage, ...]
    recorded: dict[str, str]
    campaign_id: str | None
    expires: datetime
    subject_id: str
    quiet: QuietWindow | None
    rowid: int
    seen: str | None
    registered: dict[str, str | None]


class Round:
    """Step 1's reads for a whole round, made together inside its writer unit: the pushes' own
    rows, then their subjects' keys, states and devices (`read_subjects`), the reads that fail
    when a subject's sealed data does not open."""

    def __init__(self, conn: Connection, claims: list[Claim], claimed: Collection[str] = ()) -> None:
        """`claimed`: the round's pushes not yet written, when this is one of them read alone: a
        retry among them is waiting, to be decided again by this round or left to its lease."""
        ids = [c.push_id for c in claims]
        self.claimed = {*ids, *claimed}
        # With the order pushes were decided in: a campaign's pause stops those before it, and a
        # subject's pushes planned at one instant are judged in it (`state_for`).
        self.rows, self.order = pushes.get_many(conn, ids)
        self.recorded = deliveries.states_many(conn, ids)
        wanted = {r.campaign_id for r in self.rows.values() if r.campaign_id is not None}
        self.campaigns = {cid: campaigns.get(conn, cid) for cid in wanted}
        self.keys: dict[str, SubjectKey] = {}
        self.states: dict[str, SubjectState] = {}
        self.devices: dict[str, list[DeviceRow]] = {}
        self._stamps: dict[str, str] = {}
        self._stamped: set[str] = set()
        self.unit = DecisionUnit()

    def read_subjects(
        self, conn: Connection, store: Store, now: datetime, tz: str, policy: PolicySettings
    ) -> None:
        self.keys = store.directory.by_subject_ids(
            {r.subject_id for r in self.rows.values() if r.subject_id is not None}
        )
        keys = list(self.keys.values())
        parts = state_parts_for(PushNeeds(r.topic) for r in self.rows.values())  # contents not open yet
        # The active devices first: the rows for the sends, and their count for the decisions.
        self.devices = devices.list_for_many(conn, keys, active_only=True)
        counts = {sid: len(rows) for sid, rows in self.devices.items()}
        self.states = subject_state.load_many(
            conn, keys, now, policy, tz, parts, claimed=self.claimed, active_devices=counts
        )
        # What the decisions read of the subjects' choices, for the sends to see whether it changed
        # before they start (`SendChecks`); in this unit, so it is what the states above read.
        # For the subjects of marketing pushes here, the others' when a push needs it (`stamp`):
        # a transactional push's decision reads them only if it is personalized or near a place.
        marketing = {r.subject_id for r in self.rows.values() if r.subject_id and is_marketing(r.topic)}
        self._stamps = subject_state.choices_stamp(conn, marketing)
        self._stamped = marketing

    def stamp(self, conn: Connection, subject_id: str) -> str:
        """The subject's choices as this unit reads them (`subject_state.choices_stamp`), read on
        first need for a subject whose pushes here are transactional: one in a hundred of those
        is personalized or near a place, where a read per round for all cost 5-7% a push."""
        if subject_id not in self._stamped:
            self._stamps |= subject_state.choices_stamp(conn, [subject_id])
            self._stamped.add(subject_id)
        return self._stamps.get(subject_id, "")

    def key(self, row: PushRow) -> SubjectKey | None:
        return None if row.subject_id is None else self.keys.get(row.subject_id)

    def campaign(self, row: PushRow) -> CampaignState | None:
        if row.campaign_id is None:
            return None
        campaign = self.campaigns.get(row.campaign_id)
        return CampaignState(paused=campaign is not None and campaign.stops(self.order[row.push_id]))

    def state_without(self, row: PushRow, subject_id: str) -> SubjectState:
        """The subject's state with this push left out of its planned pushes: a push must not
        count against the caps it is judged by."""
        state = self.states[subject_id]
        kept = tuple(item for item in state.scheduled if item.push_id != row.push_id)
        return state if len(kept) == len(state.scheduled) else msgspec.structs.replace(state, scheduled=kept)

    def state_for(self, row: PushRow, subject_id: str) -> SubjectState:
        """The state the push is judged by: without itself, and without the waiting pushes planned
        after it (at the same instant, decided after it), each judged again in its turn with this
        one counted if it goes. Counted, they made a cap lowered since refuse the earliest pushes
        and keep the latest, and none at all when the latest was then refused for its content."""
        state = self.states[subject_id]
        mine = next((item for item in state.scheduled if item.push_id == row.push_id), None)
        if mine is None:  # not a marketing push in the window: no cap judges it
            return self.state_without(row, subject_id)
        kept = tuple(
            item
            for item in state.scheduled
            if item.push_id != row.push_id
            and not (item.waiting and (item.at, item.order) > (mine.at, mine.order))
        )
        return msgspec.structs.replace(state, scheduled=kept)

    def replan(self, row: PushRow, at: datetime | None, *, sending: bool = False) -> None:
        """Step 1 ended the push (`at` None), deferred it to `at`, or is sending it (planned at
        `at`): later pushes of the same subject in this round see that, as they would if each had
        read the database. Sent, it is no longer waiting: it counts whatever the user changed
        since, and against pushes planned before it (`state_for`)."""
        if row.subject_id is None or row.subject_id not in self.states:
            return
        state = self.state_without(row, row.subject_id)
        if at is not None and is_marketing(row.topic):
            expires = None if sending else datetime.fromisoformat(row.expires_at)
            order = self.order.get(row.push_id, 0)
            planned = Scheduled(at, row.topic, not sending, expires, row.push_id, order)
            state = msgspec.structs.replace(state, scheduled=(*state.scheduled, planned))
        self.states[row.subject_id] = state


def already_delivered(row: PushRow, snapshot: Round) -> bool:
    """A device of the user's already has the push."""
    return "delivered" in snapshot.recorded[row.push_id].values()
