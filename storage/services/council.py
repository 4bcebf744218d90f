"""Council votes (决议): convene, count poll answers, close once, tell everyone.

The poll ↔ candidate mapping and every answer live here, so a restart loses nothing and
counting goes on. Closing is claimed in the database with a compare-and-set on the vote's
status, so with several replicas (and the scheduler and an early close racing) each vote is
closed, tallied and announced exactly once. Results go out through the outbox in the same
transaction; the sender draws the bar chart from the counts in `vote_result`'s params.

Who voted how is kept (Ballot) for officials (vote_detail); the public side (the audit
events on the board, results in the groups) carries counts and outcomes only.

Sending a poll is not idempotent: when Telegram's answer to a sendPoll is lost, the poll may
exist all the same. So every sendPoll is claimed before it is made (record_poll_attempt: a
CouncilPollSend row, SENDING), and its outcome written after: the poll recorded (record_poll,
SENT), refused (record_send_error, REFUSED: safe to send again) or unknown
(record_send_uncertain, UNCERTAIN: never sent again automatically, the convener told what to
check). An answer to a poll the store does not know (an orphan of such a send, or one whose
record_poll has not committed yet) is kept (CouncilStrayAnswer), not dropped, and counted once
the poll is known: by record_poll, or by recognise_poll when Telegram shows the bot the poll (a
`poll` update carries its question, which names the candidate).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage import rules
from storage.db import insert_on_conflict, upsert
from storage.models import (
    Ballot,
    ChatPurpose,
    Community,
    CouncilPoll,
    CouncilPollSend,
    CouncilStrayAnswer,
    CouncilStrayPoll,
    CouncilVote,
    CouncilVoteItem,
    CouncilVoteMember,
    Person,
    PollSendState,
    Street,
    Suggestion,
    VoteStatus,
    utcnow,
)
from storage.rules import Action, Choice, RuleViolation, State, VoteOutcome
from storage.services import access, audit, notifications
from storage.services.audit import Actor
from storage.services.chats import bound_chats
from storage.services.screening import actor_of, lock_suggestions, operation, scope_condition
from storage.services.suggestions import apply

log = logging.getLogger(__name__)

CONVENE_ROLES = rules.roles_for(Action.CONVENE_VOTE, State.CANDIDATE)
# Who may see who voted how: the officials who may convene, within their scope.
DETAIL_ROLES = CONVENE_ROLES
SEND_ERROR_MAX = 1000

# The private audit events of a poll's sending, on the vote (details: item_id, chat_id, and
# error or poll_id); the first two are also the convener's notification kinds.
POLL_SEND_FAILED = "poll_send_failed"  # Telegram refused it: nothing was posted
POLL_SEND_UNCERTAIN = "poll_send_uncertain"  # its answer was lost: posted or not, unknown
POLL_RECOGNISED = "poll_recognised"  # an unknown poll of a send in doubt, found to exist
# The sends that may have posted a poll the store does not know.
UNSETTLED = (PollSendState.SENDING, PollSendState.UNCERTAIN)
# An item's send_error when its poll may or may not exist (the officials' API shows it).
UNCERTAIN_PREFIX = "Not known whether Telegram posted this poll (not sent again): "


@dataclass
class ConveneRequest:
    community_id: int
    suggestion_ids: list[int]
    closes_at: datetime
    quorum_pct: int | None = None  # None: the community's council_quorum_pct
    threshold_pct: int | None = None  # None: the community's council_threshold_pct


@dataclass
class AnswerResult:
    vote_id: int
    counted: bool
    ignored_reason: str | None  # "not_member", "late" or "bad_option" when not counted
    everyone_voted: bool  # every member has a choice on every item: the bot may close early


@dataclass(frozen=True, slots=True)
class RecognisedPoll:
    """A poll the bot posted without learning it (an uncertain send), now recorded."""

    vote_id: int
    item_id: int
    chat_id: int
    everyone_voted: bool  # after its kept answers were counted: the bot may close early


@dataclass
class CloseResult:
    vote: CouncilVote
    outcomes: dict[int, VoteOutcome]  # item id → outcome
    polls_to_stop: list[tuple[int, int]]  # (chat_id, message_id), stop after the commit


def _vote_options() -> Any:
    return (
        selectinload(CouncilVote.items).selectinload(CouncilVoteItem.suggestion),
        selectinload(CouncilVote.members),
        selectinload(CouncilVote.community),
    )


async def get_vote(session: AsyncSession, vote_id: int) -> CouncilVote | None:
    """The vote with its items, their suggestions, the member snapshot and the community."""
    query = (
        select(CouncilVote)
        .where(CouncilVote.id == vote_id)
        .options(*_vote_options())
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(query)).first()


def delivery_chats(vote: CouncilVote) -> list[int]:
    """Where the polls go: the council's group, or else each member's private chat."""
    if vote.council_chat_id is not None:
        return [vote.council_chat_id]
    return [m.telegram_id for m in vote.members]


def _percentage(value: int | None, default: int, code: str) -> int:
    chosen = default if value is None else value
    # Strictly more than 100 % can never be reached: such a vote would be decided in advance.
    if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen <= 99:
        raise RuleViolation(code, "a percentage from 0 to 99 (strictly more than it is needed)")
    return chosen


async def _lock_vote(session: AsyncSession, vote_id: int) -> CouncilVote | None:
    """Read the vote's status under a shared lock, so that an answer and the close serialise:
    the close's UPDATE waits for answers in flight (and counts them), and an answer arriving
    after it sees CLOSED. SQLite: a no-op UPDATE takes the single writer lock first."""
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(CouncilVote)
            .where(CouncilVote.id == vote_id)
            .values(status=CouncilVote.status)
            .execution_options(synchronize_session=False)
        )
    query = (
        select(CouncilVote)
        .where(CouncilVote.id == vote_id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(query)).first()


def _record_vote_event(
    session: AsyncSession,
    vote: CouncilVote,
    action: str,
    *,
    details: dict[str, Any],
    actor: Actor | None = None,
    public: bool = True,
) -> None:
    """The audit event of something that happened to the vote itself (convened, a poll
    refused, closed); by the system unless an `actor` is named."""
    audit.record(
        session,
        actor=actor or Actor.system(),
        entity_type="council_vote",
        entity_id=vote.id,
        community_id=vote.community_id,
        action=action,
        public=public,
        details=details,
    )


async def _tell_followers(
    session: AsyncSession,
    vote: CouncilVote,
    suggestion: Suggestion,
    stage: str,
    params: dict[str, Any],
) -> None:
    """`suggestion_status` to the suggestion's followers: where it stands now that the vote
    has reached `stage` (convened, closed), with the stage's `params`."""
    await notifications.notify_followers(
        session,
        suggestion,
        "suggestion_status",
        notifications.about(suggestion)
        | {"status": suggestion.status.value, "vote_id": vote.id}
        | params,
        dedupe_prefix=f"vote:{vote.id}:{stage}:{suggestion.id}",
    )


