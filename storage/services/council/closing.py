"""Closing a vote exactly once (close_vote): the tally, rules.decide, each suggestion moved
and the results announced through the outbox in the same transaction. Also what the
scheduler asks: the votes due, and the lease under which one replica sends a vote's polls.

Whether a vote is due is decided on the database's clock (models.db_now) unless the caller
says what time it is, as counting decides whether an answer is late: with several replicas,
one whose clock runs ahead would otherwise close a vote before its deadline, and count as
late the answers given before it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import rules
from storage.db import operation, upsert
from storage.models import (
    Ballot,
    ChatPurpose,
    CouncilPoll,
    CouncilPollSend,
    CouncilVote,
    CouncilVoteItem,
    Follower,
    NotificationKind,
    VoteStatus,
    db_now,
)
from storage.rules import Choice, RuleViolation, State, VoteOutcome
from storage.services import notifications
from storage.services.audit import Actor
from storage.services.chats import bound_chats
from storage.services.council.common import (
    _record_vote_event,
    _tally,
    _tell_followers,
    get_vote,
    lease_free,
)
from storage.services.council.counting import everyone_voted
from storage.services.suggestions import apply


@dataclass
class CloseResult:
    vote: CouncilVote
    outcomes: dict[int, VoteOutcome]  # item id → outcome
    polls_to_stop: list[tuple[int, int]]  # (chat_id, message_id), stop after the commit


async def due_vote_ids(session: AsyncSession, now: datetime | None = None) -> list[int]:
    """Open votes whose deadline has passed at `now` (None: the database's time), also those
    that fell due while the service was down, the longest overdue first. The scheduler calls
    close_vote for each."""
    query = (
        select(CouncilVote.id)
        .where(
            CouncilVote.status == VoteStatus.OPEN,
            CouncilVote.closes_at <= (now if now is not None else db_now()),
        )
        .order_by(CouncilVote.closes_at, CouncilVote.id)
    )
    return list((await session.scalars(query)).all())


POLL_SENDING_LEASE = timedelta(minutes=10)


async def claim_poll_sending(
    session: AsyncSession, vote_id: int, *, now: datetime, lease: timedelta = POLL_SENDING_LEASE
) -> bool:
    """Take the right to send an open vote's polls until `now + lease`. A compare-and-set, so
    of several replicas one sends; a lease left by one that died lets another finish. Commits."""
    result: Any = await session.execute(
        update(CouncilVote)
        .where(
            CouncilVote.id == vote_id,
            CouncilVote.status == VoteStatus.OPEN,
            CouncilVote.polls_sent_at.is_(None),
            lease_free(now),
        )
        .values(polls_lease_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return bool(result.rowcount == 1)


async def finish_poll_sending(
    session: AsyncSession, vote_id: int, *, now: datetime, until: datetime | None = None
) -> bool:
    """A run under the sending lease is over: the lease is let go, and the vote's polls count
    as sent (resume_poll_sending leaves it alone) if each candidate has a send, whatever came
    of it, to the council's group as it is now. A group upgraded to a supergroup while the run
    sent to its old id (chats.migrate_chat) has none yet: resume_poll_sending sends them
    there. Polls sent to members privately go to chats that do not move. With `until` (the
    lease as the run read it, sending.held_poll_lease), only while the run still holds it: a
    run that outlived its lease leaves the next run's alone, and that run finishes. Whether
    the polls count as sent. Commits."""
    group = await session.scalar(
        select(CouncilVote.council_chat_id).where(CouncilVote.id == vote_id)
    )
    done = True
    if group is not None:
        missing = await session.scalar(
            select(func.count())
            .select_from(CouncilVoteItem)
            .where(
                CouncilVoteItem.vote_id == vote_id,
                ~select(CouncilPollSend.item_id)
                .where(
                    CouncilPollSend.item_id == CouncilVoteItem.id,
                    CouncilPollSend.chat_id == group,
                )
                .exists(),
            )
        )
        done = not missing
    values: dict[str, Any] = {"polls_lease_until": None} | ({"polls_sent_at": now} if done else {})
    held = [CouncilVote.polls_lease_until == until] if until is not None else []
    await session.execute(
        update(CouncilVote)
        .where(CouncilVote.id == vote_id, *held)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return done


async def votes_with_unsent_polls(session: AsyncSession, now: datetime) -> list[int]:
    """Open votes whose polls were never fully sent and whom no live lease covers: what a
    replica that died while sending left behind."""
    query = (
        select(CouncilVote.id)
        .where(
            CouncilVote.status == VoteStatus.OPEN,
            CouncilVote.closes_at > now,
            CouncilVote.polls_sent_at.is_(None),
            lease_free(now),
        )
        .order_by(CouncilVote.id)
    )
    return list((await session.scalars(query)).all())


def result_params(vote: CouncilVote, not_counted: int = 0) -> dict[str, Any]:
    """`vote_result`'s params: counts and outcomes per candidate, never who voted how.
    `not_counted`: answers the polls show but the tally leaves out (not a member, late)."""
    return {
        "not_counted": not_counted,
        "vote_id": vote.id,
        "community_id": vote.community_id,
        "community": vote.community.name,
        "closes_at": vote.closes_at.isoformat(),
        "closed_at": vote.closed_at.isoformat() if vote.closed_at else None,
        "council_size": vote.council_size,
        "quorum_pct": vote.quorum_pct,
        "threshold_pct": vote.threshold_pct,
        "items": [
            {
                "item_id": item.id,
                "position": item.position,
                "suggestion_id": item.suggestion_id,
                "number": item.suggestion.number,
                "title": item.suggestion.title,
                "agree": item.agree,
                "against": item.against,
                "abstain": item.abstain,
                "voters": item.agree + item.against + item.abstain,
                "outcome": item.outcome.value if item.outcome else None,
            }
            for item in vote.items
        ],
    }


@operation
async def close_vote(
    session: AsyncSession, vote_id: int, *, now: datetime | None = None
) -> CloseResult | None:
    """Close a vote once: at its deadline, or earlier when every member has voted. `now`
    None: the database's time (the one every replica agrees on), read in the claim itself.

    Claimed by UPDATE … SET status='closed' WHERE id=:id AND status='open' RETURNING id: on
    PostgreSQL a concurrent closer waits on the row lock, then matches nothing; on SQLite
    writers are serialised. None when someone else closed it (or there is no such vote).
    Raises RuleViolation("vote_not_due") before the deadline unless everyone has voted.

    Then, in the same transaction: the tally of counted ballots per item, rules.decide,
    each suggestion moved by the system (RESOLVE, NOT_PASS, or NO_QUORUM back to CANDIDATE)
    with public counts, and the outbox: `vote_result` to the council's group (or each member
    privately) and to the community's groups, `suggestion_status` to followers. Commits.
    The caller stops `polls_to_stop` after the commit, best effort.
    """
    claimed = (
        await session.execute(
            update(CouncilVote)
            .where(CouncilVote.id == vote_id, CouncilVote.status == VoteStatus.OPEN)
            .values(status=VoteStatus.CLOSED, closed_at=now if now is not None else db_now())
            .returning(CouncilVote.closed_at)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if claimed is None:
        await session.rollback()
        return None
    now = claimed[0]
    assert now is not None
    vote = await get_vote(session, vote_id)
    assert vote is not None
    if now < vote.closes_at and not await everyone_voted(session, vote_id):
        await session.rollback()
        raise RuleViolation("vote_not_due", "the vote is open until its deadline")
    counts = await _tally(session, [item.id for item in vote.items])
    outcomes: dict[int, VoteOutcome] = {}
    moved: list[CouncilVoteItem] = []
    for item in vote.items:
        tally = counts[item.id]
        item.agree, item.against, item.abstain = (
            tally[Choice.AGREE],
            tally[Choice.AGAINST],
            tally[Choice.ABSTAIN],
        )
        outcome = rules.decide(
            item.agree,
            item.against,
            item.abstain,
            vote.council_size,
            vote.quorum_pct,
            vote.threshold_pct,
        )
        item.outcome = outcomes[item.id] = outcome
        public_counts = {
            "vote_id": vote.id,
            "outcome": outcome.value,
            "agree": item.agree,
            "against": item.against,
            "abstain": item.abstain,
            "council_size": vote.council_size,
            "quorum_pct": vote.quorum_pct,
            "threshold_pct": vote.threshold_pct,
        }
        # A candidate cancelled by the street office during the vote keeps its tally only.
        if item.suggestion.status is State.COUNCIL_VOTE:
            await apply(
                session,
                item.suggestion,
                rules.OUTCOME_ACTION[outcome],
                Actor.system(),
                details=public_counts,
            )
            moved.append(item)
    await session.flush()
    _record_vote_event(
        session,
        vote,
        "close",
        details={
            "early": now < vote.closes_at,
            "items": [
                {
                    "number": item.suggestion.number,
                    "agree": item.agree,
                    "against": item.against,
                    "abstain": item.abstain,
                    "outcome": item.outcome.value if item.outcome else None,
                }
                for item in vote.items
            ],
        },
    )
    await _announce(session, vote, moved)
    await _voters_follow(session, moved)
    polls = await session.execute(
        select(CouncilPoll.chat_id, CouncilPoll.message_id)
        .join(CouncilVoteItem, CouncilVoteItem.id == CouncilPoll.item_id)
        .where(
            CouncilVoteItem.vote_id == vote.id,
            CouncilPoll.stopped_at.is_(None),
            CouncilPoll.message_id.is_not(None),  # a recognised poll cannot be stopped
        )
        .order_by(CouncilVoteItem.position, CouncilPoll.chat_id)
    )
    to_stop = [(int(c), int(m)) for c, m in polls.all() if m is not None]
    await session.commit()
    return CloseResult(vote, outcomes, to_stop)


async def _not_counted(session: AsyncSession, vote_id: int) -> int:
    """Answers kept but not counted (someone not on the council, or after the deadline): the
    polls' own totals include them, so the result says how many there were."""
    found = await session.scalar(
        select(func.count())
        .select_from(Ballot)
        .join(CouncilVoteItem, CouncilVoteItem.id == Ballot.item_id)
        .where(
            CouncilVoteItem.vote_id == vote_id,
            Ballot.counted.is_(False),
            Ballot.choice.is_not(None),
        )
    )
    return int(found or 0)


