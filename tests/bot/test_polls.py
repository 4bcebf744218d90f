"""Council votes as native polls (bot.polls): the header and one poll per candidate within
Telegram's limits, a refused poll surfaced to the convener, private delivery, close_date,
stopping the polls, and the close-and-stop the poll_answer handler calls; a run stopped
before its end lets go of its lease on the vote, so another carries on at once. The header
says the vote closes early once everyone has voted. A member Telegram would not let the bot
write to (never started it, or blocked it) is named to the convener and sent the polls once
he writes to the bot, once, also when he comes back while they are still being sent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiogram.exceptions import TelegramNotFound
from aiogram.methods import SendMessage, SendPoll, StopPoll
from aiogram.types import InputPollOption
from aiogram.utils.i18n import I18n
from sending_fakes import (
    COMMUNITY_CHAT,
    COUNCIL_CHAT,
    STAFF_TID,
    T0,
    Council,
    FakePollRuntime,
    JumpClock,
    PollRig,
    TelegramDouble,
    add_candidates,
    bad_request,
    convene,
    forbidden,
    in_days,
    make_council,
    max_in_window,
    member_tid,
    min_gap,
    retry_after,
    until,
)
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import Harness, last_text, make_bot, make_harness, make_settings, parse_html
from telegram_fakes import Person as TelegramPerson

from bot.notify_texts import NotificationRenderer
from bot.outbox import OutboxSender
from bot.polls import (
    CLOSE_DATE_MAX,
    POLL_OPTIONS,
    _Item,
    _Plan,
    cancel_background,
    close_and_stop,
    close_date_for,
    council_poll_sender,
    header_texts,
    poll_options,
    schedule_vote_polls,
    send_claimed_vote_polls,
    stop_claimed_vote_polls,
    stop_polls,
    vote_closer,
    wait_background,
)
from bot.ratelimit import Limits, MemorySendLimiter
from storage import rules
from storage.models import (
    CouncilPoll,
    CouncilPollSend,
    CouncilVote,
    CouncilVoteItem,
    Notification,
    Person,
    PollSendState,
    Suggestion,
    VoteStatus,
)
from storage.rules import Category, Kind, VoteOutcome
from storage.services import chats, council
from webhook.jobs import resume_poll_sending

pytest_plugins = ["telegram_fakes", "sending_fakes"]

Sessions = async_sessionmaker[AsyncSession]
CLOSES = in_days(3)
LOCAL_CLOSES = "2026-05-04 10:00"  # CLOSES in Asia/Shanghai


Rig = PollRig


@pytest.fixture
def rig(sessionmaker: Sessions, pending_i18n: I18n) -> Rig:
    return Rig(sessionmaker, pending_i18n)


async def polls_of(sessionmaker: Sessions, vote_id: int) -> list[CouncilPoll]:
    async with sessionmaker() as session:
        detail = await council.vote_detail(session, vote_id)
        assert detail is not None
        return detail.polls


def poll_requests(double: TelegramDouble, chat_id: int | None = None) -> list[SendPoll]:
    return [r.method for r in double.delivered(chat_id, "SendPoll")]  # type: ignore[misc]


async def test_thirteen_candidates_in_the_council_group(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    council_ = await make_council(sessionmaker, org.xinsha_id, size=5)
    ids = await add_candidates(council_, [f"候选项目{n}" for n in range(1, 14)])
    vote = await convene(council_, ids, closes_at=CLOSES)
    report = await rig.send(vote.id)

    assert len(report.polls) == 13 and report.failed == [] and report.header_messages == 1
    sent = rig.double.delivered(COUNCIL_CHAT)
    assert [r.name for r in sent] == ["SendMessage"] + ["SendPoll"] * 13
    assert rig.double.delivered(COMMUNITY_CHAT) == []  # polls go to the council only
    header = parse_html(sent[0].method.text)  # type: ignore[attr-defined]
    assert "居民议事会表决" in header and "新沙社区" in header and LOCAL_CLOSES in header
    assert all(f"{n}. 新沙-2026-{n:04d} 候选项目{n}" in header for n in range(1, 14))
    assert "同意" in header and "反对" in header and "弃权" in header

    for position, method in enumerate(poll_requests(rig.double), start=1):
        assert method.question == f"新沙-2026-{position:04d} 候选项目{position}"
        assert [o.text for o in method.options] == list(POLL_OPTIONS)  # type: ignore[union-attr]
        assert method.is_anonymous is False and method.allows_multiple_answers is False
        assert method.close_date == vote.closes_at  # 3 days ahead: Telegram closes it too
    # Telegram's pace: a second apart in the chat, at most 20 a minute.
    times = [r.at for r in sent]
    assert min_gap(times) >= 1 and max_in_window(times, 60) <= 20

    # Each poll is recorded against its candidate, in order.
    recorded = await polls_of(sessionmaker, vote.id)
    by_item = {p.item_id: p for p in recorded}
    for item, poll in zip(vote.items, report.polls, strict=True):
        assert by_item[item.id].poll_id == poll.poll_id
        assert by_item[item.id].chat_id == COUNCIL_CHAT
        assert by_item[item.id].message_id == poll.message_id

    # A second run (a retry, another replica) sends nothing twice.
    again = await rig.send(vote.id)
    assert again.polls == [] and again.skipped == 13 and again.header_messages == 0
    assert len(rig.double.delivered(COUNCIL_CHAT)) == 14


async def test_the_header_says_what_each_candidate_is(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    """The council discusses more than titles (商议): each candidate's category, kind and
    estimate (flagged above its kind's cap) and the start of its description."""
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, ["长者助餐", "楼道灯"])
    async with sessionmaker() as session:
        await session.execute(
            update(Suggestion)
            .where(Suggestion.id == ids[0])
            .values(kind=Kind.SERVICE, estimated_cost_fen=30_000_000, description="送餐上门" * 60)
        )
        await session.commit()
    vote = await convene(council_, ids, closes_at=CLOSES)
    await rig.send(vote.id)
    header = parse_html(rig.double.delivered(COUNCIL_CHAT)[0].method.text)  # type: ignore[attr-defined]
    assert "1. 新沙-2026-0001 长者助餐\n社区环境整治 · 服务项目 · 约 ¥300,000\n⚠️ 超过" in header
    assert "送餐上门" * 39 + "送餐上…" in header and "送餐上门" * 40 not in header
    assert "2. 新沙-2026-0002 楼道灯\n社区环境整治 · 服务项目\n说明" in header


