"""Submitting pushes: pseudonymize at the edge, decide, and record — in one transaction.

Everything that can be done before the transaction is (pseudonym, subject key, the
idempotency fingerprint). What the decision depends on — consents, pushes already planned
for the subject, the campaign's state — is read inside the writer's `BEGIN IMMEDIATE` unit
that also writes the push and its outbox row, so caps hold however many submissions race.
The content is sealed there too, after the decision, because only an accepted push keeps it.
A batch is one unit: all of it is recorded, or none. Single pushes that wait for the writer
together share one unit (`gathering`), each refused or answered on its own.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache, lru_cache

import msgspec

from gateway.clock import Clock, rfc3339, rfc3339_text, rfc3339_text_or_none
from gateway.errors import GatewayError, InvalidInput, NotFound, Unprocessable
from gateway.metrics import Metrics
from gateway.schemas.pushes import BatchAnswer, NotificationRead, PushAnswer, PushCreate, PushRead, WireReason
from gateway.services.gathering import SharedUnit
from gateway.services.policy import PolicySource
from gateway.settings import Settings
from policies import (
    CampaignState,
    Decision,
    DecisionUnit,
    PolicySettings,
    PushNeeds,
    PushRequest,
    Reason,
    Scheduled,
    SubjectState,
    decide,
    state_parts_for,
)
from policies.catalog import is_marketing
from policies.reasons import QUIET_HOURS
from storage import outbox
from storage.connections import Connection, savepoint
from storage.crypto import KeyedHash
from storage.directory import SubjectKey, SubjectStatus
from storage.failures import is_database_error
from storage.repositories import campaigns, pushes, subject_state
from storage.repositories.campaigns import CampaignRow
from storage.repositories.pushes import ACCEPTED, PushContent, PushRow, content_aad
from storage.store import Store
from storage.writer import wrote_in_context

__all__ = ["PushService", "fingerprinted", "policy_request", "wire_reasons"]

log = logging.getLogger("gateway.pushes")


# gc=False on both: made for every push and never part of a cycle (see gateway/gc_tuning.py).
class _Record(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What only a push that is recorded needs: its id, its idempotency key and body
    fingerprint (both keyed-hashed), and its content, sealed once the push is accepted."""

    push_id: str
    idempotency_ref: str
    fingerprint: bytes
    subject_ref: str
    content: PushContent


