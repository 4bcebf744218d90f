"""The scheduler's jobs (webhook.jobs): a vote that fell due while the service was down is
closed on the first tick, its polls stopped and its results sent with their chart; two
replicas close a vote once; a database outage is logged and the next tick carries on; and
the lifespan wires the limiter, the outbox and the council's senders. A replica stopped
(a rolling deploy) while it sent a vote's polls, or stopped them after the close, leaves the
rest to another replica's next tick: none of its polls is lost or left running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram import Dispatcher
from aiogram.methods import SendPhoto, StopPoll
from aiogram.utils.i18n import I18n
from conftest import ORG_ROWS
from redis.asyncio import Redis
from sending_fakes import (
    COMMUNITY_CHAT,
    COUNCIL_CHAT,
    T0,
    TelegramDouble,
    add_candidates,
    bad_request,
    convene,
    in_days,
    make_council,
    until,
)
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from tcp_proxy import TcpProxy
from telegram_fakes import make_bot, make_settings, parse_html

from bot.outbox import OutboxSender
from bot.polls import (
    cancel_background,
    close_and_stop,
    schedule_vote_polls,
    send_vote_polls,
    stop_claimed_vote_polls,
    wait_background,
)
from bot.ratelimit import Limits, MemorySendLimiter, RedisSendLimiter
from storage.db import create_engine, create_sessionmaker
from storage.models import (
    AuditEvent,
    CouncilPoll,
    CouncilPollSend,
    CouncilVote,
    DeadLetter,
    Notification,
    NotificationStatus,
    PollSendState,
    ProcessedUpdate,
    VoteStatus,
    utcnow,
)
from storage.services import council
from storage.services.org import find_community, import_rows
from webhook.app import running_jobs
from webhook.jobs import (
    close_due_votes,
    create_scheduler,
    install_senders,
    prune_processed_updates,
    resume_poll_sending,
    send_outbox,
    stop_left_polls,
)
from webhook.runtime import Runtime

pytest_plugins = ["telegram_fakes", "sending_fakes"]

QUICK = Limits(chat_interval=0.01)
LATER = in_days(5)  # the vote closed at in_days(3), while "the service was down"


def bare_runtime(
    engine: AsyncEngine, double: TelegramDouble, redis: Redis | None = None
) -> Runtime:
    """A runtime on `engine` whose bot talks to `double`, with no senders installed yet."""
    return Runtime(
        settings=make_settings(),
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        bot=make_bot(double),
        dispatcher=Dispatcher(),
        redis=redis,
    )


def make_runtime(engine: AsyncEngine, double: TelegramDouble, i18n: I18n) -> Runtime:
    runtime = bare_runtime(engine, double)
    # Quick pacing so that the tests take no real minute; the limits are tested elsewhere.
    runtime.limiter, runtime.i18n = MemorySendLimiter(QUICK), i18n
    install_senders(runtime)
    return runtime


@pytest.fixture
def double() -> TelegramDouble:
    # Telegram's clock for close_date checks: the votes here live around T0.
    return TelegramDouble(clock=lambda: T0.timestamp())


@pytest.fixture
def runtime(engine: AsyncEngine, double: TelegramDouble, pending_i18n: I18n) -> Runtime:
    return make_runtime(engine, double, pending_i18n)


async def seed_org(runtime: Runtime) -> SimpleNamespace:
    """The seeded tree of conftest, for tests that make their own PostgreSQL engines."""
    async with runtime.sessionmaker() as session:
        await import_rows(session, ORG_ROWS)
        xinsha = await find_community(session, "新沙社区")
        assert xinsha is not None
        return SimpleNamespace(xinsha_id=xinsha.id)


async def a_vote_with_polls(runtime: Runtime, org: Any, candidates: int = 3) -> CouncilVote:
    council_ = await make_council(runtime.sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, [f"候选{n}" for n in range(candidates)])
    vote = await convene(council_, ids, closes_at=in_days(3))
    await send_vote_polls(
        runtime.bot,
        runtime.sessionmaker,
        vote.id,
        runtime.limiter,
        i18n=runtime.i18n,
        now=lambda: T0,
    )
    return vote


async def test_a_vote_due_while_down_is_closed_on_the_first_tick(
    runtime: Runtime, double: TelegramDouble, org: Any
) -> None:
    vote = await a_vote_with_polls(runtime, org)
    # Not due yet: nothing happens.
    assert await close_due_votes(runtime, now=T0 + timedelta(days=1)) == []
    # The service comes back two days after the deadline: the first tick closes it.
    assert await close_due_votes(runtime, now=LATER, wait=True) == [vote.id]
    assert len(double.delivered(COUNCIL_CHAT, "StopPoll")) == 3
    async with runtime.sessionmaker() as session:
        stored = await session.get(CouncilVote, vote.id)
        assert stored is not None and stored.status is VoteStatus.CLOSED
    # The next tick finds nothing more to close.
    assert await close_due_votes(runtime, now=LATER + timedelta(seconds=20)) == []

    # The outbox job sends the results with their chart to the council and the community.
    sent = 0
    for _ in range(5):
        sent += await send_outbox(runtime)
    for chat_id in (COUNCIL_CHAT, COMMUNITY_CHAT):
        photos = [r for r in double.delivered(chat_id) if isinstance(r.method, SendPhoto)]
        assert len(photos) == 1, chat_id
        caption = parse_html(photos[0].method.caption or "")  # type: ignore[attr-defined]
        assert "居民议事会表决结果" in caption and "候选0" in caption
    async with runtime.sessionmaker() as session:
        results = (
            await session.scalars(select(Notification).where(Notification.kind == "vote_result"))
        ).all()
    assert results and all(n.status is NotificationStatus.SENT for n in results)
    assert sent >= len(results)


async def test_two_replicas_close_a_vote_once(
    postgres_url: str, double: TelegramDouble, pending_i18n: I18n
) -> None:
    engines = [create_engine(postgres_url) for _ in range(2)]
    try:
        first, second = (make_runtime(e, double, pending_i18n) for e in engines)
        vote = await a_vote_with_polls(first, await seed_org(first), candidates=2)
        for _ in range(3):  # the same instant, several times over
            closed = await asyncio.gather(
                close_due_votes(first, now=LATER, wait=True),
                close_due_votes(second, now=LATER, wait=True),
            )
            if any(closed):
                break
        assert sorted(closed[0] + closed[1]) == [vote.id]
        async with first.sessionmaker() as session:
            closes = await session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.entity_type == "council_vote", AuditEvent.action == "close")
            )
            results = await session.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.kind == "vote_result")
            )
        assert closes == 1
        assert results == 2  # the council's group and the community's, once each
        assert len(double.delivered(COUNCIL_CHAT, "StopPoll")) == 2
    finally:
        for engine in engines:
            await engine.dispose()


async def test_jobs_ride_out_a_database_outage(
    postgres_url: str,
    double: TelegramDouble,
    pending_i18n: I18n,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = make_url(postgres_url)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
    proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    engine = create_engine(proxied)
    try:
        runtime = make_runtime(engine, double, pending_i18n)
        vote = await a_vote_with_polls(runtime, await seed_org(runtime), candidates=1)
        proxy.cut()
        await engine.dispose()  # the pool's connections went with the cut
        assert await close_due_votes(runtime, now=LATER) == []
        assert await send_outbox(runtime) == 0
        await prune_processed_updates(runtime)  # logs, does not raise
        assert "next tick" in caplog.text
        proxy.restore()
        assert await close_due_votes(runtime, now=LATER, wait=True) == [vote.id]
    finally:
        proxy.restore()
        await engine.dispose()
        await proxy.stop()


async def test_the_scheduler_has_its_jobs(runtime: Runtime) -> None:
    scheduler = create_scheduler(runtime)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {
        "prune_processed_updates",
        "close_due_votes",
        "send_outbox",
        "resume_poll_sending",
        "stop_left_polls",
    }
    for name in ("close_due_votes", "send_outbox", "resume_poll_sending", "stop_left_polls"):
        assert jobs[name].max_instances == 1 and jobs[name].coalesce is True
    assert jobs["send_outbox"].trigger.interval == timedelta(seconds=2)
    assert jobs["close_due_votes"].trigger.interval == timedelta(seconds=20)
    assert jobs["stop_left_polls"].trigger.interval == timedelta(seconds=60)


@pytest.fixture
async def wired(engine: AsyncEngine, double: TelegramDouble) -> AsyncIterator[Runtime]:
    runtime = bare_runtime(engine, double)
    async with running_jobs(runtime):
        yield runtime


async def test_the_lifespan_wires_the_senders(wired: Runtime) -> None:
    assert isinstance(wired.limiter, MemorySendLimiter)  # no Redis in this process
    assert isinstance(wired.outbox, OutboxSender)
    assert wired.scheduler is not None and wired.scheduler.running
    sender = wired.poll_sender
    assert sender is not None
    await sender(424242)  # an unknown vote: started in the background, sends nothing
    await wait_background(wired)
    closer = wired.vote_closer
    assert closer is not None
    assert await closer(424242) is None


async def test_replicas_share_the_limiter_in_redis(
    sqlite_url: str, redis_url: str, double: TelegramDouble
) -> None:
    engine = create_engine(sqlite_url)
    client = Redis.from_url(redis_url)
    try:
        runtime = bare_runtime(engine, double, redis=client)
        install_senders(runtime)
        assert isinstance(runtime.limiter, RedisSendLimiter)
        assert await runtime.limiter.try_acquire(1) == 0.0
    finally:
        await client.aclose()
        await engine.dispose()


async def test_polls_left_unsent_by_a_dead_replica_are_sent_once_its_lease_runs_out(
    runtime: Runtime, double: TelegramDouble, org: Any
) -> None:
    council_ = await make_council(runtime.sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, ["候选甲", "候选乙"])
    vote = await convene(council_, ids, closes_at=in_days(3))
    # A replica took the lease to send the polls and died before sending any.
    async with runtime.sessionmaker() as session:
        assert await council.claim_poll_sending(session, vote.id, now=T0)
        assert not await council.claim_poll_sending(session, vote.id, now=T0)  # held
    assert await resume_poll_sending(runtime, now=T0 + timedelta(minutes=5)) == []
    assert await resume_poll_sending(runtime, now=T0 + timedelta(minutes=11)) == [vote.id]
    await wait_background(runtime)
    assert len(double.delivered(COUNCIL_CHAT, "SendPoll")) == 2
    # A full pass is recorded: nothing is sent twice, by this replica or another.
    assert await resume_poll_sending(runtime, now=T0 + timedelta(minutes=30)) == []
    async with runtime.sessionmaker() as session:
        assert not await council.claim_poll_sending(session, vote.id, now=T0 + timedelta(days=1))
        stored = await session.get(CouncilVote, vote.id)
        assert stored is not None and stored.polls_sent_at is not None


async def test_the_nightly_prune_forgets_old_ids_settled_messages_and_dead_letters(
    engine: AsyncEngine, double: TelegramDouble
) -> None:
    runtime = bare_runtime(engine, double)
    long_ago = T0 - timedelta(days=runtime.settings.notification_retention_days + 1)
    letters_kept = timedelta(days=runtime.settings.dead_letter_retention_days)
    async with runtime.sessionmaker() as session:
        session.add(ProcessedUpdate(update_id=1, processed_at=long_ago))
        for status in (NotificationStatus.SENT, NotificationStatus.PENDING):
            session.add(
                Notification(chat_id=1, kind="test", params={}, status=status, created_at=long_ago)
            )
        for age, reason in ((letters_kept + timedelta(hours=1), "old"), (letters_kept / 2, "new")):
            session.add(DeadLetter(received_at=T0 - age, reason=reason, body="{}"))
        await session.commit()
    await prune_processed_updates(runtime, now=T0)
    async with runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ProcessedUpdate)) == 0
        left = (await session.scalars(select(Notification.status))).all()
        assert left == [NotificationStatus.PENDING]
        # A dead letter holds its sender's name and words: kept only as long as configured.
        assert (await session.scalars(select(DeadLetter.reason))).all() == ["new"]


# --- a replica that stops mid-way: another carries on at its next tick ---------------------

GRACE = 0.2  # what a shutdown gives background work before cancelling it (5 s in production)


def paced_replica(engine: AsyncEngine, double: TelegramDouble, i18n: I18n) -> Runtime:
    """A replica at Telegram's real pace for a group: a message a second, 20 a minute."""
    runtime = bare_runtime(engine, double)
    runtime.limiter, runtime.i18n = MemorySendLimiter(Limits()), i18n
    install_senders(runtime)
    return runtime