async def test_twenty_five_candidates_take_over_a_minute(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, [f"项目{n}" for n in range(25)])
    vote = await convene(council_, ids, closes_at=CLOSES)
    report = await rig.send(vote.id)
    assert len(report.polls) == 25
    times = [r.at for r in rig.double.delivered(COUNCIL_CHAT)]
    assert len(times) == 26
    assert max_in_window(times, 60) <= 20 and min_gap(times) >= 1
    assert max(times) - min(times) >= 60


async def test_a_refused_poll_is_recorded_and_told_to_the_convener(
    rig: Rig, sessionmaker: Sessions, org: Any, pending_i18n: I18n
) -> None:
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, [f"项目{n}" for n in range(1, 6)])
    vote = await convene(council_, ids, closes_at=CLOSES)
    refused = vote.items[2]
    rig.double.fail_when(
        lambda m: isinstance(m, SendPoll) and m.question.startswith(refused.suggestion.number),
        bad_request("POLL_QUESTION_INVALID"),
    )
    report = await rig.send(vote.id)
    assert len(report.polls) == 4
    assert [(f.item_id, f.chat_id) for f in report.failed] == [(refused.id, COUNCIL_CHAT)]
    async with sessionmaker() as session:
        item = await session.get(CouncilVoteItem, refused.id)
        assert item is not None and "POLL_QUESTION_INVALID" in (item.send_error or "")
        others = await session.scalars(
            select(CouncilVoteItem.send_error).where(CouncilVoteItem.id != refused.id)
        )
        assert set(others.all()) == {None}
        (told,) = (
            await session.scalars(
                select(Notification).where(Notification.kind == "poll_send_failed")
            )
        ).all()
    assert told.chat_id == STAFF_TID and told.params["item_id"] == refused.id
    assert len(await polls_of(sessionmaker, vote.id)) == 4

    # The outbox tells the convener, in their language.
    clock = JumpClock()
    sender = OutboxSender(
        rig.bot,
        sessionmaker,
        MemorySendLimiter(clock=clock, sleep=clock.sleep),
        NotificationRenderer(pending_i18n, make_settings().tz),
        now=lambda: datetime.now(UTC) + timedelta(days=1),
        monotonic=clock,
        sleep=clock.sleep,
    )
    await sender.run_once(500)
    (text,) = rig.double.texts_in(STAFF_TID)
    assert "拒绝" in text and refused.suggestion.number in text and "POLL_QUESTION_INVALID" in text

    # Nothing was posted: a later run (the resume job) sends that one, and only that one.
    async with sessionmaker() as session:
        sends = await council.poll_sends(session, vote.id)
    assert sends == {
        (item.id, COUNCIL_CHAT): PollSendState.REFUSED if item is refused else PollSendState.SENT
        for item in vote.items
    }
    rig.double.rules.clear()
    again = await rig.send(vote.id)
    assert [(p.item_id, p.chat_id) for p in again.polls] == [(refused.id, COUNCIL_CHAT)]
    assert again.skipped == 4 and again.header_messages == 0
    async with sessionmaker() as session:
        assert set((await council.poll_sends(session, vote.id)).values()) == {PollSendState.SENT}