# --- Convening -------------------------------------------------------------------------------


@operation
async def convene(
    session: AsyncSession,
    principal: access.Principal,
    request: ConveneRequest,
    *,
    now: datetime | None = None,
) -> CouncilVote:
    """Put candidates to the council: CANDIDATE → COUNCIL_VOTE for each (audited), the
    council as it stands snapshotted as the voters, polls to go to the council's group or
    each member privately (delivery_chats). Followers are told. Commits; returns the vote
    with items, suggestions, members and community loaded, items in the order asked."""
    now = now or utcnow()
    await access.require(session, principal, request.community_id, CONVENE_ROLES)
    ids = list(request.suggestion_ids)
    if not ids:
        raise RuleViolation("no_candidates", "a vote needs at least one candidate")
    if len(ids) > rules.MAX_VOTE_CANDIDATES:
        raise RuleViolation(
            "too_many_candidates", f"at most {rules.MAX_VOTE_CANDIDATES} candidates a vote"
        )
    if len(set(ids)) != len(ids):
        raise RuleViolation("duplicate_candidate", "a candidate is listed twice")
    closes_at = request.closes_at
    if closes_at.tzinfo is None:
        raise RuleViolation("closes_at_naive", "closes_at needs a time zone")
    if closes_at <= now:
        raise RuleViolation("closes_at_past", "closes_at must be in the future")
    if closes_at > now + timedelta(days=rules.MAX_VOTE_DAYS):
        raise RuleViolation("closes_at_too_far", f"a vote lasts at most {rules.MAX_VOTE_DAYS} days")
    community = await session.get(Community, request.community_id)
    assert community is not None  # access.require found its place
    quorum = _percentage(request.quorum_pct, community.council_quorum_pct, "bad_quorum")
    threshold = _percentage(request.threshold_pct, community.council_threshold_pct, "bad_threshold")
    members = await access.council_members(session, community.id)
    if not members:
        raise RuleViolation("council_empty", "the community's council has no members")
    found = await lock_suggestions(session, ids)
    for suggestion_id in ids:
        suggestion = found.get(suggestion_id)
        if suggestion is None:
            raise RuleViolation("unknown_suggestion", f"no suggestion {suggestion_id}")
        if suggestion.community_id != community.id:
            raise RuleViolation("candidate_other_community", f"{suggestion.number} is elsewhere")
        if suggestion.status is not State.CANDIDATE:
            raise RuleViolation(
                "not_a_candidate", f"{suggestion.number} is {suggestion.status.value}"
            )
    council_chats = sorted(
        await bound_chats(session, community.id, ChatPurpose.COUNCIL),
        key=lambda c: (c.bound_at or c.created_at, c.id),
    )
    vote = CouncilVote(
        community_id=community.id,
        convened_by_id=principal.person_id,
        convened_at=now,
        closes_at=closes_at,
        quorum_pct=quorum,
        threshold_pct=threshold,
        council_size=len(members),
        council_chat_id=council_chats[-1].id if council_chats else None,
        status=VoteStatus.OPEN,
    )
    session.add(vote)
    await session.flush()
    for person in members:
        session.add(
            CouncilVoteMember(vote_id=vote.id, person_id=person.id, telegram_id=person.telegram_id)
        )
    actor = actor_of(principal)
    for position, suggestion_id in enumerate(ids, start=1):
        suggestion = found[suggestion_id]
        session.add(
            CouncilVoteItem(vote_id=vote.id, suggestion_id=suggestion.id, position=position)
        )
        await apply(session, suggestion, Action.CONVENE_VOTE, actor, details={"vote_id": vote.id})
        await _tell_followers(
            session, vote, suggestion, "convened", {"closes_at": closes_at.isoformat()}
        )
    _record_vote_event(
        session,
        vote,
        "convene",
        actor=actor,
        details={
            "numbers": [found[i].number for i in ids],
            "closes_at": closes_at.isoformat(),
            "quorum_pct": quorum,
            "threshold_pct": threshold,
            "council_size": len(members),
        },
    )
    await session.commit()
    loaded = await get_vote(session, vote.id)
    assert loaded is not None
    return loaded


