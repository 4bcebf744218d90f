"""The outbox: messages owed to chats, written in the transaction of what caused them.

A service enqueues (flush only, so the message exists exactly when its cause is committed);
the sender claims due rows, sends them within Telegram's limits and marks each. A claim is a
lease: the rows' `not_before` moves `lease_seconds` ahead, so another replica leaves them
alone while this one sends, and if this one dies they come due again and are retried.
On PostgreSQL the claim skips rows another replica is claiming (`FOR UPDATE SKIP LOCKED`).

`kind` and `params` are rendered by the sender in the recipient's language; params hold plain
JSON values (ids, numbers, titles, counts, ISO times), never rendered text or image bytes.
Kinds written by the store, with their params:

- ``suggestion_accepted``: suggestion_id, number, title, category, kind, note (or None)
- ``suggestion_rejected``: suggestion_id, number, title, reason (rules.ExclusionReason value),
  note (the staff member's free note: only in the proposer's copy, None in other followers')
- ``suggestion_merged``: suggestion_id, number, title (the one followed before), into_id,
  into_number, into_title, role ("source": yours was merged, you now follow the other;
  "target": a duplicate was merged into the one you follow)
- ``suggestion_status``: suggestion_id, number, title, status (rules.State value), plus for
  council votes vote_id, closes_at, and after the close outcome, agree, against, abstain
- ``vote_result``: see storage.services.council.result_params (everything the sender needs
  for the text and the bar chart PNG, one bar group per candidate)
- ``poll_send_failed``: vote_id, item_id, number, title, chat_id, error (to the convener)
- ``poll_send_uncertain``: the same, and for a member's private chat their name, member (to
  the convener: the poll may or may not have been posted; see council.record_send_uncertain)
- ``role_granted`` / ``role_revoked``: role (rules.Role value), place (the scope's name, None
  for the city): an official gave or took back a role (through the officials' API; an invite
  link is answered in its chat)
- ``command_menu`` (COMMAND_MENU), no params: not a message. The person's private command menu
  is brought in line with the roles they hold and the language they chose when it is "sent"
  (people.owe_menu: on every change of a grant, a /lang choice, a return after blocking)

The mark_* functions commit one row each: the sender handles messages one by one, and what
it has sent must stay marked even if the next send crashes the process.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import upsert
from storage.models import (
    Follower,
    Notification,
    NotificationKind,
    NotificationStatus,
    Person,
    Suggestion,
    utcnow,
)
from storage.services import people

# After this many claims a message still not sent is given up (FAILED, "out of attempts").
MAX_ATTEMPTS = 8
ERROR_MAX = 1000


@dataclass(frozen=True, slots=True)
class Owed:
    """One message owed to a chat (see `enqueue`)."""

    chat_id: int
    kind: NotificationKind
    params: dict[str, Any]
    person_id: int | None = None
    dedupe_key: str | None = None
    not_before: datetime | None = None


class Parts(NamedTuple):
    """How far the sending of a message of several parts got when it stopped midway:
    `sent` of its `total` parts went out (Notification.parts_sent, parts_total)."""

    sent: int
    total: int


NO_PARTS = Parts(0, 0)  # no sending stopped midway


# Rows per INSERT: 9 bound values each stays far below SQLite's and asyncpg's parameter limits.
ENQUEUE_CHUNK = 1000


async def enqueue(
    session: AsyncSession,
    *,
    chat_id: int,
    kind: NotificationKind,
    params: dict[str, Any],
    person_id: int | None = None,
    dedupe_key: str | None = None,
    not_before: datetime | None = None,
) -> None:
    """Owe `chat_id` a message. A second enqueue with the same `dedupe_key` does nothing,
    so an operation retried after a crash does not tell anyone twice. Flushes only."""
    await enqueue_many(session, [Owed(chat_id, kind, params, person_id, dedupe_key, not_before)])


async def enqueue_many(session: AsyncSession, owed: Iterable[Owed]) -> None:
    """`enqueue` for many messages at once: one multi-row INSERT per ENQUEUE_CHUNK (a
    council of thousands told of a result in private chats is a few statements, not one
    per member). Flushes only."""
    now = utcnow()
    rows = [
        {
            "chat_id": item.chat_id,
            "person_id": item.person_id,
            "kind": item.kind,
            "params": item.params,
            "dedupe_key": item.dedupe_key,
            "status": NotificationStatus.PENDING,
            "attempts": 0,
            "not_before": item.not_before or now,
            "created_at": now,
        }
        for item in owed
    ]
    for start in range(0, len(rows), ENQUEUE_CHUNK):
        stmt = (
            upsert(session, Notification)
            .values(rows[start : start + ENQUEUE_CHUNK])
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
        )
        await session.execute(stmt)


def about(suggestion: Suggestion) -> dict[str, Any]:
    """The params every message about a suggestion carries (see the kinds above)."""
    return {"suggestion_id": suggestion.id, "number": suggestion.number, "title": suggestion.title}


async def followers_of(
    session: AsyncSession, suggestion_id: int, *, reachable_only: bool = True
) -> list[Person]:
    """The people following a suggestion (its proposer among them), by person id; with
    `reachable_only`, without those who blocked the bot."""
    query = (
        select(Person)
        .join(Follower, Follower.person_id == Person.id)
        .where(Follower.suggestion_id == suggestion_id)
        .order_by(Person.id)
    )
    if reachable_only:
        query = query.where(Person.blocked_bot_at.is_(None))
    return list((await session.scalars(query)).all())


async def notify_followers(
    session: AsyncSession,
    suggestion: Suggestion,
    kind: NotificationKind,
    params: dict[str, Any],
    *,
    dedupe_prefix: str,
    exclude: Collection[int] = (),
    proposer_params: dict[str, Any] | None = None,
) -> int:
    """One message per follower in their private chat (a private chat's id is the person's
    Telegram id), skipping people who blocked the bot and the person ids in `exclude`.
    `proposer_params` are added to the proposer's copy only (what is for their eyes, such
    as a rejection note). Dedupe key f"{dedupe_prefix}:{person_id}". Returns how many were
    enqueued. Flushes only."""
    owed = []
    for person in await followers_of(session, suggestion.id):
        if person.id in exclude:
            continue
        own = dict(params)
        if proposer_params and person.id == suggestion.proposer_id:
            own.update(proposer_params)
        owed.append(Owed(person.telegram_id, kind, own, person.id, f"{dedupe_prefix}:{person.id}"))
    await enqueue_many(session, owed)
    return len(owed)


async def notify_people(
    session: AsyncSession,
    person_ids: Collection[int],
    kind: NotificationKind,
    params: dict[str, Any],
    *,
    dedupe_prefix: str,
) -> int:
    """Like notify_followers for a set of people chosen by the caller (skipping those who
    blocked the bot). Returns how many were enqueued. Flushes only."""
    if not person_ids:
        return 0
    query = (
        select(Person)
        .where(Person.id.in_(sorted(set(person_ids))), Person.blocked_bot_at.is_(None))
        .order_by(Person.id)
    )
    owed = [
        Owed(person.telegram_id, kind, dict(params), person.id, f"{dedupe_prefix}:{person.id}")
        for person in (await session.scalars(query)).all()
    ]
    await enqueue_many(session, owed)
    return len(owed)


async def claim_due(
    session: AsyncSession, *, limit: int, now: datetime, lease_seconds: int = 60
) -> list[Notification]:
    """Take up to `limit` due messages, oldest first, for `lease_seconds`. Commits.

    One UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) … RETURNING: on PostgreSQL a
    replica claiming at the same instant skips the rows this one is taking; on SQLite the
    statement runs under the single writer lock. Messages claimed MAX_ATTEMPTS times without
    being sent are marked FAILED first.
    """
    table = Notification
    await session.execute(
        update(table)
        .where(
            table.status == NotificationStatus.PENDING,
            table.not_before <= now,
            table.attempts >= MAX_ATTEMPTS,
        )
        .values(status=NotificationStatus.FAILED, error="out of attempts")
        .execution_options(synchronize_session=False)
    )
    due = (
        select(table.id)
        .where(
            table.status == NotificationStatus.PENDING,
            table.not_before <= now,
            table.attempts < MAX_ATTEMPTS,
        )
        .order_by(table.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claimed = await session.scalars(
        update(table)
        .where(table.id.in_(due))
        .values(not_before=now + timedelta(seconds=lease_seconds), attempts=table.attempts + 1)
        .returning(table)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    rows = sorted(claimed.all(), key=lambda n: n.id)
    await session.commit()
    return rows


async def renew_claim(
    session: AsyncSession,
    notification_id: int,
    held_until: datetime,
    *,
    now: datetime,
    lease_seconds: float,
) -> datetime | None:
    """Extend a claim still held, right before its message is sent: the row must be pending
    and due when this claimer's lease (`held_until`, what claim_due or the last renewal set)
    says. Returns the lease's new end, or None when the row is no longer this claimer's: a
    slow run let its lease run out and another replica claimed it (and may be sending it),
    or it was settled. So a message is never sent by two replicas at once. Commits."""
    until = now + timedelta(seconds=lease_seconds)
    table = Notification
    renewed = await session.execute(
        update(table)
        .where(
            table.id == notification_id,
            table.status == NotificationStatus.PENDING,
            table.not_before == held_until,
        )
        .values(not_before=until)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return until if getattr(renewed, "rowcount", 0) == 1 else None


async def _get(session: AsyncSession, notification_id: int) -> Notification | None:
    return await session.get(Notification, notification_id, populate_existing=True)


async def mark_sent(
    session: AsyncSession, notification_id: int, now: datetime | None = None
) -> None:
    """Telegram accepted it. Commits."""
    row = await _get(session, notification_id)
    if row is not None:
        row.status = NotificationStatus.SENT
        row.sent_at = now or utcnow()
        row.error = None
        row.parts_sent, row.parts_total = NO_PARTS
    await session.commit()


async def mark_retry(
    session: AsyncSession,
    notification_id: int,
    retry_after_seconds: float,
    *,
    now: datetime | None = None,
    error: str | None = None,
    attempted: bool = True,
    held_until: datetime | None = None,
    parts: Parts | None = None,
) -> None:
    """Not now (429 with retry_after, a network error, Telegram's 5xx): due again after
    `retry_after_seconds`; given up after MAX_ATTEMPTS claims. With `attempted=False` the
    sender's own pacing held the message back before anything reached Telegram: the claim is
    given back and does not count. With `held_until`, only while the caller's claim holds
    (renew_claim): a sender whose lease ran out must not reschedule a message another
    sender has claimed since. `parts`: how far its sending got (None: as it was).
    Commits."""
    row = await _get(session, notification_id)
    ours = held_until is None or (row is not None and row.not_before == held_until)
    if row is not None and row.status is NotificationStatus.PENDING and ours:
        if error is not None:
            row.error = error[:ERROR_MAX]
        if parts is not None:
            row.parts_sent, row.parts_total = parts.sent, parts.total
        if not attempted:
            row.attempts = max(0, row.attempts - 1)
        if attempted and row.attempts >= MAX_ATTEMPTS:
            row.status = NotificationStatus.FAILED
            row.error = (row.error or "out of attempts")[:ERROR_MAX]
        else:
            row.not_before = (now or utcnow()) + timedelta(seconds=max(0.0, retry_after_seconds))
    await session.commit()


async def mark_failed(
    session: AsyncSession, notification_id: int, error: str, *, parts: Parts | None = None
) -> None:
    """Refused for good (400: chat not found, message too long, …): kept with the reason for
    officials to see, never retried; with how far its sending got (`parts`; None: nowhere).
    Commits."""
    row = await _get(session, notification_id)
    if row is not None:
        row.status = NotificationStatus.FAILED
        row.error = error[:ERROR_MAX]
        row.parts_sent, row.parts_total = parts or NO_PARTS
    await session.commit()


async def mark_blocked(session: AsyncSession, notification_id: int) -> None:
    """403 from a private chat: the person blocked the bot. This message and every other
    one pending for the same chat are marked BLOCKED, and the person is marked
    (people.mark_blocked) so nothing more is queued for them until they come back. Commits."""
    row = await _get(session, notification_id)
    if row is None:
        await session.commit()
        return
    await session.execute(
        update(Notification)
        .where(
            Notification.chat_id == row.chat_id,
            Notification.status == NotificationStatus.PENDING,
        )
        .values(status=NotificationStatus.BLOCKED)
        .execution_options(synchronize_session=False)
    )
    row.status = NotificationStatus.BLOCKED
    telegram_id: int | None = None
    if row.person_id is not None:
        person = await session.get(Person, row.person_id)
        telegram_id = person.telegram_id if person is not None else None
    elif row.chat_id > 0:  # a private chat's id is the user's id
        telegram_id = row.chat_id
    await session.flush()
    if telegram_id is not None:
        await people.mark_blocked(session, telegram_id)  # commits when it changes the person
    await session.commit()


async def prune_settled(session: AsyncSession, older_than_days: int, now: datetime) -> int:
    """Forget messages owed more than `older_than_days` ago that are settled: sent, refused
    for good, or not sent because the person blocked the bot. They are the outbox's working
    rows, not the programme's record (the audit trail is), and they would otherwise grow
    without end, vote charts and every command menu included. A dedupe key goes with its row;
    what owed it happened once, that long ago. Pending rows stay, however old. Commits."""
    cutoff = now - timedelta(days=older_than_days)
    result: Any = await session.execute(
        delete(Notification).where(
            Notification.status != NotificationStatus.PENDING, Notification.created_at < cutoff
        )
    )
    await session.commit()
    return int(result.rowcount or 0)


__all__ = [
    "MAX_ATTEMPTS",
    "NO_PARTS",
    "Parts",
    "claim_due",
    "enqueue",
    "followers_of",
    "mark_blocked",
    "mark_failed",
    "mark_retry",
    "mark_sent",
    "notify_followers",
    "notify_people",
]
