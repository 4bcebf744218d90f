"""Counting answers to known polls: a member's ballot per candidate (_answer_known, under a
shared lock on the vote, so that it and the close serialise), and whether everyone has voted
(the vote may close early). record_answer, which keeps an answer to a poll not known yet, is
in strays.

Answers are ordered by the Telegram update that carried them, not by when a replica got round
to them: Telegram may deliver updates out of order, redeliver one after a 503, and with
several replicas a later answer may simply be handled first. A poll_answer has no chat, so
nothing serialises a voter's answers before they reach the ballot's upsert, which therefore
changes a ballot only for an answer from the same or a later update (_PUT_BALLOT).

Whether an answer is late is decided on the database's clock (models.db_now), read in the
statement that locks the vote, unless the caller says when it was given: replicas' clocks
need not agree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, ScalarSelect, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import rules
from storage.db import insert_on_conflict, take_write_lock
from storage.models import (
    Ballot,
    CouncilPoll,
    CouncilVote,
    CouncilVoteItem,
    CouncilVoteMember,
    Person,
    VoteStatus,
    db_now,
)
from storage.services.council.common import _COUNTED_CHOICE

log = logging.getLogger(__name__)


@dataclass
class AnswerResult:
    vote_id: int
    counted: bool
    # When not counted: "not_member", "late", "bad_option", or "superseded" (an answer from an
    # older update than the one the ballot holds: nothing was changed).
    ignored_reason: str | None
    everyone_voted: bool  # every member has a choice on every item: the bot may close early


async def _lock_vote(session: AsyncSession, vote_id: int) -> tuple[CouncilVote, datetime] | None:
    """Read the vote's status under a shared lock, so that an answer and the close serialise:
    the close's UPDATE waits for answers in flight (and counts them), and an answer arriving
    after it sees CLOSED. SQLite: the writer lock first (storage.db.take_write_lock). With the
    database's time, which costs nothing more here."""
    await take_write_lock(session, CouncilVote.status, CouncilVote.id == vote_id)
    query = (
        select(CouncilVote, db_now())
        .where(CouncilVote.id == vote_id)
        .with_for_update(read=True, of=CouncilVote)
        .execution_options(populate_existing=True)
    )
    row = (await session.execute(query)).first()
    return (row[0], row[1]) if row is not None else None


def _item_count(vote_id: int) -> ScalarSelect[int]:
    return select(func.count()).where(CouncilVoteItem.vote_id == vote_id).scalar_subquery()


def _choices(vote_id: int, *where: ColumnElement[bool]) -> ScalarSelect[int]:
    """How many counted choices the vote's items have (of the ballots matching `where`)."""
    return (
        select(func.count())
        .select_from(Ballot)
        .join(CouncilVoteItem, CouncilVoteItem.id == Ballot.item_id)
        .where(CouncilVoteItem.vote_id == vote_id, _COUNTED_CHOICE, *where)
        .scalar_subquery()
    )


async def everyone_voted(session: AsyncSession, vote_id: int) -> bool:
    """Every member has a choice (not retracted) on every item: the vote may close early."""
    members = select(func.count()).where(CouncilVoteMember.vote_id == vote_id).scalar_subquery()
    row = (await session.execute(select(members * _item_count(vote_id), _choices(vote_id)))).one()
    needed, have = int(row[0] or 0), int(row[1] or 0)
    return needed > 0 and have >= needed


# How long after an answer one from an older update can still come: Telegram redelivers an
# update for about a day. Past that, an update id lower than the ballot's is not an older
# update but a new one: after a week without any update, Telegram picks the next update's id
# at random (the Bot API's Update), and a vote may be open for up to 30 days.
REORDER_WINDOW = timedelta(days=2)

