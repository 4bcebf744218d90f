"""The officials' API (`/api/v1/...`): screening suggestions, convening council votes, granting
roles, for systems holding a bearer token (`minsheng token create`).

Every route authenticates the token (webhook.auth) and the store checks role and scope: a
community's staff acts in its community, a street official in the street's communities, a
district admin in the district's, a city admin anywhere. Errors are
`{"detail": {"code", "message"}}` with the status mapping documented in webhook.auth.

Personal data stays minimal: a proposer appears as an opaque person id, never a name,
Telegram id or username; photos as a count (Telegram file ids are of no use outside the bot).
Who voted how in a council vote is visible here to officials, as person ids; the board shows
counts and outcomes only.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query, Request, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette import types as asgi

from bot.polls import PollSender, start_sending
from storage import rules
from storage.models import RoleGrant, Suggestion, VoteStatus
from storage.rules import (
    Action,
    Category,
    Choice,
    ExclusionReason,
    Kind,
    Role,
    RuleViolation,
    ScopeLevel,
    SourceType,
    State,
    VoteOutcome,
)
from storage.services import council, invites, officials, screening
from storage.services.access import Principal, Scope
from webhook.api.listing import (
    DEFAULT_PAGE_SIZE,
    CommunityQuery,
    ListQueryDep,
    Page,
    PageQuery,
    PageSizeQuery,
)
from webhook.api.public import CommunityOut
from webhook.auth import AuthenticatedRoute, PrincipalDep, error_responses
from webhook.deps import SessionDep
from webhook.routing import GetHeadRouter

log = logging.getLogger(__name__)

PREFIX = "/api/v1"

Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
BodyId = Annotated[int, Field(ge=1, le=2**31 - 1)]


# --- Shapes ---------------------------------------------------------------------------------


class CommunityRef(CommunityOut):
    pass  # the open data's shape, under the name this API has always documented


class OfficialSuggestionOut(BaseModel):
    """A suggestion as officials see it. The proposer is an opaque person id."""

    id: int
    number: str = Field(examples=["新沙-2026-0007"])
    community: CommunityRef
    category: Category
    kind: Kind | None
    title: str
    description: str
    location_text: str | None
    latitude: float | None
    longitude: float | None
    photo_count: int
    source_type: SourceType
    proposer_id: int | None = Field(description="opaque person id; no name or Telegram data")
    estimated_cost_fen: int | None = Field(description="integer fen (分); 100 fen = 1 CNY")
    status: State
    exclusion_reason: ExclusionReason | None
    exclusion_note: str | None = Field(description="the staff's note to the proposer")
    merged_into_id: int | None
    project_id: int | None
    allowed_actions: list[Action] = Field(
        description="what this token's role may do next, by the programme's transition table"
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, suggestion: Suggestion, principal: Principal) -> OfficialSuggestionOut:
        community = suggestion.community
        return cls(
            id=suggestion.id,
            number=suggestion.number,
            community=CommunityRef(
                id=community.id,
                name=community.name,
                street=community.street.name,
                district=community.street.district.name,
            ),
            category=suggestion.category,
            kind=suggestion.kind,
            title=suggestion.title,
            description=suggestion.description,
            location_text=suggestion.location_text,
            latitude=suggestion.latitude,
            longitude=suggestion.longitude,
            photo_count=len(suggestion.photo_file_ids or []),
            source_type=suggestion.source_type,
            proposer_id=suggestion.proposer_id,
            estimated_cost_fen=suggestion.estimated_cost_fen,
            status=suggestion.status,
            exclusion_reason=suggestion.exclusion_reason,
            exclusion_note=suggestion.exclusion_note,
            merged_into_id=suggestion.merged_into_id,
            project_id=suggestion.project_id,
            allowed_actions=rules.allowed_actions(suggestion.status, principal.role),
            created_at=suggestion.created_at,
            updated_at=suggestion.updated_at,
        )


class OfficialSuggestionPage(Page[OfficialSuggestionOut]):
    pass


NOTE_FIELD = Field(default=None, max_length=rules.REJECTION_NOTE_MAX)


class AcceptRequest(BaseModel):
    """Accept as a community candidate (社区备选项目), correcting category or kind if need be;
    the note goes to the followers and a non-public record."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["accept"]
    category: Category | None = None
    kind: Kind | None = None
    note: str | None = NOTE_FIELD


