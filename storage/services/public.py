"""What anyone may read without logging in: the board and the open-data API.

Queries here select named public columns into frozen records, so a resident's identity
(proposer, Telegram file ids, exact coordinates) never leaves the store on this path. Of a
council vote the public sees the counts and the outcome once it has closed (决议结果公开),
and only its deadline while it is open: never the ballots, nor who voted how.

The timeline of a suggestion is the public side of its audit trail: its events marked
public, oldest first, each with its time, action, states, who acted as a kind of actor (the
proposer as `resident` or their source type, officials by role, never a person) and the
details the public may read, picked by name (an exclusion reason, merged into or from which
number, category and kind corrections, the council's counts); never a staff member's note,
the acting person, nor the officials' API token that acted.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import (
    AuditEvent,
    Community,
    CouncilVote,
    CouncilVoteItem,
    District,
    Project,
    Street,
    Suggestion,
    VoteStatus,
)
from storage.rules import (
    Action,
    Category,
    ExclusionReason,
    Kind,
    Role,
    SourceType,
    State,
    VoteOutcome,
    reached_from,
)
from storage.services.suggestions import PublicFilter

_E = TypeVar("_E", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class PublicCommunity:
    id: int
    name: str
    street: str
    district: str


@dataclass(frozen=True, slots=True)
class PublicVote:
    """The latest council vote a suggestion was put to. While it is open only its deadline is
    public; once closed, the counts and the outcome (and when it closed)."""

    status: VoteStatus
    closes_at: datetime
    closed_at: datetime | None = None
    agree: int | None = None
    against: int | None = None
    abstain: int | None = None
    outcome: VoteOutcome | None = None


@dataclass(frozen=True, slots=True)
class PublicSuggestion:
    number: str
    community: PublicCommunity
    category: Category
    kind: Kind | None
    title: str
    description: str
    location_text: str | None
    status: State
    source_type: SourceType
    estimated_cost_fen: int | None
    exclusion_reason: ExclusionReason | None
    created_at: datetime
    # The resident shared a location (Telegram's): staff see it on a map; where a resident
    # stood is not published, only that the place is known.
    shared_location: bool = False
    # The number of the suggestion it was merged into, when its status is `merged`.
    merged_into: str | None = None
    council_vote: PublicVote | None = None


@dataclass(frozen=True, slots=True)
class PublicProject:
    id: int
    community: PublicCommunity
    title: str
    category: Category
    kind: Kind
    status: State
    budget_fen: int
    batch: str | None
    expected_benefit: str | None
    implementer: str | None
    implementer_assigned_at: datetime | None
    due_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    maintenance_unit: str | None
    spent_fen: int | None  # once its accounts are published (ACCOUNTS_PUBLIC_STATES)
    created_at: datetime
    suggestion_numbers: tuple[str, ...]


# What a project has spent is published with its audit and final accounts (审计决算), not
# while the work is under way: from accounts_published on (evaluated), the only way there.
ACCOUNTS_PUBLIC_STATES = reached_from(State.ACCOUNTS_PUBLISHED)

_COMMUNITY_COLUMNS = (Community.id, Community.name, Street.name, District.name)
# District › street › community, the order officials read the tree in.
_TREE_ORDER = (District.name, Street.name, Community.name, Community.id)


def _community(row: Any) -> PublicCommunity:
    return PublicCommunity(id=row[0], name=row[1], street=row[2], district=row[3])


def filter_conditions(
    model: type[Suggestion] | type[Project], filters: PublicFilter
) -> list[ColumnElement[bool]]:
    """The WHERE conditions of a filter, for the board, open data and officials alike."""
    conditions: list[ColumnElement[bool]] = []
    if filters.community_id is not None:
        conditions.append(model.community_id == filters.community_id)
    if filters.status is not None:
        conditions.append(model.status == filters.status)
    if filters.category is not None:
        conditions.append(model.category == filters.category)
    return conditions


def community_query() -> Select[Any]:
    """Communities with their street's and district's names; `first_community` reads a row."""
    return (
        select(*_COMMUNITY_COLUMNS)
        .join(Street, Street.id == Community.street_id)
        .join(District, District.id == Street.district_id)
    )


async def first_community(
    session: AsyncSession, query: Select[Any], params: dict[str, Any] | None = None
) -> PublicCommunity | None:
    row = (await session.execute(query, params)).first()
    return None if row is None else _community(row)


# Built once: building a statement costs more than running this one (a deep link's lookup).
_COMMUNITY_BY_ID = community_query().where(Community.id == bindparam("community_id"))


async def list_communities(session: AsyncSession) -> list[PublicCommunity]:
    query = community_query().order_by(*_TREE_ORDER)
    return [_community(row) for row in (await session.execute(query)).all()]


async def get_community(session: AsyncSession, community_id: int) -> PublicCommunity | None:
    return await first_community(session, _COMMUNITY_BY_ID, {"community_id": community_id})


def _suggestion_query() -> Select[Any]:
    """The public columns of suggestions, with their community's place and the number of
    the suggestion each was merged into."""
    target = aliased(Suggestion)
    return (
        select(
            *_COMMUNITY_COLUMNS,
            Suggestion.id.label("suggestion_id"),
            Suggestion.number,
            Suggestion.category,
            Suggestion.kind,
            Suggestion.title,
            Suggestion.description,
            Suggestion.location_text,
            Suggestion.latitude,
            Suggestion.status,
            Suggestion.source_type,
            Suggestion.estimated_cost_fen,
            Suggestion.exclusion_reason,
            Suggestion.created_at,
            target.number.label("merged_into"),
        )
        .join(Community, Community.id == Suggestion.community_id)
        .join(Street, Street.id == Community.street_id)
        .join(District, District.id == Street.district_id)
        .outerjoin(target, target.id == Suggestion.merged_into_id)
    )


def _public_suggestion(row: Any, votes: dict[int, PublicVote]) -> PublicSuggestion:
    return PublicSuggestion(
        number=row.number,
        community=_community(row),
        category=row.category,
        kind=row.kind,
        title=row.title,
        description=row.description,
        location_text=row.location_text,
        status=row.status,
        source_type=row.source_type,
        estimated_cost_fen=row.estimated_cost_fen,
        exclusion_reason=row.exclusion_reason,
        created_at=row.created_at,
        shared_location=row.latitude is not None,
        # A merge is public only while the suggestion stands merged.
        merged_into=row.merged_into if row.status is State.MERGED else None,
        council_vote=votes.get(row.suggestion_id),
    )


async def list_suggestions(
    session: AsyncSession,
    filters: PublicFilter,
    *,
    limit: int = 50,
    offset: int = 0,
    by_community: bool = False,
) -> tuple[list[PublicSuggestion], int]:
    """One page of suggestions and the total: newest first, or (for the board, which groups
    them) by district › street › community and newest first within each."""
    conditions = filter_conditions(Suggestion, filters)
    total = int(await session.scalar(select(func.count(Suggestion.id)).where(*conditions)) or 0)
    newest = (Suggestion.created_at.desc(), Suggestion.id.desc())
    query = (
        _suggestion_query()
        .where(*conditions)
        .order_by(*(_TREE_ORDER + newest if by_community else newest))
        .limit(limit)
        .offset(offset)
    )
    rows = (await session.execute(query)).all()
    votes = await latest_votes(session, [row.suggestion_id for row in rows])
    return [_public_suggestion(row, votes) for row in rows], total


async def latest_votes(session: AsyncSession, suggestion_ids: list[int]) -> dict[int, PublicVote]:
    """Per suggestion, the latest council vote it was put to: counts and outcome only when
    that vote has closed. Reads the tallies on the items, never the ballots."""
    if not suggestion_ids:
        return {}
    query = (
        select(
            CouncilVoteItem.suggestion_id,
            CouncilVote.status,
            CouncilVote.closes_at,
            CouncilVote.closed_at,
            CouncilVoteItem.agree,
            CouncilVoteItem.against,
            CouncilVoteItem.abstain,
            CouncilVoteItem.outcome,
        )
        .join(CouncilVote, CouncilVote.id == CouncilVoteItem.vote_id)
        .where(CouncilVoteItem.suggestion_id.in_(suggestion_ids))
        .order_by(CouncilVote.convened_at, CouncilVote.id)
    )
    found: dict[int, PublicVote] = {}
    for row in (await session.execute(query)).all():
        if row.status is VoteStatus.CLOSED:
            found[row.suggestion_id] = PublicVote(
                status=row.status,
                closes_at=row.closes_at,
                closed_at=row.closed_at,
                agree=row.agree,
                against=row.against,
                abstain=row.abstain,
                outcome=row.outcome,
            )
        else:  # later rows replace earlier ones: the latest vote wins
            found[row.suggestion_id] = PublicVote(status=row.status, closes_at=row.closes_at)
    return found


async def list_projects(
    session: AsyncSession, filters: PublicFilter, *, limit: int = 50, offset: int = 0
) -> tuple[list[PublicProject], int]:
    """One page of projects, newest first, each with the numbers of its suggestions."""
    conditions = filter_conditions(Project, filters)
    total = int(await session.scalar(select(func.count(Project.id)).where(*conditions)) or 0)
    query = (
        select(*_COMMUNITY_COLUMNS, Project)
        .join(Community, Community.id == Project.community_id)
        .join(Street, Street.id == Community.street_id)
        .join(District, District.id == Street.district_id)
        .where(*conditions)
        .order_by(Project.created_at.desc(), Project.id.desc())
        .limit(limit)
        .offset(offset)
    )
    rows = (await session.execute(query)).all()
    numbers: dict[int, list[str]] = {}
    if rows:
        linked = (
            select(Suggestion.project_id, Suggestion.number)
            .where(Suggestion.project_id.in_([row.Project.id for row in rows]))
            .order_by(Suggestion.number)
        )
        for project_id, number in (await session.execute(linked)).all():
            numbers.setdefault(project_id, []).append(number)
    items = []
    for row in rows:
        project: Project = row.Project
        items.append(
            PublicProject(
                id=project.id,
                community=_community(row),
                title=project.title,
                category=project.category,
                kind=project.kind,
                status=project.status,
                budget_fen=project.budget_fen,
                batch=project.batch,
                expected_benefit=project.expected_benefit,
                implementer=project.implementer,
                implementer_assigned_at=project.implementer_assigned_at,
                due_at=project.due_at,
                started_at=project.started_at,
                completed_at=project.completed_at,
                maintenance_unit=project.maintenance_unit,
                spent_fen=project.spent_fen if project.status in ACCOUNTS_PUBLIC_STATES else None,
                created_at=project.created_at,
                suggestion_numbers=tuple(numbers.get(project.id, ())),
            )
        )
    return items, total


# --- The public timeline: the public side of the audit trail (三议三公开) ---------------------

# Suggestion numbers are at most this long (Suggestion.number); longer is no number at all.
NUMBER_MAX = 48
# The event a merge leaves on the suggestion a duplicate was merged into (screening.merge).
MERGED_IN = "merged_in"
# Who acted, as the public may see it when the actor is none of the suggestion's proposer's
# source types (resident, unit, ...) nor an official's role: an event without a role.
UNKNOWN_ACTOR = "unknown"
# Who resolved a council vote's outcome (passed, not passed, no quorum), as the public sees it:
# the residents' council (三议三公开: 决议 is the council's), though the scheduler's count wrote
# the event.
RESIDENTS_COUNCIL = "residents_council"


@dataclass(frozen=True, slots=True)
class PublicChange:
    """A correction made on screening: the value before and after."""

    before: str | None
    after: str


@dataclass(frozen=True, slots=True)
class PublicEventVote:
    """The council's resolution on the suggestion, as its counts (never the ballots)."""

    outcome: VoteOutcome
    agree: int
    against: int
    abstain: int
    council_size: int | None = None
    quorum_pct: int | None = None
    threshold_pct: int | None = None