async def a_convened_vote(runtime: Runtime, candidates: int = 3) -> tuple[Any, CouncilVote]:
    """A vote around the real clock (the paced replicas' jobs run on it)."""
    org = await seed_org(runtime)
    council_ = await make_council(runtime.sessionmaker, org.xinsha_id, size=3)
    ids = await add_candidates(council_, [f"候选{n}" for n in range(candidates)])
    now = utcnow()
    return council_, await convene(council_, ids, closes_at=now + timedelta(days=2), now=now)


async def open_polls(runtime: Runtime) -> list[str]:
    async with runtime.sessionmaker() as session:
        rows = (await session.scalars(select(CouncilPoll))).all()
    return sorted(r.poll_id for r in rows if r.stopped_at is None)


async def test_a_replica_stopped_while_sending_leaves_the_rest_to_the_next_tick(
    postgres_url: str, pending_i18n: I18n
) -> None:
    """Replica A is shut down while the second poll waits for its turn. That send was never
    claimed and A lets go of its lease, so replica B's resume job, a minute later rather than
    once the ten-minute lease has run out, sends the rest: every candidate gets one poll, and
    none is taken for possibly posted."""
    engines = [create_engine(postgres_url) for _ in range(2)]
    doubles = [TelegramDouble(), TelegramDouble()]
    try:
        a, b = (paced_replica(e, d, pending_i18n) for e, d in zip(engines, doubles, strict=True))
        _, vote = await a_convened_vote(a)
        schedule_vote_polls(a, vote.id)
        await until(lambda: len(doubles[0].delivered(COUNCIL_CHAT, "SendPoll")) == 1)
        await asyncio.sleep(0.3)  # the second poll waits for its turn
        await cancel_background(a, grace=GRACE)  # replica A shuts down
        assert len(doubles[0].delivered(COUNCIL_CHAT, "SendPoll")) == 1
        async with a.sessionmaker() as session:
            stored = await session.get(CouncilVote, vote.id)
            assert stored is not None
            assert stored.polls_lease_until is None and stored.polls_sent_at is None
            states = (await session.scalars(select(CouncilPollSend.state))).all()
            assert states == [PollSendState.SENT]

        # resume_poll_sending ticks every minute on every replica.
        assert await resume_poll_sending(b, now=utcnow() + timedelta(seconds=65)) == [vote.id]
        await wait_background(b)
        sent = [d.delivered(COUNCIL_CHAT, "SendPoll") for d in doubles]
        assert (len(sent[0]), len(sent[1])) == (1, 2)
        assert len(doubles[1].delivered(COUNCIL_CHAT, "SendMessage")) == 0  # no second header
        async with b.sessionmaker() as session:
            states = (await session.scalars(select(CouncilPollSend.state))).all()
            assert states == [PollSendState.SENT] * 3
            stored = await session.get(CouncilVote, vote.id)
            assert stored is not None and stored.polls_sent_at is not None
    finally:
        for engine in engines:
            await engine.dispose()


