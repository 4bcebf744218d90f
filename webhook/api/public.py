"""Open data (`/api/v1/public/...`): suggestions and projects as JSON, for anyone, with no
personal data of residents — no proposer, no Telegram file ids, no exact coordinates — and of
council votes only the counts and outcomes, never who voted how. A suggestion's timeline
(`/api/v1/public/suggestions/{number}/events`) is the public side of its audit trail: who
acted appears as a kind of actor (`resident`, `community_staff`, `system`, ...), never a
person, and never the officials' API token that acted."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field

from storage.models import VoteStatus
from storage.rules import Category, ExclusionReason, Kind, SourceType, State, VoteOutcome
from storage.services import public
from storage.services.suggestions import PublicFilter
from webhook.api.listing import (
    DEFAULT_PAGE_SIZE,
    ListQuery,
    ListQueryDep,
    Page,
    PageQuery,
    PageSizeQuery,
)
from webhook.deps import SessionDep
from webhook.routing import GetHeadRouter

PREFIX = "/api/v1/public"


class CommunityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str = Field(examples=["新沙社区"])
    street: str = Field(examples=["沙头街道"])
    district: str = Field(examples=["福田区"])


class CouncilVoteOut(BaseModel):
    """The latest residents' council vote (议事会表决) the suggestion was put to. While it is
    `open` only its deadline is published; once `closed`, the counts and the outcome."""

    model_config = ConfigDict(from_attributes=True)

    status: VoteStatus
    closes_at: datetime = Field(description="the deadline, ISO 8601, UTC")
    closed_at: datetime | None = Field(
        description="when it closed (early, once every member voted, or at the deadline)"
    )
    agree: int | None = Field(description="同意, once closed")
    against: int | None = Field(description="反对, once closed")
    abstain: int | None = Field(description="弃权, once closed")
    outcome: VoteOutcome | None = Field(
        description="once closed: `resolved` (决议通过), `not_passed` (未通过) or "
        "`no_quorum` (未达法定人数, decides nothing)"
    )


class SuggestionOut(BaseModel):
    """A suggestion as the public sees it: who made it appears only as its source type (a
    resident is `resident`, never a name)."""

    model_config = ConfigDict(from_attributes=True)

    number: str = Field(examples=["新沙-2026-0007"])
    community: CommunityOut
    category: Category
    kind: Kind | None
    title: str
    description: str
    location_text: str | None
    status: State
    source_type: SourceType
    estimated_cost_fen: int | None = Field(description="integer fen (分); 100 fen = 1 CNY")
    exclusion_reason: ExclusionReason | None = Field(
        description="why it was not adopted, when its status is `rejected`"
    )
    merged_into: str | None = Field(
        description="the number of the suggestion it was merged into, when its status is `merged`",
        examples=["新沙-2026-0003"],
    )
    council_vote: CouncilVoteOut | None = Field(
        description="the latest council vote it was put to, if any"
    )
    created_at: datetime = Field(description="ISO 8601, UTC")


class ProjectOut(BaseModel):
    """A project determined by the street office, made from one or more suggestions."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    community: CommunityOut
    title: str
    category: Category
    kind: Kind
    status: State
    budget_fen: int = Field(description="integer fen (分)")
    spent_fen: int | None = Field(
        description="integer fen (分), once the audit and final accounts are published "
        "(status `accounts_published` or `evaluated`); null before"
    )
    batch: str | None
    expected_benefit: str | None
    implementer: str | None = Field(description="the implementing organisation (实施主体)")
    implementer_assigned_at: datetime | None
    due_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    maintenance_unit: str | None
    suggestion_numbers: list[str]
    created_at: datetime = Field(description="ISO 8601, UTC")


class ChangeOut(BaseModel):
    """A correction made on screening."""

    model_config = ConfigDict(from_attributes=True)

    before: str | None = Field(description="the value it had, if any")
    after: str = Field(description="the value it was corrected to")


class EventVoteOut(BaseModel):
    """The residents' council's resolution: the counts, never who voted how."""

    model_config = ConfigDict(from_attributes=True)

    outcome: VoteOutcome
    agree: int
    against: int
    abstain: int
    council_size: int | None
    quorum_pct: int | None = Field(description="quorum: strictly more than this % voted")
    threshold_pct: int | None = Field(
        description="threshold: strictly more than this % of the votes cast agreed"
    )


