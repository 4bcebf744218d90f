"""Council polls the store does not know, and sends whose outcome is unknown
(storage.services.council): an answer to an unknown poll is kept (council_stray_answer), never
dropped, and counted once the poll is known (record_poll after the race, recognise_poll for the
orphan of an uncertain send); each sendPoll is claimed (council_poll_send) before it is made,
so none is made twice; an uncertain send is told to the convener and never taken for refused."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from conftest import OrgTree
from sending_fakes import (
    COUNCIL_CHAT,
    STAFF_TID,
    T0,
    Council,
    add_candidates,
    convene,
    in_days,
    make_council,
)
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import rules
from storage.db import create_engine, create_sessionmaker
from storage.models import (
    AuditEvent,
    Ballot,
    CouncilPoll,
    CouncilPollSend,
    CouncilStrayAnswer,
    CouncilStrayPoll,
    CouncilVote,
    CouncilVoteItem,
    Notification,
    Person,
    PollSendState,
)
from storage.rules import Choice, RuleViolation, VoteOutcome
from storage.services import council

Sessions = async_sessionmaker[AsyncSession]
CLOSES = in_days(3)
DURING = T0 + timedelta(hours=1)
AGREE, AGAINST = [0], [1]


async def setup(
    sessionmaker: Sessions, org: OrgTree, *, size: int = 3, items: int = 2, group: bool = True
) -> tuple[Council, CouncilVote]:
    made = await make_council(sessionmaker, org.xinsha_id, size=size, council_chat=group)
    ids = await add_candidates(made, [f"候选{n}" for n in range(items)])
    return made, await convene(made, ids, closes_at=CLOSES)


async def answer(
    sessionmaker: Sessions,
    poll_id: str,
    telegram_id: int,
    options: list[int],
    now: datetime,
    *,
    update_id: int | None = None,
) -> council.AnswerResult | None:
    """One poll_answer update in its own transaction, as the webhook handles it."""
    async with sessionmaker() as session:
        result = await council.record_answer(
            session, poll_id, telegram_id, options, update_id=update_id, now=now
        )
        await session.commit()
        return result


async def seen(
    sessionmaker: Sessions, poll_id: str, question: str, close_date: datetime | None = CLOSES
) -> council.RecognisedPoll | None:
    """One `poll` update in its own transaction."""
    async with sessionmaker() as session:
        found = await council.recognise_poll(session, poll_id, question, close_date=close_date)
        await session.commit()
        return found


async def attempt(sessionmaker: Sessions, item_id: int, chat_id: int) -> bool:
    async with sessionmaker() as session:
        return await council.record_poll_attempt(session, item_id, chat_id)


async def strays(sessionmaker: Sessions) -> list[CouncilStrayAnswer]:
    async with sessionmaker() as session:
        query = select(CouncilStrayAnswer).order_by(CouncilStrayAnswer.id)
        return list((await session.scalars(query)).all())


async def sends(sessionmaker: Sessions) -> dict[tuple[int, int], PollSendState]:
    async with sessionmaker() as session:
        rows = (await session.scalars(select(CouncilPollSend))).all()
        return {(s.item_id, s.chat_id): s.state for s in rows}


async def ballots(sessionmaker: Sessions) -> dict[tuple[int, int], Ballot]:
    async with sessionmaker() as session:
        return {(b.item_id, b.telegram_id): b for b in (await session.scalars(select(Ballot)))}


def question_of(vote: CouncilVote, n: int) -> str:
    item = vote.items[n]
    return rules.poll_question(item.suggestion.number, item.suggestion.title)


async def test_an_answer_before_its_poll_is_recorded_is_counted(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """The race: the poll is posted, a member answers before record_poll has committed."""
    made, vote = await setup(sessionmaker, org)
    item = vote.items[0]
    assert await attempt(sessionmaker, item.id, COUNCIL_CHAT)
    early = await answer(sessionmaker, "poll-9", made.members[0], AGAINST, DURING)
    assert early is None and await ballots(sessionmaker) == {}
    (kept,) = await strays(sessionmaker)
    assert (kept.poll_id, kept.telegram_id, kept.option_ids, kept.at) == (
        "poll-9",
        made.members[0],
        AGAINST,
        DURING,
    )

    async with sessionmaker() as session:
        await council.record_poll(session, item.id, "poll-9", COUNCIL_CHAT, 700)
    found = (await ballots(sessionmaker))[(item.id, made.members[0])]
    assert (found.choice, found.counted, found.at) == (Choice.AGAINST, True, DURING)
    assert await strays(sessionmaker) == []  # counted: no longer kept apart
    async with sessionmaker() as session:
        assert await session.scalar(select(CouncilStrayPoll.poll_id)) is None
    assert await sends(sessionmaker) == {(item.id, COUNCIL_CHAT): PollSendState.SENT}
    # Recording it again (a retry) counts nothing twice, and changes nothing.
    later = await answer(sessionmaker, "poll-9", made.members[0], AGREE, DURING + timedelta(1))
    assert later is not None and later.counted
    async with sessionmaker() as session:
        await council.record_poll(session, item.id, "poll-9", COUNCIL_CHAT, 700)
    assert (await ballots(sessionmaker))[(item.id, made.members[0])].choice is Choice.AGREE


async def test_a_kept_answer_counts_as_of_when_it_was_given(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    made, vote = await setup(sessionmaker, org, items=1)
    (item,) = vote.items
    await answer(sessionmaker, "p", made.members[0], AGREE, CLOSES - timedelta(minutes=1))
    await answer(sessionmaker, "p", made.members[1], AGREE, CLOSES + timedelta(minutes=1))
    async with sessionmaker() as session:  # known only after the deadline, before the close
        await council.record_poll(session, item.id, "p", COUNCIL_CHAT, 700)
    found = await ballots(sessionmaker)
    assert found[(item.id, made.members[0])].counted is True
    assert found[(item.id, made.members[1])].ignored_reason == "late"


async def test_kept_answers_count_in_the_order_of_their_updates(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """Answers kept while their poll was unknown count in the order Telegram numbered their
    updates, not the order they were handled in; so does an older answer that comes once
    the poll is known."""
    made, vote = await setup(sessionmaker, org, items=1)
    (item,) = vote.items
    a, b, _ = made.members
    # a: Agree (update 51), then Against (52); 52 is handled first, both before record_poll.
    assert await answer(sessionmaker, "p", a, AGAINST, DURING, update_id=52) is None
    assert await answer(sessionmaker, "p", a, AGREE, DURING, update_id=51) is None
    # b: Against (61), then Agree (62): 62 is kept, 61 comes after the poll is known.
    assert await answer(sessionmaker, "p", b, AGREE, DURING, update_id=62) is None
    async with sessionmaker() as session:
        await council.record_poll(session, item.id, "p", COUNCIL_CHAT, 700)
    older = await answer(sessionmaker, "p", b, AGAINST, DURING, update_id=61)
    assert older is not None and not older.counted
    found = await ballots(sessionmaker)
    assert (found[(item.id, a)].choice, found[(item.id, a)].counted) == (Choice.AGAINST, True)
    assert (found[(item.id, b)].choice, found[(item.id, b)].counted) == (Choice.AGREE, True)


async def test_answers_to_a_poll_never_known_are_kept_not_counted(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    made, vote = await setup(sessionmaker, org)
    for n, member in enumerate(made.members):
        assert await answer(sessionmaker, "nobody-knows", member, [n % 3], DURING) is None
    async with sessionmaker() as session:
        result = await council.close_vote(session, vote.id, now=CLOSES)
    kept = await strays(sessionmaker)
    assert [(k.poll_id, k.telegram_id, k.option_ids) for k in kept] == [
        ("nobody-knows", member, [n % 3]) for n, member in enumerate(made.members)
    ]
    assert await ballots(sessionmaker) == {}
    assert result is not None and set(result.outcomes.values()) == {VoteOutcome.NO_QUORUM}
    # Kept for a season past any vote they could belong to, then forgotten by the nightly job.
    async with sessionmaker() as session:
        first = (await session.scalars(select(CouncilStrayPoll))).one().first_at
        assert await council.prune_strays(session, first + council.STRAY_RETENTION) == 0
        assert await council.prune_strays(session, first + timedelta(days=91)) == 1
        assert await council.prune_strays(session, first + timedelta(days=91)) == 0
    assert await strays(sessionmaker) == []


async def test_each_send_is_claimed_once(sessionmaker: Sessions, org: OrgTree) -> None:
    _, vote = await setup(sessionmaker, org)
    first, second = vote.items
    assert await attempt(sessionmaker, first.id, COUNCIL_CHAT)
    assert not await attempt(sessionmaker, first.id, COUNCIL_CHAT)  # in flight
    async with sessionmaker() as session:
        assert await council.unsettled_poll_sends(session, vote.id) == {
            (first.id, COUNCIL_CHAT): PollSendState.SENDING
        }
        await council.record_send_error(session, first.id, "Bad Request: no rights")
        refused = await session.get(CouncilPollSend, (first.id, COUNCIL_CHAT))
        assert refused is not None and refused.state is PollSendState.REFUSED
        assert refused.error == "Bad Request: no rights"
    assert await attempt(sessionmaker, first.id, COUNCIL_CHAT)  # refused: nothing posted
    async with sessionmaker() as session:
        again = await session.get(CouncilPollSend, (first.id, COUNCIL_CHAT))
        assert again is not None and (again.state, again.error) == (PollSendState.SENDING, None)
        await council.record_send_uncertain(session, first.id, "Request timeout error")
        assert await council.unsettled_poll_sends(session, vote.id) == {
            (first.id, COUNCIL_CHAT): PollSendState.UNCERTAIN
        }
        # A refusal told late never turns a send that may have posted a poll into a refused one.
        await council.record_send_error(session, first.id, "Bad Request: late")
    assert not await attempt(sessionmaker, first.id, COUNCIL_CHAT)  # it may exist
    assert await attempt(sessionmaker, second.id, COUNCIL_CHAT)
    async with sessionmaker() as session:
        await council.record_poll(session, second.id, "p2", COUNCIL_CHAT, 701)
        assert set(await council.unsettled_poll_sends(session, vote.id)) == {
            (first.id, COUNCIL_CHAT)
        }
    assert not await attempt(sessionmaker, second.id, COUNCIL_CHAT)  # posted
    assert await sends(sessionmaker) == {
        (first.id, COUNCIL_CHAT): PollSendState.UNCERTAIN,
        (second.id, COUNCIL_CHAT): PollSendState.SENT,
    }
    async with sessionmaker() as session:
        assert await council.close_vote(session, vote.id, now=CLOSES) is not None
    assert not await attempt(sessionmaker, second.id, -1)  # closed: nothing more is sent
    async with sessionmaker() as session:
        with pytest.raises(RuleViolation) as raised:
            await council.record_poll_attempt(session, 999_999, COUNCIL_CHAT)
    assert raised.value.code == "unknown_vote_item"


async def test_two_senders_claim_a_send_once(database_url: str, org: OrgTree) -> None:
    """Two replicas (two engines) claiming the same sends at once: one each."""
    engines = [create_engine(database_url) for _ in range(2)]
    try:
        makers = [create_sessionmaker(e) for e in engines]
        _, vote = await setup(makers[0], org, items=4)
        for item in vote.items:
            won = await asyncio.gather(
                *(attempt(makers[n % 2], item.id, COUNCIL_CHAT) for n in range(4))
            )
            assert sum(won) == 1
    finally:
        for e in engines:
            await e.dispose()


async def test_an_uncertain_send_is_told_to_the_convener(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    _, vote = await setup(sessionmaker, org, group=False)
    item = vote.items[1]
    async with sessionmaker() as session:
        await session.execute(
            update(Person)
            .where(Person.telegram_id == 30_002)
            .values(first_name="议事2", username="yishi2")
        )
        await session.commit()
        for _ in range(2):  # told once
            await council.record_send_uncertain(
                session, item.id, "Request timeout error", chat_id=30_002
            )
        stored = await session.get(CouncilVoteItem, item.id)
        (told,) = (
            await session.scalars(
                select(Notification).where(Notification.kind == council.POLL_SEND_UNCERTAIN)
            )
        ).all()
        event = await session.scalar(
            select(AuditEvent).where(AuditEvent.action == council.POLL_SEND_UNCERTAIN)
        )
    assert stored is not None
    assert stored.send_error == council.UNCERTAIN_PREFIX + "Request timeout error"
    assert told.chat_id == STAFF_TID and told.dedupe_key == f"poll_send_uncertain:{item.id}:30002"
    assert told.params == {
        "vote_id": vote.id,
        "item_id": item.id,
        "number": item.suggestion.number,
        "title": item.suggestion.title,
        "chat_id": 30_002,
        "error": "Request timeout error",
        "member": "议事2 @yishi2",
    }
    assert event is not None and event.public is False
    assert event.details == {
        "item_id": item.id,
        "chat_id": 30_002,
        "error": "Request timeout error",
    }
    assert await sends(sessionmaker) == {(item.id, 30_002): PollSendState.UNCERTAIN}


async def test_a_lost_answer_told_after_its_poll_was_recognised_changes_nothing(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """sendPoll's answer is lost after members answered in the poll and Telegram's `poll`
    update showed it: the poll is known, so nothing is in doubt and nobody is alarmed."""
    made, vote = await setup(sessionmaker, org, items=1)
    (item,) = vote.items
    assert await attempt(sessionmaker, item.id, COUNCIL_CHAT)
    assert await answer(sessionmaker, "poll-1", made.members[0], AGREE, DURING) is None
    assert await seen(sessionmaker, "poll-1", question_of(vote, 0)) is not None
    async with sessionmaker() as session:
        await council.record_send_uncertain(session, item.id, "Request timeout error")
        stored = await session.get(CouncilVoteItem, item.id)
        assert stored is not None and stored.send_error is None
        told = await session.scalar(
            select(Notification.id).where(Notification.kind == council.POLL_SEND_UNCERTAIN)
        )
        assert told is None
    assert await sends(sessionmaker) == {(item.id, COUNCIL_CHAT): PollSendState.SENT}
    assert (await ballots(sessionmaker))[(item.id, made.members[0])].counted


async def test_the_orphan_of_an_uncertain_send_is_recognised_and_counted(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """The reviewer's case: the first poll was posted but its answer lost; members answer in
    it. Telegram's `poll` update names its question: it is recorded, the answers count."""
    made, vote = await setup(sessionmaker, org)
    orphan, other = vote.items
    assert await attempt(sessionmaker, orphan.id, COUNCIL_CHAT)
    async with sessionmaker() as session:
        await council.record_send_uncertain(session, orphan.id, "Request timeout error")
    assert await attempt(sessionmaker, other.id, COUNCIL_CHAT)
    async with sessionmaker() as session:
        await council.record_poll(session, other.id, "poll-2", COUNCIL_CHAT, 702)

    assert await answer(sessionmaker, "poll-1", made.members[0], AGREE, DURING) is None
    found = await seen(sessionmaker, "poll-1", question_of(vote, 0))
    assert found == council.RecognisedPoll(vote.id, orphan.id, COUNCIL_CHAT, False)
    assert await seen(sessionmaker, "poll-1", question_of(vote, 0)) is None  # known now
    after = await answer(sessionmaker, "poll-1", made.members[1], AGREE, DURING)
    assert after is not None and after.counted
    counted = await ballots(sessionmaker)
    assert {k for k, b in counted.items() if b.counted} == {
        (orphan.id, made.members[0]),
        (orphan.id, made.members[1]),
    }
    async with sessionmaker() as session:
        stored = await session.get(CouncilVoteItem, orphan.id)
        assert stored is not None and stored.send_error is None  # no longer in doubt
        detail = await council.vote_detail(session, vote.id)
        assert detail is not None
        assert {(p.poll_id, p.message_id) for p in detail.polls} == {
            ("poll-1", None),
            ("poll-2", 702),
        }
        recognised = await session.scalar(
            select(AuditEvent).where(AuditEvent.action == council.POLL_RECOGNISED)
        )
        assert recognised is not None and recognised.public is False
        result = await council.close_vote(session, vote.id, now=CLOSES)
    assert result is not None
    assert result.outcomes[orphan.id] is VoteOutcome.RESOLVED  # 2 of 3 agree
    assert result.polls_to_stop == [(COUNCIL_CHAT, 702)]  # its message id is not known


