"""Council votes (storage.services.council and the pure rules.decide / poll texts): convening,
counting poll answers, closing exactly once, and what everyone is told."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from conftest import ORG_ROWS, OrgTree
from hypothesis import given
from hypothesis import strategies as st
from sending_fakes import COMMUNITY_CHAT, COUNCIL_CHAT, add_candidates, make_council
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import models, rules
from storage.db import create_engine, create_sessionmaker
from storage.models import (
    COMMAND_MENU,
    AuditEvent,
    Ballot,
    Community,
    CouncilPollSend,
    CouncilVote,
    CouncilVoteItem,
    Follower,
    Notification,
    Person,
    PollSendState,
    Suggestion,
    VoteStatus,
)
from storage.rules import (
    Action,
    Category,
    Choice,
    Kind,
    Role,
    RuleViolation,
    ScopeLevel,
    State,
    VoteOutcome,
)
from storage.services import council, officials, screening
from storage.services.access import Principal, Scope
from storage.services.audit import Actor
from storage.services.council import ConveneRequest
from storage.services.council.sending import MemberSend, member_sends, reopen_polls_owed_to
from storage.services.org import import_rows
from storage.services.people import TelegramIdentity, ensure_person
from storage.services.suggestions import Draft, apply, submit

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
CLOSES = T0 + timedelta(days=3)
DURING = T0 + timedelta(hours=1)
AGREE, AGAINST, ABSTAIN = [0], [1], [2]
R, N, Q = VoteOutcome.RESOLVED, VoteOutcome.NOT_PASSED, VoteOutcome.NO_QUORUM


# --- rules.decide (pure) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agree", "against", "abstain", "size", "quorum", "threshold", "expected"),
    [
        (8, 7, 0, 30, 50, 50, Q),  # exactly half voted: no quorum
        (8, 8, 0, 30, 50, 50, N),  # 16 of 30 voted; a tie is not more than half
        (0, 0, 16, 30, 50, 50, N),  # all abstain: nobody agrees
        (9, 7, 0, 30, 50, 50, R),
        (9, 0, 7, 30, 50, 50, R),  # abstentions are votes cast, never agree
        (8, 0, 8, 30, 50, 50, N),  # 8 of 16 is exactly half
        (30, 0, 0, 30, 50, 50, R),
        (0, 0, 0, 30, 50, 50, Q),
        (0, 0, 0, 30, 0, 50, Q),  # nobody voting is never a quorum
        (1, 0, 0, 30, 0, 0, R),  # one agreeing voter when the rules ask only "more than 0"
        (0, 1, 0, 30, 0, 0, N),
        (14, 6, 0, 30, 66, 66, R),  # 20 > 19.8 voters; 14/20 = 70 % > 66 %
        (13, 6, 0, 30, 66, 66, Q),  # 19 voters < 19.8
        (13, 7, 0, 30, 66, 66, N),  # 13/20 = 65 %
        (20, 10, 0, 30, 100 - 1, 66, R),  # everyone voted: 30 > 29.7
        (29, 0, 0, 30, 99, 0, Q),
        (10, 0, 0, 10, 99, 99, R),  # unanimity of a small council
        (9, 0, 1, 10, 99, 99, N),
        (1, 0, 0, 1, 50, 50, R),
        (2, 1, 0, 3, 50, 50, R),  # 3 of 3, 2 of 3
        (1, 1, 0, 3, 50, 50, N),
        (1, 0, 0, 3, 50, 50, Q),  # 1 of 3
    ],
)
def test_decide_edges(
    agree: int,
    against: int,
    abstain: int,
    size: int,
    quorum: int,
    threshold: int,
    expected: VoteOutcome,
) -> None:
    assert rules.decide(agree, against, abstain, size, quorum, threshold) is expected


@st.composite
def tallies(draw: st.DrawFn) -> tuple[int, int, int, int, int, int]:
    size = draw(st.integers(1, 500))
    agree = draw(st.integers(0, size))
    against = draw(st.integers(0, size - agree))
    abstain = draw(st.integers(0, size - agree - against))
    return agree, against, abstain, size, draw(st.integers(0, 100)), draw(st.integers(0, 100))


@given(tallies())
def test_decide_is_strictly_more_than(t: tuple[int, int, int, int, int, int]) -> None:
    agree, against, abstain, size, quorum, threshold = t
    voters = agree + against + abstain
    # The rules written a second time, in exact fractions.
    if voters == 0 or Fraction(voters, size) <= Fraction(quorum, 100):
        expected = Q
    elif Fraction(agree, voters) > Fraction(threshold, 100):
        expected = R
    else:
        expected = N
    assert rules.decide(*t) is expected


@given(tallies())
def test_decide_is_monotonic(t: tuple[int, int, int, int, int, int]) -> None:
    agree, against, abstain, size, quorum, threshold = t
    before = rules.decide(*t)
    # One more member agreeing never undoes a resolution; one changing to against never
    # makes one.
    if agree + against + abstain < size and before is R:
        assert rules.decide(agree + 1, against, abstain, size, quorum, threshold) is R
    if agree > 0 and before is not R:
        assert rules.decide(agree - 1, against + 1, abstain, size, quorum, threshold) is not R


@given(tallies())
def test_abstaining_never_helps(t: tuple[int, int, int, int, int, int]) -> None:
    agree, against, abstain, size, quorum, threshold = t
    if agree + against + abstain < size and rules.decide(*t) is not VoteOutcome.NO_QUORUM:
        more = rules.decide(agree, against, abstain + 1, size, quorum, threshold)
        assert not (rules.decide(*t) is N and more is R)


def test_decide_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        rules.decide(20, 11, 0, 30, 50, 50)  # more voters than members
    with pytest.raises(ValueError):
        rules.decide(-1, 0, 0, 30, 50, 50)
    with pytest.raises(ValueError):
        rules.decide(1, 0, 0, 30, 101, 50)
    with pytest.raises(TypeError):
        rules.decide(1, 0, 0, 30, 50.0, 50)  # type: ignore[arg-type]


def test_choice_of_poll_options() -> None:
    assert [rules.choice_of(o) for o in (AGREE, AGAINST, ABSTAIN, [])] == [
        Choice.AGREE,
        Choice.AGAINST,
        Choice.ABSTAIN,
        None,
    ]
    for bad in ([3], [-1], [0, 1]):
        with pytest.raises(ValueError):
            rules.choice_of(bad)


def test_outcome_actions_are_the_systems() -> None:
    for outcome, action in rules.OUTCOME_ACTION.items():
        step = rules.transition(State.COUNCIL_VOTE, action, Role.SYSTEM)
        expected = {R: State.RESOLVED_CANDIDATE, N: State.NOT_PASSED, Q: State.CANDIDATE}
        assert step.target is expected[outcome]
    assert Role.COMMUNITY_STAFF in rules.roles_for(Action.CONVENE_VOTE, State.CANDIDATE)
    assert rules.roles_for(Action.CONVENE_VOTE, State.SUBMITTED) == frozenset()


# --- Poll texts at Telegram's limits (pure) -------------------------------------------------


def test_utf16_len_counts_as_telegram() -> None:
    assert rules.utf16_len("新沙") == 2
    assert rules.utf16_len("a😀") == 3  # outside the BMP: a surrogate pair
    assert rules.utf16_len("👨‍👩‍👧") == 8  # three people and two joiners
    assert rules.utf16_len("") == 0


def test_poll_question_fits() -> None:
    number = "沙头新沙-2026-0007"
    assert rules.poll_question(number, "路灯不亮") == f"{number} 路灯不亮"
    room = rules.POLL_QUESTION_MAX - rules.utf16_len(number) - 1
    exact = "中" * room
    assert rules.poll_question(number, exact) == f"{number} {exact}"  # exactly at the limit
    longer = rules.poll_question(number, exact + "中")
    assert rules.utf16_len(longer) == rules.POLL_QUESTION_MAX
    assert longer.endswith("中…")
    # Emoji are two units each: no half of one is ever left at the cut.
    emoji = rules.poll_question(number, "😀" * 300)
    assert rules.utf16_len(emoji) <= rules.POLL_QUESTION_MAX
    assert emoji.endswith("😀…")
    emoji.encode("utf-16-le")  # would raise on a lone surrogate
    # A family emoji cut in the middle does not end on a joiner.
    family = rules.poll_question(number, "👨‍👩‍👧" * 100)
    assert "\u200d…" not in family
    with pytest.raises(ValueError):
        rules.poll_question("", "x")


@given(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=400),
)
def test_poll_question_never_exceeds_the_limit(number: str, title: str) -> None:
    try:
        question = rules.poll_question(number, title)
    except ValueError:
        assert not rules.clean_text(number)
        return
    assert rules.utf16_len(question) <= rules.POLL_QUESTION_MAX
    assert question.startswith(rules.clean_text(number) + " ")
    question.encode("utf-16-le")


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300))
def test_poll_option_within_limit(text: str) -> None:
    option = rules.poll_option(text)
    assert 1 <= rules.utf16_len(option) <= rules.POLL_OPTION_MAX
    cleaned = " ".join(rules.clean_text(text).split())
    if cleaned and rules.utf16_len(cleaned) <= rules.POLL_OPTION_MAX:
        assert option == cleaned


# --- Fixtures for votes ---------------------------------------------------------------------


@dataclass
class World:
    org: OrgTree
    staff: Principal
    members: list[int]  # council members' Telegram ids
    sessionmaker: Sessions


async def make_world(
    sessionmaker: Sessions,
    org: OrgTree,
    size: int = 30,
    *,
    council_chat: bool = True,
    community_chat: bool = True,
) -> World:
    made = await make_council(
        sessionmaker,
        org.xinsha_id,
        size,
        council_chat=council_chat,
        community_chat=community_chat,
        member_language=None,
    )
    return World(org, made.staff, made.members, sessionmaker)


async def candidates(
    world: World, count: int, community_id: int | None = None, by: Principal | None = None
) -> list[int]:
    ids = []
    for n in range(count):
        async with world.sessionmaker() as session:
            stored = await submit(
                session,
                TelegramIdentity(10_000 + n, f"居民{n}"),
                Draft(
                    community_id or world.org.xinsha_id,
                    Category.ENVIRONMENT,
                    f"候选项目{n}",
                    "说明",
                    kind=Kind.SERVICE,
                ),
                tz=UTC,
                daily_limit=100,
            )
        ids.append(stored.id)
    async with world.sessionmaker() as session:
        for suggestion_id in ids:
            await screening.accept(session, by or world.staff, suggestion_id)
    return ids


async def convene(
    world: World, ids: list[int], *, closes_at: datetime = CLOSES, **kw: int | None
) -> CouncilVote:
    async with world.sessionmaker() as session:
        request = ConveneRequest(world.org.xinsha_id, ids, closes_at, **kw)
        return await council.convene(session, world.staff, request, now=T0)


async def send_polls(world: World, vote: CouncilVote) -> dict[int, str]:
    """What the bot does after convening: one poll per item in the council's group."""
    polls = {}
    async with world.sessionmaker() as session:
        for item in vote.items:
            poll_id = f"poll-{vote.id}-{item.id}"
            await council.record_poll(session, item.id, poll_id, COUNCIL_CHAT, 500 + item.position)
            polls[item.id] = poll_id
    return polls