class RejectRequest(BaseModel):
    """Reject with an exclusion reason (public); `other` needs a note (to the proposer only)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["reject"]
    reason: ExclusionReason
    note: str | None = NOTE_FIELD


class MergeRequest(BaseModel):
    """Merge a duplicate into another active suggestion of the same community."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["merge"]
    into_id: BodyId


ScreenRequest = Annotated[
    AcceptRequest | RejectRequest | MergeRequest, Field(discriminator="action")
]


GrantedRole = Literal[
    "community_staff", "council_member", "street_official", "district_admin", "city_admin"
]


class RoleGrantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    telegram_id: int = Field(ge=1, le=2**53, description="the person's Telegram user id")
    role: GrantedRole
    scope_level: ScopeLevel
    scope_id: BodyId | None = Field(default=None, description="none for the city")


class RoleGrantOut(BaseModel):
    id: int
    person_id: int
    role: Role
    scope_level: ScopeLevel
    scope_id: int | None
    granted_at: datetime
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, grant: RoleGrant) -> RoleGrantOut:
        return cls(
            id=grant.id,
            person_id=grant.person_id,
            role=grant.role,
            scope_level=grant.scope_level,
            scope_id=grant.scope_id,
            granted_at=grant.granted_at,
            revoked_at=grant.revoked_at,
        )


class RoleHolderOut(RoleGrantOut):
    """An active grant with whom it names, as Telegram knows them (officials only)."""

    telegram_id: int | None
    first_name: str
    username: str | None

    @classmethod
    def of_holder(cls, holder: invites.GrantHolder) -> RoleHolderOut:
        return cls(
            **RoleGrantOut.of(holder.grant).model_dump(),
            telegram_id=holder.telegram_id,
            first_name=holder.first_name,
            username=holder.username,
        )


class RoleHolderPage(Page[RoleHolderOut]):
    pass


class MeOut(BaseModel):
    role: Role
    scope_level: ScopeLevel
    scope_id: int | None
    scope_name: str | None = Field(
        description="district › street › community; none for the city", examples=["福田区"]
    )


# --- Routes ---------------------------------------------------------------------------------

NO_STORE = (b"cache-control", b"no-store")


class PrivateRoute(AuthenticatedRoute):
    """An officials' route whose every answer, errors included, says `Cache-Control: no-store`:
    what officials see (suggestions, votes, who holds which role) is for the caller alone, and
    no browser or proxy cache should keep it. The header goes on at the ASGI level, where the
    route's exception handlers answer too."""

    async def handle(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        async def send_no_store(message: asgi.Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), NO_STORE]}
            await send(message)

        await super().handle(scope, receive, send_no_store)