async def test_a_poll_seen_before_its_answers(sessionmaker: Sessions, org: OrgTree) -> None:
    made, vote = await setup(sessionmaker, org, items=1)
    (item,) = vote.items
    assert await attempt(sessionmaker, item.id, COUNCIL_CHAT)
    async with sessionmaker() as session:
        await council.record_send_uncertain(session, item.id, "Internal Server Error")
    found = await seen(sessionmaker, "poll-1", question_of(vote, 0))
    assert found is not None and found.item_id == item.id
    results = [await answer(sessionmaker, "poll-1", m, AGREE, DURING) for m in made.members]
    assert all(r is not None and r.counted for r in results)
    assert results[-1] is not None and results[-1].everyone_voted  # the bot may close early


async def test_a_poll_recognised_before_record_poll_gets_its_message(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """The `poll` update of a poll in flight came before record_poll: both record it once,
    and a change made in between is not undone by counting the kept answer again."""
    made, vote = await setup(sessionmaker, org, items=1)
    (item,) = vote.items
    member = made.members[0]
    assert await attempt(sessionmaker, item.id, COUNCIL_CHAT)
    assert await answer(sessionmaker, "poll-1", member, AGREE, DURING) is None
    assert await seen(sessionmaker, "poll-1", question_of(vote, 0)) is not None
    changed = await answer(sessionmaker, "poll-1", member, AGAINST, DURING + timedelta(1))
    assert changed is not None and changed.counted
    async with sessionmaker() as session:
        await council.record_poll(session, item.id, "poll-1", COUNCIL_CHAT, 703)
        (poll,) = (await session.scalars(select(CouncilPoll))).all()
        assert (poll.chat_id, poll.message_id) == (COUNCIL_CHAT, 703)
        assert await council.unsettled_poll_sends(session, vote.id) == {}
        assert await session.scalar(select(CouncilStrayPoll.poll_id)) is None
    assert (await ballots(sessionmaker))[(item.id, member)].choice is Choice.AGAINST


async def test_what_is_not_recognised(sessionmaker: Sessions, org: OrgTree) -> None:
    made, vote = await setup(sessionmaker, org)
    first, second = vote.items
    # No send of it is in doubt: an unknown poll with its question is not ours to count.
    assert await seen(sessionmaker, "x1", question_of(vote, 0)) is None
    assert await attempt(sessionmaker, first.id, COUNCIL_CHAT)
    async with sessionmaker() as session:
        await council.record_send_uncertain(session, first.id, "timeout")
    # Not its question, not its deadline.
    assert await seen(sessionmaker, "x2", question_of(vote, 1)) is None
    assert await seen(sessionmaker, "x3", "新沙-9999-0001 别的") is None
    late = CLOSES + timedelta(days=1)
    assert await seen(sessionmaker, "x4", question_of(vote, 0), close_date=late) is None
    async with sessionmaker() as session:
        assert await session.scalar(select(CouncilPoll.poll_id)) is None
        assert await council.close_vote(session, vote.id, now=CLOSES) is not None
    # The vote is closed: nothing is recognised any more.
    assert await seen(sessionmaker, "x5", question_of(vote, 0)) is None
    assert await answer(sessionmaker, "x5", made.members[0], AGREE, CLOSES) is None
    assert second.id not in {b.item_id for b in (await ballots(sessionmaker)).values()}


async def test_private_orphans_are_placed_by_who_answers(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """Private delivery: the same candidate in doubt in two members' chats. The `poll`
    update names the candidate, the answer the chat (only its member is in it)."""
    made, vote = await setup(sessionmaker, org, items=1, group=False)
    (item,) = vote.items
    one, two, three = made.members
    for member in (one, two):
        assert await attempt(sessionmaker, item.id, member)
        async with sessionmaker() as session:
            await council.record_send_uncertain(session, item.id, "timeout", chat_id=member)
    # The `poll` update first: which chat is not known yet.
    assert await seen(sessionmaker, "pp-2", question_of(vote, 0)) is None
    async with sessionmaker() as session:
        kept = await session.get(CouncilStrayPoll, "pp-2")
        assert kept is not None and kept.item_id == item.id  # its candidate, for the answer
    result = await answer(sessionmaker, "pp-2", two, AGREE, DURING)
    assert result is not None and result.counted
    # The answer first: recognised when the `poll` update comes.
    assert await answer(sessionmaker, "pp-1", one, AGAINST, DURING) is None
    found = await seen(sessionmaker, "pp-1", question_of(vote, 0))
    assert found is not None and found.chat_id == one
    async with sessionmaker() as session:
        polls = {p.poll_id: p.chat_id for p in (await session.scalars(select(CouncilPoll)))}
        assert await council.unsettled_poll_sends(session, vote.id) == {}
        stored = await session.get(CouncilVoteItem, item.id)
        assert stored is not None and stored.send_error is None
    assert polls == {"pp-1": one, "pp-2": two}
    counted = {k: b.choice for k, b in (await ballots(sessionmaker)).items() if b.counted}
    assert counted == {(item.id, one): Choice.AGAINST, (item.id, two): Choice.AGREE}
    assert three not in polls.values()


async def test_an_answer_racing_its_record_poll_is_never_lost(
    database_url: str, org: OrgTree
) -> None:
    """The answer and record_poll of the same poll at once, from two replicas: whichever
    commits first, the answer counts (neither misses the other: both take the stray row)."""
    engines = [create_engine(database_url) for _ in range(2)]
    try:
        recorder, answerer = (create_sessionmaker(e) for e in engines)
        made, vote = await setup(recorder, org, items=6)
        for n, item in enumerate(vote.items):
            assert await attempt(recorder, item.id, COUNCIL_CHAT)

            async def record(item_id: int = item.id, n: int = n) -> None:
                async with recorder() as session:
                    await council.record_poll(session, item_id, f"race-{n}", COUNCIL_CHAT, n)

            await asyncio.gather(
                record(), answer(answerer, f"race-{n}", made.members[0], AGREE, DURING)
            )
        found = await ballots(recorder)
        assert {item_id for (item_id, _), b in found.items() if b.counted} == {
            item.id for item in vote.items
        }
        assert await strays(recorder) == []
    finally:
        for e in engines:
            await e.dispose()