async def answer(
    world: World,
    poll_id: str,
    telegram_id: int,
    options: list[int],
    now: datetime | None = DURING,
    *,
    update_id: int | None = None,
) -> council.AnswerResult | None:
    """One poll_answer update, in its own transaction as the webhook handles it (`now` None:
    when it is handled, on the database's clock)."""
    async with world.sessionmaker() as session:
        result = await council.record_answer(
            session, poll_id, telegram_id, options, update_id=update_id, now=now
        )
        await session.commit()
        return result


async def cast(
    world: World, poll_id: str, agree: int = 0, against: int = 0, abstain: int = 0, start: int = 0
) -> int:
    """Members from `start` on answer: `agree` agree, then `against`, then `abstain`."""
    n = start
    for options, count in ((AGREE, agree), (AGAINST, against), (ABSTAIN, abstain)):
        for _ in range(count):
            result = await answer(world, poll_id, world.members[n], options)
            assert result is not None and result.counted
            n += 1
    return n


async def count_rows(session: AsyncSession, model: type[object], *where: object) -> int:
    query = select(func.count()).select_from(model).where(*where)  # type: ignore[arg-type]
    return int(await session.scalar(query) or 0)


# --- A 30-member council --------------------------------------------------------------------


async def test_thirty_members_quorum_and_threshold_edges(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    world = await make_world(sessionmaker, org)
    ids = await candidates(world, 5)
    vote = await convene(world, ids)
    assert (vote.council_size, vote.quorum_pct, vote.threshold_pct) == (30, 50, 50)
    assert vote.council_chat_id == COUNCIL_CHAT
    assert council.delivery_chats(vote) == [COUNCIL_CHAT]
    assert [i.suggestion_id for i in vote.items] == ids
    polls = await send_polls(world, vote)
    half, tie, abstain, passed, barely = (polls[i.id] for i in vote.items)
    await cast(world, half, agree=15)  # exactly half of the council voted
    await cast(world, tie, agree=8, against=8)
    await cast(world, abstain, abstain=16)
    await cast(world, passed, agree=9, abstain=7)
    await cast(world, barely, agree=9, against=8, abstain=13)  # everyone voted, 9 of 30 agree

    async with sessionmaker() as session:
        result = await council.close_vote(session, vote.id, now=CLOSES)
    assert result is not None
    by_item = {item.id: item for item in result.vote.items}
    outcomes = [result.outcomes[item.id] for item in vote.items]
    assert outcomes == [Q, N, N, R, N]
    assert [
        (by_item[i.id].agree, by_item[i.id].against, by_item[i.id].abstain) for i in vote.items
    ] == [
        (15, 0, 0),
        (8, 8, 0),
        (0, 0, 16),
        (9, 0, 7),
        (9, 8, 13),
    ]
    assert result.polls_to_stop == [(COUNCIL_CHAT, 501 + n) for n in range(5)]
    async with sessionmaker() as session:
        statuses = [(await session.get(Suggestion, i)) for i in ids]
        assert [s.status for s in statuses if s] == [
            State.CANDIDATE,  # no quorum: may be put to the council again
            State.NOT_PASSED,
            State.NOT_PASSED,
            State.RESOLVED_CANDIDATE,
            State.NOT_PASSED,
        ]
        stored = await session.get(CouncilVote, vote.id)
        assert stored is not None and stored.status is VoteStatus.CLOSED
        assert stored.closed_at == CLOSES
        # The public trail: counts and outcome on each suggestion, never who voted how.
        events = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.actor_role == Role.SYSTEM)
                .order_by(AuditEvent.id)
            )
        ).all()
        assert [(e.action, e.public) for e in events] == [
            ("no_quorum", True),
            ("not_pass", True),
            ("not_pass", True),
            ("resolve", True),
            ("not_pass", True),
            ("close", True),
        ]
        assert events[3].details == {
            "vote_id": vote.id,
            "outcome": "resolved",
            "agree": 9,
            "against": 0,
            "abstain": 7,
            "council_size": 30,
            "quorum_pct": 50,
            "threshold_pct": 50,
        }
        public = json.dumps([e.details for e in events])
        assert not any(str(tid) in public for tid in world.members)