async def test_question_and_options_at_their_limits(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, ["占位一", "占位二"])
    # Longer titles than the bot takes (an import, an older release): 255 emoji are 510
    # UTF-16 units; and markup that Telegram would try to parse if given a parse mode.
    async with sessionmaker() as session:
        await session.execute(
            update(Suggestion).where(Suggestion.id == ids[0]).values(title="😀" * 255)
        )
        await session.execute(
            update(Suggestion).where(Suggestion.id == ids[1]).values(title='路灯 <script> & "x"')
        )
        await session.commit()
    vote = await convene(council_, ids, closes_at=CLOSES)
    report = await rig.send(vote.id)
    assert report.failed == [] and len(report.polls) == 2
    long, markup = poll_requests(rig.double)
    assert rules.utf16_len(long.question) <= rules.POLL_QUESTION_MAX
    assert rules.utf16_len(long.question) >= rules.POLL_QUESTION_MAX - 2
    assert long.question.endswith("…") and "\ud83d" not in long.question
    assert markup.question.endswith('路灯 <script> & "x"')  # sent as text, not HTML
    for option in poll_options():
        assert isinstance(option, InputPollOption)
        assert 1 <= rules.utf16_len(option.text) <= rules.POLL_OPTION_MAX
        assert option.text_parse_mode is None


def test_close_date_rules() -> None:
    closes = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)
    assert close_date_for(closes, closes - timedelta(days=3)) == closes
    assert close_date_for(closes, closes - timedelta(days=30)) == closes
    assert close_date_for(closes, closes - timedelta(minutes=2)) == closes
    # Too close to now (Telegram wants at least 5 s, and the request takes time) or beyond
    # Telegram's 2,628,000 s: no close_date, the scheduler's close stops the poll.
    assert close_date_for(closes, closes - timedelta(seconds=20)) is None
    assert close_date_for(closes, closes - timedelta(seconds=CLOSE_DATE_MAX + 1)) is None
    assert close_date_for(closes, closes + timedelta(seconds=1)) is None


async def test_deadline_passing_midway_stops_sending(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, [f"项目{n}" for n in range(25)])
    # 25 polls in a group take over a minute; the vote closes after 30 s.
    vote = await convene(council_, ids, closes_at=T0 + timedelta(seconds=30))
    report = await rig.send(vote.id)
    assert 0 < len(report.polls) < 25
    first = poll_requests(rig.double)[0]
    assert first.close_date is None  # 30 s ahead is too near for Telegram's close_date


async def test_private_delivery_when_there_is_no_council_group(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3, council_chat=False)
    async with sessionmaker() as session:
        await session.execute(
            update(Person).where(Person.telegram_id == member_tid(1)).values(locale="en")
        )
        await session.commit()
    ids = await add_candidates(council_, ["修路灯", "装座椅"])
    vote = await convene(council_, ids, closes_at=CLOSES)
    rig.double.fail_in_chat(member_tid(2), forbidden(), times=None)
    report = await rig.send(vote.id)

    for n, language_marker in ((0, "居民议事会表决"), (1, "Residents' council vote")):
        sent = rig.double.delivered(member_tid(n))
        assert [r.name for r in sent] == ["SendMessage", "SendPoll", "SendPoll"]
        assert language_marker in parse_html(sent[0].method.text)  # type: ignore[attr-defined]
    assert len(report.polls) == 4
    # The member who blocked the bot: recorded once, the person marked, the convener told.
    assert [(f.item_id, f.chat_id) for f in report.failed] == [(vote.items[0].id, member_tid(2))]
    async with sessionmaker() as session:
        person = await session.scalar(select(Person).where(Person.telegram_id == member_tid(2)))
        assert person is not None and person.blocked_bot_at is not None
        told = (
            await session.scalars(
                select(Notification).where(Notification.kind == "poll_send_failed")
            )
        ).all()
    assert [(n.chat_id, n.params["chat_id"]) for n in told] == [(STAFF_TID, member_tid(2))]


async def test_a_council_group_whose_admins_chose_english_gets_an_english_header(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3)
    async with sessionmaker() as session:
        await chats.set_chat_locale(
            session, COUNCIL_CHAT, "en", title="议事会", chat_type="supergroup",
            chosen_by_person_id=None,
        )  # fmt: skip
        await session.commit()
    vote = await convene(council_, await add_candidates(council_, ["修路灯"]), closes_at=CLOSES)
    await rig.send(vote.id)
    header = parse_html(rig.double.delivered(COUNCIL_CHAT)[0].method.text)  # type: ignore[attr-defined]
    assert "Residents' council vote" in header


async def test_retry_after_while_sending_is_waited_out(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, ["一", "二", "三"])
    vote = await convene(council_, ids, closes_at=CLOSES)
    rig.double.fail_in_chat(COUNCIL_CHAT, retry_after(25), SendPoll)
    report = await rig.send(vote.id)
    assert len(report.polls) == 3 and report.failed == []
    tries = [r for r in rig.double.requests if r.name == "SendPoll"]
    assert tries[0].refused and tries[1].at - tries[0].at >= 25