def create_officials_router() -> APIRouter:
    """The officials' routes; the paths are complete (`/api/v1/...`)."""
    router = GetHeadRouter(prefix=PREFIX, tags=["officials"], route_class=PrivateRoute)

    @router.get(
        "/me",
        response_model=MeOut,
        summary="The token's role and scope",
        responses=error_responses(401),
    )
    async def me(session: SessionDep, principal: PrincipalDep) -> MeOut:
        return MeOut(
            role=principal.role,
            scope_level=principal.scope.level,
            scope_id=principal.scope.id,
            scope_name=await invites.scope_name(session, principal.scope, full=True),
        )

    @router.get(
        "/suggestions",
        response_model=OfficialSuggestionPage,
        summary="Suggestions in the token's scope, newest first",
        responses=error_responses(401, 403, 404, 422),
    )
    async def list_suggestions(
        session: SessionDep, principal: PrincipalDep, query: ListQueryDep
    ) -> OfficialSuggestionPage:
        items, total = await officials.list_suggestions(
            session, principal, query.filters, limit=query.page_size, offset=query.offset
        )
        return OfficialSuggestionPage.of(
            [OfficialSuggestionOut.of(item, principal) for item in items], total, query
        )

    @router.get(
        "/suggestions/{suggestion_id}",
        response_model=OfficialSuggestionOut,
        summary="One suggestion",
        responses=error_responses(401, 403, 404, 422),
    )
    async def get_suggestion(
        session: SessionDep, principal: PrincipalDep, suggestion_id: Id
    ) -> OfficialSuggestionOut:
        suggestion = await officials.get_suggestion(session, principal, suggestion_id)
        return OfficialSuggestionOut.of(suggestion, principal)

    @router.post(
        "/suggestions/{suggestion_id}/screen",
        response_model=OfficialSuggestionOut,
        summary="Screen a suggestion: accept, reject or merge",
        description="A submitted suggestion is put under review first (both steps audited). "
        "A candidate needs its kind: accepting one the resident left without it takes `kind` "
        "(else `kind_required`, 422). "
        "Merging returns the merged suggestion (now `merged`, with `merged_into_id`).",
        responses=error_responses(401, 403, 404, 409, 422),
    )
    async def screen(
        session: SessionDep,
        principal: PrincipalDep,
        suggestion_id: Id,
        body: Annotated[ScreenRequest, Body()],
    ) -> OfficialSuggestionOut:
        if isinstance(body, AcceptRequest):
            await screening.accept(
                session,
                principal,
                suggestion_id,
                category=body.category,
                kind=body.kind,
                note=body.note,
            )
        elif isinstance(body, RejectRequest):
            await screening.reject(session, principal, suggestion_id, body.reason, body.note)
        else:
            await screening.merge(session, principal, suggestion_id, body.into_id)
        suggestion = await officials.get_suggestion(session, principal, suggestion_id)
        return OfficialSuggestionOut.of(suggestion, principal)

    @router.post(
        "/roles",
        response_model=RoleGrantOut,
        status_code=status.HTTP_201_CREATED,
        summary="Grant a role to someone who has talked to the bot",
        description="Only inside the token's scope and narrower than it: a street official "
        "makes community staff and council members of the street's communities, a district "
        "admin street officials of its district (and below), a city admin anything. A new "
        "grant is 201; granting a role the person holds already changes nothing and returns "
        "that grant with 200. Someone the bot has not met yet is `unknown_person` (404): send "
        "them an invite link instead. The person is told in a private message, and their "
        "command menu gains the role's commands.",
        responses={
            status.HTTP_200_OK: {
                "model": RoleGrantOut,
                "description": "The person holds the role already: their grant, unchanged.",
            },
            **error_responses(401, 403, 404, 422),
        },
    )
    async def grant_role(
        session: SessionDep, principal: PrincipalDep, body: RoleGrantRequest, response: Response
    ) -> RoleGrantOut:
        grant, created = await invites.grant_by_official(
            session,
            principal,
            Role(body.role),
            Scope(body.scope_level, body.scope_id),
            telegram_id=body.telegram_id,
        )
        if not created:
            response.status_code = status.HTTP_200_OK
        return RoleGrantOut.of(grant)

    @router.get(
        "/roles",
        response_model=RoleHolderPage,
        summary="Roles the token may revoke, newest first",
        description="The active grants inside the token's scope and narrower than it (those "
        "it could grant), with the Telegram id and name of whom each names.",
        responses=error_responses(401, 403, 422),
    )
    async def list_roles(
        session: SessionDep,
        principal: PrincipalDep,
        role: Annotated[GrantedRole | None, Query()] = None,
        page: PageQuery = 1,
        page_size: PageSizeQuery = DEFAULT_PAGE_SIZE,
    ) -> RoleHolderPage:
        holders, total = await invites.list_grants(
            session,
            principal,
            role=Role(role) if role else None,
            limit=page_size,
            offset=(page - 1) * page_size,
        )
        items = [RoleHolderOut.of_holder(h) for h in holders]
        return RoleHolderPage(items=items, total=total, page=page, page_size=page_size)

    @router.delete(
        "/roles/{grant_id}",
        response_model=RoleGrantOut,
        summary="Revoke a role",
        description="Under the same rule as granting. The grant is returned with `revoked_at`; "
        "revoking it again changes nothing. A council member revoked stays on the member list "
        "of votes already convened, and is not on the next one's. The person is told, and "
        "their command menu loses the role's commands.",
        responses=error_responses(401, 403, 404, 422),
    )
    async def revoke_role(
        session: SessionDep, principal: PrincipalDep, grant_id: Id
    ) -> RoleGrantOut:
        grant = await invites.revoke_by_official(session, principal, grant_id)
        return RoleGrantOut.of(grant)

    _add_council_routes(router)
    return router


