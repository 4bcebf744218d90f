"""Polls the store does not know, and the two ways a poll's answers reach the store.

An answer to an unknown poll (an orphan of a send in doubt, or one whose record_poll has not
committed yet) is kept by record_answer (CouncilStrayAnswer), not dropped, and counted once the
poll is known: by record_poll when the bot's sendPoll is answered, or by recognise_poll when a
`poll` update names its candidate. Unknown poll ids and their answers go after STRAY_RETENTION
(prune_strays).

A kept answer keeps the Telegram update that carried it and when it was given (on the
database's clock unless the caller says), and is counted as such: in update order, each as of
when it was given, an older one changing nothing that a newer one set (see counting)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage.db import operation, upsert
from storage.models import (
    CouncilPoll,
    CouncilStrayAnswer,
    CouncilStrayPoll,
    CouncilVote,
    CouncilVoteItem,
    PollSendState,
    Suggestion,
    VoteStatus,
    db_now,
    utcnow,
)
from storage.rules import RuleViolation
from storage.services.council.common import _record_vote_event
from storage.services.council.counting import AnswerResult, _answer_known, everyone_voted
from storage.services.council.sending import (
    POLL_RECOGNISED,
    _set_send,
    _settle_send_error,
    unsettled_poll_sends,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecognisedPoll:
    """A poll the bot posted without learning it (an uncertain send), now recorded."""

    vote_id: int
    item_id: int
    chat_id: int
    everyone_voted: bool  # after its kept answers were counted: the bot may close early


async def _hold_stray(
    session: AsyncSession, poll_id: str, item_id: int | None = None
) -> tuple[int | None, datetime]:
    """Take the poll id's CouncilStrayPoll row (creating it), naming its candidate `item_id`
    if given: a row lock until the commit (SQLite: the writer lock), which serialises keeping
    an answer to the poll with recording it. Returns the candidate a `poll` update named, and
    the database's time (when an answer being kept was given)."""
    stmt = upsert(session, CouncilStrayPoll).values(
        poll_id=poll_id, item_id=item_id, first_at=utcnow()
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["poll_id"],
        set_={"item_id": func.coalesce(stmt.excluded.item_id, CouncilStrayPoll.item_id)},
    ).returning(CouncilStrayPoll.item_id, db_now())
    found, at = (await session.execute(stmt)).one()
    return (int(found) if found is not None else None), at


async def _count_strays(session: AsyncSession, poll_id: str) -> None:
    """The poll is known now: record the answers kept for it, in the order of their updates
    (those whose update is not known first, as they came), each as of when it was given (so
    one given before the deadline counts), and forget it as a stray. Under _hold_stray.
    The ballot's upsert orders them too; going in order makes each count as it was meant
    (a member's older answer given in time, their newer one late: the older one stands)."""
    kept = (
        await session.execute(
            delete(CouncilStrayAnswer)
            .where(CouncilStrayAnswer.poll_id == poll_id)
            .returning(
                CouncilStrayAnswer.id,
                CouncilStrayAnswer.telegram_id,
                CouncilStrayAnswer.option_ids,
                CouncilStrayAnswer.at,
                CouncilStrayAnswer.update_id,
            )
            .execution_options(synchronize_session=False)
        )
    ).all()

    def order(row: Any) -> tuple[bool, int, int]:
        return row.update_id is not None, int(row.update_id or 0), int(row.id)

    for row in sorted(kept, key=order):
        options = [int(o) for o in row.option_ids]
        await _answer_known(session, poll_id, int(row.telegram_id), options, row.at, row.update_id)
    await _drop_stray(session, poll_id)


async def _drop_stray(session: AsyncSession, poll_id: str) -> None:
    """Forget the poll id as a stray (its answers go with it: they were counted)."""
    await session.execute(
        delete(CouncilStrayPoll)
        .where(CouncilStrayPoll.poll_id == poll_id)
        .execution_options(synchronize_session=False)
    )


# How long an unknown poll id and its kept answers are kept: past any vote they could belong
# to (rules.MAX_VOTE_DAYS), for a season, for whoever reconciles a lost poll by hand.
STRAY_RETENTION = timedelta(days=90)


