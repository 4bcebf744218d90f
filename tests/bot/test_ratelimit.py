"""The send limiter (bot.ratelimit): Telegram's limits kept on a virtual clock, in memory and
in Redis, and two limiters sharing one Redis keeping one global budget in real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from sending_fakes import VirtualClock, max_in_window, min_gap
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

from bot import factory
from bot.factory import create_redis
from bot.ratelimit import Limits, MemorySendLimiter, RedisSendLimiter, SendLimiter, create_limiter

GROUP = -100_500
START = 1_000.0
SOCKET_TIMEOUT = 1.0  # factory.REDIS_SOCKET_TIMEOUT in the silent-Redis test


def offsets(times: list[float]) -> list[float]:
    return [t - START for t in times]


Factory = Callable[[VirtualClock, Limits | None], Awaitable[SendLimiter]]


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> Any:
    """Limiters on a virtual clock: in memory, and in Redis given the clock's time."""
    clients: list[Redis] = []

    async def make(clock: VirtualClock, limits: Limits | None = None) -> SendLimiter:
        if request.param == "memory":
            return MemorySendLimiter(limits, clock=clock, sleep=clock.sleep)
        url: str = request.getfixturevalue("redis_url")
        client = Redis.from_url(url)
        clients.append(client)
        return RedisSendLimiter(client, limits, clock=clock, sleep=clock.sleep)

    yield make
    for client in clients:
        await client.aclose()


async def grants(clock: VirtualClock, limiter: SendLimiter, chat_ids: list[int]) -> list[float]:
    """Acquire for each chat in turn; the instants they were granted."""
    times = []
    for chat_id in chat_ids:
        await limiter.acquire(chat_id)
        times.append(clock())
    return times


async def test_private_chat_one_a_second(make_limiter: Factory) -> None:
    clock = VirtualClock()
    limiter = await make_limiter(clock, None)
    (times,) = await clock.run(grants(clock, limiter, [7] * 5))
    assert offsets(times) == pytest.approx([0, 1, 2, 3, 4], abs=0.05)
    # Another person's chat is not held up by the first's pace.
    assert await limiter.try_acquire(8) == 0.0


async def test_group_twenty_a_minute(make_limiter: Factory) -> None:
    clock = VirtualClock()
    limiter = await make_limiter(clock, None)
    (times,) = await clock.run(grants(clock, limiter, [GROUP] * 25))
    assert offsets(times)[:20] == pytest.approx(list(range(20)), abs=0.05)  # one a second
    # Then one as each of the first leaves the minute.
    assert offsets(times)[20:] == pytest.approx([60, 61, 62, 63, 64], abs=0.05)
    assert max_in_window(times, 60) == 20
    assert min_gap(times) >= 1 - 1e-6


async def test_global_thirty_a_second(make_limiter: Factory) -> None:
    clock = VirtualClock()
    limiter = await make_limiter(clock, None)
    chats = list(range(1, 101))
    results = await clock.run(*(grants(clock, limiter, [c]) for c in chats))
    times = [t for (t,) in results]
    assert max_in_window(times, 1.0) == 30
    assert sorted(offsets(times))[::30] == pytest.approx([0, 1, 2, 3], abs=0.05)


async def test_mixed_load_keeps_every_limit(make_limiter: Factory) -> None:
    clock = VirtualClock()
    limiter = await make_limiter(clock, None)
    plan = {GROUP: 30, -100_501: 5, **{c: 12 for c in range(1, 41)}}
    results = await clock.run(*(grants(clock, limiter, [c] * n) for c, n in plan.items()))
    everything = [t for times in results for t in times]
    assert len(everything) == sum(plan.values())
    assert max_in_window(everything, 1.0) <= 30
    for (chat_id, _), times in zip(plan.items(), results, strict=True):
        assert min_gap(times) >= 1 - 1e-6, chat_id
        if chat_id < 0:
            assert max_in_window(times, 60) <= 20, chat_id