@dataclass(frozen=True, slots=True)
class PublicEvent:
    """One public event of a suggestion: when, what, who (as a kind of actor, never a
    person) and the public part of its details.

    `actor` is the proposer's source type (`resident`, `unit`, `social_organisation`,
    `representative`) when the proposer acted, else the acting role (`community_staff`,
    `street_official`, `district_admin`, `city_admin`, `implementer`, `system`, ...)."""

    at: datetime
    action: str
    actor: str
    from_state: State | None
    to_state: State | None
    exclusion_reason: ExclusionReason | None = None
    merged_into: str | None = None
    merged_from: str | None = None
    category_change: PublicChange | None = None
    kind_change: PublicChange | None = None
    vote: PublicEventVote | None = None


@dataclass(frozen=True, slots=True)
class SuggestionTimeline:
    """A suggestion as the board shows it, and its public events, oldest first."""

    suggestion: PublicSuggestion
    events: list[PublicEvent]
    more: bool  # there are more public events than were read


def number_forms(number: str) -> list[str]:
    """What a suggestion number someone typed or read out may stand for: as given without
    blanks around it, and with full-width digits and dashes folded (NFKC) if that differs.
    Empty when it cannot be a number at all."""
    if any(unicodedata.category(c).startswith("C") for c in number):
        return []  # control, format or unassigned characters (a NUL): no number has them
    forms = []
    for text in (number.strip(), unicodedata.normalize("NFKC", number).strip()):
        if 0 < len(text) <= NUMBER_MAX and text not in forms:
            forms.append(text)
    return forms


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= NUMBER_MAX else None


