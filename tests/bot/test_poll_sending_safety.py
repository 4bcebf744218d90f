"""A council poll is never posted twice, and no answer in a poll the bot posted is lost
(bot.polls): sendPoll is retried only when Telegram certainly did not carry it out; when its
answer is lost the send is recorded as uncertain, not repeated (nor by a later run, nor after
a crash mid-request), and the convener is told what to check; Telegram's `poll` update then
lets the bot recognise the orphan poll, and the answers given in it count. A sender stopped
before it made the request (waiting for its turn, writing its claim, waiting out a 429)
leaves the poll for the next run to send, not in doubt. A member whose chat refused the bot
is sent what they miss once they come back: once, whatever races, and never a poll in doubt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramNetworkError,
    TelegramServerError,
)
from aiogram.methods import SendMessage, SendPoll, TelegramMethod
from aiogram.types import Poll, Update
from aiogram.utils.i18n import I18n
from aiohttp import ClientConnectorError
from sending_fakes import (
    COUNCIL_CHAT,
    STAFF_TID,
    T0,
    FakePollRuntime,
    JumpClock,
    PollRig,
    TelegramDouble,
    add_candidates,
    convene,
    forbidden,
    in_days,
    make_council,
    member_tid,
    retry_after,
)
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import make_bot, make_harness, make_settings

from bot.handlers.council import on_poll
from bot.notify_texts import NotificationRenderer
from bot.outbox import OutboxSender
from bot.polls import SENDER_STOPPED, send_claimed_vote_polls, send_owed_polls, send_vote_polls
from bot.ratelimit import Limits, MemorySendLimiter, SendLimiter
from storage.models import (
    AuditEvent,
    Ballot,
    CouncilPoll,
    CouncilPollSend,
    CouncilVote,
    CouncilVoteItem,
    Notification,
    Person,
    PollSendState,
)
from storage.rules import VoteOutcome
from storage.services import council, people
from storage.services.council.sending import reopen_polls_owed_to

pytest_plugins = ["telegram_fakes", "sending_fakes"]

Sessions = async_sessionmaker[AsyncSession]
CLOSES = in_days(3)
ErrorFactory = Callable[[TelegramMethod[Any]], BaseException]


class LosingTelegram(TelegramDouble):
    """Telegram that carries a request out and then loses its answer, when scripted to."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self.losses: list[tuple[Callable[[TelegramMethod[Any]], bool], ErrorFactory]] = []

    def lose_answer(
        self, matches: Callable[[TelegramMethod[Any]], bool], error: ErrorFactory
    ) -> None:
        self.losses.append((matches, error))

    async def make_request(
        self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None
    ) -> Any:
        answer = await super().make_request(bot, method, timeout)
        for n, (matches, error) in enumerate(self.losses):
            if matches(method):
                del self.losses[n]
                raise error(method)
        return answer


def nth_poll(double: TelegramDouble, n: int) -> Callable[[TelegramMethod[Any]], bool]:
    """The n-th sendPoll (from 1) that reaches `double` from now on."""
    seen = [0]

    def matches(method: TelegramMethod[Any]) -> bool:
        if isinstance(method, SendPoll):
            seen[0] += 1
            return seen[0] == n
        return False

    return matches


def question_of(number: str) -> Callable[[TelegramMethod[Any]], bool]:
    return lambda m: isinstance(m, SendPoll) and m.question.startswith(number + " ")


def timeout(method: TelegramMethod[Any]) -> BaseException:
    return TelegramNetworkError(method=method, message="Request timeout error")


def server_error(method: TelegramMethod[Any]) -> BaseException:
    return TelegramServerError(method=method, message="Internal Server Error")


def unreadable(method: TelegramMethod[Any]) -> BaseException:
    return ClientDecodeError("Failed to decode object", ValueError("html"), "<html>502</html>")


def cancelled(method: TelegramMethod[Any]) -> BaseException:
    return asyncio.CancelledError()  # the process stops while awaiting the answer


def not_connected(method: TelegramMethod[Any]) -> Exception:
    key = SimpleNamespace(host="api.telegram.org", port=443, ssl=True)
    cause = ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))  # type: ignore[arg-type]
    error = TelegramNetworkError(method=method, message=f"ClientConnectorError: {cause}")
    error.__cause__ = cause
    return error


