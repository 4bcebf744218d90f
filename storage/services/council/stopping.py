"""Stopping a closed vote's polls (stopPoll), resumably. The replica that closes a vote stops
its polls after the commit, but it may stop first (a rolling deploy cancels its background
work, a crash), and the polls would stay open in the group until their close_date (for an
early close, the original deadline, days away; for a poll sent without one, for ever):
members go on answering, and Telegram's totals drift from the announced result. So the polls
a closed vote still has running are found again by a job (votes_with_running_polls), and the
stopping is claimed with a lease (claim_poll_stopping) so that one replica does it.

The lease is the vote's `polls_lease_until`, which serves sending while the vote is open
(closing.claim_poll_sending, which takes open votes only): a vote closed while its polls are
still being sent is stopped once that run has let go of the lease. A run that stops before
its end lets go of its lease (sending.release_poll_lease); one that could not stop every poll
keeps it, so the rest are tried again when it runs out, not on every tick."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import CouncilPoll, CouncilVote, CouncilVoteItem, VoteStatus
from storage.services.council.common import lease_free

# Long enough for a vote's polls at a group's pace (20 a minute), short enough that polls a
# replica could not stop (a 5xx, a chat gone for now) are tried again soon.
POLL_STOPPING_LEASE = timedelta(minutes=5)
# How long after a close its polls are still looked after: what two days of retries could not
# stop (a chat that shut the bot out, say) is given up, not tried for ever. A poll sent with a
# close_date (most are) closes by itself then anyway.
POLL_STOPPING_WINDOW = timedelta(days=2)


def _running_polls(vote_id: Any) -> Any:
    """The vote's polls the bot posted (a recognised one has no message, so it cannot be
    stopped: its close_date closes it) and has not stopped yet."""
    return (
        select(CouncilPoll.chat_id, CouncilPoll.message_id)
        .join(CouncilVoteItem, CouncilVoteItem.id == CouncilPoll.item_id)
        .where(
            CouncilVoteItem.vote_id == vote_id,
            CouncilPoll.stopped_at.is_(None),
            CouncilPoll.message_id.is_not(None),
        )
    )


async def votes_with_running_polls(
    session: AsyncSession, now: datetime, *, window: timedelta = POLL_STOPPING_WINDOW
) -> list[int]:
    """Closed votes (within `window` of their close) with polls still running and whom no
    live lease covers: what a replica that stopped before it stopped them left behind, and a
    poll recorded after the close (a send in flight when the vote closed)."""
    query = (
        select(CouncilVote.id)
        .where(
            CouncilVote.status == VoteStatus.CLOSED,
            CouncilVote.closed_at >= now - window,
            lease_free(now),
            _running_polls(CouncilVote.id).exists(),
        )
        .order_by(CouncilVote.id)
    )
    return list((await session.scalars(query)).all())


async def claim_poll_stopping(
    session: AsyncSession, vote_id: int, *, now: datetime, lease: timedelta = POLL_STOPPING_LEASE
) -> list[tuple[int, int]] | None:
    """Take the right to stop a closed vote's polls until `now + lease` (a compare-and-set, so
    of several replicas one stops them; a lease left by one that died lets another finish).
    The polls to stop, (chat id, message id) in the vote's order; None when another replica
    holds the lease or no poll is left running. Commits."""
    result: Any = await session.execute(
        update(CouncilVote)
        .where(
            CouncilVote.id == vote_id,
            CouncilVote.status == VoteStatus.CLOSED,
            lease_free(now),
            _running_polls(CouncilVote.id).exists(),
        )
        .values(polls_lease_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        await session.rollback()
        return None
    rows = await session.execute(
        _running_polls(vote_id).order_by(CouncilVoteItem.position, CouncilPoll.chat_id)
    )
    polls = [(int(c), int(m)) for c, m in rows.all() if m is not None]
    await session.commit()
    return polls