# --- stopping, closing ---------------------------------------------------------------------


async def voted_vote(rig: Rig, sessionmaker: Sessions, org: Any) -> tuple[Council, Any]:
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, ["修路灯", "装座椅"])
    vote = await convene(council_, ids, closes_at=CLOSES)
    await rig.send(vote.id)
    return council_, vote


async def everyone_answers(sessionmaker: Sessions, council_: Council, vote_id: int) -> None:
    for poll in await polls_of(sessionmaker, vote_id):
        for n, member in enumerate(council_.members):
            async with sessionmaker() as session:
                result = await council.record_answer(
                    session, poll.poll_id, member, [n % 3], now=T0 + timedelta(hours=1)
                )
                await session.commit()
                assert result is not None and result.counted


async def test_stop_polls_tolerates_closed_and_missing(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    _, vote = await voted_vote(rig, sessionmaker, org)
    polls = [(p.chat_id, p.message_id) for p in await polls_of(sessionmaker, vote.id)]
    (stopped,) = await rig.clock.run(
        stop_polls(rig.bot, polls, rig.limiter, sessionmaker=sessionmaker)
    )
    assert stopped == 2
    assert all(p["is_closed"] for p in rig.double.polls.values())
    assert all(p.stopped_at is not None for p in await polls_of(sessionmaker, vote.id))
    # Again (another replica, a retry), and a message that is gone: no error.
    (again,) = await rig.clock.run(
        stop_polls(rig.bot, [*polls, (COUNCIL_CHAT, 999_999)], rig.limiter)
    )
    assert again == 3
    refusals = [r.refused for r in rig.double.requests if r.name == "StopPoll" and r.refused]
    assert len(refusals) == 3


async def test_stop_polls_does_not_repeat_what_telegram_refused(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    """A refusal (here a 404) did nothing and would come again: stopPoll, harmless to repeat
    when its answer is lost, is not repeated when Telegram refused it (it was, up to five
    times, as if the network had failed). The poll is left for the next stopping run."""
    _, vote = await voted_vote(rig, sessionmaker, org)
    polls = [(p.chat_id, p.message_id) for p in await polls_of(sessionmaker, vote.id)]
    rig.double.fail_when(
        lambda m: isinstance(m, StopPoll), lambda m: TelegramNotFound(method=m, message="Not Found")
    )
    (stopped,) = await rig.clock.run(stop_polls(rig.bot, polls, rig.limiter))
    assert stopped == 1
    refused = [r.refused for r in rig.double.requests if r.name == "StopPoll"]
    assert len(refused) == 2 and "Not Found" in (refused[0] or "") and refused[1] is None


async def test_close_and_stop_when_everyone_voted(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    council_, vote = await voted_vote(rig, sessionmaker, org)
    runtime = FakePollRuntime(make_settings(), rig.bot, sessionmaker, limiter=rig.limiter)
    # Before the deadline and before everyone voted: not closed.
    assert await close_and_stop(runtime, vote.id, now=T0 + timedelta(hours=2)) is None
    await everyone_answers(sessionmaker, council_, vote.id)
    (result,) = await rig.clock.run(close_and_stop(runtime, vote.id, now=T0 + timedelta(hours=3)))
    assert result is not None and set(result.outcomes) == {i.id for i in vote.items}
    assert set(result.outcomes.values()) == {VoteOutcome.NOT_PASSED}  # 1 of 3 agree
    await rig.clock.run(wait_background(runtime))  # the polls are stopped in the background
    assert [r.name for r in rig.double.delivered(COUNCIL_CHAT)].count("StopPoll") == 2
    assert all(p.stopped_at is not None for p in await polls_of(sessionmaker, vote.id))
    async with sessionmaker() as session:
        stored = await council.get_vote(session, vote.id)
        assert stored is not None and stored.status is VoteStatus.CLOSED
        kinds = (await session.scalars(select(Notification.kind))).all()
    assert kinds.count("vote_result") == 2  # the council's group and the community's
    assert stored.polls_lease_until is None  # the stopping's lease, let go once all stopped
    # Closing again (the handler's hook racing the scheduler, another replica): nothing.
    assert await vote_closer(runtime)(vote.id) is None


async def test_scheduled_sending_in_the_background(
    sessionmaker: Sessions, org: Any, pending_i18n: I18n
) -> None:
    double = TelegramDouble()
    bot = make_bot(double)
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, ["一", "二"])
    now = datetime.now(UTC)
    first = await convene(council_, ids[:1], closes_at=now + timedelta(days=2), now=now)
    second = await convene(council_, ids[1:], closes_at=now + timedelta(days=2), now=now)
    quick = MemorySendLimiter(Limits(chat_interval=0.01))
    runtime = FakePollRuntime(make_settings(), bot, sessionmaker, i18n=pending_i18n)
    assert isinstance(runtime.limiter, MemorySendLimiter)  # the default
    runtime.limiter = quick
    schedule_vote_polls(runtime, first.id)  # returns at once
    sender = council_poll_sender(runtime)
    await sender(second.id)  # the officials' API awaits it: also at once
    await wait_background(runtime)
    assert len(double.delivered(COUNCIL_CHAT, "SendPoll")) == 2
    assert len(await polls_of(sessionmaker, first.id)) == 1
    assert len(await polls_of(sessionmaker, second.id)) == 1


async def stored_vote(sessionmaker: Sessions, vote_id: int) -> CouncilVote:
    async with sessionmaker() as session:
        stored = await session.get(CouncilVote, vote_id)
        assert stored is not None
        return stored


async def test_a_sender_stopped_midway_lets_go_of_the_vote(
    sessionmaker: Sessions, org: Any, pending_i18n: I18n
) -> None:
    """A shutdown cancels the run while the second poll waits for its turn (a second, in a
    group): the sending lease is let go at once, not after ten minutes, and the polls do not
    count as sent, so the next run (the resume job) sends the rest."""
    double = TelegramDouble()
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, ["一", "二", "三"])
    now = datetime.now(UTC)
    vote = await convene(council_, ids, closes_at=now + timedelta(days=2), now=now)
    runtime = FakePollRuntime(make_settings(), make_bot(double), sessionmaker, i18n=pending_i18n)
    runtime.limiter = MemorySendLimiter(Limits())  # Telegram's pace for a group
    schedule_vote_polls(runtime, vote.id)

    async def first_poll_recorded() -> bool:
        async with sessionmaker() as session:
            sent = await session.scalar(
                select(func.count())
                .select_from(CouncilPollSend)
                .where(CouncilPollSend.state == PollSendState.SENT)
            )
        return bool(sent)

    # Stopped once the first poll is recorded (before that, a stop would leave it uncertain:
    # sent, its answer not yet kept), while the second waits for its turn.
    await until(first_poll_recorded)
    await cancel_background(runtime, grace=0.1)
    assert len(double.delivered(COUNCIL_CHAT, "SendPoll")) == 1
    stored = await stored_vote(sessionmaker, vote.id)
    assert stored.polls_lease_until is None and stored.polls_sent_at is None

    report = await send_claimed_vote_polls(runtime, vote.id)
    assert report is not None and len(report.polls) == 2 and report.uncertain == []
    assert len(double.delivered(COUNCIL_CHAT, "SendPoll")) == 3
    assert (await stored_vote(sessionmaker, vote.id)).polls_sent_at is not None


async def test_a_lease_is_let_go_only_by_the_run_that_holds_it(
    sessionmaker: Sessions, org: Any
) -> None:
    """A run that outlived its lease lets go of nothing: the lease another replica took
    since is that replica's."""
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3)
    vote = await convene(council_, await add_candidates(council_, ["一"]), closes_at=CLOSES)
    async with sessionmaker() as session:
        assert await council.claim_poll_sending(session, vote.id, now=T0)
        stale = await council.held_poll_lease(session, vote.id)
        later = T0 + council.POLL_SENDING_LEASE + timedelta(minutes=1)
        assert await council.claim_poll_sending(session, vote.id, now=later)
        current = await council.held_poll_lease(session, vote.id)
        assert stale is not None and current is not None and current > stale
        assert not await council.release_poll_lease(session, vote.id, until=stale)
        assert await council.held_poll_lease(session, vote.id) == current
        assert await council.release_poll_lease(session, vote.id, until=current)
        assert await council.held_poll_lease(session, vote.id) is None