class EventOut(BaseModel):
    """One public step of a suggestion (三议三公开), as it was recorded."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime = Field(description="when, ISO 8601, UTC")
    action: str = Field(
        description="what happened: `submit`, `merged_in` (a duplicate was merged into this "
        "suggestion), or an action of the programme's lifecycle (`begin_review`, `accept`, "
        "`reject`, `merge`, `withdraw`, `convene_vote`, `resolve`, `not_pass`, `no_quorum`, "
        "`determine`, `defer`, `publish`, `assign_implementer`, `start`, `complete`, "
        "`publish_accounts`, `evaluate`, `cancel`)",
        examples=["accept"],
    )
    actor: str = Field(
        description="who acted, never a person: whoever made the suggestion as its source "
        "type (`resident`, `unit`, `social_organisation`, `representative`); an official by role "
        "(`community_staff`, `street_official`, `district_admin`, `city_admin`); "
        "`implementer`; `residents_council` (a council vote's outcome: passed, not passed, "
        "no quorum); `system` (the scheduler); `unknown`",
        examples=["community_staff"],
    )
    from_status: State | None = Field(validation_alias="from_state")
    to_status: State | None = Field(validation_alias="to_state")
    exclusion_reason: ExclusionReason | None = Field(description="why, when it was rejected")
    merged_into: str | None = Field(
        description="the number it was merged into (action `merge`)", examples=["新沙-2026-0003"]
    )
    merged_from: str | None = Field(
        description="the number of the duplicate merged into it (action `merged_in`)"
    )
    category_change: ChangeOut | None = Field(description="category corrected on acceptance")
    kind_change: ChangeOut | None = Field(description="kind corrected on acceptance")
    council_vote: EventVoteOut | None = Field(
        validation_alias="vote",
        description="the council's counts and outcome (actions `resolve`, `not_pass`, `no_quorum`)",
    )


class SuggestionPage(Page[SuggestionOut]):
    pass


class EventPage(Page[EventOut]):
    pass


class ProjectPage(Page[ProjectOut]):
    pass


async def _public_query(session: SessionDep, query: ListQueryDep) -> ListQuery:
    """The listing query, with an unknown community refused (once the query itself is valid)."""
    community = query.filters.community_id
    if community is not None and await public.get_community(session, community) is None:
        # The shape of FastAPI's own validation errors, so clients handle one kind of 422.
        raise HTTPException(
            status_code=422,
            detail=[
                {
                    "type": "unknown_community",
                    "loc": ["query", "community"],
                    "msg": f"There is no community with id {community}",
                    "input": community,
                }
            ],
        )
    return query


PublicQueryDep = Annotated[ListQuery, Depends(_public_query)]


def create_public_api_router() -> GetHeadRouter:
    """The open-data routes. Include as is: the paths are complete (`/api/v1/public/...`)."""
    router = GetHeadRouter(prefix=PREFIX, tags=["open data"])
    responses: dict[int | str, dict[str, Any]] = {
        status.HTTP_422_UNPROCESSABLE_CONTENT: {
            "description": "A filter or paging value is not valid (an unknown status, "
            "category or community id)."
        }
    }

    @router.get(
        "/suggestions",
        response_model=SuggestionPage,
        summary="Suggestions, newest first",
        responses=responses,
    )
    async def suggestions(session: SessionDep, query: PublicQueryDep) -> SuggestionPage:
        items, total = await public.list_suggestions(
            session, query.filters, limit=query.page_size, offset=query.offset
        )
        return SuggestionPage.of(
            [SuggestionOut.model_validate(item) for item in items], total, query
        )

    @router.get(
        "/suggestions/{number}/events",
        response_model=EventPage,
        summary="A suggestion's public timeline, oldest first",
        description="Every public step of the suggestion with this number (percent-encoded, "
        "e.g. `%E6%96%B0%E6%B2%99-2026-0007` for 新沙-2026-0007), in the order it happened.",
        responses={
            status.HTTP_404_NOT_FOUND: {"description": "There is no suggestion with this number."},
            status.HTTP_422_UNPROCESSABLE_CONTENT: {"description": "A paging value is not valid."},
        },
    )
    async def suggestion_events(
        session: SessionDep,
        number: Annotated[str, Path(examples=["新沙-2026-0007"])],
        page: PageQuery = 1,
        page_size: PageSizeQuery = DEFAULT_PAGE_SIZE,
    ) -> EventPage:
        query = ListQuery(PublicFilter(), page, page_size)
        found = await public.list_events(
            session, number, limit=query.page_size, offset=query.offset
        )
        if found is None:
            raise HTTPException(
                status_code=status.HTTP_404_NOT_FOUND,
                detail={
                    "code": "unknown_suggestion",
                    "message": "There is no suggestion with this number",
                },
            )
        items, total = found
        return EventPage.of([EventOut.model_validate(item) for item in items], total, query)

    @router.get(
        "/projects",
        response_model=ProjectPage,
        summary="Projects determined by the street offices, newest first",
        responses=responses,
    )
    async def projects(session: SessionDep, query: PublicQueryDep) -> ProjectPage:
        items, total = await public.list_projects(
            session, query.filters, limit=query.page_size, offset=query.offset
        )
        return ProjectPage.of([ProjectOut.model_validate(item) for item in items], total, query)

    return router