async def prune_strays(session: AsyncSession, now: datetime) -> int:
    """Forget the unknown poll ids first heard of more than STRAY_RETENTION before `now`, and
    their kept answers (cascade): no vote is open that long, so none can be recognised any
    more. Idempotent (the nightly job on every replica). How many. Commits."""
    result: Any = await session.execute(
        delete(CouncilStrayPoll)
        .where(CouncilStrayPoll.first_at < now - STRAY_RETENTION)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return int(result.rowcount or 0)


def _chat_of_orphan(vote: CouncilVote, unsure: list[int], answerers: list[int]) -> int | None:
    """Where an uncertain send's poll must be: the council's group, or the one member's
    private chat it can be (the only one in doubt, or the one whose member answered it)."""
    if vote.council_chat_id is not None:
        return vote.council_chat_id if vote.council_chat_id in unsure else None
    if len(unsure) == 1:
        return unsure[0]
    found = {a for a in answerers if a in unsure}
    return found.pop() if len(found) == 1 else None


async def _recognise(session: AsyncSession, poll_id: str, item_id: int) -> RecognisedPoll | None:
    """Record an unknown poll, named by a `poll` update as `item_id`'s, when the vote is open,
    a send of that item is in doubt and which one it is can be told (see _chat_of_orphan).
    Then count its kept answers. Under _hold_stray; flushes only."""
    item = await session.get(CouncilVoteItem, item_id, options=[selectinload(CouncilVoteItem.vote)])
    if item is None or item.vote.status is not VoteStatus.OPEN:
        return None
    vote = item.vote
    unsure = [c for _, c in await unsettled_poll_sends(session, vote.id, item_id=item_id)]
    answerers = list(
        (
            await session.scalars(
                select(CouncilStrayAnswer.telegram_id).where(CouncilStrayAnswer.poll_id == poll_id)
            )
        ).all()
    )
    chat_id = _chat_of_orphan(vote, unsure, answerers)
    if chat_id is None:
        log.warning(
            "poll %s of vote %s item %s: cannot tell its chat yet (%s in doubt)",
            poll_id,
            vote.id,
            item_id,
            unsure,
        )
        return None
    session.add(CouncilPoll(poll_id=poll_id, item_id=item_id, chat_id=chat_id, message_id=None))
    await session.flush()
    await _set_send(session, item_id, chat_id, PollSendState.SENT)
    _record_vote_event(
        session,
        vote,
        POLL_RECOGNISED,
        public=False,
        details={"item_id": item_id, "chat_id": chat_id, "poll_id": poll_id},
    )
    log.info("poll %s recognised as vote %s item %s in %s", poll_id, vote.id, item_id, chat_id)
    await _count_strays(session, poll_id)
    await _settle_send_error(session, item)
    return RecognisedPoll(vote.id, item_id, chat_id, await everyone_voted(session, vote.id))


async def _is_known(session: AsyncSession, poll_id: str) -> bool:
    found = await session.scalar(select(CouncilPoll.item_id).where(CouncilPoll.poll_id == poll_id))
    return found is not None


async def recognise_poll(
    session: AsyncSession, poll_id: str, question: str, *, close_date: datetime | None = None
) -> RecognisedPoll | None:
    """A `poll` update (Telegram sends the bot one for each change of a poll it posted): if
    the poll is unknown and is a council poll (its question starts with the number of a
    candidate of an open vote, and its close_date, if any, is that vote's deadline) whose
    send is in doubt, record it as that candidate's and count the answers kept for it; when
    its chat cannot be told yet (private delivery, several in doubt), the candidate is kept
    for the answer that tells it. None otherwise. A known poll (the usual case) costs one
    lookup by primary key. Flushes only, like record_answer."""
    if await _is_known(session, poll_id):
        return None
    number = question.split(" ", 1)[0]
    rows = await session.execute(
        select(CouncilVoteItem.id, CouncilVoteItem.vote_id, CouncilVote.closes_at)
        .join(Suggestion, Suggestion.id == CouncilVoteItem.suggestion_id)
        .join(CouncilVote, CouncilVote.id == CouncilVoteItem.vote_id)
        .where(Suggestion.number == number, CouncilVote.status == VoteStatus.OPEN)
    )
    found = [
        (int(item_id), int(vote_id))
        for item_id, vote_id, closes_at in rows.all()
        if close_date is None or abs((close_date - closes_at).total_seconds()) < 2
    ]
    if len(found) != 1 or not await unsettled_poll_sends(session, found[0][1], item_id=found[0][0]):
        log.info("poll %s (%r) is not a council poll in doubt", poll_id, question[:80])
        return None
    item_id = found[0][0]
    await _hold_stray(session, poll_id, item_id)
    if await _is_known(session, poll_id):  # recorded while this waited
        await _drop_stray(session, poll_id)
        return None
    return await _recognise(session, poll_id, item_id)


@operation
async def record_poll(
    session: AsyncSession, item_id: int, poll_id: str, chat_id: int, message_id: int
) -> None:
    """The bot sent an item's poll: remember which poll carries which candidate (idempotent
    for the same poll id), mark its send done, and count the answers kept while it was
    unknown (they may come before this commits). A poll recognised earlier from a `poll`
    update gets its message id. Commits, so answers arriving next find it."""
    item = await session.get(CouncilVoteItem, item_id)
    if item is None:
        raise RuleViolation("unknown_vote_item", "no such vote item")
    await _hold_stray(session, poll_id)
    inserted = await session.scalar(
        upsert(session, CouncilPoll)
        .values(poll_id=poll_id, item_id=item_id, chat_id=chat_id, message_id=message_id)
        .on_conflict_do_nothing(index_elements=["poll_id"])
        .returning(CouncilPoll.poll_id)
    )
    if inserted is None:
        await session.execute(
            update(CouncilPoll)
            .where(CouncilPoll.poll_id == poll_id, CouncilPoll.message_id.is_(None))
            .values(chat_id=chat_id, message_id=message_id)
            .execution_options(synchronize_session=False)
        )
    await _set_send(session, item_id, chat_id, PollSendState.SENT)
    await _count_strays(session, poll_id)
    await _settle_send_error(session, item)
    await session.commit()


async def record_answer(
    session: AsyncSession,
    poll_id: str,
    telegram_id: int,
    option_ids: list[int],
    *,
    update_id: int | None = None,
    now: datetime | None = None,
) -> AnswerResult | None:
    """Record a poll_answer, carried by Telegram update `update_id`, given at `now` (None:
    the database's time, so that replicas' clocks need not agree on the deadline). None if
    the poll is not (yet) known as a council poll: then the answer is kept
    (CouncilStrayAnswer), never dropped, and counted as of when it was given once the poll is
    known (record_poll, recognise_poll).

    A council member's answer while the vote is open and before closes_at counts, replacing
    their earlier one; [] retracts it. Anyone else's answer is kept but never counted
    ("not_member"); an answer after the deadline is ignored ("late") and leaves the member's
    earlier answer as it was. The same answer twice changes nothing.

    Answers count in the order of their updates, not of their handling: one from an older
    update than the ballot's changes nothing ("superseded"; see counting._PUT_BALLOT).
    Without `update_id` (a caller that has no update, such as tests and tools replaying
    answers) the answer is unordered: it replaces an unordered ballot, as every answer did
    before update ids were kept, and never one an update recorded (unless that one is older
    than counting.REORDER_WINDOW). Flushes only: the webhook's per-update transaction
    commits it.
    """
    result = await _answer_known(session, poll_id, telegram_id, option_ids, now, update_id)
    if result is not None:
        return result
    seen_item, held_at = await _hold_stray(session, poll_id)
    at = now if now is not None else held_at
    result = await _answer_known(session, poll_id, telegram_id, option_ids, at, update_id)
    if result is not None:  # recorded while this waited
        await _drop_stray(session, poll_id)
        return result
    session.add(
        CouncilStrayAnswer(
            poll_id=poll_id,
            telegram_id=telegram_id,
            option_ids=list(option_ids),
            at=at,
            update_id=update_id,
        )
    )
    await session.flush()
    # A `poll` update named its candidate already: this answer may tell its chat.
    if seen_item is not None and await _recognise(session, poll_id, seen_item) is not None:
        return await _answer_known(session, poll_id, telegram_id, option_ids, at, update_id)
    log.warning(
        "answer of %s %r to unknown poll %s at %s kept",
        telegram_id,
        option_ids,
        poll_id,
        at.isoformat(),
    )
    return None