async def test_polls_left_running_by_a_replica_that_stopped_are_stopped_by_another(
    postgres_url: str, pending_i18n: I18n
) -> None:
    """The last member votes, replica A closes the vote early and stops its polls in the
    background at the group's pace; A is shut down after the first. Replica B's
    stop_left_polls, at its next tick, stops the rest (A let go of the lease)."""
    engines = [create_engine(postgres_url) for _ in range(2)]
    double = TelegramDouble()  # one Telegram, both replicas' bot
    try:
        a = make_runtime(engines[0], double, pending_i18n)  # quick, for the sending
        council_, vote = await a_convened_vote(a)
        schedule_vote_polls(a, vote.id)
        await wait_background(a)
        a.limiter = MemorySendLimiter(Limits())  # the real pace, for the stopping
        b = paced_replica(engines[1], double, pending_i18n)
        async with a.sessionmaker() as session:
            detail = await council.vote_detail(session, vote.id)
            assert detail is not None and len(detail.polls) == 3
            polls = [p.poll_id for p in detail.polls]
        for poll in polls:  # everyone votes on everything
            for member in council_.members:
                async with a.sessionmaker() as session:
                    assert await council.record_answer(session, poll, member, [0])
                    await session.commit()
        assert await stop_left_polls(b) == []  # open: nothing to stop

        # The last answer's after-commit hook on replica A; A is shut down meanwhile.
        assert await close_and_stop(a, vote.id) is not None
        await until(lambda: len(stop_requests(double)) == 1)
        await cancel_background(a, grace=GRACE)
        assert len(await open_polls(a)) == 2

        assert await stop_left_polls(b, now=utcnow() + timedelta(minutes=1)) == [vote.id]
        await wait_background(b)
        assert await open_polls(b) == []
        assert all(p["is_closed"] for p in double.polls.values())
        assert len(stop_requests(double)) == 3  # each poll once
        assert await stop_left_polls(b, now=utcnow() + timedelta(minutes=2)) == []
        async with b.sessionmaker() as session:
            stored = await session.get(CouncilVote, vote.id)
            assert stored is not None and stored.polls_lease_until is None
    finally:
        for engine in engines:
            await engine.dispose()


