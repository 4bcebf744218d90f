"""Reading votes: a voter's open votes and own choices (/votes), everything officials may see
of a vote, who voted how included (never public), and the closed results for the public
board."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage.models import (
    Ballot,
    Community,
    CouncilPoll,
    CouncilVote,
    CouncilVoteItem,
    CouncilVoteMember,
    Street,
    VoteStatus,
)
from storage.rules import Choice, RuleViolation
from storage.services import access
from storage.services.council.common import DETAIL_ROLES, _tally, _vote_options, get_vote
from storage.services.screening import scope_condition


async def open_votes_for(
    session: AsyncSession, telegram_id: int, *, now: datetime | None = None
) -> list[CouncilVote]:
    """Votes still open in which this person is a voter (/votes), soonest deadline first,
    with items, suggestions, members and community loaded. With `now`, without those whose
    deadline has passed but that are not closed yet."""
    query = (
        select(CouncilVote)
        .join(
            CouncilVoteMember,
            and_(
                CouncilVoteMember.vote_id == CouncilVote.id,
                CouncilVoteMember.telegram_id == telegram_id,
            ),
        )
        .where(CouncilVote.status == VoteStatus.OPEN)
        .options(*_vote_options())
        .order_by(CouncilVote.closes_at, CouncilVote.id)
    )
    if now is not None:
        query = query.where(CouncilVote.closes_at > now)
    return list((await session.scalars(query)).all())


async def my_choices(
    session: AsyncSession, telegram_id: int, vote_ids: list[int]
) -> dict[int, Choice | None]:
    """This person's current answers on the items of these votes (item id → choice; items
    not answered are absent, a retraction is None), for /votes."""
    if not vote_ids:
        return {}
    rows = await session.execute(
        select(Ballot.item_id, Ballot.choice)
        .join(CouncilVoteItem, CouncilVoteItem.id == Ballot.item_id)
        .where(CouncilVoteItem.vote_id.in_(vote_ids), Ballot.telegram_id == telegram_id)
    )
    return {int(i): (Choice(c) if c is not None else None) for i, c in rows.all()}


@dataclass(frozen=True, slots=True)
class BallotView:
    item_id: int
    telegram_id: int
    person_id: int | None
    choice: Choice | None  # None: retracted
    counted: bool
    ignored_reason: str | None
    at: datetime


@dataclass
class VoteDetail:
    """Everything officials may see of a vote, who voted how included (never public)."""

    vote: CouncilVote  # items (with outcome and send_error), suggestions, members, community
    ballots: list[BallotView]  # every answer kept, counted or not, by item then time
    polls: list[CouncilPoll]  # where each item's poll went
    # Counts so far from counted ballots, item id → (agree, against, abstain): while the vote
    # is open these are live; once closed they equal the items' stored counts.
    counts: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    not_voted: dict[int, list[int]] = field(default_factory=dict)  # item id → person ids


async def vote_detail(
    session: AsyncSession, vote_id: int, *, principal: access.Principal | None = None
) -> VoteDetail | None:
    """A vote for officials, ballots and all. None if there is no such vote. The officials'
    API passes its `principal`: then the vote's community must be in its scope and its role
    one that convenes (else RuleViolation role_not_allowed / out_of_scope)."""
    vote = await get_vote(session, vote_id)
    if vote is None:
        return None
    if principal is not None:
        await access.require(session, principal, vote.community_id, DETAIL_ROLES)
    return (await vote_details(session, [vote]))[0]


async def vote_details(session: AsyncSession, votes: list[CouncilVote]) -> list[VoteDetail]:
    """`votes` (loaded as get_vote and list_votes load them) with their ballots, polls and
    counts: three queries for all of them, however many there are. No scope check: the
    caller found the votes within its principal's scope."""
    item_ids = [item.id for vote in votes for item in vote.items]
    if not item_ids:
        return [VoteDetail(vote=vote, ballots=[], polls=[]) for vote in votes]
    ballots = (
        await session.scalars(
            select(Ballot).where(Ballot.item_id.in_(item_ids)).order_by(Ballot.item_id, Ballot.at)
        )
    ).all()
    polls = (
        await session.scalars(
            select(CouncilPoll)
            .where(CouncilPoll.item_id.in_(item_ids))
            .order_by(CouncilPoll.item_id, CouncilPoll.chat_id)
        )
    ).all()
    tallies = await _tally(session, item_ids)
    ballots_of: dict[int, list[Ballot]] = {i: [] for i in item_ids}
    for b in ballots:
        ballots_of[b.item_id].append(b)
    polls_of: dict[int, list[CouncilPoll]] = {i: [] for i in item_ids}
    for p in polls:
        polls_of[p.item_id].append(p)

    def detail(vote: CouncilVote) -> VoteDetail:
        ids = [item.id for item in vote.items]
        mine = [b for i in ids for b in ballots_of[i]]
        voted: dict[int, set[int]] = {i: set() for i in ids}
        for b in mine:
            if b.counted and b.choice is not None and b.person_id is not None:
                voted[b.item_id].add(b.person_id)
        return VoteDetail(
            vote=vote,
            ballots=[
                BallotView(
                    b.item_id,
                    b.telegram_id,
                    b.person_id,
                    b.choice,
                    b.counted,
                    b.ignored_reason,
                    b.at,
                )
                for b in mine
            ],
            polls=[p for i in ids for p in polls_of[i]],
            counts={
                i: (t[Choice.AGREE], t[Choice.AGAINST], t[Choice.ABSTAIN])
                for i, t in tallies.items()
                if i in voted
            },
            not_voted={
                i: [m.person_id for m in vote.members if m.person_id not in voted[i]] for i in ids
            },
        )

    return [detail(vote) for vote in votes]


async def list_votes(
    session: AsyncSession,
    principal: access.Principal,
    *,
    community_id: int | None = None,
    status: VoteStatus | None = None,
    limit: int = 50,
) -> list[CouncilVote]:
    """Votes within the principal's scope for officials, newest first, items loaded."""
    if principal.role not in DETAIL_ROLES:
        raise RuleViolation("role_not_allowed", f"{principal.role.value} may not see votes")
    query = (
        select(CouncilVote)
        .join(Community, Community.id == CouncilVote.community_id)
        .join(Street, Street.id == Community.street_id)
        .where(scope_condition(principal.scope))
        .options(*_vote_options())
        .order_by(CouncilVote.convened_at.desc(), CouncilVote.id.desc())
        .limit(max(0, min(limit, 500)))
    )
    if community_id is not None:
        await access.require(session, principal, community_id, DETAIL_ROLES)
        query = query.where(CouncilVote.community_id == community_id)
    if status is not None:
        query = query.where(CouncilVote.status == status)
    return list((await session.scalars(query)).all())


async def closed_results(
    session: AsyncSession, community_id: int | None = None, limit: int = 50
) -> list[CouncilVote]:
    """Closed votes for the public board, newest first: items carry counts and outcomes,
    and nothing here says who voted how (read only the items' columns, not `members`)."""
    query = (
        select(CouncilVote)
        .where(CouncilVote.status == VoteStatus.CLOSED)
        .options(
            selectinload(CouncilVote.items).selectinload(CouncilVoteItem.suggestion),
            selectinload(CouncilVote.community),
        )
        .order_by(CouncilVote.closed_at.desc(), CouncilVote.id.desc())
        .limit(max(0, min(limit, 500)))
    )
    if community_id is not None:
        query = query.where(CouncilVote.community_id == community_id)
    return list((await session.scalars(query)).all())
