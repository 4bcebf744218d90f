"""Sending the polls: where they go, each sendPoll claimed before it is made
(record_poll_attempt), and what came of it when no poll is known: refused (record_send_error,
safe to send again) or unknown (record_send_uncertain, never sent again automatically, the
convener told what to check). A poll sent is recorded by record_poll (in strays: it counts
the answers kept for it). A claim whose request was not made after all (its sender stopped
while waiting for its turn, a 429) is let go (release_poll_attempt), and so is the lease of a
run that stops before its end (release_poll_lease), so another replica carries on at once.

A poll to a member's private chat that Telegram refused because the bot may not write to them
(a 403: they never started the bot, or blocked it) is marked so (its `unreachable`). Once
they can be written to (they write to the bot, or unblock it), the votes that owe them polls
count as not fully sent again (reopen_polls_owed_to, reopen_for_returned_members), and the
usual sending run, under the vote's lease and each send's claim, sends them what they miss."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage import rules
from storage.db import operation, upsert
from storage.models import (
    CouncilPoll,
    CouncilPollSend,
    CouncilVote,
    CouncilVoteItem,
    NotificationKind,
    Person,
    PollSendState,
    VoteStatus,
    db_now,
    utcnow,
)
from storage.rules import RuleViolation
from storage.services import notifications
from storage.services.council.common import _record_vote_event

log = logging.getLogger(__name__)

SEND_ERROR_MAX = 1000

# The private audit events of a poll's sending, on the vote (details: item_id, chat_id, and
# error or poll_id); the first two are also the convener's notification kinds.
# Telegram refused it (nothing was posted); its answer was lost (posted or not, unknown).
POLL_SEND_FAILED = NotificationKind.POLL_SEND_FAILED
POLL_SEND_UNCERTAIN = NotificationKind.POLL_SEND_UNCERTAIN
POLL_RECOGNISED = "poll_recognised"  # an unknown poll of a send in doubt, found to exist
# The sends that may have posted a poll the store does not know.
UNSETTLED = (PollSendState.SENDING, PollSendState.UNCERTAIN)
# An item's send_error when its poll may or may not exist (the officials' API shows it).
UNCERTAIN_PREFIX = "Not known whether Telegram posted this poll (not sent again): "


def delivery_chats(vote: CouncilVote) -> list[int]:
    """Where the polls go: the council's group, or else each member's private chat."""
    if vote.council_chat_id is not None:
        return [vote.council_chat_id]
    return [m.telegram_id for m in vote.members]


async def poll_sends(
    session: AsyncSession,
    vote_id: int,
    *,
    item_id: int | None = None,
    states: tuple[PollSendState, ...] = tuple(PollSendState),
) -> dict[tuple[int, int], PollSendState]:
    """The state of each (item id, chat id) send of the vote (or of its item `item_id`) that
    was claimed or recorded, of those in `states`; a send not there was never attempted."""
    query = (
        select(CouncilPollSend.item_id, CouncilPollSend.chat_id, CouncilPollSend.state)
        .join(CouncilVoteItem, CouncilVoteItem.id == CouncilPollSend.item_id)
        .where(CouncilVoteItem.vote_id == vote_id)
    )
    if item_id is not None:
        query = query.where(CouncilPollSend.item_id == item_id)
    if set(states) != set(PollSendState):
        query = query.where(CouncilPollSend.state.in_(states))
    rows = await session.execute(query)
    return {(int(i), int(c)): PollSendState(s) for i, c, s in rows.all()}


async def unsettled_poll_sends(
    session: AsyncSession, vote_id: int, *, item_id: int | None = None
) -> dict[tuple[int, int], PollSendState]:
    """The sends of the vote (or of its item `item_id`) that may have posted a poll the store
    does not know: SENDING (in flight, or its sender stopped) or UNCERTAIN (Telegram's answer
    was lost). Neither may be sent again automatically."""
    return await poll_sends(session, vote_id, item_id=item_id, states=UNSETTLED)


@operation
async def record_poll_attempt(
    session: AsyncSession, item_id: int, chat_id: int, *, now: datetime | None = None
) -> bool:
    """Claim an item's sendPoll to `chat_id`, written down before it is made, so that a sender
    that stops before its answer (a crash, a cancellation) leaves the send SENDING rather than
    forgotten. The claim is one INSERT … ON CONFLICT: a new send, or one Telegram refused
    (nothing was posted), is claimed; of two senders only one claims it. False when it must
    not be made: the vote is closed, or the send is in flight, in doubt or done. Commits."""
    status = await session.scalar(
        select(CouncilVote.status)
        .join(CouncilVoteItem, CouncilVoteItem.vote_id == CouncilVote.id)
        .where(CouncilVoteItem.id == item_id)
    )
    if status is None:
        raise RuleViolation("unknown_vote_item", "no such vote item")
    if status is not VoteStatus.OPEN:
        return False
    stmt = upsert(session, CouncilPollSend).values(
        item_id=item_id,
        chat_id=chat_id,
        state=PollSendState.SENDING,
        attempted_at=now or utcnow(),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["item_id", "chat_id"],
        set_={
            "state": stmt.excluded.state,
            "attempted_at": stmt.excluded.attempted_at,
            "error": None,
            "unreachable": False,
        },
        where=CouncilPollSend.state == PollSendState.REFUSED,
    ).returning(CouncilPollSend.item_id)
    claimed = await session.scalar(stmt)
    await session.commit()
    return claimed is not None


async def _set_send(
    session: AsyncSession,
    item_id: int,
    chat_id: int,
    state: PollSendState,
    *,
    error: str | None = None,
    unreachable: bool = False,
    unless: tuple[PollSendState, ...] = (),
) -> bool:
    """Put the send in `state` (inserting it if it was never claimed), unless it is in one of
    the states `unless`; `unreachable` only with REFUSED (see record_send_error). Whether it
    was."""
    stmt = upsert(session, CouncilPollSend).values(
        item_id=item_id,
        chat_id=chat_id,
        state=state,
        attempted_at=utcnow(),
        error=error,
        unreachable=unreachable,
    )
    values: dict[str, Any] = {
        "state": stmt.excluded.state,
        "unreachable": stmt.excluded.unreachable,
    }
    if error is not None:
        values["error"] = stmt.excluded.error
    stmt = stmt.on_conflict_do_update(
        index_elements=["item_id", "chat_id"],
        set_=values,
        where=CouncilPollSend.state.not_in(unless) if unless else None,
    ).returning(CouncilPollSend.item_id)
    return await session.scalar(stmt) is not None


async def _record_send_problem(
    session: AsyncSession,
    item_id: int,
    error: str,
    chat_id: int | None,
    *,
    action: NotificationKind,
    send_error: str,
    state: PollSendState,
    unless: tuple[PollSendState, ...],
    unreachable: bool = False,
) -> None:
    """record_send_error and record_send_uncertain: the send put in `state` (nothing is done
    when it is in a state of `unless`) with `error` and `unreachable`, the item's
    send_error, the private audit event `action` and the convener's notification of the same
    kind, which names the member when the poll was for a private chat. Commits."""
    item = await session.get(
        CouncilVoteItem,
        item_id,
        options=[selectinload(CouncilVoteItem.vote), selectinload(CouncilVoteItem.suggestion)],
    )
    if item is None:
        raise RuleViolation("unknown_vote_item", "no such vote item")
    vote = item.vote
    target = chat_id if chat_id is not None else vote.council_chat_id
    if target is not None and not await _set_send(
        session, item.id, target, state, error=error, unreachable=unreachable, unless=unless
    ):
        log.info("poll of item %s in %s: %s, but it is %s", item.id, target, action, unless)
        await session.rollback()
        return
    item.send_error = send_error[:SEND_ERROR_MAX]
    _record_vote_event(
        session,
        vote,
        action,
        public=False,
        details={"item_id": item.id, "chat_id": target, "error": error},
    )
    convener = (
        await session.get(Person, vote.convened_by_id) if vote.convened_by_id is not None else None
    )
    if convener is not None and convener.blocked_bot_at is None:
        params: dict[str, Any] = {
            "vote_id": vote.id,
            "item_id": item.id,
            "number": item.suggestion.number,
            "title": item.suggestion.title,
            "chat_id": target,
            "error": error,
        }
        if target is not None and target > 0:
            # Private delivery: whom the convener should ask (told to staff only).
            member = await session.scalar(select(Person).where(Person.telegram_id == target))
            if member is not None:
                name = member.first_name or ""
                params["member"] = f"{name} @{member.username}" if member.username else name
        await notifications.enqueue(
            session,
            chat_id=convener.telegram_id,
            kind=action,
            params=params,
            person_id=convener.id,
            dedupe_key=f"{action}:{item.id}:{target}",
        )
    await session.commit()


@operation
async def record_send_error(
    session: AsyncSession,
    item_id: int,
    error: str,
    *,
    chat_id: int | None = None,
    unreachable: bool = False,
) -> None:
    """Telegram refused an item's poll: the send is REFUSED (it may be made again), the reason
    kept on the item (officials see it in vote_detail) and told to the convener in their
    private chat (`poll_send_failed`, naming the member for a private chat), so it is
    surfaced rather than lost. `chat_id`: where it was being sent (private delivery; else the
    council's group). `unreachable`: refused because the bot may not write to that private
    chat (a 403), which the send keeps (its `unreachable`) so that it is made again once the
    member can be written to (reopen_polls_owed_to). A convener known only by an API token
    (no person) sees it through the API. Commits."""
    error = (rules.clean_text(error) or "unknown error")[:SEND_ERROR_MAX]
    private = chat_id is not None and chat_id > 0
    await _record_send_problem(
        session,
        item_id,
        error,
        chat_id,
        action=POLL_SEND_FAILED,
        send_error=error,
        state=PollSendState.REFUSED,
        unless=(PollSendState.SENT, PollSendState.UNCERTAIN),  # a poll that may exist
        unreachable=unreachable and private,
    )


@operation
async def record_send_uncertain(
    session: AsyncSession, item_id: int, error: str, *, chat_id: int | None = None
) -> None:
    """An item's sendPoll got no answer (a network error, a timeout, a 5xx, a sender that
    stopped): the poll may or may not exist. The send is UNCERTAIN, never made again; the
    item's send_error says so (UNCERTAIN_PREFIX) and the convener is told what to check
    (`poll_send_uncertain`). If the poll does exist, recognise_poll records it. Nothing is
    done when it was recognised already. Commits."""
    error = (rules.clean_text(error) or "no answer")[:SEND_ERROR_MAX]
    await _record_send_problem(
        session,
        item_id,
        error,
        chat_id,
        action=POLL_SEND_UNCERTAIN,
        send_error=UNCERTAIN_PREFIX + error,
        state=PollSendState.UNCERTAIN,
        unless=(PollSendState.SENT,),  # recognised meanwhile: not in doubt
    )


@dataclass(frozen=True, slots=True)
class MemberSend:
    """An item's send to one member's private chat, as /votes tells them of it."""

    state: PollSendState
    unreachable: bool  # refused because the bot could not write to them (a 403)


def _refused_as_unreachable() -> Any:
    return and_(
        CouncilPollSend.state == PollSendState.REFUSED, CouncilPollSend.unreachable.is_(True)
    )


def _owes_polls(*where: Any) -> Any:
    """EXISTS, for the vote of the enclosing statement: a send of one of its items refused as
    unreachable, with `where` on the send (and whatever it joins)."""
    return (
        select(CouncilPollSend.item_id)
        .join(CouncilVoteItem, CouncilVoteItem.id == CouncilPollSend.item_id)
        .where(CouncilVoteItem.vote_id == CouncilVote.id, _refused_as_unreachable(), *where)
        .exists()
    )


_OPEN_PRIVATE = and_(CouncilVote.status == VoteStatus.OPEN, CouncilVote.council_chat_id.is_(None))


async def member_sends(
    session: AsyncSession, vote_ids: list[int], telegram_id: int
) -> dict[int, MemberSend]:
    """The sends of these votes' items to this member's private chat (item id → send); an
    item not there was never attempted there. One query, for /votes."""
    if not vote_ids:
        return {}
    rows = await session.execute(
        select(CouncilPollSend.item_id, CouncilPollSend.state, _refused_as_unreachable())
        .join(CouncilVoteItem, CouncilVoteItem.id == CouncilPollSend.item_id)
        .where(CouncilVoteItem.vote_id.in_(vote_ids), CouncilPollSend.chat_id == telegram_id)
    )
    return {
        int(item_id): MemberSend(PollSendState(state), bool(unreachable))
        for item_id, state, unreachable in rows.all()
    }


async def reopen_polls_owed_to(
    session: AsyncSession, telegram_id: int, *, now: datetime | None = None
) -> list[int]:
    """`telegram_id` can be written to now (they wrote to the bot, or unblocked it): each open
    vote whose poll to their private chat Telegram refused as unreachable (record_send_error)
    counts as not fully sent again, so that a sending run sends them what they miss: at once
    when the caller can start one after its commit (bot.polls.council_poll_sender), else the
    scheduler's resume_poll_sending at its next tick. That run makes only the sends never
    made or refused, each claimed (record_poll_attempt), so no poll goes twice. Open at `now`
    (None: the database's time). The ids of those votes. One statement, which changes
    nothing when nothing is owed; does not commit: the caller's transaction (the update in
    which they came back) makes it durable with the rest."""
    result = await session.execute(
        update(CouncilVote)
        .where(
            _OPEN_PRIVATE,
            CouncilVote.closes_at > (now if now is not None else db_now()),
            _owes_polls(CouncilPollSend.chat_id == telegram_id),
        )
        .values(polls_sent_at=None)
        .returning(CouncilVote.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(int(vote_id) for vote_id in result.scalars().all())


async def reopen_for_returned_members(session: AsyncSession, vote_id: int) -> bool:
    """After a sending run of an open vote delivered privately: if a member whose poll was
    refused as unreachable is no longer marked as blocking the bot (they came back while the
    run held the lease, so their own reopen_polls_owed_to was overtaken by its end), the
    vote's polls count as not fully sent again, and the scheduler's resume sends theirs.
    Whether it did. Commits."""
    result: Any = await session.execute(
        update(CouncilVote)
        .where(
            CouncilVote.id == vote_id,
            _OPEN_PRIVATE,
            CouncilVote.polls_sent_at.is_not(None),
            select(Person.id)
            .join(CouncilPollSend, CouncilPollSend.chat_id == Person.telegram_id)
            .join(CouncilVoteItem, CouncilVoteItem.id == CouncilPollSend.item_id)
            .where(
                CouncilVoteItem.vote_id == vote_id,
                _refused_as_unreachable(),
                Person.blocked_bot_at.is_(None),
            )
            .exists(),
        )
        .values(polls_sent_at=None)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return bool(result.rowcount)


async def _settle_send_error(session: AsyncSession, item: CouncilVoteItem) -> None:
    """Clear an item's send error once it no longer holds: none of its sends is in doubt
    ('not known whether posted'), and none refused any more (a member who could not be
    reached has had the poll since)."""
    if item.send_error is None:
        return
    open_problems = (*UNSETTLED, PollSendState.REFUSED)
    unsettled = await session.scalar(
        select(func.count()).where(
            CouncilPollSend.item_id == item.id, CouncilPollSend.state.in_(open_problems)
        )
    )
    if not unsettled:
        item.send_error = None


async def record_poll_stopped(
    session: AsyncSession, chat_id: int, message_id: int, *, now: datetime | None = None
) -> None:
    """The bot stopped a poll (stopPoll) after the close. Commits."""
    await session.execute(
        update(CouncilPoll)
        .where(CouncilPoll.chat_id == chat_id, CouncilPoll.message_id == message_id)
        .values(stopped_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    await session.commit()


async def release_poll_attempt(
    session: AsyncSession, item_id: int, chat_id: int, *, attempted_at: datetime
) -> bool:
    """Let go of a claim (record_poll_attempt, made with `now=attempted_at`) whose sendPoll was
    not made after all: its sender was cancelled or failed before the request, or Telegram
    answered 429 (it did nothing). The send is as if never claimed, so the next run makes it
    rather than take it for possibly posted. Only that claim is let go (still SENDING, with
    that `attempted_at`): not one another run made since, nor an outcome written meanwhile.
    Whether it was. Commits."""
    result: Any = await session.execute(
        delete(CouncilPollSend)
        .where(
            CouncilPollSend.item_id == item_id,
            CouncilPollSend.chat_id == chat_id,
            CouncilPollSend.state == PollSendState.SENDING,
            CouncilPollSend.attempted_at == attempted_at,
        )
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return bool(result.rowcount)


async def held_poll_lease(session: AsyncSession, vote_id: int) -> datetime | None:
    """Until when the vote's polls lease runs (sending them, claim_poll_sending; stopping them,
    claim_poll_stopping), None when nobody holds it. Read by a run just after taking it, to let
    go of that lease at its end (release_poll_lease) and of no later one."""
    until: datetime | None = await session.scalar(
        select(CouncilVote.polls_lease_until).where(CouncilVote.id == vote_id)
    )
    return until


async def release_poll_lease(session: AsyncSession, vote_id: int, *, until: datetime) -> bool:
    """Let go of the vote's polls lease that runs `until` (as held_poll_lease read it), so that
    another replica's job takes the work up at its next tick instead of when the lease would
    have run out: for a run that stops before its end (a shutdown cancels it). A lease taken
    by someone else after this one ran out is left alone. Whether it was let go. Commits."""
    result: Any = await session.execute(
        update(CouncilVote)
        .where(CouncilVote.id == vote_id, CouncilVote.polls_lease_until == until)
        .values(polls_lease_until=None)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return bool(result.rowcount)
