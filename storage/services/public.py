"""What anyone may read without logging in: the board and the open-data API.

Queries here select named public columns into frozen records, so a resident's identity
(proposer, Telegram file ids, exact coordinates) never leaves the store on this path. Of a
council vote the public sees the counts and the outcome once it has closed (决议结果公开),
and only its deadline while it is open: never the ballots, nor who voted how.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import (
    Community,
    CouncilVote,
    CouncilVoteItem,
    District,
    Project,
    Street,
    Suggestion,
    VoteStatus,
)
from storage.rules import Category, ExclusionReason, Kind, SourceType, State, VoteOutcome
from storage.services.suggestions import PublicFilter


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
    spent_fen: int | None
    created_at: datetime
    suggestion_numbers: tuple[str, ...]


_COMMUNITY_COLUMNS = (Community.id, Community.name, Street.name, District.name)
# District › street › community, the order officials read the tree in.
_TREE_ORDER = (District.name, Street.name, Community.name, Community.id)


def _community(row: Any) -> PublicCommunity:
    return PublicCommunity(id=row[0], name=row[1], street=row[2], district=row[3])


def _conditions(model: type[Suggestion] | type[Project], filters: PublicFilter) -> list[Any]:
    conditions: list[ColumnElement[bool]] = []
    if filters.community_id is not None:
        conditions.append(model.community_id == filters.community_id)
    if filters.status is not None:
        conditions.append(model.status == filters.status)
    if filters.category is not None:
        conditions.append(model.category == filters.category)
    return conditions


async def list_communities(session: AsyncSession) -> list[PublicCommunity]:
    query = (
        select(*_COMMUNITY_COLUMNS)
        .join(Street, Street.id == Community.street_id)
        .join(District, District.id == Street.district_id)
        .order_by(*_TREE_ORDER)
    )
    return [_community(row) for row in (await session.execute(query)).all()]


async def get_community(session: AsyncSession, community_id: int) -> PublicCommunity | None:
    query = (
        select(*_COMMUNITY_COLUMNS)
        .join(Street, Street.id == Community.street_id)
        .join(District, District.id == Street.district_id)
        .where(Community.id == community_id)
    )
    row = (await session.execute(query)).first()
    return None if row is None else _community(row)


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
    conditions = _conditions(Suggestion, filters)
    total = int(await session.scalar(select(func.count(Suggestion.id)).where(*conditions)) or 0)
    newest = (Suggestion.created_at.desc(), Suggestion.id.desc())
    target = aliased(Suggestion)
    query = (
        select(
            *_COMMUNITY_COLUMNS,
            Suggestion.id.label("suggestion_id"),
            Suggestion.number,
            Suggestion.category,
            Suggestion.kind,
            Suggestion.title,
            Suggestion.description,
            Suggestion.location_text,
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
        .where(*conditions)
        .order_by(*(_TREE_ORDER + newest if by_community else newest))
        .limit(limit)
        .offset(offset)
    )
    rows = (await session.execute(query)).all()
    votes = await latest_votes(session, [row.suggestion_id for row in rows])
    items = [
        PublicSuggestion(
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
            # A merge is public only while the suggestion stands merged.
            merged_into=row.merged_into if row.status is State.MERGED else None,
            council_vote=votes.get(row.suggestion_id),
        )
        for row in rows
    ]
    return items, total


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
    conditions = _conditions(Project, filters)
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
                spent_fen=project.spent_fen,
                created_at=project.created_at,
                suggestion_numbers=tuple(numbers.get(project.id, ())),
            )
        )
    return items, total


__all__ = [
    "PublicCommunity",
    "PublicFilter",
    "PublicProject",
    "PublicSuggestion",
    "PublicVote",
    "get_community",
    "latest_votes",
    "list_communities",
    "list_projects",
    "list_suggestions",
]