async def test_results_are_told(sessionmaker: Sessions, org: OrgTree) -> None:
    world = await make_world(sessionmaker, org, size=3)
    ids = await candidates(world, 2)
    async with sessionmaker() as session:
        follower = await ensure_person(session, TelegramIdentity(40_000, "邻居"))
        await session.commit()
        session.add(Follower(suggestion_id=ids[0], person_id=follower.id))
        await session.commit()
    vote = await convene(world, ids)
    polls = await send_polls(world, vote)
    first, second = (polls[i.id] for i in vote.items)
    await cast(world, first, agree=2, against=1)
    await cast(world, second, against=2)
    async with sessionmaker() as session:
        result = await council.close_vote(session, vote.id, now=CLOSES)
    assert result is not None
    async with sessionmaker() as session:
        query = select(Notification).where(
            Notification.kind.not_in(("suggestion_accepted", COMMAND_MENU))
        )
        rows = (await session.scalars(query.order_by(Notification.id))).all()
    told = [(n.kind, n.chat_id, n.params.get("status")) for n in rows]
    # Convening told the followers it is before the council …
    assert told[:3] == [
        ("suggestion_status", 10_000, "council_vote"),
        ("suggestion_status", 40_000, "council_vote"),
        ("suggestion_status", 10_001, "council_vote"),
    ]
    # … closing told both groups, then each suggestion's followers of its outcome.
    assert told[3:] == [
        ("vote_result", COUNCIL_CHAT, None),
        ("vote_result", COMMUNITY_CHAT, None),
        ("suggestion_status", 10_000, "resolved_candidate"),
        ("suggestion_status", 40_000, "resolved_candidate"),
        ("suggestion_status", 10_001, "not_passed"),
    ]
    params = rows[3].params
    assert params["audience"] == "council" and rows[4].params["audience"] == "community"
    assert [
        (i["position"], i["agree"], i["against"], i["abstain"], i["outcome"])
        for i in params["items"]
    ] == [
        (1, 2, 1, 0, "resolved"),
        (2, 0, 2, 0, "not_passed"),
    ]
    assert params["items"][0]["title"] == "候选项目0" and params["council_size"] == 3
    assert rows[-1].params["outcome"] == "not_passed" and rows[-1].params["against"] == 2