def _enum_value(enum: type[_E], value: Any) -> _E | None:
    try:
        return enum(value)
    except (TypeError, ValueError):
        return None


def _change(enum: type[StrEnum], value: Any) -> PublicChange | None:
    if not isinstance(value, dict):
        return None
    before, after = _enum_value(enum, value.get("from")), _enum_value(enum, value.get("to"))
    if after is None:
        return None
    return PublicChange(before.value if before is not None else None, after.value)


def _vote(details: dict[str, Any]) -> PublicEventVote | None:
    outcome = _enum_value(VoteOutcome, details.get("outcome"))
    counts = [_integer(details.get(key)) for key in ("agree", "against", "abstain")]
    if outcome is None or any(count is None for count in counts):
        return None
    agree, against, abstain = (int(count or 0) for count in counts)
    return PublicEventVote(
        outcome=outcome,
        agree=agree,
        against=against,
        abstain=abstain,
        council_size=_integer(details.get("council_size")),
        quorum_pct=_integer(details.get("quorum_pct")),
        threshold_pct=_integer(details.get("threshold_pct")),
    )


def public_actor(role: Role | None, source_type: SourceType, action: str = "") -> str:
    """Who acted, as the public may see it: the proposer as what they are (a resident is
    `resident`), the council for its vote's outcome, anyone else by role."""
    if action in _VOTE_ACTIONS:
        return RESIDENTS_COUNCIL
    if role is None:
        return UNKNOWN_ACTOR
    if role is Role.PROPOSER:
        return source_type.value
    return role.value