async def _voters_follow(session: AsyncSession, moved: list[CouncilVoteItem]) -> None:
    """The members whose answer on an item counted follow its suggestion from now on: everyone
    who voted on a project hears of each status change (PROGRAMME.md). After `_announce`, so
    that they hear of this one from the results, not once more each."""
    if not moved:
        return
    voters = await session.execute(
        select(CouncilVoteItem.suggestion_id, Ballot.person_id)
        .join(Ballot, Ballot.item_id == CouncilVoteItem.id)
        .where(
            CouncilVoteItem.id.in_([item.id for item in moved]),
            Ballot.counted.is_(True),
            Ballot.choice.is_not(None),
            Ballot.person_id.is_not(None),
        )
    )
    rows = [{"suggestion_id": s, "person_id": p} for s, p in voters.all()]
    if rows:
        await session.execute(
            upsert(session, Follower)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["suggestion_id", "person_id"])
        )


async def _announce(session: AsyncSession, vote: CouncilVote, moved: list[CouncilVoteItem]) -> None:
    params = result_params(vote, await _not_counted(session, vote.id))
    key = f"vote:{vote.id}:result"
    if vote.council_chat_id is not None:
        await notifications.enqueue(
            session,
            chat_id=vote.council_chat_id,
            kind=NotificationKind.VOTE_RESULT,
            params=params | {"audience": "council"},
            dedupe_key=f"{key}:{vote.council_chat_id}",
        )
    else:  # no council group: each member in their private chat
        await notifications.notify_people(
            session,
            [member.person_id for member in vote.members],
            NotificationKind.VOTE_RESULT,
            params | {"audience": "council"},
            dedupe_prefix=key,
        )
    for chat in await bound_chats(session, vote.community_id, ChatPurpose.COMMUNITY):
        await notifications.enqueue(
            session,
            chat_id=chat.id,
            kind=NotificationKind.VOTE_RESULT,
            params=params | {"audience": "community"},
            dedupe_key=f"{key}:{chat.id}",
        )
    for item in moved:
        await _tell_followers(
            session,
            vote,
            item.suggestion,
            "closed",
            {
                "outcome": item.outcome.value if item.outcome else None,
                "agree": item.agree,
                "against": item.against,
                "abstain": item.abstain,
            },
        )