async def test_polls_not_stopped_keep_the_stopping_lease(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    """A poll Telegram would not stop: the lease is kept until it runs out, so the job tries
    again then, not on every tick; once all are stopped it is let go."""
    council_, vote = await voted_vote(rig, sessionmaker, org)
    await everyone_answers(sessionmaker, council_, vote.id)
    async with sessionmaker() as session:
        assert await council.close_vote(session, vote.id, now=T0 + timedelta(hours=2))
    runtime = FakePollRuntime(make_settings(), rig.bot, sessionmaker, limiter=rig.limiter)
    rig.double.fail_in_chat(COUNCIL_CHAT, bad_request("message can't be edited"), StopPoll)
    at = T0 + timedelta(hours=2)
    (stopped,) = await rig.clock.run(stop_claimed_vote_polls(runtime, vote.id, now=at))
    assert stopped == 1
    held = (await stored_vote(sessionmaker, vote.id)).polls_lease_until
    assert held == at + council.POLL_STOPPING_LEASE
    assert await stop_claimed_vote_polls(runtime, vote.id, now=at + timedelta(minutes=1)) is None
    after = at + council.POLL_STOPPING_LEASE + timedelta(seconds=1)
    (stopped,) = await rig.clock.run(stop_claimed_vote_polls(runtime, vote.id, now=after))
    assert stopped == 1
    assert (await stored_vote(sessionmaker, vote.id)).polls_lease_until is None
    assert all(p.stopped_at is not None for p in await polls_of(sessionmaker, vote.id))
    assert await stop_claimed_vote_polls(runtime, vote.id, now=after) is None  # none left


async def test_unknown_or_closed_vote_sends_nothing(rig: Rig, sessionmaker: Sessions) -> None:
    report = await rig.send(12345)
    assert report.found is False and rig.double.requests == []


def test_stop_poll_and_send_poll_are_what_we_call() -> None:
    # The double answers these three as Telegram does; a rename in aiogram would show here.
    assert {SendMessage.__api_method__, SendPoll.__api_method__, StopPoll.__api_method__} == {
        "sendMessage",
        "sendPoll",
        "stopPoll",
    }


# --- the header: when the vote closes, and the council's size ---------------------------------


def one_candidate_plan(council_size: int = 5) -> _Plan:
    return _Plan(
        vote_id=1,
        community="新沙社区",
        closes_at=datetime(2026, 12, 2, 10, 3, tzinfo=UTC),
        council_size=council_size,
        quorum_pct=50,
        threshold_pct=50,
        items=[
            _Item(
                id=1,
                position=1,
                number="新沙-2026-0002",
                title="小广场增设一组健身器材",
                category=Category.CULTURE_SPORTS,
                kind=Kind.PHYSICAL,
                cost_fen=6_000_000,
                description="新沙小广场只有两件健身器材。",
            )
        ],
        chats={-100: "zh"},
        sends={},
    )


def header_of(plan: _Plan, locale: str, i18n: I18n) -> str:
    return parse_html("\n".join(header_texts(plan, locale, i18n, make_settings().tz)))


def test_the_council_is_told_the_vote_closes_once_everyone_has_voted(
    pending_i18n: I18n,
) -> None:
    """The vote closes, and its polls stop, as soon as the last member has answered: a member
    who answered early, meaning to think again before the deadline, is told so beforehand."""
    zh = header_of(one_candidate_plan(), "zh", pending_i18n)
    en = header_of(one_candidate_plan(), "en", pending_i18n)
    assert "截止前可以修改选择" not in zh and "until the deadline" not in en
    assert "表决结束前可以修改选择" in zh
    assert "如果所有议事会成员都已投票，则提前结束" in zh
    assert "You can change your answer until the vote closes" in en
    assert "or earlier, as soon as every council member has voted" in en


def test_a_council_of_one_reads_right_in_english(pending_i18n: I18n) -> None:
    en = header_of(one_candidate_plan(council_size=1), "en", pending_i18n)
    assert "1 members" not in en
    assert "Council members: 1. A suggestion passes when more than 50% of them vote" in en
    zh = header_of(one_candidate_plan(council_size=1), "zh", pending_i18n)
    assert "议事会共有 1 名成员。参与表决的成员超过 50%" in zh


# --- a member the bot could not write to --------------------------------------------------------

NEWCOMER = 2  # the member (member_tid) who had never started the bot


def newcomer() -> TelegramPerson:
    return TelegramPerson(member_tid(NEWCOMER), f"议事{NEWCOMER}")


@dataclass
class PrivateVote:
    """A council of three voting privately on two candidates, its polls sent by the process's
    sender, Telegram refusing every message to `newcomer` (they never started the bot) until
    the rule is cleared; a bot harness on the same Telegram, with the process's poll sender and
    closer in its workflow data."""

    h: Harness
    double: TelegramDouble
    runtime: FakePollRuntime
    council: Council
    vote: CouncilVote

    def polls_to(self, chat_id: int) -> list[SendPoll]:
        return poll_requests(self.double, chat_id)

    def headers_to(self, chat_id: int) -> list[str]:
        return [t for t in self.double.texts_in(chat_id) if "居民议事会表决" in t]


@pytest.fixture
async def private_vote(sessionmaker: Sessions, org: Any, pending_i18n: I18n) -> PrivateVote:
    double = TelegramDouble()
    h = make_harness(make_settings(), sessionmaker, session=double)
    runtime = FakePollRuntime(
        make_settings(),
        h.bot,
        sessionmaker,
        i18n=pending_i18n,
        limiter=MemorySendLimiter(Limits(chat_interval=0.001)),
    )
    h.dispatcher["council_poll_sender"] = council_poll_sender(runtime)
    h.dispatcher["vote_closer"] = vote_closer(runtime)
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3, council_chat=False)
    ids = await add_candidates(council_, ["修路灯", "装座椅"])
    now = datetime.now(UTC)
    vote = await convene(council_, ids, closes_at=now + timedelta(days=2), now=now)
    double.fail_in_chat(
        member_tid(NEWCOMER), forbidden("bot can't initiate conversation with a user"), times=None
    )
    assert await send_claimed_vote_polls(runtime, vote.id) is not None
    return PrivateVote(h, double, runtime, council_, vote)


