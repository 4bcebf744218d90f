"""Suggestions: intake with a human-readable number, the resident's own list, transitions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import ScalarSelect, func, null, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import Null

from storage import rules
from storage.db import insert_on_conflict, operation, take_write_lock
from storage.models import (
    Community,
    Follower,
    NotificationKind,
    Person,
    Suggestion,
    SuggestionCounter,
    utcnow,
)
from storage.rules import Action, Category, Kind, Role, RuleViolation, SourceType, State
from storage.services import notifications
from storage.services.audit import Actor, record
from storage.services.people import TelegramIdentity, find_person, refresh_person


@dataclass(slots=True)
class Draft:
    """What a resident has entered so far; validated as a whole on submission."""

    community_id: int
    category: Category
    title: str
    description: str
    location_text: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    photo_file_ids: list[str] = field(default_factory=list)
    kind: Kind | None = None
    estimated_cost_fen: int | None = None
    source_type: SourceType = SourceType.RESIDENT
    # The dialog's key for this draft (see Suggestion.draft_key): submitting it again returns
    # the suggestion it already made. None: every submission is new.
    key: str | None = None


def clean_draft(draft: Draft) -> Draft:
    """The draft with what a person typed cleaned of control characters (rules.clean_text)."""
    location = rules.clean_text(draft.location_text or "") or None
    return replace(
        draft,
        title=rules.clean_text(draft.title),
        description=rules.clean_text(draft.description),
        location_text=location,
    )


def validate_draft(draft: Draft) -> None:
    title, description = rules.clean_text(draft.title), rules.clean_text(draft.description)
    if not title or rules.char_length(title) > rules.TITLE_MAX:
        raise RuleViolation("title_length", f"title must be 1-{rules.TITLE_MAX} characters")
    if not description or rules.char_length(description) > rules.DESCRIPTION_MAX:
        raise RuleViolation(
            "description_length", f"description must be 1-{rules.DESCRIPTION_MAX} characters"
        )
    if draft.location_text and rules.char_length(draft.location_text) > rules.LOCATION_MAX:
        raise RuleViolation("location_length", "location text too long")
    if len(draft.photo_file_ids) > rules.MAX_PHOTOS:
        raise RuleViolation("too_many_photos", f"at most {rules.MAX_PHOTOS} photos")
    if draft.latitude is not None and not -90 <= draft.latitude <= 90:
        raise RuleViolation("bad_location", "latitude out of range")
    if draft.longitude is not None and not -180 <= draft.longitude <= 180:
        raise RuleViolation("bad_location", "longitude out of range")
    if draft.estimated_cost_fen is not None:
        if draft.kind is None:
            raise RuleViolation("cost_without_kind", "a cost needs the kind of project")
        # A resident's rough estimate may exceed the cap; the street office decides later.
        rules.check_estimate(draft.kind, draft.estimated_cost_fen)


def local_day_start(now: datetime, tz: ZoneInfo) -> datetime:
    return datetime.combine(now.astimezone(tz).date(), time.min, tzinfo=tz)


async def count_today_by_telegram_id(
    session: AsyncSession, telegram_id: int, tz: ZoneInfo, now: datetime | None = None
) -> int:
    """How many suggestions a Telegram user made today, in `tz`, in one query (0 for
    someone not known yet)."""
    since = local_day_start(now or utcnow(), tz)
    query = (
        select(func.count(Suggestion.id))
        .join(Person, Person.id == Suggestion.proposer_id)
        .where(Person.telegram_id == telegram_id, Suggestion.created_at >= since)
    )
    return int(await session.scalar(query) or 0)


class _Proposer(NamedTuple):
    person: Person
    today: int  # suggestions they made today
    already: int | None  # the suggestion the draft already made, if it did


async def _proposer(
    session: AsyncSession, who: TelegramIdentity, tz: ZoneInfo, draft_key: str | None
) -> _Proposer:
    """The proposer (created or refreshed, flushed), their suggestions today and the one this
    draft already made, in one query when they are known."""
    since = local_day_start(utcnow(), tz)
    today = (
        select(func.count(Suggestion.id))
        .where(Suggestion.proposer_id == Person.id, Suggestion.created_at >= since)
        .correlate(Person)
        .scalar_subquery()
    )
    already: ScalarSelect[int] | Null = null()
    if draft_key is not None:
        already = (
            select(Suggestion.id)
            .where(Suggestion.proposer_id == Person.id, Suggestion.draft_key == draft_key)
            .correlate(Person)
            .scalar_subquery()
        )
    query = select(Person, today, already).where(Person.telegram_id == who.telegram_id)
    row = (await session.execute(query)).first()
    found, count, made = (row[0], int(row[1] or 0), row[2]) if row is not None else (None, 0, None)
    person = refresh_person(session, found, who)
    await session.flush()
    return _Proposer(person, count, made)


class DailyLimitReached(RuleViolation):
    def __init__(self, limit: int) -> None:
        super().__init__("daily_limit", f"at most {limit} suggestions a day")
        self.limit = limit


_NEXT_NUMBER = insert_on_conflict(
    SuggestionCounter,
    ("community_id", "year", "last_seq"),
    ("community_id", "year"),
    "DO UPDATE SET last_seq = suggestion_counter.last_seq + 1",
    returning=("last_seq",),
)


async def next_number(session: AsyncSession, community: Community, year: int) -> tuple[int, str]:
    """Atomically take the next sequence number for the community and year.

    An upsert that increments and returns in one statement: concurrent submissions serialise
    on the counter row (PostgreSQL row lock, SQLite's single writer), so numbers never repeat.
    """
    params = {"community_id": community.id, "year": year, "last_seq": 1}
    seq = int((await session.execute(_NEXT_NUMBER, params)).scalar_one())
    return seq, f"{community.number_prefix}-{year}-{seq:04d}"


async def submit(
    session: AsyncSession,
    who: TelegramIdentity,
    draft: Draft,
    *,
    tz: ZoneInfo,
    daily_limit: int,
) -> Suggestion:
    """Store a suggestion, give it its number, make the proposer a follower. Commits.

    A draft with a key that was already submitted is not stored again: the suggestion it
    made is returned (Telegram redelivers an update whose answer failed after the commit).

    The daily limit is counted, then the suggestion stored, without a lock: one person's
    submissions come from their private chat, whose updates the gate (bot.gate) handles one
    at a time on every replica. A caller submitting for one person concurrently from
    elsewhere would have to serialise them itself."""
    draft = clean_draft(draft)
    validate_draft(draft)
    community = await session.get(Community, draft.community_id)
    if community is None:
        raise RuleViolation("unknown_community", "no such community")
    person, today, already = await _proposer(session, who, tz, draft.key)
    if already is not None:
        made = await session.get_one(Suggestion, already)
        await session.commit()  # what refreshing the proposer changed
        set_committed_value(made, "community", community)
        return made
    if today >= daily_limit:
        raise DailyLimitReached(daily_limit)
    now = utcnow()
    year = now.astimezone(tz).year
    seq, number = await next_number(session, community, year)
    suggestion = Suggestion(
        number=number,
        community_id=community.id,
        year=year,
        seq=seq,
        proposer_id=person.id,
        source_type=draft.source_type,
        category=draft.category,
        kind=draft.kind,
        title=draft.title,
        description=draft.description,
        location_text=draft.location_text,
        latitude=draft.latitude,
        longitude=draft.longitude,
        photo_file_ids=list(draft.photo_file_ids),
        estimated_cost_fen=draft.estimated_cost_fen,
        status=State.SUBMITTED,
        draft_key=draft.key,
        created_at=now,
    )
    session.add(suggestion)
    await session.flush()
    session.add(Follower(suggestion_id=suggestion.id, person_id=person.id))
    record(
        session,
        actor=Actor(Role.PROPOSER, person.id),
        entity_type="suggestion",
        entity_id=suggestion.id,
        community_id=community.id,
        action="submit",
        to_state=State.SUBMITTED,
        details={"number": number},
    )
    await session.commit()
    # Loaded as it is, not as a change: the caller's commit then has nothing to write.
    set_committed_value(suggestion, "community", community)
    return suggestion


class ProposerItem(NamedTuple):
    """What a resident's own list shows of a suggestion."""

    id: int
    number: str
    status: State
    created_at: datetime
    title: str


_PROPOSER_COLUMNS = (
    Suggestion.id,
    Suggestion.number,
    Suggestion.status,
    Suggestion.created_at,
    Suggestion.title,
)


async def list_for_proposer(
    session: AsyncSession, telegram_id: int, limit: int = 50
) -> list[ProposerItem]:
    """A resident's suggestions, newest first: plain rows, no ORM objects to build."""
    query = (
        select(*_PROPOSER_COLUMNS)
        .join(Person, Person.id == Suggestion.proposer_id)
        .where(Person.telegram_id == telegram_id)
        .order_by(Suggestion.created_at.desc(), Suggestion.id.desc())
        .limit(limit)
    )
    return [ProposerItem(*row) for row in await session.execute(query)]


async def proposer_item(
    session: AsyncSession, telegram_id: int, suggestion_id: int
) -> ProposerItem | None:
    """One of the person's own suggestions as their list shows it; None if it is not theirs."""
    query = (
        select(*_PROPOSER_COLUMNS)
        .join(Person, Person.id == Suggestion.proposer_id)
        .where(Person.telegram_id == telegram_id, Suggestion.id == suggestion_id)
    )
    row = (await session.execute(query)).first()
    return None if row is None else ProposerItem(*row)


async def apply(
    session: AsyncSession,
    suggestion: Suggestion,
    action: Action,
    actor: Actor,
    *,
    details: dict[str, Any] | None = None,
) -> rules.Transition:
    """Move a suggestion by the transition table, with its audit event. Flushes, no commit."""
    step = rules.transition(suggestion.status, action, actor.role)
    suggestion.status = step.target
    record(
        session,
        actor=actor,
        entity_type="suggestion",
        entity_id=suggestion.id,
        community_id=suggestion.community_id,
        action=action.value,
        from_state=step.source,
        to_state=step.target,
        public=step.public,
        details=details,
    )
    await session.flush()
    return step


async def lock_suggestions(session: AsyncSession, ids: Iterable[int]) -> dict[int, Suggestion]:
    """Load suggestions for a change, so that two officials acting at once serialise and the
    second sees the first's result (and is refused by the transition table).

    PostgreSQL: SELECT … FOR UPDATE in id order (no deadlock between overlapping sets).
    SQLite: the writer lock first (storage.db.take_write_lock).
    """
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    await take_write_lock(session, Suggestion.updated_at, Suggestion.id.in_(wanted))
    query = (
        select(Suggestion)
        .where(Suggestion.id.in_(wanted))
        .order_by(Suggestion.id)
        .with_for_update(of=Suggestion)
        .execution_options(populate_existing=True)
    )
    return {s.id: s for s in (await session.scalars(query)).all()}


@operation
async def withdraw(session: AsyncSession, telegram_id: int, suggestion_id: int) -> Suggestion:
    """The proposer takes back a suggestion the community has not begun to look at
    (SUBMITTED → WITHDRAWN, a public event). Locked first, so that a withdrawal and a staff
    member's review at the same moment serialise and the second is refused by the table.
    Anyone else following it hears. Commits; rolls back what it locked when refused."""
    suggestion = (await lock_suggestions(session, [suggestion_id])).get(suggestion_id)
    proposer = await find_person(session, telegram_id)
    if suggestion is None or proposer is None or suggestion.proposer_id != proposer.id:
        raise RuleViolation("not_proposer", "only its proposer may withdraw a suggestion")
    # Merging begins the target's review, so this holds for every merge since; it keeps the
    # residents' duplicates standing in it from going with it all the same.
    merged_in = select(Suggestion.id).where(Suggestion.merged_into_id == suggestion.id)
    if await session.scalar(merged_in.limit(1)) is not None:
        raise RuleViolation("has_merged_duplicates", "others' suggestions stand in it")
    await apply(session, suggestion, Action.WITHDRAW, Actor(Role.PROPOSER, proposer.id))
    await notifications.notify_followers(
        session,
        suggestion,
        NotificationKind.SUGGESTION_STATUS,
        notifications.about(suggestion) | {"status": State.WITHDRAWN.value},
        dedupe_prefix=f"withdrawn:{suggestion.id}",
        exclude={proposer.id},
    )
    await session.commit()
    return suggestion


@dataclass(frozen=True, slots=True)
class PublicFilter:
    community_id: int | None = None
    status: State | None = None
    category: Category | None = None


async def add_follower(session: AsyncSession, suggestion_id: int, person_id: int) -> None:
    exists = await session.get(Follower, (suggestion_id, person_id))
    if exists is None:
        session.add(Follower(suggestion_id=suggestion_id, person_id=person_id))
        await session.flush()


__all__ = [
    "DailyLimitReached",
    "Draft",
    "ProposerItem",
    "PublicFilter",
    "add_follower",
    "apply",
    "count_today_by_telegram_id",
    "list_for_proposer",
    "lock_suggestions",
    "next_number",
    "proposer_item",
    "submit",
    "validate_draft",
    "withdraw",
]
