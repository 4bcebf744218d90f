"""Open data (`/api/v1/public/...`): suggestions and projects as JSON, for anyone, with no
personal data of residents — no proposer, no Telegram file ids, no exact coordinates — and of
council votes only the counts and outcomes, never who voted how."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from storage.models import VoteStatus
from storage.rules import Category, ExclusionReason, Kind, SourceType, State, VoteOutcome
from storage.services import public
from webhook.api.listing import ListQuery, ListQueryDep, Page
from webhook.deps import SessionDep

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
    spent_fen: int | None = Field(description="integer fen (分), once accounts are published")
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


class SuggestionPage(Page[SuggestionOut]):
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


def create_public_api_router() -> APIRouter:
    """The open-data routes. Include as is: the paths are complete (`/api/v1/public/...`)."""
    router = APIRouter(prefix=PREFIX, tags=["open data"])
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
