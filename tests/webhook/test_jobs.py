"""The scheduler's jobs (webhook.jobs): a vote that fell due while the service was down is
closed on the first tick, its polls stopped and its results sent with their chart; two
replicas close a vote once; a database outage is logged and the next tick carries on; and
the lifespan wires the limiter, the outbox and the council's senders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram import Dispatcher
from aiogram.methods import SendPhoto
from aiogram.utils.i18n import I18n
from conftest import ORG_ROWS
from redis.asyncio import Redis
from sending_fakes import (
    COMMUNITY_CHAT,
    COUNCIL_CHAT,
    T0,
    TelegramDouble,
    add_candidates,
    convene,
    in_days,
    make_council,
)
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from tcp_proxy import TcpProxy
from telegram_fakes import make_bot, make_settings, parse_html

from bot.outbox import OutboxSender
from bot.polls import send_vote_polls, wait_background
from bot.ratelimit import Limits, MemorySendLimiter, RedisSendLimiter
from storage.db import create_engine, create_sessionmaker
from storage.models import (
    AuditEvent,
    CouncilVote,
    Notification,
    NotificationStatus,
    ProcessedUpdate,
    VoteStatus,
)
from storage.services import council
from storage.services.org import find_community, import_rows
from webhook.app import running_jobs
from webhook.jobs import (
    OUTBOX_KEY,
    close_due_votes,
    create_scheduler,
    install_senders,
    prune_processed_updates,
    resume_poll_sending,
    send_outbox,
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
    runtime.extras.update(limiter=MemorySendLimiter(QUICK), i18n=i18n)
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
        runtime.extras["limiter"],
        i18n=runtime.extras["i18n"],
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
    }
    for name in ("close_due_votes", "send_outbox"):
        assert jobs[name].max_instances == 1 and jobs[name].coalesce is True
    assert jobs["send_outbox"].trigger.interval == timedelta(seconds=2)
    assert jobs["close_due_votes"].trigger.interval == timedelta(seconds=20)


@pytest.fixture
async def wired(engine: AsyncEngine, double: TelegramDouble) -> AsyncIterator[Runtime]:
    runtime = bare_runtime(engine, double)
    async with running_jobs(runtime):
        yield runtime


async def test_the_lifespan_wires_the_senders(wired: Runtime) -> None:
    extras = wired.extras
    assert isinstance(extras["limiter"], MemorySendLimiter)  # no Redis in this process
    assert isinstance(extras[OUTBOX_KEY], OutboxSender)
    assert wired.scheduler is not None and wired.scheduler.running
    sender: Callable[[int], Any] = extras["council_poll_sender"]
    await sender(424242)  # an unknown vote: started in the background, sends nothing
    await wait_background(wired)
    closer: Callable[[int], Any] = extras["vote_closer"]
    assert await closer(424242) is None


async def test_replicas_share_the_limiter_in_redis(
    sqlite_url: str, redis_url: str, double: TelegramDouble
) -> None:
    engine = create_engine(sqlite_url)
    client = Redis.from_url(redis_url)
    try:
        runtime = bare_runtime(engine, double, redis=client)
        install_senders(runtime)
        assert isinstance(runtime.extras["limiter"], RedisSendLimiter)
        assert await runtime.extras["limiter"].try_acquire(1) == 0.0
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


async def test_the_nightly_prune_forgets_old_ids_and_settled_messages(
    engine: AsyncEngine, double: TelegramDouble
) -> None:
    runtime = bare_runtime(engine, double)
    long_ago = T0 - timedelta(days=runtime.settings.notification_retention_days + 1)
    async with runtime.sessionmaker() as session:
        session.add(ProcessedUpdate(update_id=1, processed_at=long_ago))
        for status in (NotificationStatus.SENT, NotificationStatus.PENDING):
            session.add(
                Notification(chat_id=1, kind="test", params={}, status=status, created_at=long_ago)
            )
        await session.commit()
    await prune_processed_updates(runtime, now=T0)
    async with runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ProcessedUpdate)) == 0
        left = (await session.scalars(select(Notification.status))).all()
        assert left == [NotificationStatus.PENDING]