_VOTE_ACTIONS = frozenset({Action.RESOLVE.value, Action.NOT_PASS.value, Action.NO_QUORUM.value})


def _public_event(row: Any, source_type: SourceType) -> PublicEvent:
    """The public part of an event's details, read by name and type: anything else there
    (a staff member's note, the API token that acted, ids) never leaves the store this way."""
    details: dict[str, Any] = row.details if isinstance(row.details, dict) else {}
    action = row.action
    return PublicEvent(
        at=row.at,
        action=action,
        actor=public_actor(row.actor_role, source_type, row.action),
        from_state=row.from_state,
        to_state=row.to_state,
        exclusion_reason=(
            _enum_value(ExclusionReason, details.get("reason")) if action == Action.REJECT else None
        ),
        merged_into=_number(details.get("into_number")) if action == Action.MERGE else None,
        merged_from=_number(details.get("from_number")) if action == MERGED_IN else None,
        category_change=(
            _change(Category, details.get("category")) if action == Action.ACCEPT else None
        ),
        kind_change=_change(Kind, details.get("kind")) if action == Action.ACCEPT else None,
        vote=_vote(details) if action in _VOTE_ACTIONS else None,
    )


def _public_events_of(suggestion_id: Any) -> Any:
    """The conditions of a suggestion's public events (`suggestion_id` a value or a column)."""
    return (
        AuditEvent.entity_type == "suggestion",
        AuditEvent.entity_id == suggestion_id,
        AuditEvent.public.is_(True),
    )