async def sends_to(sessionmaker: Sessions, vote_id: int, chat_id: int) -> list[PollSendState]:
    async with sessionmaker() as session:
        sends = await council.poll_sends(session, vote_id)
    return [state for (_, chat), state in sorted(sends.items()) if chat == chat_id]


async def test_a_member_who_never_started_the_bot_gets_the_polls_once_he_writes_to_it(
    private_vote: PrivateVote, sessionmaker: Sessions
) -> None:
    """Telegram refuses a poll to someone who never opened the bot. Before, it was never sent
    again (not on /start, not on /votes, not by the scheduler): he could not vote, and the
    vote could not close early. Now his /start sends him the header and both polls, once."""
    v = private_vote
    me = newcomer()
    assert v.polls_to(me.id) == [] and all(len(v.polls_to(m)) == 2 for m in v.council.members[:2])
    # Refused as unreachable (only the candidate whose poll stopped the chat), marked blocked.
    assert await sends_to(sessionmaker, v.vote.id, me.id) == [PollSendState.REFUSED]
    assert (await stored_vote(sessionmaker, v.vote.id)).polls_sent_at is not None
    # Nothing sends it by itself while he cannot be written to.
    assert await send_claimed_vote_polls(v.runtime, v.vote.id) is None

    v.double.rules.clear()  # he opens the bot
    await v.h.say(me, "/start")
    await wait_background(v.runtime)
    assert len(v.headers_to(me.id)) == 1
    assert [p.question.split()[0] for p in v.polls_to(me.id)] == [
        item.suggestion.number for item in v.vote.items
    ]
    assert await sends_to(sessionmaker, v.vote.id, me.id) == [PollSendState.SENT] * 2
    assert all(len(v.polls_to(m)) == 2 for m in v.council.members[:2])  # nobody else again
    # The refusal no longer stands: officials no longer read it as the item's send error.
    async with sessionmaker() as session:
        items = await session.scalars(
            select(CouncilVoteItem).where(CouncilVoteItem.vote_id == v.vote.id)
        )
        assert [item.send_error for item in items] == [None, None]

    # Asking again, or starting the bot again, sends nothing twice.
    text = parse_html(last_text(await v.h.say(me, "/votes")))
    await v.h.say(me, "/start")
    await wait_background(v.runtime)
    assert "请在我发到本对话中的投票里表决。" in text and text.count("尚未投票") == 2
    assert len(v.polls_to(me.id)) == 2 and len(v.headers_to(me.id)) == 1

    # Everyone can vote now, and the last answer closes the vote early.
    for poll in await polls_of(sessionmaker, v.vote.id):
        await v.h.feed(
            v.h.updates._update(
                poll_answer={
                    "poll_id": poll.poll_id,
                    "option_ids": [0],
                    "option_persistent_ids": ["0"],
                    "user": TelegramPerson(poll.chat_id, "议事").json(),
                }
            )
        )
    await wait_background(v.runtime)
    assert (await stored_vote(sessionmaker, v.vote.id)).status is VoteStatus.CLOSED