def _poll_sender(request: Request) -> PollSender | None:
    """The process's council poll sender (Runtime.poll_sender); None in a process without
    one (a bare test app): the vote is stored, unsent, and a warning logged."""
    sender: PollSender | None = getattr(request.app.state.runtime, "poll_sender", None)
    return sender


class ConveneBody(BaseModel):
    """Put candidates (suggestions in `candidate`) to the community's residents' council."""

    model_config = ConfigDict(extra="forbid")

    community_id: BodyId
    candidate_ids: list[BodyId] = Field(min_length=1, max_length=rules.MAX_VOTE_CANDIDATES)
    closes_at: AwareDatetime = Field(
        description="ISO 8601 with a UTC offset (a time without one is refused), within "
        f"{rules.MAX_VOTE_DAYS} days"
    )
    quorum_pct: int | None = Field(
        default=None,
        ge=0,
        le=99,
        description="strictly more than this % of the council must vote; default: the "
        "community's rules, which a vote may make stricter but not looser",
    )
    threshold_pct: int | None = Field(
        default=None,
        ge=0,
        le=99,
        description="strictly more than this % of the votes cast must agree; default: the "
        "community's rules, which a vote may make stricter but not looser",
    )


class CommunityBrief(BaseModel):
    id: int
    name: str


class BallotOut(BaseModel):
    """One answer: who (an opaque person id), what, and whether it counted."""

    person_id: int | None = Field(description="none for someone the bot has no record of")
    choice: Choice | None = Field(description="none: the answer was retracted")
    counted: bool
    ignored_reason: str | None = Field(description="`not_member` or `late` when not counted")
    at: datetime


class VoteItemOut(BaseModel):
    position: int
    suggestion_id: int
    number: str
    title: str
    status: State = Field(description="the suggestion's status now")
    agree: int
    against: int
    abstain: int
    voters: int
    outcome: VoteOutcome | None = Field(description="once the vote is closed")
    polls_sent: int
    send_error: str | None = Field(description="what Telegram said when it refused a poll")
    not_voted: list[int] = Field(description="person ids of council members yet to answer")
    ballots: list[BallotOut] = Field(description="who voted how (officials only)")