async def test_pause_after_429(make_limiter: Factory) -> None:
    clock = VirtualClock()
    limiter = await make_limiter(clock, None)
    await limiter.pause(9, 30)
    await limiter.pause(9, 5)  # a shorter pause never shortens a longer one
    assert await limiter.try_acquire(9) == pytest.approx(30, abs=0.01)
    assert await limiter.try_acquire(10) == 0.0  # other chats go on
    (times,) = await clock.run(grants(clock, limiter, [9]))
    assert times[0] - START >= 30


async def test_tighter_limits(make_limiter: Factory) -> None:
    clock = VirtualClock()
    limits = Limits(global_per_window=5, chat_interval=0.0, group_per_window=3, group_window=10)
    limiter = await make_limiter(clock, limits)
    (times,) = await clock.run(grants(clock, limiter, [GROUP] * 7))
    assert offsets(times) == pytest.approx([0, 0, 0, 10, 10, 10, 20], abs=0.05)


def test_limits_are_sane() -> None:
    with pytest.raises(ValueError):
        Limits(global_per_window=0)
    with pytest.raises(ValueError):
        Limits(group_window=0)


def test_create_limiter_picks_the_backend() -> None:
    assert isinstance(create_limiter(None), MemorySendLimiter)
    client = Redis.from_url("redis://127.0.0.1:1/0")  # never connected
    assert isinstance(create_limiter(client), RedisSendLimiter)


async def test_memory_limiter_forgets_old_chats() -> None:
    clock = VirtualClock()
    limiter = MemorySendLimiter(clock=clock, sleep=clock.sleep)
    for chat_id in range(-3000, 0):
        clock.now += 0.04
        await limiter.try_acquire(chat_id)
    clock.now += 120
    await limiter.try_acquire(1)
    assert len(limiter._last) < 100 and len(limiter._groups) < 100


async def test_two_limiters_sharing_redis_keep_the_global_rate(redis_url: str) -> None:
    """Two replicas (two clients, two limiters, Redis's own clock) sending to 40 different
    chats: together never more than the global budget in any window."""
    limits = Limits(global_per_window=10, global_window=1.0)
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        a, b = RedisSendLimiter(first, limits), RedisSendLimiter(second, limits)
        granted: list[float] = []

        async def replica(limiter: SendLimiter, chats: range) -> None:
            for chat_id in chats:
                await limiter.acquire(chat_id)
                granted.append(time.monotonic())

        started = time.monotonic()
        await asyncio.gather(replica(a, range(1, 21)), replica(b, range(21, 41)))
        elapsed = time.monotonic() - started
    finally:
        await first.aclose()
        await second.aclose()
    assert len(granted) == 40
    # 40 grants at 10 a second: the last window opens 3 s after the first.
    assert elapsed >= 3 - 0.05
    # Observed after the round trip, so allow the network's jitter at the window's edge.
    assert max_in_window(granted, 1.0 - 0.05) <= 10


async def test_redis_group_limit_is_shared(redis_url: str) -> None:
    limits = Limits(chat_interval=0.0, group_per_window=3, group_window=1.5)
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        a, b = RedisSendLimiter(first, limits), RedisSendLimiter(second, limits)
        for limiter in (a, b, a):
            assert await limiter.try_acquire(GROUP) == 0.0
        wait = await b.try_acquire(GROUP)
        assert 1.0 < wait <= 1.5
        await a.pause(GROUP, 5)
        assert await b.try_acquire(GROUP) > 4
    finally:
        await first.aclose()
        await second.aclose()


async def test_redis_unreachable_keeps_the_limits_in_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        limiter = RedisSendLimiter(client, clock=clock, sleep=clock.sleep)
        assert await limiter.try_acquire(5) == 0.0
        assert await limiter.try_acquire(5) == pytest.approx(1.0)
        await limiter.pause(6, 10)
        assert await limiter.try_acquire(6) == pytest.approx(10.0)
    finally:
        await client.aclose()
    assert caplog.text.count("Redis unreachable") == 1  # said once, not on every message