async def test_votes_sends_the_polls_and_says_they_are_on_their_way(
    private_vote: PrivateVote, sessionmaker: Sessions
) -> None:
    """His mark of having blocked the bot is already gone (he wrote to the bot another way):
    asking with /votes is enough to be sent what he misses, and he is told so."""
    v = private_vote
    me = newcomer()
    async with sessionmaker() as session:
        await session.execute(
            update(Person).where(Person.telegram_id == me.id).values(blocked_bot_at=None)
        )
        await session.commit()
    v.double.rules.clear()
    text = parse_html(last_text(await v.h.say(me, "/votes")))
    assert "请在我发到本对话中的投票里表决" not in text
    assert "没能发给您" in text and "我现在把它们发到本对话中" in text and "/votes" in text
    assert text.count("投票尚未送达") == 2
    await wait_background(v.runtime)
    assert len(v.polls_to(me.id)) == 2 and len(v.headers_to(me.id)) == 1


async def test_a_member_still_unreachable_is_not_tried_again_when_another_comes_back(
    sessionmaker: Sessions, org: Any, pending_i18n: I18n
) -> None:
    """Two members had never opened the bot; one does. The run that sends him his polls leaves
    the other alone (another try would be refused too) until she comes back in turn."""
    double = TelegramDouble()
    h = make_harness(make_settings(), sessionmaker, session=double)
    quick = MemorySendLimiter(Limits(chat_interval=0.001))
    runtime = FakePollRuntime(
        make_settings(), h.bot, sessionmaker, i18n=pending_i18n, limiter=quick
    )
    h.dispatcher["council_poll_sender"] = council_poll_sender(runtime)
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3, council_chat=False)
    now = datetime.now(UTC)
    ids = await add_candidates(council_, ["修路灯"])
    vote = await convene(council_, ids, closes_at=now + timedelta(days=2), now=now)
    first, second = TelegramPerson(member_tid(1), "议事1"), TelegramPerson(member_tid(2), "议事2")
    for who in (first, second):
        double.fail_in_chat(who.id, forbidden("bot can't initiate conversation with a user"))
    await send_claimed_vote_polls(runtime, vote.id)
    assert [r.chat_id for r in double.requests if r.refused] == [first.id, second.id]

    await h.say(first, "/start")
    await wait_background(runtime)
    assert len(poll_requests(double, first.id)) == 1
    assert [r.chat_id for r in double.requests if r.chat_id == second.id] == [second.id]

    await h.say(second, "/start")
    await wait_background(runtime)
    assert len(poll_requests(double, second.id)) == 1
    assert len(poll_requests(double, first.id)) == 1


