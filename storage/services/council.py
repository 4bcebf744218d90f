"""Council votes (决议): convene, count poll answers, close once, tell everyone.

The poll ↔ candidate mapping and every answer live here, so a restart loses nothing and
counting goes on. Closing is claimed in the database with a compare-and-set on the vote's
status, so with several replicas (and the scheduler and an early close racing) each vote is
closed, tallied and announced exactly once. Results go out through the outbox in the same
transaction; the sender draws the bar chart from the counts in `vote_result`'s params.

Who voted how is kept (Ballot) for officials (vote_detail); the public side (the audit
events on the board, results in the groups) carries counts and outcomes only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage import rules
from storage.db import insert_on_conflict, upsert
from storage.models import (
    Ballot,
    ChatPurpose,
    Community,
    CouncilPoll,
    CouncilVote,
    CouncilVoteItem,
    CouncilVoteMember,
    Person,
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

CONVENE_ROLES = rules.roles_for(Action.CONVENE_VOTE, State.CANDIDATE)
# Who may see who voted how: the officials who may convene, within their scope.
DETAIL_ROLES = CONVENE_ROLES
SEND_ERROR_MAX = 1000


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


@operation
async def record_poll(
    session: AsyncSession, item_id: int, poll_id: str, chat_id: int, message_id: int
) -> None:
    """The bot sent an item's poll: remember which poll carries which candidate (idempotent
    for the same poll id). Commits, so answers arriving next find it."""
    if await session.get(CouncilVoteItem, item_id) is None:
        raise RuleViolation("unknown_vote_item", "no such vote item")
    stmt = (
        upsert(session, CouncilPoll)
        .values(poll_id=poll_id, item_id=item_id, chat_id=chat_id, message_id=message_id)
        .on_conflict_do_nothing(index_elements=["poll_id"])
    )
    await session.execute(stmt)
    await session.commit()


@operation
async def record_send_error(
    session: AsyncSession, item_id: int, error: str, *, chat_id: int | None = None
) -> None:
    """Telegram refused an item's poll: keep the reason on the item (officials see it in
    vote_detail) and tell the convener in their private chat (`poll_send_failed`), so it is
    surfaced rather than lost. `chat_id`: where it was being sent (private delivery).
    A convener known only by an API token (no person) sees it through the API. Commits."""
    item = await session.get(
        CouncilVoteItem,
        item_id,
        options=[selectinload(CouncilVoteItem.vote), selectinload(CouncilVoteItem.suggestion)],
    )
    if item is None:
        raise RuleViolation("unknown_vote_item", "no such vote item")
    error = (rules.clean_text(error) or "unknown error")[:SEND_ERROR_MAX]
    item.send_error = error
    vote = item.vote
    target = chat_id if chat_id is not None else vote.council_chat_id
    _record_vote_event(
        session,
        vote,
        "poll_send_failed",
        public=False,
        details={"item_id": item.id, "chat_id": target, "error": error},
    )
    convener = (
        await session.get(Person, vote.convened_by_id) if vote.convened_by_id is not None else None
    )
    if convener is not None and convener.blocked_bot_at is None:
        await notifications.enqueue(
            session,
            chat_id=convener.telegram_id,
            kind="poll_send_failed",
            params={
                "vote_id": vote.id,
                "item_id": item.id,
                "number": item.suggestion.number,
                "title": item.suggestion.title,
                "chat_id": target,
                "error": error,
            },
            person_id=convener.id,
            dedupe_key=f"poll_send_failed:{item.id}:{target}",
        )
    await session.commit()


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
    """Record a poll_answer. None if the poll is not a council poll.

    A council member's answer while the vote is open and before closes_at counts, replacing
    their earlier one; [] retracts it. Anyone else's answer is kept but never counted
    ("not_member"); an answer after the deadline is ignored ("late") and leaves the member's
    earlier answer as it was. The same answer twice changes nothing. Flushes only: the
    webhook's per-update transaction commits it.
    """
    now = now or utcnow()
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


async def finish_poll_sending(session: AsyncSession, vote_id: int, *, now: datetime) -> None:
    """Every poll of the vote was sent or its refusal recorded. Commits."""
    await session.execute(
        update(CouncilVote)
        .where(CouncilVote.id == vote_id)
        .values(polls_sent_at=now, polls_lease_until=None)
        .execution_options(synchronize_session=False)
    )
    await session.commit()


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


def result_params(vote: CouncilVote) -> dict[str, Any]:
    """`vote_result`'s params: counts and outcomes per candidate, never who voted how."""
    return {
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
        .where(CouncilVoteItem.vote_id == vote.id, CouncilPoll.stopped_at.is_(None))
        .order_by(CouncilVoteItem.position, CouncilPoll.chat_id)
    )
    to_stop = [(int(c), int(m)) for c, m in polls.all()]
    await session.commit()
    return CloseResult(vote, outcomes, to_stop)


async def _announce(session: AsyncSession, vote: CouncilVote, moved: list[CouncilVoteItem]) -> None:
    params = result_params(vote)
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
    "record_answer",
    "record_poll",
    "record_poll_stopped",
    "record_send_error",
    "result_params",
    "vote_detail",
    "vote_details",
]