def _events_query(suggestion_id: int) -> Select[Any]:
    """A suggestion's public events, oldest first; only the columns the public may see (never
    the acting person)."""
    return (
        select(
            AuditEvent.at,
            AuditEvent.action,
            AuditEvent.actor_role,
            AuditEvent.from_state,
            AuditEvent.to_state,
            AuditEvent.details,
        )
        .where(*_public_events_of(suggestion_id))
        .order_by(AuditEvent.at, AuditEvent.id)
    )


async def suggestion_timeline(
    session: AsyncSession, number: str, *, limit: int = 500
) -> SuggestionTimeline | None:
    """The suggestion numbered `number` as the board shows it, with up to `limit` of its
    public events, oldest first; None when there is no such suggestion. Three statements
    whatever the number of events: the suggestion, its latest vote, its events."""
    forms = number_forms(number)
    if not forms:
        return None
    query = _suggestion_query().where(Suggestion.number.in_(forms)).order_by(Suggestion.id)
    row = (await session.execute(query)).first()
    if row is None:
        return None
    votes = await latest_votes(session, [row.suggestion_id])
    suggestion = _public_suggestion(row, votes)
    rows = (await session.execute(_events_query(row.suggestion_id).limit(limit + 1))).all()
    events = [_public_event(event, suggestion.source_type) for event in rows[:limit]]
    return SuggestionTimeline(suggestion, events, more=len(rows) > limit)


async def list_events(
    session: AsyncSession, number: str, *, limit: int = 50, offset: int = 0
) -> tuple[list[PublicEvent], int] | None:
    """One page of the public events of the suggestion numbered `number`, oldest first, and
    their total; None when there is no such suggestion. Two statements."""
    forms = number_forms(number)
    if not forms:
        return None
    total = (
        select(func.count(AuditEvent.id))
        .where(*_public_events_of(Suggestion.id))
        .correlate(Suggestion)
        .scalar_subquery()
    )
    found = (
        await session.execute(
            select(Suggestion.id, Suggestion.source_type, total)
            .where(Suggestion.number.in_(forms))
            .order_by(Suggestion.id)
        )
    ).first()
    if found is None:
        return None
    suggestion_id, source_type, count = found
    rows = (await session.execute(_events_query(suggestion_id).limit(limit).offset(offset))).all()
    return [_public_event(row, source_type) for row in rows], int(count or 0)


__all__ = [
    "ACCOUNTS_PUBLIC_STATES",
    "MERGED_IN",
    "NUMBER_MAX",
    "UNKNOWN_ACTOR",
    "PublicChange",
    "PublicCommunity",
    "PublicEvent",
    "PublicEventVote",
    "PublicFilter",
    "PublicProject",
    "PublicSuggestion",
    "PublicVote",
    "SuggestionTimeline",
    "community_query",
    "first_community",
    "get_community",
    "latest_votes",
    "list_communities",
    "list_events",
    "list_projects",
    "list_suggestions",
    "number_forms",
    "public_actor",
    "suggestion_timeline",
]