class _Prepared(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A validated submission with its subject resolved; `record` is None for a dry run,
    which is decided and answered but neither stored nor given an id."""

    key_id: str
    request: PushCreate
    content: PushContent
    key: SubjectKey | None
    status: SubjectStatus
    record: _Record | None


def fingerprinted(request: PushCreate, subject_ref: str, ttl_seconds: int | None) -> bytes:
    """What a push's fingerprint is the keyed hash of: the request as JSON with sorted keys, its
    user id as the pseudonym, `dry_run` false and the TTL as given. Built from a dict, which
    encodes to the same bytes as the struct changed: a changed copy of the struct runs the
    request's checks again, the variant's PII scan among them, once more per push. Stored
    fingerprints are compared with it on every replay, so its bytes must never change."""
    fields = msgspec.structs.asdict(request)
    fields.update(user_id=None, subject_ref=subject_ref, dry_run=False, ttl_seconds=ttl_seconds)
    return msgspec.json.encode(fields, order="sorted")


def policy_request(
    topic: str,
    campaign_id: str | None,
    content: PushContent,
    ttl_seconds: int,
    *,
    content_cleared: bool = False,
) -> PushRequest:
    """What the pipeline judges: the same at submission and, from the sealed content, at dispatch."""
    return PushRequest(
        topic=topic,
        title=content.title,
        body=content.body,
        data=content.data,
        campaign_id=campaign_id,
        personalized=content.personalized,
        near_geohash=content.near_geohash,
        ttl_seconds=ttl_seconds,
        content_cleared=content_cleared,
    )


def wire_reasons(reasons: Sequence[Reason]) -> list[WireReason]:
    return [{"code": r.code, **r.detail} for r in reasons]


class PushService:
    def __init__(
        self, store: Store, clock: Clock, settings: Settings, policy: PolicySource, metrics: Metrics
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._policy = policy
        # Each metric's child by its label (an outcome, a reason code: a few dozen), asked of
        # prometheus_client once: its `labels` takes a lock and builds a key on every call.
        self._decisions = cache(metrics.decisions.labels)
        self._decision_reasons = cache(metrics.decision_reasons.labels)
        self._decision_seconds = metrics.decision_seconds
        self._idempotency_hash = KeyedHash(store.keys.pseudonym_key, b"idempotency|")
        self._fingerprint_hash = KeyedHash(store.keys.pseudonym_key, b"push|")
        self._singles: SharedUnit[tuple[str, PushCreate], tuple[PushAnswer, bool]] = SharedUnit(
            store.data.writer, self._record_singles
        )

    async def submit(self, key_id: str, request: PushCreate) -> PushAnswer:
        """Decided in one unit with the single pushes that reach the writer before it runs (a
        dry run alone: it writes nothing)."""
        if request.dry_run:
            return (await self.submit_many(key_id, [request]))[0]
        started = time.perf_counter()
        answer, fresh = await self._singles.submit((key_id, request))
        # Answered once the unit's commit was durable, as `Writer.run` would have marked in this
        # request's own context had it queued the unit itself: no second wait (`durability`).
        wrote_in_context.set(True)
        # Counted once kept, as a batch is: a unit refused (a full disk) counts nothing.
        self._count([answer] if fresh else [], started)
        return answer

    def _record_singles(
        self, conn: Connection, items: list[tuple[str, PushCreate]]
    ) -> list[tuple[PushAnswer, bool] | Exception]:
        """The group's pushes decided together, each refused alone. What they share (the
        directory's keys, the subject state opened) fails for all if one subject's data does not
        open: then each is done again alone, as it came, so that only its own push is refused.
        An error of the database itself goes on to the writer, which fails the group (and notes
        a full disk for readiness), as it would have failed each push alone."""
        now = self._clock()
        try:
            with savepoint(conn, "singles"):
                return self._record_group(conn, items, now)
        except Exception as exc:
            _reraise_if_database_error(exc, conn)
        outcomes: list[tuple[PushAnswer, bool] | Exception] = []
        for item in items:
            try:
                with savepoint(conn, "single"):
                    outcomes += self._record_group(conn, [item], now)
            except Exception as exc:
                _reraise_if_database_error(exc, conn)
                outcomes.append(exc)
        return outcomes

    def _record_group(
        self, conn: Connection, items: list[tuple[str, PushCreate]], now: datetime
    ) -> list[tuple[PushAnswer, bool] | Exception]:
        prepared = self._prepare_all(items, now)
        return [
            answer if isinstance(answer, Exception) else (answer, fresh)
            for answer, fresh in self._record_all(conn, prepared, now, None, one_by_one=True)
        ]

    async def submit_batch(self, key_id: str, requests: Sequence[PushCreate]) -> BatchAnswer:
        results = await self.submit_many(key_id, requests, field_prefix="pushes")
        counts: Counter[str] = Counter()
        for answer in results:
            counts[answer.outcome] += 1
            # Pushes per code: two purposes missing, or both the day's and the week's cap, are
            # two reasons with one code but one push stopped by it.
            for code in {str(reason["code"]) for reason in answer.reasons}:
                counts[code] += 1
        return BatchAnswer(results, dict(counts))

    async def submit_many(
        self, key_id: str, requests: Sequence[PushCreate], field_prefix: str | None = None
    ) -> list[PushAnswer]:
        """One submission, refused whole by any push's error (`_record_all`)."""
        started = time.perf_counter()
        now = self._clock()
        prepared = self._prepare_all([(key_id, request) for request in requests], now)

        def unit(conn: Connection) -> list[tuple[PushAnswer | Exception, bool]]:
            return self._record_all(conn, prepared, now, field_prefix, one_by_one=False)

        if all(p.request.dry_run for p in prepared):
            answers = unit(self._store.data.reader())
        else:
            answers = await self._store.data.writer.run(unit)
        self._count([a for a, fresh in answers if fresh and isinstance(a, PushAnswer)], started)
        return [_answered(a) for a, _ in answers]

    def _prepare_all(self, items: Sequence[tuple[str, PushCreate]], now: datetime) -> list[_Prepared]:
        """Pseudonyms, subject keys and records, with the subjects read in a few IN queries."""
        refs = [r.subject_ref or self._store.pseudonyms.subject_ref(r.user_id or "") for _, r in items]
        keys = self._store.directory.resolve_many(refs)
        erased = self._store.directory.erased_among([r for r in refs if r not in keys])
        return [
            self._prepare(key_id, request, ref, keys.get(ref), ref in erased, now)
            for (key_id, request), ref in zip(items, refs, strict=True)
        ]

    def _as_erased_now(self, prepared: Sequence[_Prepared], now: datetime) -> Sequence[_Prepared]:
        """The pushes to record, their subjects asked again of the directory past its cache, in the
        unit: a process trusts a cached key for a second, and a push through it just after an
        erasure made in another process would be decided against the emptied subject (`no_device`
        for `subject_erased`) and recorded under its id after the erasure's cleanup, with the
        fingerprint the cleanup removes. Either this read sees the subject gone, or the cleanup
        runs after the unit (as `Store.write_as` explains). A push to one gone is prepared again
        for whoever its user is now: erased, or a new subject if they came back. Dry runs record
        nothing and are not asked."""
        recording = {p.key.subject_id for p in prepared if p.key is not None and p.record is not None}
        if not recording:
            return prepared
        directory = self._store.directory
        gone = recording - directory.holding(recording)
        if not gone:
            return prepared
        again: list[int] = []
        for i, p in enumerate(prepared):
            if p.key is not None and p.key.subject_id in gone:
                directory.forget(p.key.subject_ref)
                again.append(i)
        redone = self._prepare_all([(prepared[i].key_id, prepared[i].request) for i in again], now)
        fresh = list(prepared)
        for i, p in zip(again, redone, strict=True):
            fresh[i] = p
        return fresh

    def read(self, push_id: str, key_id: str, campaign_reader: bool) -> PushRead:
        row = pushes.get(self._store.data.reader(), push_id)
        if row is None or not (row.key_id == key_id or (campaign_reader and row.campaign_id is not None)):
            raise NotFound("no such push", "push_id")
        return PushRead(
            push_id=row.push_id,
            status=row.status,  # type: ignore[arg-type]
            outcome=row.outcome,  # type: ignore[arg-type]
            reasons=msgspec.json.decode(row.final_reasons or row.reasons),
            reasons_policy_version=row.final_policy_version if row.final_reasons else row.policy_version,
            attempts=row.attempts,
            topic=row.topic,
            campaign_id=row.campaign_id,
            variant=row.variant,
            created_at=rfc3339_text(row.created_at),
            deliver_after=rfc3339_text_or_none(row.deliver_after),
            expires_at=rfc3339_text(row.expires_at),
            updated_at=rfc3339_text(row.updated_at),
        )

    def notifications(self, subject_ref: str) -> list[NotificationRead]:
        key = self._store.directory.resolve(subject_ref)
        if key is None:
            return []
        out = []
        for row in pushes.list_for_subject(self._store.data.reader(), key.subject_id, ACCEPTED):
            content = row.open_content(key)
            out.append(
                NotificationRead(
                    push_id=row.push_id,
                    status=row.status,  # type: ignore[arg-type]
                    topic=row.topic,
                    campaign_id=row.campaign_id,
                    title=None if content is None else content.title,
                    body=None if content is None else content.body,
                    at=rfc3339_text(row.shown_at),
                    why=row.why(content),
                )
            )
        return out

    # -- internals -------------------------------------------------------------------------

    def _prepare(
        self,
        key_id: str,
        request: PushCreate,
        subject_ref: str,
        key: SubjectKey | None,
        erased: bool,
        now: datetime,
    ) -> _Prepared:
        status: SubjectStatus = "active" if key is not None else "erased" if erased else "unknown"
        near = request.near.geohash if request.near else None
        content = PushContent(
            title=request.title, body=request.body, data=request.data,
            personalized=request.personalized, near_geohash=near,
        )  # fmt: skip
        return _Prepared(
            key_id=key_id,
            request=request,
            content=content,
            key=key,
            status=status,
            record=None if request.dry_run else self._record(request, subject_ref, content, now, erased),
        )

    def _refuse_user_id_labels(self, request: PushCreate, policy: PolicySettings) -> None:
        """A push addressed by `subject_ref` whose variant or data key is the user's id: refused,
        as the edge refuses one addressed by `user_id` (`PushCreate`). Both are kept in clear
        through erasure: the variant in the push's row and the campaign's statistics, a key the
        topic does not allow in the push's reasons. Only the pseudonym is known here, so only a
        label that is the whole id is found; allowed keys are the policy's own names."""
        if request.subject_ref is None:
            return
        pseudonym = self._store.pseudonyms.subject_ref
        if request.variant is not None and pseudonym(request.variant) == request.subject_ref:
            raise InvalidInput("variant: a variant must not hold the push's user_id", "variant")
        allowed = policy.data_keys_for(request.topic)
        if any(key not in allowed and pseudonym(key) == request.subject_ref for key in request.data):
            raise InvalidInput("data: a data key must not hold the push's user_id", "data")

    def _record(
        self, request: PushCreate, subject_ref: str, content: PushContent, now: datetime, erased: bool
    ) -> _Record:
        """A push to an erased subject is kept without a fingerprint, as erasure leaves the pushes
        before it: keyed with the pseudonymization key, which outlives erasure, it would let that
        key's holder confirm a guess of what was meant for the person (SECURITY.md, "Erasure")."""
        return _Record(
            push_id=pushes.new_push_id(now),
            idempotency_ref=pushes.idempotency_ref(self._idempotency_hash, request.idempotency_key),
            fingerprint=b"" if erased else self._fingerprint(request, subject_ref, request.ttl_seconds),
            subject_ref=subject_ref,
            content=content,
        )

    def _fingerprint(self, request: PushCreate, subject_ref: str, ttl_seconds: int | None) -> bytes:
        return self._fingerprint_hash.digest(fingerprinted(request, subject_ref, ttl_seconds))

    def _same_body(self, earlier: PushRow, request: PushCreate, record: _Record) -> bool:
        """Whether a replayed key carries the body it was first used with. A TTL left out means
        today's default: it is the same push if the other fields match and the TTL that means is
        the one the push was given (its row's `expires_at - created_at`), however either request
        spelled it. Fingerprints keep the spelling, so those already stored stay valid, and the
        other spellings are tried only when the first does not match. A push whose subject was
        erased has no fingerprint left to compare (`erase_subject_data`): its replays are taken
        as the same push."""
        if not earlier.fingerprint or hmac.compare_digest(earlier.fingerprint, record.fingerprint):
            return True
        given = round(
            (
                datetime.fromisoformat(earlier.expires_at) - datetime.fromisoformat(earlier.created_at)
            ).total_seconds()
        )
        meant = (
            request.ttl_seconds
            if request.ttl_seconds is not None
            else self._policy.settings.default_ttl_seconds
        )
        if meant != given:
            return False
        return any(
            hmac.compare_digest(earlier.fingerprint, self._fingerprint(request, record.subject_ref, spelled))
            for spelled in (None, given)
        )

    def _record_all(
        self,
        conn: Connection,
        prepared: Sequence[_Prepared],
        now: datetime,
        prefix: str | None,
        *,
        one_by_one: bool,
    ) -> list[tuple[PushAnswer | Exception, bool]]:
        """Decide and record a whole submission with a handful of reads: subject state is loaded
        for all subjects at once, and each accepted push is added to its subject's planned pushes
        in memory, so later items of the same batch count it against the caps. Each answer comes
        with whether it is a new decision (live, not an idempotent replay) for the metrics. A
        batch is refused whole by any push's error; single pushes sharing a unit (`one_by_one`)
        are refused each alone: the error is that push's outcome, the others are recorded.

        The policy is read here, in the transaction: another process may have changed it (two
        `serve`s on one data dir), and a decision must follow the newest rules. The TTL is
        judged against them only for new pushes: a replay gets its first answer, even after an
        admin lowered the maximum it was accepted under."""
        self._policy.refresh(conn)
        policy = self._policy.settings
        judged = self._policy.content_key
        prepared = self._as_erased_now(prepared, now)
        recorded = self._recorded(conn, prepared)
        states = subject_state.load_many(
            conn,
            [p.key for p in prepared if p.key is not None],
            now,
            policy,
            self._settings.timezone,
            # Over the few distinct needs of the unit's pushes: made for each push, a `PushNeeds`
            # (a NamedTuple, built in Python) cost a batch 0.8 µs a push, the set 0.09.
            state_parts_for(
                PushNeeds(topic, personalized=personalized, near=near, submitted=True)
                for topic, personalized, near in {
                    (p.request.topic, p.content.personalized, p.content.near_geohash is not None)
                    for p in prepared
                }
            ),
        )
        campaigns_seen: dict[str, CampaignRow | None] = {}
        unit = DecisionUnit()
        stamp = now.isoformat()
        rows: list[PushRow] = []
        due: list[tuple[str, datetime]] = []
        answers: list[tuple[PushAnswer | Exception, bool]] = []
        for index, p in enumerate(prepared):
            record = p.record
            earlier = None if record is None else recorded.get((p.key_id, record.idempotency_ref))
            try:
                if record is not None and earlier is not None:
                    if not self._same_body(earlier, p.request, record):
                        raise Unprocessable(
                            "idempotency_key was already used with a different body", "idempotency_key"
                        )
                    answers.append((_stored_answer(earlier), False))
                    continue
                ttl = _ttl(p.request, policy)
                _refuse_unshowable(p.request)
                self._refuse_user_id_labels(p.request, policy)
                push = policy_request(p.request.topic, p.request.campaign_id, p.content, ttl)
                campaign = self._campaign(conn, p, campaigns_seen)
            except GatewayError as exc:
                if one_by_one:
                    answers.append((exc, False))
                    continue
                if prefix is not None and exc.field is not None:
                    exc.field = f"{prefix}[{index}].{exc.field}"
                raise
            state = SubjectState(status=p.status) if p.key is None else states[p.key.subject_id]
            try:
                decision = self._decide(p, push, state, campaign, now, policy, unit)
                planned = decision.deliver_after or now
                row = None if record is None else self._row(p, record, decision, planned, stamp, judged)
            except Exception as exc:  # a defect (`_decide` logs its own): this push's 500 alone
                if not one_by_one:
                    raise
                answers.append((exc, False))
                continue
            if record is None or row is None:  # a dry run: decided, not recorded
                answers.append((_answer(None, decision), False))
                continue
            rows.append(row)
            recorded[(p.key_id, record.idempotency_ref)] = row
            if decision.outcome != "rejected":
                due.append((record.push_id, planned))
                if p.key is not None and is_marketing(p.request.topic):
                    states[p.key.subject_id] = msgspec.structs.replace(
                        state,
                        scheduled=(
                            *state.scheduled,
                            Scheduled(planned, p.request.topic, waiting=True, expires_at=decision.expires_at),
                        ),
                    )
            answers.append((_answer(record.push_id, decision), True))
        pushes.insert_many(conn, rows)
        outbox.enqueue_many(conn, due)
        return answers

    @staticmethod
    def _recorded(conn: Connection, prepared: Sequence[_Prepared]) -> dict[tuple[str, str], PushRow]:
        """(API key, idempotency key) → the push already recorded under it: keys are per
        service, and single pushes of two services may share a unit."""
        live: dict[str, list[str]] = {}
        for p in prepared:
            if p.record is not None:
                live.setdefault(p.key_id, []).append(p.record.idempotency_ref)
        return {
            (key_id, ref): row
            for key_id, refs in live.items()
            for ref, row in pushes.find_idempotent_many(conn, key_id, refs).items()
        }

    def _campaign(
        self, conn: Connection, p: _Prepared, seen: dict[str, CampaignRow | None]
    ) -> CampaignState | None:
        """The campaign's state, read once per submission however many pushes name it."""
        campaign_id = p.request.campaign_id
        if campaign_id is None:
            return None
        if campaign_id not in seen:
            seen[campaign_id] = campaigns.get(conn, campaign_id)
        row = seen[campaign_id]
        if row is None:
            raise NotFound("no such campaign", "campaign_id")
        if row.topic != p.request.topic:
            raise InvalidInput(f"campaign {row.campaign_id} sends topic {row.topic}", "topic")
        return CampaignState(paused=row.status == "paused")

    def _decide(
        self,
        p: _Prepared,
        push: PushRequest,
        state: SubjectState,
        campaign: CampaignState | None,
        now: datetime,
        policy: PolicySettings,
        unit: DecisionUnit,
    ) -> Decision:
        try:
            return decide(push, state, campaign, now, policy, unit, submitted=True)
        except Exception:
            # A rule that cannot judge must not let the push through: log (no content) and refuse.
            push_id = None if p.record is None else p.record.push_id
            log.exception("policy pipeline failed", extra={"push_id": push_id, "topic": p.request.topic})
            raise

    def _row(
        self, p: _Prepared, record: _Record, decision: Decision, planned: datetime, stamp: str, judged: bytes
    ) -> PushRow:
        """`judged`: the `content_key` of the rules the push was decided by, kept with an accepted
        push so that dispatch scans its content again only under others."""
        return PushRow(
            push_id=record.push_id,
            key_id=p.key_id,
            idempotency_key=record.idempotency_ref,
            fingerprint=record.fingerprint,
            subject_id=None if p.key is None else p.key.subject_id,
            topic=p.request.topic,
            campaign_id=p.request.campaign_id,
            variant=p.request.variant,
            outcome=decision.outcome,
            status=decision.outcome,
            reasons=msgspec.json.encode(wire_reasons(decision.reasons)).decode(),
            allowed_by="[]",  # sealed with the content (`PushContent.why`)
            planned_at=None if decision.outcome == "rejected" else _stored_time(planned),
            deliver_after=None if decision.deliver_after is None else _stored_time(decision.deliver_after),
            expires_at=_stored_time(decision.expires_at),
            created_at=stamp,
            updated_at=stamp,
            policy_version=self._policy.version.version,
            content=None
            if decision.outcome == "rejected"
            else self._seal(p.key, record, decision.allowed_by),
            content_key=None if decision.outcome == "rejected" else judged,
        )

    @staticmethod
    def _seal(key: SubjectKey | None, record: _Record, why: tuple[str, ...]) -> bytes | None:
        """Only an accepted push keeps its content, and what let it through: a rejected one is
        never delivered or shown, so its text is not kept, sealed or not."""
        if key is None:
            return None
        content = msgspec.structs.replace(record.content, why=why)
        return key.cipher.seal(msgspec.json.encode(content), content_aad(record.push_id, key))

    def _count(self, answers: Sequence[PushAnswer], started: float) -> None:
        """Counted per label, not per answer: a campaign batch has 10,000 answers and a handful
        of distinct outcomes and reasons, and each increment takes a lock. In plain dicts: two
        `Counter`s cost a single push 1.6 µs, the loop 0.2, and a batch's answer the same."""
        elapsed = (time.perf_counter() - started) / max(len(answers), 1)
        outcomes: dict[str, int] = {}
        codes: dict[str, int] = {}
        for answer in answers:
            outcomes[answer.outcome] = outcomes.get(answer.outcome, 0) + 1
            for reason in answer.reasons:
                code = str(reason["code"])
                codes[code] = codes.get(code, 0) + 1
        for outcome, n in outcomes.items():
            self._decisions(outcome).inc(n)
        for code, n in codes.items():
            self._decision_reasons(code).inc(n)
        self._decision_seconds.observe(elapsed, len(answers))


def _ttl(request: PushCreate, policy: PolicySettings) -> int:
    ttl = request.ttl_seconds if request.ttl_seconds is not None else policy.default_ttl_seconds
    if ttl > policy.max_ttl_seconds:
        raise InvalidInput(f"ttl_seconds may not exceed {policy.max_ttl_seconds}", "ttl_seconds")
    return ttl


@lru_cache(maxsize=512)
def _time_text(moment: datetime, offset: timedelta | None, stored: bool) -> str:
    """The pushes of a submission share its `now`, so their planned, expiry and deferral times
    repeat: each is formatted once for the answer and once for the row (~1 µs saved a time;
    docs/performance-history.md, "Allocations per decision"). `offset` is in the key because two
    times a fold tells apart compare and hash equal in one zone."""
    return moment.isoformat() if stored else rfc3339(moment)


def _wire_time(moment: datetime) -> str:
    return _time_text(moment, moment.utcoffset(), False)


def _stored_time(moment: datetime) -> str:
    return _time_text(moment, moment.utcoffset(), True)


def _answer(push_id: str | None, decision: Decision) -> PushAnswer:
    return PushAnswer(
        push_id=push_id,
        outcome=decision.outcome,
        reasons=wire_reasons(decision.reasons),
        deliver_after=None if decision.deliver_after is None else _wire_time(decision.deliver_after),
        expires_at=_wire_time(decision.expires_at),
    )


# Controls but the tab and line breaks a notification's text may hold (C0, DEL and C1): a device
# shows none of them, and some clients end the text at a NUL.
_UNSHOWABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _refuse_unshowable(request: PushCreate) -> None:
    """A blank notification, or text with a control character, is a sender's bug, never a message.
    Judged after the idempotency lookup, not as the body is decoded: a push accepted before this
    rule, sent again with its key, gets its first answer, as a replay must."""
    if not request.title.strip() and not request.body.strip():
        raise InvalidInput("title: a push needs a title or a body with something to show", "title")
    for field, text in (("title", request.title), ("body", request.body)):
        if _UNSHOWABLE.search(text):
            raise InvalidInput(f"{field}: a control character (NUL, escape...) cannot be shown", field)


def _reraise_if_database_error(exc: Exception, conn: Connection) -> None:
    """Let an error of the database itself, or one after which SQLite gave up the transaction,
    go on to the writer; an error of the data a push read is that push's alone."""
    if is_database_error(exc) or not conn.in_transaction:
        raise exc


def _answered(outcome: PushAnswer | Exception) -> PushAnswer:
    """An outcome of `submit_many`: never an exception, which refuses the whole submission."""
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _stored_answer(row: PushRow) -> PushAnswer:
    """The submission's answer again, from what was decided then. Not from the row's
    `deliver_after`, which is the push's state now: a worker that deferred or rescheduled it
    since gave a replay `queued` with a `deliver_after`, or another time than first answered."""
    reasons: list[dict[str, str | int]] = msgspec.json.decode(row.reasons)
    return PushAnswer(
        push_id=row.push_id,
        outcome=row.outcome,  # type: ignore[arg-type]
        reasons=reasons,
        deliver_after=_deferred_until(row.outcome, reasons),
        expires_at=rfc3339_text(row.expires_at),
    )


def _deferred_until(outcome: str, reasons: list[dict[str, str | int]]) -> str | None:
    """A deferral's time: its `quiet_hours` reason's `until`, quiet hours being the one rule that
    defers (an erased subject's reasons keep no `until`, and its answer no time, as its row)."""
    if outcome != "deferred":
        return None
    until = next((r.get("until") for r in reasons if r.get("code") == QUIET_HOURS), None)
    return until if isinstance(until, str) else None