class CouncilVoteOut(BaseModel):
    """A council vote as officials see it; counts are live while it is open."""

    id: int
    community: CommunityBrief
    status: VoteStatus
    convened_at: datetime
    closes_at: datetime
    closed_at: datetime | None
    quorum_pct: int
    threshold_pct: int
    council_size: int
    delivery: Literal["council_group", "private"] = Field(
        description="polls in the council's group chat, or to each member privately"
    )
    items: list[VoteItemOut]

    @classmethod
    def of(cls, detail: council.VoteDetail) -> CouncilVoteOut:
        vote = detail.vote
        polls: dict[int, int] = {}
        for poll in detail.polls:
            polls[poll.item_id] = polls.get(poll.item_id, 0) + 1
        items = []
        for item in vote.items:
            agree, against, abstain = detail.counts.get(item.id, (0, 0, 0))
            items.append(
                VoteItemOut(
                    position=item.position,
                    suggestion_id=item.suggestion_id,
                    number=item.suggestion.number,
                    title=item.suggestion.title,
                    status=item.suggestion.status,
                    agree=agree,
                    against=against,
                    abstain=abstain,
                    voters=agree + against + abstain,
                    outcome=item.outcome,
                    polls_sent=polls.get(item.id, 0),
                    send_error=item.send_error,
                    not_voted=detail.not_voted.get(item.id, []),
                    ballots=[
                        BallotOut(
                            person_id=b.person_id,
                            choice=b.choice,
                            counted=b.counted,
                            ignored_reason=b.ignored_reason,
                            at=b.at,
                        )
                        for b in detail.ballots
                        if b.item_id == item.id
                    ],
                )
            )
        return cls(
            id=vote.id,
            community=CommunityBrief(id=vote.community.id, name=vote.community.name),
            status=vote.status,
            convened_at=vote.convened_at,
            closes_at=vote.closes_at,
            closed_at=vote.closed_at,
            quorum_pct=vote.quorum_pct,
            threshold_pct=vote.threshold_pct,
            council_size=vote.council_size,
            delivery="council_group" if vote.council_chat_id is not None else "private",
            items=items,
        )


async def _detail(session: SessionDep, principal: Principal, vote_id: int) -> council.VoteDetail:
    detail = await council.vote_detail(session, vote_id, principal=principal)
    if detail is None:
        raise RuleViolation("unknown_vote", "no such council vote")
    return detail


def _add_council_routes(router: APIRouter) -> None:
    @router.post(
        "/council-votes",
        response_model=CouncilVoteOut,
        status_code=status.HTTP_201_CREATED,
        summary="Convene a council vote on candidates",
        description="The candidates move to `council_vote`; the council as it stands now is "
        "who may vote. Sending the polls (to the council's group, or to each member privately) "
        "starts before this answers; `GET /api/v1/council-votes/{id}` then shows each item's "
        "`polls_sent`, and `send_error` for a poll Telegram refused.",
        responses=error_responses(401, 403, 404, 409, 422),
    )
    async def convene(
        request: Request, session: SessionDep, principal: PrincipalDep, body: ConveneBody
    ) -> CouncilVoteOut:
        vote = await council.convene(
            session,
            principal,
            council.ConveneRequest(
                community_id=body.community_id,
                suggestion_ids=list(body.candidate_ids),
                closes_at=body.closes_at,
                quorum_pct=body.quorum_pct,
                threshold_pct=body.threshold_pct,
            ),
        )
        await start_sending(_poll_sender(request), vote.id)
        return CouncilVoteOut.of(await _detail(session, principal, vote.id))

    @router.get(
        "/council-votes",
        response_model=list[CouncilVoteOut],
        summary="Council votes in the token's scope, newest first",
        responses=error_responses(401, 403, 404, 422),
    )
    async def list_votes(
        session: SessionDep,
        principal: PrincipalDep,
        community: CommunityQuery = None,
        status: Annotated[VoteStatus | None, Query()] = None,
        limit: PageSizeQuery = DEFAULT_PAGE_SIZE,
    ) -> list[CouncilVoteOut]:
        votes = await council.list_votes(
            session, principal, community_id=community, status=status, limit=limit
        )
        return [CouncilVoteOut.of(d) for d in await council.vote_details(session, votes)]

    @router.get(
        "/council-votes/{vote_id}",
        response_model=CouncilVoteOut,
        summary="One council vote: counts, outcomes, and who voted how",
        responses=error_responses(401, 403, 404, 422),
    )
    async def get_vote(session: SessionDep, principal: PrincipalDep, vote_id: Id) -> CouncilVoteOut:
        return CouncilVoteOut.of(await _detail(session, principal, vote_id))