class Rig(PollRig):
    """The bot on a Telegram that may lose answers, paced on a virtual clock from T0."""

    def __init__(self, sessionmaker: Sessions, i18n: I18n) -> None:
        super().__init__(sessionmaker, i18n, LosingTelegram)
        self.double: LosingTelegram

    def posted(self, chat_id: int = COUNCIL_CHAT) -> list[dict[str, Any]]:
        """The polls that exist in the chat, whatever the bot learned of them."""
        return [poll for (chat, _), poll in self.double.polls.items() if chat == chat_id]

    async def tell_convener(self) -> list[str]:
        """Run the outbox once; what reached the convener."""
        clock = JumpClock()
        sender = OutboxSender(
            self.bot,
            self.sessionmaker,
            MemorySendLimiter(clock=clock, sleep=clock.sleep),
            NotificationRenderer(self.i18n, make_settings().tz),
            now=lambda: datetime.now(UTC) + timedelta(days=1),
            monotonic=clock,
            sleep=clock.sleep,
        )
        await sender.run_once(500)
        return self.double.texts_in(STAFF_TID)


@pytest.fixture
def rig(sessionmaker: Sessions, pending_i18n: I18n) -> Rig:
    return Rig(sessionmaker, pending_i18n)


async def a_vote(
    sessionmaker: Sessions,
    org: Any,
    *,
    items: int = 3,
    group: bool = True,
    closes_at: datetime = CLOSES,
    now: datetime = T0,
) -> tuple[list[int], CouncilVote]:
    made = await make_council(sessionmaker, org.xinsha_id, size=3, council_chat=group)
    async with sessionmaker() as session:  # the convener reads English (translations pending)
        await session.execute(
            update(Person).where(Person.telegram_id == STAFF_TID).values(locale="en")
        )
        await session.commit()
    ids = await add_candidates(made, [f"项目{n}" for n in range(1, items + 1)])
    return made.members, await convene(made, ids, closes_at=closes_at, now=now)


async def recorded(sessionmaker: Sessions) -> list[str]:
    async with sessionmaker() as session:
        found = await session.scalars(select(CouncilPoll.poll_id).order_by(CouncilPoll.poll_id))
        return list(found.all())


async def notices(sessionmaker: Sessions, kind: str) -> list[Notification]:
    async with sessionmaker() as session:
        return list(
            (await session.scalars(select(Notification).where(Notification.kind == kind))).all()
        )


@pytest.mark.parametrize("lost", [timeout, server_error, unreadable], ids=lambda f: f.__name__)
async def test_a_lost_answer_is_not_sent_twice_but_told(
    rig: Rig, sessionmaker: Sessions, org: Any, lost: ErrorFactory
) -> None:
    """The reviewer's repro: Telegram posts the first poll, its answer is lost. Before, the
    bot posted it again and recorded only the second; answers in the first were dropped."""
    _, vote = await a_vote(sessionmaker, org)
    first = vote.items[0]
    rig.double.lose_answer(nth_poll(rig.double, 1), lost)
    report = await rig.send(vote.id)

    assert len(rig.posted()) == 3  # one poll per candidate, none twice
    assert [(u.item_id, u.chat_id) for u in report.uncertain] == [(first.id, COUNCIL_CHAT)]
    assert report.failed == [] and len(report.polls) == 2
    assert await recorded(sessionmaker) == ["poll-2", "poll-3"]
    async with sessionmaker() as session:
        item = await session.get(CouncilVoteItem, first.id)
        assert item is not None and (item.send_error or "").startswith(council.UNCERTAIN_PREFIX)
        assert await council.unsettled_poll_sends(session, vote.id) == {
            (first.id, COUNCIL_CHAT): PollSendState.UNCERTAIN
        }
        send = await session.get(CouncilPollSend, (first.id, COUNCIL_CHAT))
        assert (
            send is not None
            and send.error
            and item.send_error == (council.UNCERTAIN_PREFIX + send.error)
        )
    (told,) = await notices(sessionmaker, council.POLL_SEND_UNCERTAIN)
    assert told.chat_id == STAFF_TID and told.params["item_id"] == first.id

    # A later run (the resume job, another replica) does not send it either.
    again = await rig.send(vote.id)
    assert again.polls == [] and again.uncertain == [] and again.skipped == 3
    assert len(rig.posted()) == 3