def stop_requests(double: TelegramDouble) -> list[Any]:
    """Every stopPoll made, also those refused (a poll stopped twice is refused)."""
    return [r for r in double.requests if r.name == "StopPoll"]


async def a_closed_vote_with_running_polls(runtime: Runtime, org: Any) -> CouncilVote:
    """Closed at LATER by a replica that died before it stopped any of its 3 polls."""
    vote = await a_vote_with_polls(runtime, org)
    async with runtime.sessionmaker() as session:
        assert await council.close_vote(session, vote.id, now=LATER) is not None
    return vote


async def test_left_polls_are_stopped_once_whoever_ticks(
    postgres_url: str, double: TelegramDouble, pending_i18n: I18n
) -> None:
    engines = [create_engine(postgres_url) for _ in range(2)]
    try:
        first, second = (make_runtime(e, double, pending_i18n) for e in engines)
        vote = await a_closed_vote_with_running_polls(first, await seed_org(first))
        for replica in (first, second):  # the group's pace: stopping takes two seconds
            replica.limiter = MemorySendLimiter(Limits())
        at = LATER + timedelta(minutes=1)
        # Both replicas' jobs found the vote at the same tick: one claims it.
        stopped = await asyncio.gather(
            stop_claimed_vote_polls(first, vote.id, now=at),
            stop_claimed_vote_polls(second, vote.id, now=at),
        )
        assert sorted(stopped, key=str) == [3, None]
        assert len(stop_requests(double)) == 3  # none stopped twice
        assert await open_polls(first) == []
        assert await stop_left_polls(first, now=at) == []
        assert await stop_left_polls(second, now=at + timedelta(minutes=1)) == []
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_dead_replicas_stopping_lease_runs_out_before_another_stops_the_polls(
    runtime: Runtime, double: TelegramDouble, org: Any
) -> None:
    vote = await a_closed_vote_with_running_polls(runtime, org)
    async with runtime.sessionmaker() as session:  # a replica took it up and died
        assert await council.claim_poll_stopping(session, vote.id, now=LATER) is not None
        assert await council.claim_poll_stopping(session, vote.id, now=LATER) is None  # held
    assert await stop_left_polls(runtime, now=LATER + timedelta(minutes=1)) == []
    after = LATER + council.POLL_STOPPING_LEASE + timedelta(seconds=1)
    assert await stop_left_polls(runtime, now=after) == [vote.id]
    await wait_background(runtime)
    assert len(double.delivered(COUNCIL_CHAT, "StopPoll")) == 3
    assert await open_polls(runtime) == []