class HeldLimiter(MemorySendLimiter):
    """Lets nothing go to `held` until `release` is set: a run that is still sending."""

    def __init__(self, held: int) -> None:
        super().__init__(Limits(chat_interval=0.001))
        self.held = held
        self.release = asyncio.Event()

    async def acquire(self, chat_id: int) -> None:
        if chat_id == self.held:
            await self.release.wait()
        await super().acquire(chat_id)


async def test_a_member_back_while_the_polls_are_still_being_sent_gets_them_next(
    sessionmaker: Sessions, org: Any, pending_i18n: I18n
) -> None:
    """He opens the bot while the run that was refused his polls still sends the others'
    (it holds the vote's lease, so his own send waits): the run's end would count the polls
    as all sent, so it looks once more, and the scheduler's resume sends his."""
    double = TelegramDouble()
    h = make_harness(make_settings(), sessionmaker, session=double)
    slow = HeldLimiter(held=member_tid(0))
    runtime = FakePollRuntime(make_settings(), h.bot, sessionmaker, i18n=pending_i18n, limiter=slow)
    h.dispatcher["council_poll_sender"] = council_poll_sender(runtime)
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3, council_chat=False)
    now = datetime.now(UTC)
    ids = await add_candidates(council_, ["修路灯"])
    vote = await convene(council_, ids, closes_at=now + timedelta(days=2), now=now)
    me = newcomer()
    double.fail_in_chat(me.id, forbidden("bot can't initiate conversation with a user"))
    running = asyncio.ensure_future(send_claimed_vote_polls(runtime, vote.id))
    await until(lambda: any(r.refused for r in double.requests))
    async with sessionmaker() as session:
        await until_blocked(session, me.id)

    await h.say(me, "/start")  # his send is scheduled, but the run holds the lease
    await wait_background(runtime)
    assert poll_requests(double, me.id) == []
    slow.release.set()
    await running
    assert (await stored_vote(sessionmaker, vote.id)).polls_sent_at is None  # looked again
    assert await resume_poll_sending(runtime) == [vote.id]  # type: ignore[arg-type]
    await wait_background(runtime)
    assert len(poll_requests(double, me.id)) == 1
    assert len(poll_requests(double, member_tid(0))) == 1


async def until_blocked(session: AsyncSession, telegram_id: int, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        blocked = await session.scalar(
            select(Person.blocked_bot_at).where(Person.telegram_id == telegram_id)
        )
        await session.rollback()
        if blocked is not None:
            return
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_refused_private_poll_names_the_member(
    rig: Rig, sessionmaker: Sessions, org: Any, pending_i18n: I18n
) -> None:
    """The convener was told "这位议事会成员还没有和机器人开始私聊 … 对方可能已屏蔽机器人",
    without saying which member (one notice per member, all alike) and with two causes. It
    names the member now, with one cause and the one remedy: open the bot and send /votes."""
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3, council_chat=False)
    vote = await convene(
        council_, await add_candidates(council_, ["公园长椅维修"]), closes_at=CLOSES
    )
    rig.double.fail_in_chat(member_tid(2), forbidden("bot can't initiate conversation with a user"))
    await rig.send(vote.id)
    async with sessionmaker() as session:
        (told,) = (
            await session.scalars(
                select(Notification).where(Notification.kind == "poll_send_failed")
            )
        ).all()
    assert told.chat_id == STAFF_TID and told.params["member"] == "议事2"
    renderer = NotificationRenderer(pending_i18n, make_settings().tz)
    zh = parse_html(renderer.render("poll_send_failed", told.params, "zh").text)
    assert "公园长椅维修" in zh and "议事会成员 议事2" in zh
    assert "请让 议事2 打开与机器人的私聊并发送 /votes" in zh
    assert "可能已屏蔽机器人" not in zh and "还没有和机器人开始私聊。" not in zh