async def test_the_convener_is_told_what_to_check_and_do(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    _, vote = await a_vote(sessionmaker, org)
    first = vote.items[0].suggestion
    rig.double.lose_answer(question_of(first.number), timeout)
    await rig.send(vote.id)
    (text,) = await rig.tell_convener()
    assert first.number in text and first.title in text and "Request timeout error" in text
    assert "may or may not have been posted" in text
    assert "has not sent it again" in text
    assert "look in the council group" in text
    assert "If it is there, nothing needs doing" in text
    assert "If it is not there" in text and "/convene" in text
    assert "refused" not in text  # it was not refused


async def test_in_a_private_chat_the_convener_is_told_whom_to_ask(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    _, vote = await a_vote(sessionmaker, org, items=1, group=False)
    rig.double.lose_answer(
        lambda m: isinstance(m, SendPoll) and int(m.chat_id) == member_tid(1), server_error
    )
    report = await rig.send(vote.id)
    assert [u.chat_id for u in report.uncertain] == [member_tid(1)]
    assert len(report.polls) == 2 and len(rig.posted(member_tid(1))) == 1
    (text,) = await rig.tell_convener()
    assert "private chat of council member 议事1" in text
    assert "whether they received this poll" in text


async def test_a_crash_while_sending_is_not_sent_again(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    """The process stops while sendPoll's answer is awaited: the next run (the resume job)
    cannot know whether it was posted, so it tells the convener instead of posting it."""
    _, vote = await a_vote(sessionmaker, org)
    second = vote.items[1]
    rig.double.lose_answer(nth_poll(rig.double, 2), cancelled)
    with pytest.raises(asyncio.CancelledError):
        await rig.send(vote.id)
    assert len(rig.posted()) == 2 and await recorded(sessionmaker) == ["poll-1"]

    report = await rig.send(vote.id)
    assert [(u.item_id, u.error) for u in report.uncertain] == [(second.id, SENDER_STOPPED)]
    assert len(report.polls) == 1 and report.header_messages == 0
    assert len(rig.posted()) == 3  # the third candidate's, once; the second's not again
    questions = [r.method.question for r in rig.double.delivered(name="SendPoll")]  # type: ignore[attr-defined]
    assert [q.split()[0] for q in questions] == [f"新沙-2026-{n:04d}" for n in (1, 2, 3)]
    (told,) = await notices(sessionmaker, council.POLL_SEND_UNCERTAIN)
    assert told.params["item_id"] == second.id


async def test_what_certainly_did_not_happen_is_retried(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    """A connection never made: the request never reached Telegram, so it is tried again."""
    _, vote = await a_vote(sessionmaker, org, items=2)
    rig.double.fail_when(lambda m: isinstance(m, SendPoll), not_connected, times=2)
    report = await rig.send(vote.id)
    assert len(report.polls) == 2 and report.uncertain == [] and report.failed == []
    assert len(rig.posted()) == 2
    assert len([r for r in rig.double.requests if r.name == "SendPoll"]) == 4


@pytest.mark.parametrize("lost", [timeout, server_error, unreadable], ids=lambda f: f.__name__)
async def test_headers_are_still_retried(
    rig: Rig, sessionmaker: Sessions, org: Any, lost: ErrorFactory
) -> None:
    """A second header is harmless, so the header's lost answers are retried as before; an
    answer that cannot be read as well (it used to end the run, every chat's)."""
    _, vote = await a_vote(sessionmaker, org, items=1)
    rig.double.lose_answer(lambda m: isinstance(m, SendMessage), lost)
    report = await rig.send(vote.id)
    assert report.header_messages == 1 and len(report.polls) == 1
    assert len(rig.double.delivered(COUNCIL_CHAT, "SendMessage")) == 2


# --- the orphan poll, recognised from Telegram's `poll` update ------------------------------


@dataclass
class Closer:
    calls: list[int] = field(default_factory=list)

    async def __call__(self, vote_id: int) -> None:
        self.calls.append(vote_id)


def poll_update(bot: Bot, poll: dict[str, Any], update_id: int) -> Update:
    return Update.model_validate({"update_id": update_id, "poll": poll}, context={"bot": bot})


def answer_update(bot: Bot, poll_id: str, telegram_id: int, update_id: int) -> Update:
    user = {"id": telegram_id, "is_bot": False, "first_name": "议事"}
    answer = {"poll_id": poll_id, "user": user, "option_ids": [0], "option_persistent_ids": ["0"]}
    return Update.model_validate(
        {"update_id": update_id, "poll_answer": answer}, context={"bot": bot}
    )


async def test_the_orphan_poll_is_recognised_and_its_answers_count(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    """End to end through the service's dispatcher: members answer in the orphan poll
    (kept), Telegram's `poll` update shows it, the answers count, and once everyone has voted
    the vote is closed early."""
    now = datetime.now(UTC)  # the handler counts answers as of now
    closes = now + timedelta(days=3)
    members, vote = await a_vote(sessionmaker, org, items=2, closes_at=closes, now=now)
    rig.double.lose_answer(nth_poll(rig.double, 1), timeout)
    await rig.send(vote.id)
    known_ids = await recorded(sessionmaker)
    (orphan,) = [p for p in rig.posted() if p["id"] not in known_ids]
    (known,) = [p for p in rig.posted() if p["id"] in known_ids]
    assert orphan["question"].startswith(vote.items[0].suggestion.number)

    h = make_harness(make_settings(), sessionmaker)  # the service's dispatcher and routers
    closer = Closer()
    h.dispatcher["vote_closer"] = closer
    assert "poll" in h.dispatcher.resolve_used_update_types()

    update_ids = iter(range(900_000, 901_000))
    for member in members:
        await h.feed(answer_update(h.bot, orphan["id"], member, next(update_ids)))
    async with sessionmaker() as session:
        assert (await session.scalars(select(Ballot))).all() == []
    # Telegram's `poll` update for the poll it posted (as it sends after every answer).
    state = orphan | {"total_voter_count": 3, "close_date": int(closes.timestamp())}
    await h.feed(poll_update(h.bot, known, next(update_ids)))  # a known one: nothing
    await h.feed(poll_update(h.bot, state, next(update_ids)))
    async with sessionmaker() as session:
        counted = (await session.scalars(select(Ballot).where(Ballot.counted.is_(True)))).all()
        assert {(b.item_id, b.telegram_id) for b in counted} == {
            (vote.items[0].id, m) for m in members
        }
        poll = await session.get(CouncilPoll, orphan["id"])
        assert poll is not None and poll.item_id == vote.items[0].id
        assert poll.message_id is None  # a `poll` update does not say its message
    assert closer.calls == []  # the second candidate has no answers yet
    for member in members:
        await h.feed(answer_update(h.bot, known["id"], member, next(update_ids)))
    assert closer.calls == [vote.id]
    async with sessionmaker() as session:
        result = await council.close_vote(session, vote.id, now=closes)
    assert result is not None
    assert set(result.outcomes.values()) == {VoteOutcome.RESOLVED}


async def test_on_poll_ignores_polls_that_are_not_council_polls(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    _, vote = await a_vote(sessionmaker, org, items=1)
    rig.double.lose_answer(nth_poll(rig.double, 1), timeout)
    await rig.send(vote.id)
    (orphan,) = rig.posted()
    async with sessionmaker() as session:
        for odd in (
            {"is_anonymous": True},
            {"allows_multiple_answers": True},
            {"options": orphan["options"][:2]},
        ):
            poll = Poll.model_validate(orphan | odd)
            await on_poll(poll, session)
        assert await session.scalar(select(CouncilPoll.poll_id)) is None
        await on_poll(Poll.model_validate(orphan), session)
        await session.commit()
        recognised = await session.scalar(
            select(AuditEvent).where(AuditEvent.action == council.POLL_RECOGNISED)
        )
    assert recognised is not None and recognised.details["poll_id"] == orphan["id"]


# --- a sender stopped before its request: the poll is the next run's to send ---------------


class HeldTurn:
    """A limiter that never grants the `n`-th turn (from 1): the sender waits there, as it
    does for most of its life in a group (a message a second), until it is cancelled."""

    def __init__(self, n: int) -> None:
        self.inner = MemorySendLimiter(Limits(chat_interval=0))
        self.limits = self.inner.limits
        self.n = n
        self.turns = 0
        self.waiting = asyncio.Event()

    async def try_acquire(self, chat_id: int) -> float:
        return await self.inner.try_acquire(chat_id)

    async def acquire(self, chat_id: int) -> None:
        self.turns += 1
        if self.turns == self.n:
            self.waiting.set()
            await asyncio.get_running_loop().create_future()  # never granted
        await self.inner.acquire(chat_id)

    async def pause(self, chat_id: int, seconds: float) -> None:
        await self.inner.pause(chat_id, seconds)


async def send_directly(
    rig: Rig, vote_id: int, limiter: SendLimiter, sleep: Callable[[float], Any] = asyncio.sleep
) -> Any:
    return await send_vote_polls(
        rig.bot,
        rig.sessionmaker,
        vote_id,
        limiter,
        i18n=rig.i18n,
        tz=make_settings().tz,
        now=lambda: T0,
        sleep=sleep,
    )


async def sends_of(sessionmaker: Sessions, vote_id: int) -> dict[tuple[int, int], PollSendState]:
    async with sessionmaker() as session:
        return await council.poll_sends(session, vote_id)


async def test_a_poll_waiting_for_its_turn_when_the_sender_stops_is_sent_by_the_next_run(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    """A shutdown cancels the sender while the second poll waits for its turn: that send was
    never claimed, so the next run (another replica's resume job) sends it, and nobody is
    told to look for a poll that does not exist."""
    _, vote = await a_vote(sessionmaker, org)
    first = vote.items[0]
    held = HeldTurn(3)  # the header, the first poll, then the second poll's turn
    sender = asyncio.ensure_future(send_directly(rig, vote.id, held))
    await held.waiting.wait()
    sender.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sender
    assert len(rig.posted()) == 1
    assert await sends_of(sessionmaker, vote.id) == {(first.id, COUNCIL_CHAT): PollSendState.SENT}

    report = await rig.send(vote.id)
    assert report.uncertain == [] and report.failed == [] and report.header_messages == 0
    assert [p.item_id for p in report.polls] == [i.id for i in vote.items[1:]]
    assert len(rig.posted()) == 3  # one per candidate
    assert set((await sends_of(sessionmaker, vote.id)).values()) == {PollSendState.SENT}
    assert await notices(sessionmaker, council.POLL_SEND_UNCERTAIN) == []


async def test_a_sender_stopped_while_writing_its_claim_lets_it_go(
    rig: Rig, sessionmaker: Sessions, org: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancellation reaches the sender as its claim commits: the request was not made,
    so the claim is let go (shielded from the cancellation) and the next run sends it."""
    _, vote = await a_vote(sessionmaker, org)
    second = vote.items[1]
    claim = council.record_poll_attempt

    async def claimed_then_stopped(
        session: AsyncSession, item_id: int, chat_id: int, **kwargs: Any
    ) -> bool:
        claimed = await claim(session, item_id, chat_id, **kwargs)
        if item_id == second.id:
            raise asyncio.CancelledError
        return claimed

    monkeypatch.setattr(council, "record_poll_attempt", claimed_then_stopped)
    with pytest.raises(asyncio.CancelledError):
        await rig.send(vote.id)
    monkeypatch.undo()
    assert len(rig.posted()) == 1
    assert (second.id, COUNCIL_CHAT) not in await sends_of(sessionmaker, vote.id)

    report = await rig.send(vote.id)
    assert report.uncertain == [] and len(report.polls) == 2 and len(rig.posted()) == 3


async def test_a_429_lets_the_claim_go_until_the_next_turn(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    """Telegram answered 429, so it posted nothing: the claim is let go for the wait (and
    taken again after it). A sender stopped during the wait leaves the poll to the next run."""
    _, vote = await a_vote(sessionmaker, org, items=2)
    rig.double.fail_in_chat(COUNCIL_CHAT, retry_after(25), SendPoll)
    during: list[dict[tuple[int, int], PollSendState]] = []

    async def stopped_in_the_wait(seconds: float) -> None:
        during.append(await sends_of(sessionmaker, vote.id))
        raise asyncio.CancelledError  # the shutdown comes while the 429 is waited out

    with pytest.raises(asyncio.CancelledError):
        await send_directly(
            rig, vote.id, MemorySendLimiter(Limits(chat_interval=0)), stopped_in_the_wait
        )
    assert during == [{}] and rig.posted() == []

    report = await rig.send(vote.id)
    assert report.uncertain == [] and len(report.polls) == 2 and len(rig.posted()) == 2


async def test_a_429_then_the_poll_is_sent_once(rig: Rig, sessionmaker: Sessions, org: Any) -> None:
    _, vote = await a_vote(sessionmaker, org, items=1)
    rig.double.fail_in_chat(COUNCIL_CHAT, retry_after(5), SendPoll, times=2)
    report = await rig.send(vote.id)
    assert len(report.polls) == 1 and report.failed == [] and report.uncertain == []
    assert len(rig.posted()) == 1
    assert await sends_of(sessionmaker, vote.id) == {
        (vote.items[0].id, COUNCIL_CHAT): PollSendState.SENT
    }


async def test_a_claim_is_let_go_only_by_the_run_that_made_it(
    sessionmaker: Sessions, org: Any
) -> None:
    _, vote = await a_vote(sessionmaker, org, items=1)
    item = vote.items[0]
    mine, theirs = T0, T0 + timedelta(microseconds=1)
    async with sessionmaker() as session:
        assert await council.record_poll_attempt(session, item.id, COUNCIL_CHAT, now=mine)
        assert not await council.release_poll_attempt(
            session, item.id, COUNCIL_CHAT, attempted_at=theirs
        )
        assert await council.release_poll_attempt(session, item.id, COUNCIL_CHAT, attempted_at=mine)
    assert await sends_of(sessionmaker, vote.id) == {}  # as if never claimed
    # Once its outcome is written it is no claim to let go: the poll may exist.
    async with sessionmaker() as session:
        assert await council.record_poll_attempt(session, item.id, COUNCIL_CHAT, now=theirs)
        await council.record_send_uncertain(session, item.id, "Request timeout error")
    async with sessionmaker() as session:
        assert not await council.release_poll_attempt(
            session, item.id, COUNCIL_CHAT, attempted_at=theirs
        )
    assert await sends_of(sessionmaker, vote.id) == {
        (item.id, COUNCIL_CHAT): PollSendState.UNCERTAIN
    }


# --- a member who could not be written to, back ------------------------------------------------


def real_time_runtime(double: TelegramDouble, sessionmaker: Sessions, i18n: I18n) -> Any:
    """What bot.polls needs of the process, on the wall clock (sending checks the deadline
    against it), with a limiter that does not make the test wait."""
    return SimpleNamespace(
        settings=make_settings(),
        bot=make_bot(double),
        sessionmaker=sessionmaker,
        i18n=i18n,
        limiter=MemorySendLimiter(Limits(chat_interval=0.001)),
        background=set(),
    )


async def private_vote_now(sessionmaker: Sessions, org: Any, items: int) -> tuple[int, int]:
    """A private vote open for two days from now: (its id, the member who will come back)."""
    now = datetime.now(UTC)
    members, vote = await a_vote(
        sessionmaker, org, items=items, group=False, closes_at=now + timedelta(days=2), now=now
    )
    return vote.id, members[1]


def never_started(method: TelegramMethod[Any]) -> BaseException:
    return forbidden("bot can't initiate conversation with a user")(method)


async def test_polls_owed_to_a_member_who_came_back_go_once_however_many_runs_race(
    sessionmaker: Sessions, org: Any, pending_i18n: I18n
) -> None:
    """He comes back (his unblocking, his /start and his /votes each owe him the polls, and
    the scheduler's resume ticks too): of the runs that race, one sends, and each of his polls
    and his header goes once; nobody else is sent anything again."""
    double = TelegramDouble()
    runtime = real_time_runtime(double, sessionmaker, pending_i18n)
    vote_id, back = await private_vote_now(sessionmaker, org, items=3)
    double.fail_in_chat(back, never_started, times=None)
    await send_claimed_vote_polls(runtime, vote_id)
    before = len(double.delivered())
    double.rules.clear()

    async with sessionmaker() as session:
        assert await people.mark_reachable(session, back)
    async with sessionmaker() as session:
        assert await reopen_polls_owed_to(session, back) == [vote_id]  # his /votes, say
        await session.commit()
    runs = await asyncio.gather(*(send_claimed_vote_polls(runtime, vote_id) for _ in range(4)))
    assert sum(run is not None for run in runs) == 1
    to_him = double.delivered(back)
    assert [r.name for r in to_him] == ["SendMessage"] + ["SendPoll"] * 3
    assert len(double.delivered()) == before + 4  # only his
    async with sessionmaker() as session:
        assert await reopen_polls_owed_to(session, back) == []  # nothing owed any more
    assert set((await sends_of(sessionmaker, vote_id)).values()) == {PollSendState.SENT}


async def test_a_poll_in_doubt_is_not_sent_again_when_its_member_comes_back(
    sessionmaker: Sessions, org: Any, pending_i18n: I18n
) -> None:
    """His first poll's answer was lost (it may exist), then his chat refused the bot. Once
    he can be written to, the refused one and the one never sent go to him; the one in doubt
    does not (the convener was told to ask him about it), nor does the header again."""
    double = LosingTelegram(clock=time.time)
    runtime = real_time_runtime(double, sessionmaker, pending_i18n)
    vote_id, back = await private_vote_now(sessionmaker, org, items=3)
    to_him = [0]

    def nth_to_him(method: TelegramMethod[Any]) -> bool:
        if isinstance(method, SendPoll) and int(method.chat_id) == back:
            to_him[0] += 1
            return to_him[0] == 1
        return False

    double.lose_answer(nth_to_him, timeout)
    double.fail_when(
        lambda m: isinstance(m, SendPoll) and int(m.chat_id) == back and to_him[0] >= 1,
        never_started,
        times=None,
    )
    await send_claimed_vote_polls(runtime, vote_id)
    sends = await sends_of(sessionmaker, vote_id)
    assert [state for (_, chat), state in sorted(sends.items()) if chat == back] == [
        PollSendState.UNCERTAIN,
        PollSendState.REFUSED,
    ]
    double.rules.clear()

    async with sessionmaker() as session:  # he unblocks the bot (groups.on_unblocked_in_private)
        assert await people.mark_reachable(session, back)
        assert await send_owed_polls(session, back, None, None) == [vote_id]
        await session.commit()
    report = await send_claimed_vote_polls(runtime, vote_id)
    assert report is not None and report.uncertain == [] and report.header_messages == 0
    posted = [
        poll["question"].split()[0] for (chat, _), poll in double.polls.items() if chat == back
    ]
    assert posted == [f"新沙-2026-{n:04d}" for n in (1, 2, 3)]  # each once
    sends = await sends_of(sessionmaker, vote_id)
    assert [state for (_, chat), state in sorted(sends.items()) if chat == back] == [
        PollSendState.UNCERTAIN,
        PollSendState.SENT,
        PollSendState.SENT,
    ]


# Several replicas means PostgreSQL. On SQLite a chat cancelled in the middle of its claim
# can keep the single writer lock until its connection is reset, so letting go of the lease
# may find the database locked, and the lease then runs out by itself (as before the fix).
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_failed_run_stops_sending_before_it_lets_go_of_its_lease(
    sessionmaker: Sessions, org: Any, pending_i18n: I18n, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Private delivery to three members; the store fails to claim the first poll of one
    member (a transient error). send_claimed_vote_polls re-raises and lets go of the vote's
    sending lease, so another replica may start a second run at its next tick. The run must
    therefore have stopped: nothing more may be sent under the lease it gave up."""
    double = TelegramDouble()
    council_ = await make_council(sessionmaker, org.xinsha_id, size=3, council_chat=False)
    ids = await add_candidates(council_, ["一", "二", "三", "四", "五"])
    now = datetime.now(UTC)
    vote = await convene(council_, ids, closes_at=now + timedelta(days=2), now=now)
    runtime = FakePollRuntime(
        make_settings(),
        make_bot(double),
        sessionmaker,
        i18n=pending_i18n,
        limiter=MemorySendLimiter(Limits(chat_interval=0.05)),
    )
    real = council.record_poll_attempt
    failing = member_tid(0)

    async def flaky(session: AsyncSession, item_id: int, chat_id: int, **kw: Any) -> bool:
        if chat_id == failing:
            raise ConnectionError("the store went away for a moment")
        return await real(session, item_id, chat_id, **kw)

    monkeypatch.setattr(council, "record_poll_attempt", flaky)

    with pytest.raises(Exception):  # noqa: B017 - _ClaimFailed, private
        await send_claimed_vote_polls(runtime, vote.id)
    async with sessionmaker() as session:
        stored = await session.get(CouncilVote, vote.id)
        assert stored is not None
        assert stored.polls_lease_until is None  # let go: another replica may take over
    sent_when_let_go = len(double.delivered(None, "SendPoll"))
    await asyncio.sleep(0.6)
    sent_later = len(double.delivered(None, "SendPoll"))
    assert sent_later == sent_when_let_go, (
        f"{sent_later - sent_when_let_go} polls were sent after the run had failed and let go "
        "of the vote's lease"
    )