async def test_members_who_voted_follow_the_suggestion_from_the_close_on(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """Everyone who voted on a project hears of each status change (PROGRAMME.md): a member
    whose answer counted follows the suggestion once the vote closes; the close itself they
    hear of from the results, not once more from each suggestion."""
    world = await make_world(sessionmaker, org, size=3)
    ids = await candidates(world, 2)
    vote = await convene(world, ids)
    polls = await send_polls(world, vote)
    first, second = (polls[i.id] for i in vote.items)
    await cast(world, first, agree=2, against=1)
    await cast(world, second, against=2)
    async with sessionmaker() as session:
        assert await council.close_vote(session, vote.id, now=CLOSES) is not None
    async with sessionmaker() as session:
        ballots = await session.execute(
            select(Ballot.item_id, Ballot.person_id).where(Ballot.counted.is_(True))
        )
        voted: dict[int, set[int | None]] = {item.id: set() for item in vote.items}
        for item_id, person_id in ballots.all():
            voted[item_id].add(person_id)
        followers = await session.execute(select(Follower.suggestion_id, Follower.person_id))
        following: dict[int, set[int]] = {suggestion: set() for suggestion in ids}
        for suggestion_id, person_id in followers.all():
            following[suggestion_id].add(person_id)
        members = {member.person_id for member in vote.members}
        told_at_close = (
            await session.scalars(
                select(Notification.chat_id).where(
                    Notification.kind == "suggestion_status",
                    Notification.params["status"]
                    .as_string()
                    .in_(["resolved_candidate", "not_passed"]),
                )
            )
        ).all()
    assert len(voted[vote.items[0].id]) == 3 and len(voted[vote.items[1].id]) == 2
    assert voted[vote.items[0].id] <= following[ids[0]]
    assert voted[vote.items[1].id] <= following[ids[1]]
    # The member who did not answer on the second does not follow it.
    assert not (members - voted[vote.items[1].id]) & following[ids[1]]
    # Only the proposers were told of the outcome one by one: the members had the results.
    assert sorted(told_at_close) == [10_000, 10_001]


async def test_custom_rules_and_the_communitys_own(sessionmaker: Sessions, org: OrgTree) -> None:
    world = await make_world(sessionmaker, org, size=10)
    ids = await candidates(world, 3)
    # A stricter quorum asked for this vote: 6 of 10 voters would do under the council's
    # 50 %, not under 70 %.
    vote = await convene(world, ids[:1], quorum_pct=70)
    assert (vote.quorum_pct, vote.threshold_pct) == (70, 50)
    polls = await send_polls(world, vote)
    await cast(world, polls[vote.items[0].id], agree=4, against=2)
    async with sessionmaker() as session:
        result = await council.close_vote(session, vote.id, now=CLOSES)
        assert result is not None and list(result.outcomes.values()) == [Q]
    # Never a looser one: the convener may not lower the council's rules for one vote.
    for quorum, threshold, code in (
        (10, None, "quorum_below_rules"),
        (None, 0, "threshold_below_rules"),
    ):
        with pytest.raises(RuleViolation) as raised:
            await convene(world, ids[1:2], quorum_pct=quorum, threshold_pct=threshold)
        assert raised.value.code == code
    async with sessionmaker() as session:
        community = await session.get(Community, org.xinsha_id)
        assert community is not None
        community.council_quorum_pct, community.council_threshold_pct = 60, 66
        await session.commit()
    second = await convene(world, ids[1:2])
    assert (second.quorum_pct, second.threshold_pct) == (60, 66)
    polls = await send_polls(world, second)
    await cast(world, polls[second.items[0].id], agree=4, against=2)  # 6 > 6.0? no
    async with sessionmaker() as session:
        result = await council.close_vote(session, second.id, now=CLOSES)
        assert result is not None and list(result.outcomes.values()) == [Q]
    for quorum, threshold, code in ((100, None, "bad_quorum"), (None, -1, "bad_threshold")):
        with pytest.raises(RuleViolation) as raised:
            await convene(world, ids[2:], quorum_pct=quorum, threshold_pct=threshold)
        assert raised.value.code == code


# --- Counting -------------------------------------------------------------------------------


async def test_changes_retractions_outsiders_duplicates(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    world = await make_world(sessionmaker, org, size=5)
    (suggestion_id,) = await candidates(world, 1)
    vote = await convene(world, [suggestion_id])
    (poll,) = (await send_polls(world, vote)).values()
    a, b, c, d, _ = world.members
    await answer(world, poll, a, AGAINST)
    await answer(world, poll, a, AGREE)  # changed: replaces
    await answer(world, poll, b, AGREE)
    await answer(world, poll, b, [])  # retracted
    for _ in range(3):  # the same update delivered again
        result = await answer(world, poll, c, AGREE)
        assert result is not None and result.counted and not result.everyone_voted
    outsider = await answer(world, poll, 99_999, AGREE)
    assert outsider is not None and not outsider.counted
    assert outsider.ignored_reason == "not_member"
    await answer(world, poll, d, ABSTAIN)
    assert await answer(world, "not-a-council-poll", a, AGREE) is None
    bad = await answer(world, poll, a, [7])
    assert bad is not None and (bad.counted, bad.ignored_reason) == (False, "bad_option")
    async with sessionmaker() as session:
        detail = await council.vote_detail(session, vote.id, principal=world.staff)
        assert detail is not None
        item_id = vote.items[0].id
        assert detail.counts == {item_id: (2, 0, 1)}
        ballots = {b.telegram_id: (b.choice, b.counted, b.ignored_reason) for b in detail.ballots}
        assert ballots == {
            a: (Choice.AGREE, True, None),
            b: (None, True, None),
            c: (Choice.AGREE, True, None),
            d: (Choice.ABSTAIN, True, None),
            99_999: (Choice.AGREE, False, "not_member"),
        }
        members = {m.telegram_id: m.person_id for m in detail.vote.members}
        assert sorted(detail.not_voted[item_id]) == sorted([members[b], members[world.members[4]]])
        result = await council.close_vote(session, vote.id, now=CLOSES)
        assert result is not None
        # 3 of 5 voted (> 50 %), 2 of 3 agree.
        assert result.outcomes == {item_id: R}
        assert [(i.agree, i.against, i.abstain) for i in result.vote.items] == [(2, 0, 1)]
        # The poll shows the outsider's answer too: the result says one is not counted.
        results = await session.scalars(
            select(Notification).where(Notification.kind == "vote_result")
        )
        assert {n.params["not_counted"] for n in results} == {1}


async def test_late_answers_do_not_count(sessionmaker: Sessions, org: OrgTree) -> None:
    world = await make_world(sessionmaker, org, size=3)
    (suggestion_id,) = await candidates(world, 1)
    vote = await convene(world, [suggestion_id])
    (poll,) = (await send_polls(world, vote)).values()
    a, b, c = world.members
    await answer(world, poll, a, AGREE)
    await answer(world, poll, b, AGREE)
    # At the deadline, before the scheduler has closed it: too late, and a's vote stands.
    late = await answer(world, poll, a, AGAINST, now=CLOSES)
    assert late is not None and (late.counted, late.ignored_reason) == (False, "late")
    late = await answer(world, poll, b, [], now=CLOSES + timedelta(seconds=1))
    assert late is not None and late.ignored_reason == "late"
    late = await answer(world, poll, c, AGAINST, now=CLOSES)
    assert late is not None and late.ignored_reason == "late"
    async with sessionmaker() as session:
        result = await council.close_vote(session, vote.id, now=CLOSES + timedelta(minutes=1))
        assert result is not None
        assert [(i.agree, i.against, i.abstain) for i in result.vote.items] == [(2, 0, 0)]
    # After the close, even "in time" by the clock: the vote is closed.
    after = await answer(world, poll, c, AGREE, now=DURING)
    assert after is not None and after.ignored_reason == "late"
    async with sessionmaker() as session:
        ballots = (await session.scalars(select(Ballot).order_by(Ballot.telegram_id))).all()
        assert [(b.telegram_id, b.choice, b.counted) for b in ballots] == [
            (a, Choice.AGREE, True),
            (b, Choice.AGREE, True),
            (c, Choice.AGAINST, False),
        ]


async def test_an_answer_from_an_older_update_changes_nothing(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """Telegram may deliver a member's updates out of order (it redelivers one after a 503,
    another replica handles the next one first): the ballot holds the answer of their latest
    update, whichever order the answers were handled in."""
    world = await make_world(sessionmaker, org, size=3)
    (suggestion_id,) = await candidates(world, 1)
    vote = await convene(world, [suggestion_id])
    (poll,) = (await send_polls(world, vote)).values()
    a, b, c = world.members
    # a taps Agree (update 101), then Against (102); 102 is handled first.
    newer = await answer(world, poll, a, AGAINST, update_id=102)
    assert newer is not None and newer.counted
    older = await answer(world, poll, a, AGREE, update_id=101)
    assert older is not None
    assert (older.counted, older.ignored_reason, older.everyone_voted) == (
        False,
        "superseded",
        False,
    )
    # A retraction is not undone by the answer it took back, handled after it.
    await answer(world, poll, b, AGREE, update_id=201)
    await answer(world, poll, b, [], update_id=203)
    await answer(world, poll, b, AGAINST, update_id=202)
    # An answer whose update is not known is replaced by one from an update, and never
    # replaces it; the same update again counts as it did the first time.
    await answer(world, poll, c, AGREE)
    for _ in range(2):
        result = await answer(world, poll, c, ABSTAIN, update_id=301)
        assert result is not None and result.counted
    unordered = await answer(world, poll, c, AGAINST)
    assert unordered is not None and unordered.ignored_reason == "superseded"
    # Someone not on the council is ordered alike.
    await answer(world, poll, 99_999, AGAINST, update_id=402)
    await answer(world, poll, 99_999, AGREE, update_id=401)
    async with sessionmaker() as session:
        ballots = {
            b.telegram_id: (b.choice, b.counted) for b in await session.scalars(select(Ballot))
        }
        assert ballots == {
            a: (Choice.AGAINST, True),
            b: (None, True),
            c: (Choice.ABSTAIN, True),
            99_999: (Choice.AGAINST, False),
        }
        result = await council.close_vote(session, vote.id, now=CLOSES)
        assert result is not None
        assert [(i.agree, i.against, i.abstain) for i in result.vote.items] == [(0, 1, 1)]


async def test_an_older_answer_does_not_complete_the_vote(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """The last member agreed, then took it back: their Agree, handled after the retraction,
    neither counts nor closes the vote early, and leaves no trace in the vote's trail."""
    world = await make_world(sessionmaker, org, size=2)
    (suggestion_id,) = await candidates(world, 1)
    vote = await convene(world, [suggestion_id])
    (poll,) = (await send_polls(world, vote)).values()
    first, last = world.members
    await answer(world, poll, first, AGREE, update_id=10)
    retracted = await answer(world, poll, last, [], update_id=21)
    assert retracted is not None and not retracted.everyone_voted
    async with sessionmaker() as session:
        events = await count_rows(session, AuditEvent)
    older = await answer(world, poll, last, AGREE, update_id=20)
    assert older is not None and not older.counted and not older.everyone_voted
    async with sessionmaker() as session:
        assert not await council.everyone_voted(session, vote.id)
        with pytest.raises(RuleViolation) as raised:
            await council.close_vote(session, vote.id, now=DURING)
        assert raised.value.code == "vote_not_due"
        assert await count_rows(session, AuditEvent) == events


async def test_after_telegram_renumbers_its_updates_a_lower_update_counts(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """After a week without updates Telegram numbers them afresh from a random id, which may
    be lower than the ballot's: an answer given that much later is not an older one (an
    older update comes within a day, while Telegram redelivers it)."""
    world = await make_world(sessionmaker, org, size=3)
    (suggestion_id,) = await candidates(world, 1)
    vote = await convene(world, [suggestion_id], closes_at=T0 + timedelta(days=20))
    (poll,) = (await send_polls(world, vote)).values()
    member = world.members[0]
    await answer(world, poll, member, AGREE, update_id=5_000)
    redelivered = await answer(
        world, poll, member, ABSTAIN, DURING + timedelta(hours=23), update_id=4_999
    )
    assert redelivered is not None and redelivered.ignored_reason == "superseded"
    renumbered = await answer(
        world, poll, member, AGAINST, DURING + timedelta(days=8), update_id=17
    )
    assert renumbered is not None and renumbered.counted
    async with sessionmaker() as session:
        assert await council.my_choices(session, member, [vote.id]) == {
            vote.items[0].id: Choice.AGAINST
        }


async def test_early_close_when_everyone_voted(sessionmaker: Sessions, org: OrgTree) -> None:
    world = await make_world(sessionmaker, org, size=3)
    ids = await candidates(world, 2)
    vote = await convene(world, ids)
    polls = await send_polls(world, vote)
    first, second = (polls[i.id] for i in vote.items)
    await cast(world, first, agree=3)
    await cast(world, second, agree=1, against=1)
    async with sessionmaker() as session:
        with pytest.raises(RuleViolation) as raised:
            await council.close_vote(session, vote.id, now=DURING)
        assert raised.value.code == "vote_not_due"
        stored = await session.get(CouncilVote, vote.id, populate_existing=True)
        assert stored is not None and stored.status is VoteStatus.OPEN
    # A retraction by the last voter, then their answer: only then has everyone voted.
    last = world.members[2]
    result = await answer(world, second, last, [])
    assert result is not None and not result.everyone_voted
    result = await answer(world, second, last, ABSTAIN)
    assert result is not None and result.everyone_voted
    async with sessionmaker() as session:
        assert await council.everyone_voted(session, vote.id)
        closed = await council.close_vote(session, vote.id, now=DURING)
        assert closed is not None and list(closed.outcomes.values()) == [R, N]
        close_event = await session.scalar(select(AuditEvent).where(AuditEvent.action == "close"))
        assert close_event is not None and close_event.details["early"] is True


async def test_restart_mid_vote(database_url: str, org: OrgTree) -> None:
    """Everything is in the store: a new process (engine) goes on counting and closes."""
    first = create_engine(database_url)
    try:
        world = await make_world(create_sessionmaker(first), org, size=5)
        (suggestion_id,) = await candidates(world, 1)
        vote = await convene(world, [suggestion_id])
        (poll,) = (await send_polls(world, vote)).values()
        await cast(world, poll, agree=2)
    finally:
        await first.dispose()
    second = create_engine(database_url)
    try:
        world.sessionmaker = create_sessionmaker(second)
        await answer(world, poll, world.members[0], AGAINST)  # a change after the restart
        await cast(world, poll, agree=1, start=2)
        async with world.sessionmaker() as session:
            assert await council.due_vote_ids(session, CLOSES) == [vote.id]
            result = await council.close_vote(session, vote.id, now=CLOSES)
        assert result is not None
        assert [(i.agree, i.against) for i in result.vote.items] == [(2, 1)]
        assert list(result.outcomes.values()) == [R]
    finally:
        await second.dispose()


async def test_two_closers_close_once(database_url: str, org: OrgTree) -> None:
    """Two scheduler replicas (two engines) on one database closing the same vote at once."""
    engines = [create_engine(database_url) for _ in range(2)]
    try:
        makers = [create_sessionmaker(e) for e in engines]
        world = await make_world(makers[0], org, size=4)
        ids = await candidates(world, 2)
        vote = await convene(world, ids)
        polls = await send_polls(world, vote)
        for poll in polls.values():
            await cast(world, poll, agree=3)
        for _ in range(3):

            async def close(maker: Sessions) -> council.CloseResult | None:
                async with maker() as session:
                    due = await council.due_vote_ids(session, CLOSES)
                    return await council.close_vote(session, due[0], now=CLOSES) if due else None

            results = await asyncio.gather(close(makers[0]), close(makers[1]))
            assert sum(r is not None for r in results) <= 1
        async with makers[1]() as session:
            events = await count_rows(session, AuditEvent, AuditEvent.action == "close")
            resolves = await count_rows(session, AuditEvent, AuditEvent.action == "resolve")
            results_sent = await count_rows(
                session, Notification, Notification.kind == "vote_result"
            )
            statuses = await count_rows(
                session,
                Notification,
                Notification.kind == "suggestion_status",
                Notification.params["status"].as_string() == "resolved_candidate",
            )
        assert (events, resolves, results_sent, statuses) == (1, 2, 2, 2)
    finally:
        for e in engines:
            await e.dispose()


@pytest.mark.postgres
async def test_concurrent_close_on_postgres_exactly_once(postgres_url: str) -> None:
    """The same, started truly at once many times over: the row lock makes one winner."""
    engines = [create_engine(postgres_url) for _ in range(2)]
    try:
        makers = [create_sessionmaker(e) for e in engines]
        async with makers[0]() as session:
            await import_rows(session, ORG_ROWS)
        org = OrgTree(1, 1, 1, 2)
        world = await make_world(makers[0], org, size=3)
        ids = await candidates(world, 6)
        votes = [await convene(world, [i]) for i in ids]
        for vote in votes:
            (poll,) = (await send_polls(world, vote)).values()
            await cast(world, poll, agree=2)

        async def close(maker: Sessions, vote_id: int) -> bool:
            async with maker() as session:
                return await council.close_vote(session, vote_id, now=CLOSES) is not None

        for vote in votes:
            won = await asyncio.gather(*(close(makers[n % 2], vote.id) for n in range(4)))
            assert sum(won) == 1
        async with makers[0]() as session:
            assert await count_rows(session, AuditEvent, AuditEvent.action == "close") == 6
            assert await count_rows(session, Notification, Notification.kind == "vote_result") == 12
    finally:
        for e in engines:
            await e.dispose()


async def test_due_after_downtime(sessionmaker: Sessions, org: OrgTree) -> None:
    world = await make_world(sessionmaker, org, size=3)
    ids = await candidates(world, 3)
    soon = await convene(world, ids[:1], closes_at=T0 + timedelta(hours=1))
    later = await convene(world, ids[1:2], closes_at=T0 + timedelta(days=2))
    await convene(world, ids[2:], closes_at=T0 + timedelta(days=20))
    async with sessionmaker() as session:
        assert await council.due_vote_ids(session, T0) == []
        # The service was down for three days: both overdue votes are found when it is back.
        back = T0 + timedelta(days=3)
        assert await council.due_vote_ids(session, back) == [soon.id, later.id]
        for vote_id in await council.due_vote_ids(session, back):
            result = await council.close_vote(session, vote_id, now=back)
            assert result is not None and list(result.outcomes.values()) == [Q]
        assert await council.due_vote_ids(session, back) == []
        assert await council.close_vote(session, soon.id, now=back) is None  # already closed
        assert await council.close_vote(session, 999, now=back) is None


# --- Deadlines on the database's clock -----------------------------------------------------


@pytest.fixture
def process_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """Sets how far this process's clock is off the database's, as on a replica whose NTP is
    not running: every `utcnow` the code reads, under whatever name, is moved by it."""
    real = models.utcnow

    def skew(by: timedelta) -> None:
        def skewed() -> datetime:
            return real() + by

        for module in list(sys.modules.values()):
            if not getattr(module, "__name__", "").startswith(("storage", "bot", "webhook")):
                continue
            for name, value in list(vars(module).items()):
                if value is real:
                    monkeypatch.setattr(module, name, skewed)

    return skew


async def test_a_replica_whose_clock_runs_ahead_keeps_the_deadline(
    sessionmaker: Sessions, org: OrgTree, process_clock: Callable[[timedelta], None]
) -> None:
    """A minute before the deadline, on a replica two minutes fast: the vote is not due,
    cannot be closed, and the answers given now count, a kept one too."""
    world = await make_world(sessionmaker, org, size=2)
    ids = await candidates(world, 2)
    async with sessionmaker() as session:
        closes_at = datetime.now(UTC) + timedelta(minutes=1)
        request = ConveneRequest(org.xinsha_id, ids, closes_at)
        vote = await council.convene(session, world.staff, request)
    first, second = vote.items
    async with sessionmaker() as session:
        await council.record_poll(session, first.id, "poll-first", COUNCIL_CHAT, 501)
    process_clock(timedelta(minutes=2))
    member = world.members[0]
    counted = await answer(world, "poll-first", member, AGREE, now=None)
    assert counted is not None and counted.counted
    assert await answer(world, "poll-second", member, AGAINST, now=None) is None  # kept
    async with sessionmaker() as session:
        assert await council.due_vote_ids(session) == []
        with pytest.raises(RuleViolation) as raised:
            await council.close_vote(session, vote.id)
        assert raised.value.code == "vote_not_due"
    async with sessionmaker() as session:
        await council.record_poll(session, second.id, "poll-second", COUNCIL_CHAT, 502)
        assert await council.my_choices(session, member, [vote.id]) == {
            first.id: Choice.AGREE,
            second.id: Choice.AGAINST,
        }


async def test_a_replica_whose_clock_runs_behind_closes_at_the_deadline(
    sessionmaker: Sessions, org: OrgTree, process_clock: Callable[[timedelta], None]
) -> None:
    """Just after the deadline, on a replica two minutes slow: the vote is due and closes,
    at the database's time, and an answer given now is late."""
    world = await make_world(sessionmaker, org, size=2)
    (suggestion_id,) = await candidates(world, 1)
    real = datetime.now(UTC)
    async with sessionmaker() as session:
        request = ConveneRequest(org.xinsha_id, [suggestion_id], real - timedelta(seconds=1))
        vote = await council.convene(session, world.staff, request, now=real - timedelta(hours=1))
    (poll,) = (await send_polls(world, vote)).values()
    process_clock(-timedelta(minutes=2))
    late = await answer(world, poll, world.members[0], AGREE, now=None)
    assert late is not None and late.ignored_reason == "late"
    async with sessionmaker() as session:
        assert await council.due_vote_ids(session) == [vote.id]
        closed = await council.close_vote(session, vote.id)
    assert closed is not None and closed.vote.closed_at is not None
    assert abs(closed.vote.closed_at - datetime.now(UTC)) < timedelta(seconds=30)
    assert list(closed.outcomes.values()) == [Q]


# --- Delivery ---------------------------------------------------------------------------------


async def test_thirteen_candidates_and_more(sessionmaker: Sessions, org: OrgTree) -> None:
    world = await make_world(sessionmaker, org, size=3)
    ids = await candidates(world, 15)
    vote = await convene(world, list(reversed(ids)))
    assert [i.position for i in vote.items] == list(range(1, 16))
    assert [i.suggestion_id for i in vote.items] == list(reversed(ids))
    polls = await send_polls(world, vote)
    assert len(set(polls.values())) == 15
    for n, item in enumerate(vote.items):
        await cast(world, polls[item.id], agree=2 if n % 2 else 0, against=0 if n % 2 else 2)
    async with sessionmaker() as session:
        result = await council.close_vote(session, vote.id, now=CLOSES)
    assert result is not None
    assert len(result.polls_to_stop) == 15
    assert [result.outcomes[i.id] for i in vote.items] == [
        N if n % 2 == 0 else R for n in range(15)
    ]
    async with sessionmaker() as session:
        message = await session.scalar(
            select(Notification).where(
                Notification.kind == "vote_result", Notification.chat_id == COUNCIL_CHAT
            )
        )
    assert message is not None
    assert [i["position"] for i in message.params["items"]] == list(range(1, 16))
    with pytest.raises(RuleViolation) as raised:
        await convene(world, list(range(1, rules.MAX_VOTE_CANDIDATES + 2)))
    assert raised.value.code == "too_many_candidates"


async def test_private_delivery_without_a_council_group(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    world = await make_world(sessionmaker, org, size=3, council_chat=False, community_chat=False)
    ids = await candidates(world, 2)
    vote = await convene(world, ids)
    assert vote.council_chat_id is None
    assert council.delivery_chats(vote) == world.members
    # One poll per item per member, each in the member's private chat.
    async with sessionmaker() as session:
        for item in vote.items:
            for tid in world.members:
                await council.record_poll(session, item.id, f"p{item.id}-{tid}", tid, item.id)
        blocked = await session.scalar(select(Person).where(Person.telegram_id == world.members[2]))
        assert blocked is not None
        blocked.blocked_bot_at = T0
        await session.commit()
    for item in vote.items:
        for tid in world.members[:2]:
            await answer(world, f"p{item.id}-{tid}", tid, AGREE)
    # Someone else answering a member's private poll (forwarded): not a member.
    stranger = await answer(world, f"p{vote.items[0].id}-{world.members[0]}", 88_888, AGREE)
    assert stranger is not None and stranger.ignored_reason == "not_member"
    async with sessionmaker() as session:
        assert await council.open_votes_for(session, world.members[1]) != []
        choices = await council.my_choices(session, world.members[1], [vote.id])
        assert choices == {item.id: Choice.AGREE for item in vote.items}
        result = await council.close_vote(session, vote.id, now=CLOSES)
        assert result is not None and set(result.outcomes.values()) == {R}
        assert len(result.polls_to_stop) == 6
        results = (
            await session.scalars(select(Notification).where(Notification.kind == "vote_result"))
        ).all()
        # Each member privately, except the one who blocked the bot; no community group.
        assert sorted(n.chat_id for n in results) == world.members[:2]
        assert await council.open_votes_for(session, world.members[1]) == []


async def test_refused_poll_is_surfaced_to_the_convener(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    world = await make_world(sessionmaker, org, size=3)
    ids = await candidates(world, 2)
    vote = await convene(world, ids)
    item = vote.items[1]
    error = "Telegram server says - Bad Request: poll question is too long"
    async with sessionmaker() as session:
        await council.record_send_error(session, item.id, error)
        await council.record_send_error(session, item.id, error)  # a retry fails the same way
    async with sessionmaker() as session:
        stored = await session.get(CouncilVoteItem, item.id)
        assert stored is not None and stored.send_error == error
        told = (
            await session.scalars(
                select(Notification).where(Notification.kind == "poll_send_failed")
            )
        ).all()
        assert [(n.chat_id, n.params["error"], n.params["number"]) for n in told] == [
            (20_000, error, item.suggestion.number)
        ]
        event = await session.scalar(
            select(AuditEvent).where(AuditEvent.action == "poll_send_failed")
        )
        assert event is not None and not event.public
        detail = await council.vote_detail(session, vote.id)
        assert detail is not None and detail.vote.items[1].send_error == error
        # Refused: nothing was posted, so it may be sent again.
        assert vote.council_chat_id is not None
        assert await council.poll_sends(session, vote.id) == {
            (item.id, vote.council_chat_id): PollSendState.REFUSED
        }
        assert await council.unsettled_poll_sends(session, vote.id) == {}
        with pytest.raises(RuleViolation) as raised:
            await council.record_send_error(session, 999, error)
        assert raised.value.code == "unknown_vote_item"
        with pytest.raises(RuleViolation) as raised:
            await council.record_poll(session, 999, "x", 1, 1)
        assert raised.value.code == "unknown_vote_item"


async def test_a_member_who_cannot_be_written_to_is_owed_the_poll_by_its_send(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """A private poll refused because the bot may not write to the member (a 403) is marked
    so on its send (`unreachable`), beside the error as Telegram gave it: /votes reads it,
    and the member's coming back owes the vote's polls again. Another refusal is not, and
    neither is the send once it is claimed again."""
    world = await make_world(sessionmaker, org, size=3, council_chat=False)
    vote = await convene(world, await candidates(world, 2))
    first, second = vote.items
    gone, other = world.members[:2]
    blocked, refused = "Forbidden: bot was blocked by the user", "Bad Request: poll too long"
    async with sessionmaker() as session:
        await council.record_send_error(session, first.id, blocked, chat_id=gone, unreachable=True)
        await council.record_send_error(session, second.id, refused, chat_id=other)

    async def sends() -> list[tuple[int, bool, str | None]]:
        async with sessionmaker() as session:
            rows = await session.scalars(select(CouncilPollSend))
            return sorted((s.chat_id, s.unreachable, s.error) for s in rows)

    assert await sends() == sorted([(gone, True, blocked), (other, False, refused)])
    async with sessionmaker() as session:
        assert await member_sends(session, [vote.id], gone) == {
            first.id: MemberSend(PollSendState.REFUSED, unreachable=True)
        }
        assert await member_sends(session, [vote.id], other) == {
            second.id: MemberSend(PollSendState.REFUSED, unreachable=False)
        }
        assert await reopen_polls_owed_to(session, other, now=T0) == []
        assert await reopen_polls_owed_to(session, gone, now=T0) == [vote.id]
        await session.commit()
        assert await council.record_poll_attempt(session, first.id, gone)
    assert (gone, False, None) in await sends()
    async with sessionmaker() as session:
        assert await reopen_polls_owed_to(session, gone, now=T0) == []


# --- Convening rules ----------------------------------------------------------------------------


async def test_convene_rules(sessionmaker: Sessions, org: OrgTree) -> None:
    world = await make_world(sessionmaker, org, size=2)
    ids = await candidates(world, 2)
    street = Principal(Role.STREET_OFFICIAL, Scope(ScopeLevel.STREET, org.street_id))
    elsewhere = await candidates(world, 1, community_id=org.tianan_id, by=street)
    async with sessionmaker() as session:
        submitted = await submit(
            session,
            TelegramIdentity(10_500),
            Draft(org.xinsha_id, Category.CARE, "未审核", "说明"),
            tz=UTC,
            daily_limit=10,
        )

    async def code_of(*, principal: Principal | None = None, **changes: object) -> str:
        values: dict[str, object] = {
            "community_id": org.xinsha_id,
            "suggestion_ids": ids,
            "closes_at": CLOSES,
        }
        values.update(changes)
        async with sessionmaker() as session:
            with pytest.raises(RuleViolation) as raised:
                await council.convene(
                    session,
                    principal or world.staff,
                    ConveneRequest(**values),  # type: ignore[arg-type]
                    now=T0,
                )
        return raised.value.code

    assert await code_of(suggestion_ids=[]) == "no_candidates"
    assert await code_of(suggestion_ids=[ids[0], ids[0]]) == "duplicate_candidate"
    assert await code_of(closes_at=T0) == "closes_at_past"
    assert await code_of(closes_at=T0 + timedelta(days=30, seconds=1)) == "closes_at_too_far"
    assert await code_of(closes_at=CLOSES.replace(tzinfo=None)) == "closes_at_naive"
    assert await code_of(suggestion_ids=[ids[0], 999]) == "unknown_suggestion"
    assert await code_of(suggestion_ids=[ids[0], *elsewhere]) == "candidate_other_community"
    assert await code_of(suggestion_ids=[submitted.id]) == "not_a_candidate"
    tianan_staff = Principal(Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, org.tianan_id))
    assert await code_of(principal=tianan_staff) == "out_of_scope"
    member = Principal(Role.COUNCIL_MEMBER, Scope(ScopeLevel.COMMUNITY, org.xinsha_id))
    assert await code_of(principal=member) == "role_not_allowed"
    assert await code_of(principal=street, community_id=org.tianan_id) == "council_empty"
    # Nothing was half done by the refusals.
    async with sessionmaker() as session:
        assert await count_rows(session, CouncilVote) == 0
        assert {s.status for s in (await session.scalars(select(Suggestion))).all()} == {
            State.CANDIDATE,
            State.SUBMITTED,
        }
    # At most 30 days ahead is allowed; a candidate is in one vote at a time.
    vote = await convene(world, ids[:1], closes_at=T0 + timedelta(days=30))
    assert vote.items[0].suggestion.status is State.COUNCIL_VOTE
    assert await code_of(suggestion_ids=ids) == "not_a_candidate"


async def test_two_conveners_at_once(sessionmaker: Sessions, org: OrgTree) -> None:
    world = await make_world(sessionmaker, org, size=2)
    ids = await candidates(world, 2)

    async def one(order: list[int]) -> str:
        try:
            await convene(world, order)
        except RuleViolation as exc:
            return exc.code
        return "ok"

    results = await asyncio.gather(one(ids), one(list(reversed(ids))))
    assert sorted(results) == ["not_a_candidate", "ok"]
    async with sessionmaker() as session:
        assert await count_rows(session, CouncilVote) == 1
        assert await count_rows(session, CouncilVoteItem) == 2


# --- Reading --------------------------------------------------------------------------------


async def test_votes_seen_by_members_officials_and_the_public(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    world = await make_world(sessionmaker, org, size=2)
    ids = await candidates(world, 2)
    first = await convene(world, ids[:1], closes_at=T0 + timedelta(days=5))
    second = await convene(world, ids[1:], closes_at=T0 + timedelta(days=1))
    (poll,) = (await send_polls(world, first)).values()
    await answer(world, poll, world.members[0], AGAINST)
    async with sessionmaker() as session:
        mine = await council.open_votes_for(session, world.members[0])
        assert [v.id for v in mine] == [second.id, first.id]  # soonest deadline first
        assert mine[1].items[0].suggestion.title == "候选项目0"
        late = T0 + timedelta(days=2)
        assert [
            v.id for v in await council.open_votes_for(session, world.members[0], now=late)
        ] == [first.id]
        assert await council.open_votes_for(session, 12345) == []
        assert await council.my_choices(session, world.members[0], [first.id, second.id]) == {
            first.items[0].id: Choice.AGAINST
        }
        # Officials: within scope only.
        listed = await council.list_votes(session, world.staff)
        assert [v.id for v in listed] == [second.id, first.id]
        tianan = Principal(Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, org.tianan_id))
        assert await council.list_votes(session, tianan) == []
        with pytest.raises(RuleViolation) as raised:
            await council.vote_detail(session, first.id, principal=tianan)
        assert raised.value.code == "out_of_scope"
        member = Principal(Role.COUNCIL_MEMBER, Scope(ScopeLevel.COMMUNITY, org.xinsha_id))
        with pytest.raises(RuleViolation) as raised:
            await council.list_votes(session, member)
        assert raised.value.code == "role_not_allowed"
        assert await council.vote_detail(session, 999) is None
        await council.close_vote(session, first.id, now=T0 + timedelta(days=6))
        public = await council.closed_results(session, org.xinsha_id)
        assert [(v.id, v.items[0].against, v.items[0].outcome) for v in public] == [
            (first.id, 1, Q)
        ]
        assert await council.closed_results(session, org.tianan_id) == []
        await council.record_poll_stopped(session, COUNCIL_CHAT, 501)
        detail = await council.vote_detail(session, first.id)
        assert detail is not None and detail.polls[0].stopped_at is not None


async def test_candidate_cancelled_during_the_vote(sessionmaker: Sessions, org: OrgTree) -> None:
    """The street office may cancel a candidate while it is before the council: its tally is
    kept, the others are resolved as usual."""
    world = await make_world(sessionmaker, org, size=3)
    ids = await candidates(world, 2)
    vote = await convene(world, ids)
    polls = await send_polls(world, vote)
    for poll in polls.values():
        await cast(world, poll, agree=2)
    async with sessionmaker() as session:
        cancelled = await session.get(Suggestion, ids[0])
        assert cancelled is not None
        await apply(session, cancelled, Action.CANCEL, Actor(Role.STREET_OFFICIAL))
        await session.commit()
        result = await council.close_vote(session, vote.id, now=CLOSES)
        assert result is not None and list(result.outcomes.values()) == [R, R]
        statuses = [(await session.get(Suggestion, i, populate_existing=True)) for i in ids]
        assert [s.status for s in statuses if s] == [State.CANCELLED, State.RESOLVED_CANDIDATE]
        told = await count_rows(
            session,
            Notification,
            Notification.kind == "suggestion_status",
            Notification.params["status"].as_string() == "resolved_candidate",
        )
        assert told == 1


async def test_an_answer_in_flight_is_counted_by_the_close(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """The close waits for an answer whose transaction is still open, then counts it; it
    never leaves a ballot marked counted that the tally missed."""
    world = await make_world(sessionmaker, org, size=3)
    (suggestion_id,) = await candidates(world, 1)
    vote = await convene(world, [suggestion_id])
    (poll,) = (await send_polls(world, vote)).values()
    await cast(world, poll, agree=1)

    async def close() -> council.CloseResult | None:
        async with sessionmaker() as session:
            return await council.close_vote(session, vote.id, now=CLOSES)

    async with sessionmaker() as webhook:
        result = await council.record_answer(webhook, poll, world.members[1], AGREE, now=DURING)
        assert result is not None and result.counted
        closing = asyncio.create_task(close())
        await asyncio.sleep(0.3)
        assert not closing.done()
        await webhook.commit()
    closed = await asyncio.wait_for(closing, timeout=10)
    assert closed is not None
    assert [(i.agree, i.against, i.abstain) for i in closed.vote.items] == [(2, 0, 0)]
    assert list(closed.outcomes.values()) == [R]


async def test_a_short_number_is_this_years_or_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], org: OrgTree
) -> None:
    council_ = await make_council(sessionmaker, org.xinsha_id, size=1)
    old, new = await add_candidates(council_, ["去年的", "今年的"])
    async with sessionmaker() as session:
        this_year = (await session.get(Suggestion, new)).number  # type: ignore[union-attr]
        year = this_year.split("-")[1]
        last = str(int(year) - 1)
        stored = await session.get(Suggestion, old)
        assert stored is not None
        await session.execute(
            update(Suggestion)
            .where(Suggestion.id == old)
            .values(number=f"新沙-{last}-0007", created_at=stored.created_at - timedelta(days=365))
        )
        await session.commit()
        found = await officials.find_by_number(
            session, council_.staff, org.xinsha_id, "7", year=int(year)
        )
    # This year has no 0007 yet: "7" does not silently mean last year's 新沙-…-0007.
    assert found is None
    async with sessionmaker() as session:
        short = this_year.rsplit("-", 1)[1].lstrip("0")
        again = await officials.find_by_number(
            session, council_.staff, org.xinsha_id, short, year=int(year)
        )
    assert again is not None and again.number == this_year