# Compiled once (see storage.db.insert_on_conflict): one of these runs for every poll answer.
_BALLOT_COLUMNS = (
    "item_id",
    "telegram_id",
    "person_id",
    "choice",
    "counted",
    "ignored_reason",
    "at",
    "update_id",
)
# An answer replaces the ballot only if its update is the ballot's or a later one: an older
# answer handled late changes nothing (nothing comes back). The same update again is applied
# again, so a redelivery gets the result the first delivery got (and may close the vote early
# if the first one's after-commit close was lost). An answer whose update is not known
# (update_id NULL) is unordered: it replaces a ballot that is unordered too, never an ordered
# one, whereas an ordered answer always replaces an unordered ballot. Past REORDER_WINDOW
# the order is not asked (a renumbering, see above).
_PUT_BALLOT = insert_on_conflict(
    Ballot,
    _BALLOT_COLUMNS,
    ("item_id", "telegram_id"),
    "DO UPDATE SET person_id = excluded.person_id, choice = excluded.choice, "
    "counted = excluded.counted, ignored_reason = excluded.ignored_reason, at = excluded.at, "
    "update_id = excluded.update_id "
    "WHERE ballot.update_id IS NULL OR ballot.update_id <= excluded.update_id "
    "OR ballot.at < :reorder_before",
    returning=("item_id",),
).bindparams(bindparam("reorder_before", type_=Ballot.__table__.c.at.type))
_KEEP_BALLOT = insert_on_conflict(Ballot, _BALLOT_COLUMNS, ("item_id", "telegram_id"))


async def _answer_known(
    session: AsyncSession,
    poll_id: str,
    telegram_id: int,
    option_ids: list[int],
    now: datetime | None,
    update_id: int | None,
) -> AnswerResult | None:
    """record_answer for a known poll, given at `now` (None: the database's time) by update
    `update_id` (None: not known, unordered); None when the poll is unknown."""
    found = (
        await session.execute(
            select(CouncilVoteItem.id, CouncilVoteItem.vote_id)
            .join(CouncilPoll, CouncilPoll.item_id == CouncilVoteItem.id)
            .where(CouncilPoll.poll_id == poll_id)
        )
    ).first()
    if found is None:
        return None
    item_id, vote_id = int(found[0]), int(found[1])
    locked = await _lock_vote(session, vote_id)
    assert locked is not None  # the item's foreign key
    vote, db_time = locked
    at = now if now is not None else db_time
    try:
        choice = rules.choice_of(option_ids)
    except ValueError:
        return AnswerResult(vote.id, False, "bad_option", False)
    member = (
        await session.scalars(
            select(CouncilVoteMember).where(
                CouncilVoteMember.vote_id == vote.id, CouncilVoteMember.telegram_id == telegram_id
            )
        )
    ).first()
    late = vote.status is not VoteStatus.OPEN or at >= vote.closes_at
    reason: str | None = None
    if member is None:
        reason = "not_member"  # whenever they answer: that is what matters to them
    elif late:
        reason = "late"
    person_id = member.person_id if member is not None else await _person_id(session, telegram_id)
    values = {
        "item_id": item_id,
        "telegram_id": telegram_id,
        "person_id": person_id,
        "choice": choice,
        "counted": reason is None,
        "ignored_reason": reason,
        "at": at,
        "update_id": update_id,
    }
    if member is not None and late:
        # A late member's answer as it stood at the deadline is what counts: keep it.
        await session.execute(_KEEP_BALLOT, values)
    else:
        put = values | {"reorder_before": at - REORDER_WINDOW}
        if (await session.execute(_PUT_BALLOT, put)).first() is None:
            log.info(
                "answer of %s to poll %s (update %s) is older than the one recorded: ignored",
                telegram_id,
                poll_id,
                update_id,
            )
            return AnswerResult(vote.id, False, "superseded", False)
    # Only the answer that completes its voter's ballot can complete the vote: count the whole
    # vote then, not on every answer (that count grows with the council).
    done = (
        reason is None
        and choice is not None
        and await _voter_done(session, vote.id, telegram_id)
        and await everyone_voted(session, vote.id)
    )
    return AnswerResult(vote.id, reason is None, reason, done)


async def _voter_done(session: AsyncSession, vote_id: int, telegram_id: int) -> bool:
    """This voter has a counted choice on every item of the vote."""
    answered = _choices(vote_id, Ballot.telegram_id == telegram_id)
    row = (await session.execute(select(_item_count(vote_id), answered))).one()
    return int(row[1] or 0) >= int(row[0] or 0) > 0


async def _person_id(session: AsyncSession, telegram_id: int) -> int | None:
    found = await session.scalar(select(Person.id).where(Person.telegram_id == telegram_id))
    return int(found) if found is not None else None