async def test_polls_that_could_not_be_stopped_are_tried_again_when_the_lease_runs_out(
    runtime: Runtime, double: TelegramDouble, org: Any
) -> None:
    vote = await a_closed_vote_with_running_polls(runtime, org)
    double.fail_in_chat(COUNCIL_CHAT, bad_request("message can't be edited"), StopPoll)
    assert await stop_left_polls(runtime, now=LATER) == [vote.id]
    await wait_background(runtime)
    assert len(await open_polls(runtime)) == 1
    # Not on every tick: the lease is kept until it runs out.
    assert await stop_left_polls(runtime, now=LATER + timedelta(minutes=1)) == []
    later = LATER + council.POLL_STOPPING_LEASE + timedelta(seconds=1)
    assert await stop_left_polls(runtime, now=later) == [vote.id]
    await wait_background(runtime)
    assert await open_polls(runtime) == []


async def test_polls_are_left_alone_long_after_the_close(
    runtime: Runtime, double: TelegramDouble, org: Any
) -> None:
    await a_closed_vote_with_running_polls(runtime, org)
    long_after = LATER + council.POLL_STOPPING_WINDOW + timedelta(minutes=1)
    assert await stop_left_polls(runtime, now=long_after) == []
    assert double.delivered(COUNCIL_CHAT, "StopPoll") == []


async def test_a_vote_closed_while_its_polls_are_sent_is_stopped_once_the_sender_lets_go(
    runtime: Runtime, double: TelegramDouble, org: Any
) -> None:
    """The vote's lease serves the sending, then the stopping: polls are not stopped under a
    run that may still be sending them; once it lets go, the job stops them (also one it
    recorded after the close)."""
    vote = await a_vote_with_polls(runtime, org)
    async with runtime.sessionmaker() as session:
        assert await council.claim_poll_sending(session, vote.id, now=LATER - timedelta(minutes=1))
    assert await close_due_votes(runtime, now=LATER, wait=True) == [vote.id]
    assert double.delivered(COUNCIL_CHAT, "StopPoll") == []  # left to the job
    async with runtime.sessionmaker() as session:
        await council.finish_poll_sending(session, vote.id, now=LATER)
    assert await stop_left_polls(runtime, now=LATER + timedelta(minutes=1)) == [vote.id]
    await wait_background(runtime)
    assert len(double.delivered(COUNCIL_CHAT, "StopPoll")) == 3