# --- Sending the polls: each send claimed, and what came of it -------------------------------


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
    unless: tuple[PollSendState, ...] = (),
) -> bool:
    """Put the send in `state` (inserting it if it was never claimed), unless it is in one of
    the states `unless`. Whether it was."""
    stmt = upsert(session, CouncilPollSend).values(
        item_id=item_id, chat_id=chat_id, state=state, attempted_at=utcnow(), error=error
    )
    values: dict[str, Any] = {"state": stmt.excluded.state}
    if error is not None:
        values["error"] = stmt.excluded.error
    stmt = stmt.on_conflict_do_update(
        index_elements=["item_id", "chat_id"],
        set_=values,
        where=CouncilPollSend.state.not_in(unless) if unless else None,
    ).returning(CouncilPollSend.item_id)
    return await session.scalar(stmt) is not None


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


async def _record_send_problem(
    session: AsyncSession,
    item_id: int,
    error: str,
    chat_id: int | None,
    *,
    action: str,
    send_error: str,
    state: PollSendState,
    unless: tuple[PollSendState, ...],
) -> None:
    """record_send_error and record_send_uncertain: the send put in `state` (nothing is done
    when it is in a state of `unless`), the item's send_error, the private audit event
    `action` and the convener's notification of the same kind. Commits."""
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
        session, item.id, target, state, error=error, unless=unless
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
        if action == POLL_SEND_UNCERTAIN and target is not None and target > 0:
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
    session: AsyncSession, item_id: int, error: str, *, chat_id: int | None = None
) -> None:
    """Telegram refused an item's poll: the send is REFUSED (it may be made again), the reason
    kept on the item (officials see it in vote_detail) and told to the convener in their
    private chat (`poll_send_failed`), so it is surfaced rather than lost. `chat_id`: where it
    was being sent (private delivery; else the council's group). A convener known only by an
    API token (no person) sees it through the API. Commits."""
    error = (rules.clean_text(error) or "unknown error")[:SEND_ERROR_MAX]
    await _record_send_problem(
        session,
        item_id,
        error,
        chat_id,
        action=POLL_SEND_FAILED,
        send_error=error,
        state=PollSendState.REFUSED,
        unless=(PollSendState.SENT, PollSendState.UNCERTAIN),  # a poll that may exist
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


async def _settle_send_error(session: AsyncSession, item: CouncilVoteItem) -> None:
    """Clear an item's 'not known whether posted' once none of its sends is in doubt."""
    if item.send_error is None or not item.send_error.startswith(UNCERTAIN_PREFIX):
        return
    unsettled = await session.scalar(
        select(func.count()).where(
            CouncilPollSend.item_id == item.id, CouncilPollSend.state.in_(UNSETTLED)
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


# --- Polls the store does not know ----------------------------------------------------------


async def _hold_stray(
    session: AsyncSession, poll_id: str, item_id: int | None = None
) -> int | None:
    """Take the poll id's CouncilStrayPoll row (creating it), naming its candidate `item_id`
    if given: a row lock until the commit (SQLite: the writer lock), which serialises keeping
    an answer to the poll with recording it. Returns the candidate a `poll` update named."""
    stmt = upsert(session, CouncilStrayPoll).values(
        poll_id=poll_id, item_id=item_id, first_at=utcnow()
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["poll_id"],
        set_={"item_id": func.coalesce(stmt.excluded.item_id, CouncilStrayPoll.item_id)},
    ).returning(CouncilStrayPoll.item_id)
    found = await session.scalar(stmt)
    return int(found) if found is not None else None


async def _count_strays(session: AsyncSession, poll_id: str) -> None:
    """The poll is known now: record the answers kept for it, in the order they came, each
    as of when it was given (so one given before the deadline counts), and forget it as a
    stray. Under _hold_stray."""
    kept = (
        await session.execute(
            delete(CouncilStrayAnswer)
            .where(CouncilStrayAnswer.poll_id == poll_id)
            .returning(
                CouncilStrayAnswer.id,
                CouncilStrayAnswer.telegram_id,
                CouncilStrayAnswer.option_ids,
                CouncilStrayAnswer.at,
            )
            .execution_options(synchronize_session=False)
        )
    ).all()
    for _, telegram_id, option_ids, at in sorted(kept, key=lambda row: int(row[0])):
        await _answer_known(session, poll_id, int(telegram_id), [int(o) for o in option_ids], at)
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


# --- Counting --------------------------------------------------------------------------------


# A ballot that counts towards the tally: a member's answer in time, not retracted.
_COUNTED_CHOICE = and_(Ballot.counted.is_(True), Ballot.choice.is_not(None))


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


# Compiled once (see storage.db.insert_on_conflict): one of these runs for every poll answer.
_BALLOT_COLUMNS = (
    "item_id",
    "telegram_id",
    "person_id",
    "choice",
    "counted",
    "ignored_reason",
    "at",
)
_PUT_BALLOT = insert_on_conflict(
    Ballot,
    _BALLOT_COLUMNS,
    ("item_id", "telegram_id"),
    "DO UPDATE SET person_id = excluded.person_id, choice = excluded.choice, "
    "counted = excluded.counted, ignored_reason = excluded.ignored_reason, at = excluded.at",
)
_KEEP_BALLOT = insert_on_conflict(Ballot, _BALLOT_COLUMNS, ("item_id", "telegram_id"))


async def record_answer(
    session: AsyncSession,
    poll_id: str,
    telegram_id: int,
    option_ids: list[int],
    *,
    now: datetime | None = None,
) -> AnswerResult | None:
    """Record a poll_answer. None if the poll is not (yet) known as a council poll: then the
    answer is kept (CouncilStrayAnswer), never dropped, and counted as of `now` once the poll
    is known (record_poll, recognise_poll).

    A council member's answer while the vote is open and before closes_at counts, replacing
    their earlier one; [] retracts it. Anyone else's answer is kept but never counted
    ("not_member"); an answer after the deadline is ignored ("late") and leaves the member's
    earlier answer as it was. The same answer twice changes nothing. Flushes only: the
    webhook's per-update transaction commits it.
    """
    now = now or utcnow()
    result = await _answer_known(session, poll_id, telegram_id, option_ids, now)
    if result is not None:
        return result
    seen_item = await _hold_stray(session, poll_id)
    result = await _answer_known(session, poll_id, telegram_id, option_ids, now)
    if result is not None:  # recorded while this waited
        await _drop_stray(session, poll_id)
        return result
    session.add(
        CouncilStrayAnswer(
            poll_id=poll_id, telegram_id=telegram_id, option_ids=list(option_ids), at=now
        )
    )
    await session.flush()
    # A `poll` update named its candidate already: this answer may tell its chat.
    if seen_item is not None and await _recognise(session, poll_id, seen_item) is not None:
        return await _answer_known(session, poll_id, telegram_id, option_ids, now)
    log.warning(
        "answer of %s %r to unknown poll %s at %s kept",
        telegram_id,
        option_ids,
        poll_id,
        now.isoformat(),
    )
    return None


async def _answer_known(
    session: AsyncSession,
    poll_id: str,
    telegram_id: int,
    option_ids: list[int],
    now: datetime,
) -> AnswerResult | None:
    """record_answer for a known poll; None when the poll is unknown."""
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
    vote = await _lock_vote(session, vote_id)
    assert vote is not None  # the item's foreign key
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
    late = vote.status is not VoteStatus.OPEN or now >= vote.closes_at
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
        "at": now,
    }
    # A late member's answer as it stood at the deadline is what counts: keep it.
    await session.execute(_KEEP_BALLOT if member is not None and late else _PUT_BALLOT, values)
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


# --- Closing ---------------------------------------------------------------------------------


async def due_vote_ids(session: AsyncSession, now: datetime) -> list[int]:
    """Open votes whose deadline has passed (also those that fell due while the service was
    down), the longest overdue first. The scheduler calls close_vote for each."""
    query = (
        select(CouncilVote.id)
        .where(CouncilVote.status == VoteStatus.OPEN, CouncilVote.closes_at <= now)
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
            (CouncilVote.polls_lease_until.is_(None)) | (CouncilVote.polls_lease_until < now),
        )
        .values(polls_lease_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return bool(result.rowcount == 1)


async def finish_poll_sending(session: AsyncSession, vote_id: int, *, now: datetime) -> bool:
    """A run under the sending lease is over: the lease is let go, and the vote's polls count
    as sent (resume_poll_sending leaves it alone) if each candidate has a send, whatever came
    of it, to the council's group as it is now. A group upgraded to a supergroup while the run
    sent to its old id (chats.migrate_chat) has none yet: resume_poll_sending sends them
    there. Polls sent to members privately go to chats that do not move. Whether the polls
    count as sent. Commits."""
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
    await session.execute(
        update(CouncilVote)
        .where(CouncilVote.id == vote_id)
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
            (CouncilVote.polls_lease_until.is_(None)) | (CouncilVote.polls_lease_until < now),
        )
        .order_by(CouncilVote.id)
    )
    return list((await session.scalars(query)).all())


async def _tally(session: AsyncSession, item_ids: list[int]) -> dict[int, dict[Choice, int]]:
    counts: dict[int, dict[Choice, int]] = {i: dict.fromkeys(Choice, 0) for i in item_ids}
    rows = await session.execute(
        select(Ballot.item_id, Ballot.choice, func.count())
        .where(Ballot.item_id.in_(item_ids), _COUNTED_CHOICE)
        .group_by(Ballot.item_id, Ballot.choice)
    )
    for item_id, choice, count in rows.all():
        counts[item_id][Choice(choice)] = int(count)
    return counts


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
    """Close a vote once: at its deadline, or earlier when every member has voted.

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
    now = now or utcnow()
    claimed = await session.scalar(
        update(CouncilVote)
        .where(CouncilVote.id == vote_id, CouncilVote.status == VoteStatus.OPEN)
        .values(status=VoteStatus.CLOSED, closed_at=now)
        .returning(CouncilVote.id)
        .execution_options(synchronize_session=False)
    )
    if claimed is None:
        await session.rollback()
        return None
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


async def _announce(session: AsyncSession, vote: CouncilVote, moved: list[CouncilVoteItem]) -> None:
    params = result_params(vote, await _not_counted(session, vote.id))
    key = f"vote:{vote.id}:result"
    if vote.council_chat_id is not None:
        await notifications.enqueue(
            session,
            chat_id=vote.council_chat_id,
            kind="vote_result",
            params=params | {"audience": "council"},
            dedupe_key=f"{key}:{vote.council_chat_id}",
        )
    else:
        blocked = set(
            (
                await session.scalars(
                    select(Person.id).where(
                        Person.id.in_([m.person_id for m in vote.members]),
                        Person.blocked_bot_at.is_not(None),
                    )
                )
            ).all()
        )
        council_params = params | {"audience": "council"}
        await notifications.enqueue_many(
            session,
            (
                notifications.Owed(
                    member.telegram_id,
                    "vote_result",
                    council_params,
                    member.person_id,
                    f"{key}:{member.telegram_id}",
                )
                for member in vote.members
                if member.person_id not in blocked
            ),
        )
    for chat in await bound_chats(session, vote.community_id, ChatPurpose.COMMUNITY):
        await notifications.enqueue(
            session,
            chat_id=chat.id,
            kind="vote_result",
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


# --- Reading ---------------------------------------------------------------------------------


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


__all__ = [
    "AnswerResult",
    "BallotView",
    "CloseResult",
    "ConveneRequest",
    "RecognisedPoll",
    "VoteDetail",
    "close_vote",
    "closed_results",
    "convene",
    "delivery_chats",
    "due_vote_ids",
    "everyone_voted",
    "get_vote",
    "list_votes",
    "my_choices",
    "open_votes_for",
    "poll_sends",
    "prune_strays",
    "recognise_poll",
    "record_answer",
    "record_poll",
    "record_poll_attempt",
    "record_poll_stopped",
    "record_send_error",
    "record_send_uncertain",
    "result_params",
    "unsettled_poll_sends",
    "vote_detail",
    "vote_details",
]