@pytest.mark.redis
async def test_a_silent_redis_falls_back_in_seconds(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis that stops answering without refusing (a partition): the process's client
    (bot.factory.create_redis) gives up in seconds and the limiter goes on in process,
    rather than holding the outbox round, and its claimed rows, for minutes.

    The client's bound is factory.REDIS_SOCKET_TIMEOUT (5 s); the limiter may take three
    times it, here on a bound of a second so that the test does not wait out five."""
    assert factory.REDIS_SOCKET_TIMEOUT <= 5
    monkeypatch.setattr(factory, "REDIS_SOCKET_TIMEOUT", SOCKET_TIMEOUT)
    target = make_url(redis_url.replace("redis://", "postgresql://"))  # reuse the URL parser
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 6379).start()
    client = create_redis(f"redis://127.0.0.1:{proxy.port}/{target.database or 0}")
    try:
        limiter = RedisSendLimiter(client)
        assert await limiter.try_acquire(501) == 0.0
        proxy.silence()
        try:
            wait = await asyncio.wait_for(limiter.try_acquire(502), 3 * SOCKET_TIMEOUT)
        except TimeoutError:
            pytest.fail("the limiter waited on a silent Redis for over three socket timeouts")
        assert wait == 0.0
    finally:
        await client.aclose()
        await proxy.stop()


def _replicas_behind(proxy: TcpProxy, redis_url: str) -> list[Redis]:
    """Two replicas' Redis clients, reaching the real Redis through `proxy`."""
    target = make_url(redis_url.replace("redis://", "postgresql://"))
    return [Redis.from_url(f"redis://127.0.0.1:{proxy.port}/{target.database or 0}") for _ in "ab"]


async def _proxy_to(redis_url: str) -> TcpProxy:
    target = make_url(redis_url.replace("redis://", "postgresql://"))
    return await TcpProxy(target.host or "127.0.0.1", target.port or 6379).start()


@pytest.mark.redis
async def test_a_pause_taken_while_redis_is_away_reaches_every_replica_once_it_is_back(
    redis_url: str,
) -> None:
    """Telegram told replica A to hold off a group for 30 s while Redis was away: once Redis
    answers again, A writes the pause there and replica B honours it too, although A sends
    nothing meanwhile (it may be sleeping through that very pause)."""
    proxy = await _proxy_to(redis_url)
    clients = _replicas_behind(proxy, redis_url)
    try:
        a, b = (RedisSendLimiter(client) for client in clients)
        a.PAUSE_RETRY_EVERY = 0.1
        proxy.cut()
        await a.pause(GROUP, 30)
        await asyncio.sleep(0.25)  # still away: tried, kept
        proxy.restore()
        await asyncio.sleep(1.0)  # a few attempts: the first may still meet a dropped connection
        assert 25 < await b.try_acquire(GROUP) <= 30
        assert not a._unsent
    finally:
        proxy.restore()
        for client in clients:
            await client.aclose()
        await proxy.stop()


@pytest.mark.redis
async def test_a_replica_writes_its_offline_pauses_before_its_next_message(
    redis_url: str,
) -> None:
    """Back on Redis, the replica's next message first writes what it paused meanwhile (for
    what is left of it), so neither it nor another replica sends into a pause; a pause that
    ran out while Redis was away is not written at all."""
    proxy = await _proxy_to(redis_url)
    clients = _replicas_behind(proxy, redis_url)
    try:
        a, b = (RedisSendLimiter(client) for client in clients)
        a.PAUSE_RETRY_EVERY = 3600  # only the next message writes them
        proxy.cut()
        await a.pause(GROUP, 30)
        await a.pause(GROUP - 1, 0.2)
        await asyncio.sleep(0.3)
        proxy.restore()
        assert await a.try_acquire(3) == 0.0  # another chat: may go, and writes the pauses
        assert 25 < await b.try_acquire(GROUP) <= 30
        assert 25 < await a.try_acquire(GROUP) <= 30
        assert await b.try_acquire(GROUP - 1) == 0.0
        assert not a._unsent
    finally:
        proxy.restore()
        for client in clients:
            await client.aclose()
        await proxy.stop()
