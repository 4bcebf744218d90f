"""Pacing outgoing messages to Telegram's limits, so the bot is not answered 429.

Telegram's limits (Bot FAQ): about 30 messages a second over all chats, about one a second in
one chat, and 20 a minute in one group. `SendLimiter.acquire(chat_id)` returns when a message
to that chat may go now, and counts it. In one process the budget is kept in memory; with
REDIS_URL it is kept in Redis by one Lua script run atomically, so every replica draws on the
same budget (and, by default, on Redis's clock, so replicas' clocks need not agree).

Each limit is a sliding window of the grants already made: a grant is recorded only when
every limit allows it now; otherwise the caller is told how long to wait, sleeps, and asks
again. Nothing is reserved for the future, so a chat that must wait a minute holds no slot
that another chat could use meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Waking a hair after the computed instant, so that a float rounding never wakes us a
# microsecond early into another refusal.
_EPSILON = 0.001


@dataclass(frozen=True, slots=True)
class Limits:
    """Telegram's published limits, which a deployment may tighten (never loosen)."""

    global_per_window: int = 30
    global_window: float = 1.0
    chat_interval: float = 1.0  # between two messages to one chat (private or group)
    group_per_window: int = 20
    group_window: float = 60.0

    def __post_init__(self) -> None:
        if min(self.global_per_window, self.group_per_window) < 1:
            raise ValueError("a window must allow at least one message")
        if min(self.global_window, self.group_window) <= 0 or self.chat_interval < 0:
            raise ValueError("windows must be positive and the interval not negative")


def is_group(chat_id: int) -> bool:
    """Group and supergroup ids are negative; a private chat's id is the user's (positive)."""
    return chat_id < 0


class SendLimiter(Protocol):
    """One interface, two implementations (`MemorySendLimiter`, `RedisSendLimiter`)."""

    limits: Limits

    async def try_acquire(self, chat_id: int) -> float:
        """0.0 if a message to `chat_id` may go now (and it is counted); else how many
        seconds to wait before asking again (nothing is counted)."""

    async def acquire(self, chat_id: int) -> None:
        """Wait until a message to `chat_id` may go, and count it."""

    async def pause(self, chat_id: int, seconds: float) -> None:
        """Telegram said 429 for this chat: hold every sender off it for `seconds`."""


async def _acquire_loop(limiter: SendLimiter, chat_id: int, sleep: Sleep) -> None:
    while True:
        wait = await limiter.try_acquire(chat_id)
        if wait <= 0:
            return
        await sleep(wait + _EPSILON)


class MemorySendLimiter:
    """The budget of one process. Safe for many coroutines: `try_acquire` checks and records
    without awaiting in between, so no other coroutine can slip in."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limits = limits or Limits()
        self._clock = clock
        self._sleep = sleep
        self._global: deque[float] = deque()
        self._last: dict[int, float] = {}
        self._groups: dict[int, deque[float]] = {}
        self._paused: dict[int, float] = {}

    def _forget(self, now: float) -> None:
        limits = self.limits
        while self._global and self._global[0] <= now - limits.global_window:
            self._global.popleft()
        # Bounded memory: forget chats whose every limit has run out.
        horizon = now - max(limits.chat_interval, limits.group_window)
        if len(self._last) > 1024:
            for chat_id in [c for c, t in self._last.items() if t <= horizon]:
                del self._last[chat_id]
                group = self._groups.get(chat_id)
                if group is not None and (not group or group[-1] <= horizon):
                    del self._groups[chat_id]
            for chat_id in [c for c, t in self._paused.items() if t <= now]:
                del self._paused[chat_id]

    def wait_for(self, chat_id: int, now: float) -> float:
        """Seconds until every limit would allow a message to `chat_id` (0.0: now)."""
        limits = self.limits
        wait = self._paused.get(chat_id, now) - now
        if len(self._global) >= limits.global_per_window:
            oldest = self._global[-limits.global_per_window]
            wait = max(wait, oldest + limits.global_window - now)
        last = self._last.get(chat_id)
        if last is not None:
            wait = max(wait, last + limits.chat_interval - now)
        if is_group(chat_id):
            group = self._groups.get(chat_id)
            if group is not None:
                while group and group[0] <= now - limits.group_window:
                    group.popleft()
                if len(group) >= limits.group_per_window:
                    oldest = group[-limits.group_per_window]
                    wait = max(wait, oldest + limits.group_window - now)
        return max(0.0, wait)

    async def try_acquire(self, chat_id: int) -> float:
        now = self._clock()
        self._forget(now)
        wait = self.wait_for(chat_id, now)
        if wait > 0:
            return wait
        self._global.append(now)
        self._last[chat_id] = now
        if is_group(chat_id):
            self._groups.setdefault(chat_id, deque()).append(now)
        return 0.0

    async def acquire(self, chat_id: int) -> None:
        await _acquire_loop(self, chat_id, self._sleep)

    async def pause(self, chat_id: int, seconds: float) -> None:
        until = self._clock() + max(0.0, seconds)
        self._paused[chat_id] = max(self._paused.get(chat_id, until), until)


def _lua_now(argv: int) -> str:
    """Lua setting `now`, in seconds, from ARGV[argv], or when that is "" from Redis's own
    clock (shared by every replica)."""
    return f"""
local now
if ARGV[{argv}] ~= '' then
  now = tonumber(ARGV[{argv}])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""


# KEYS: global window, the chat's last grant, the group's window, the chat's pause.
# ARGV: global limit, global window, chat interval, group limit (0: not a group), group window,
#       a unique member, and "now" (see _lua_now).
# Returns the wait in seconds as a string ("0" = granted and counted): a Lua number returned
# as such would be truncated to an integer.
_ACQUIRE_LUA = (
    _lua_now(7)
    + """
local glimit, gwindow = tonumber(ARGV[1]), tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local wlimit, wwindow = tonumber(ARGV[4]), tonumber(ARGV[5])
local wait = 0

local paused = redis.call('GET', KEYS[4])
if paused then wait = math.max(wait, tonumber(paused) - now) end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - gwindow)
if redis.call('ZCARD', KEYS[1]) >= glimit then
  local oldest = redis.call('ZRANGE', KEYS[1], -glimit, -glimit, 'WITHSCORES')
  wait = math.max(wait, tonumber(oldest[2]) + gwindow - now)
end

local last = redis.call('GET', KEYS[2])
if last then wait = math.max(wait, tonumber(last) + interval - now) end

if wlimit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - wwindow)
  if redis.call('ZCARD', KEYS[3]) >= wlimit then
    local oldest = redis.call('ZRANGE', KEYS[3], -wlimit, -wlimit, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + wwindow - now)
  end
end

if wait > 0 then return string.format('%.6f', wait) end

redis.call('ZADD', KEYS[1], now, ARGV[6])
redis.call('PEXPIRE', KEYS[1], math.ceil(gwindow * 1000) + 1000)
redis.call('SET', KEYS[2], string.format('%.6f', now), 'PX', math.ceil(interval * 1000) + 1000)
if wlimit > 0 then
  redis.call('ZADD', KEYS[3], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[3], math.ceil(wwindow * 1000) + 1000)
end
return '0'
"""
)

# KEYS: the chat's pause. ARGV: seconds, "now" (see _lua_now).
_PAUSE_LUA = (
    _lua_now(2)
    + """
local seconds = tonumber(ARGV[1])
local untl = now + seconds
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) > untl then return 0 end
redis.call('SET', KEYS[1], string.format('%.6f', untl), 'PX', math.ceil(seconds * 1000) + 1000)
return 1
"""
)


class RedisSendLimiter:
    """The budget shared by every replica using this Redis. Keys share one hash tag, so the
    script's keys sit in one slot of a Redis Cluster too.

    While Redis cannot be reached, this replica keeps the limits on its own (in memory)
    rather than stop sending. That is not the shared budget: each replica stays within
    Telegram's limits by itself, so with N replicas the global rate may reach N times its
    limit, and so may one chat's, since the outbox claims rows, not chats (two replicas may
    each hold messages for the same group). Telegram then answers some of them 429, which the
    senders retry after the pause it asks for. That is accepted for the length of an outage
    rather than made exact. A pause taken meanwhile is kept here and written to Redis once it
    answers again (tried every PAUSE_RETRY_EVERY seconds, and before this replica's next
    message), so every replica honours it for what is left of it."""

    PAUSE_RETRY_EVERY = 1.0  # seconds between attempts at writing pauses taken offline

    def __init__(
        self,
        redis: Redis,
        limits: Limits | None = None,
        *,
        prefix: str = "minsheng:ratelimit",
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limits = limits or Limits()
        self.redis = redis
        self._tag = "{" + prefix + "}"
        self._clock = clock
        self._sleep = sleep
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._pause = redis.register_script(_PAUSE_LUA)
        # Unique sorted-set members: two grants at one instant must both count.
        self._ids = itertools.count()
        self._origin = f"{os.getpid()}-{id(self):x}"
        self._local_clock = clock or time.monotonic
        self._fallback = MemorySendLimiter(self.limits, clock=self._local_clock, sleep=sleep)
        self._warned_at = -math.inf
        # Pauses Redis has not heard of yet: chat -> until, on the local clock.
        self._unsent: dict[int, float] = {}
        self._resend: asyncio.Task[None] | None = None

    def _now(self) -> str:
        return repr(self._clock()) if self._clock is not None else ""

    def _keys(self, chat_id: int) -> list[str]:
        return [
            f"{self._tag}:global",
            f"{self._tag}:last:{chat_id}",
            f"{self._tag}:group:{chat_id}",
            f"{self._tag}:pause:{chat_id}",
        ]

    def _unreachable(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:
            self._warned_at = now
            log.warning("rate limits kept in this process: Redis unreachable (%r)", error)

    async def try_acquire(self, chat_id: int) -> float:
        try:
            if self._unsent:
                await self._write_unsent()
            return await self._try_acquire(chat_id)
        except (RedisError, OSError) as error:
            self._unreachable(error)
            return await self._fallback.try_acquire(chat_id)

    async def _try_acquire(self, chat_id: int) -> float:
        limits = self.limits
        answer = await self._acquire(
            keys=self._keys(chat_id),
            args=[
                limits.global_per_window,
                repr(limits.global_window),
                repr(limits.chat_interval),
                limits.group_per_window if is_group(chat_id) else 0,
                repr(limits.group_window),
                f"{self._origin}-{next(self._ids)}",
                self._now(),
            ],
        )
        wait = float(answer.decode() if isinstance(answer, bytes) else answer)
        return wait if math.isfinite(wait) and wait > 0 else 0.0

    async def acquire(self, chat_id: int) -> None:
        await _acquire_loop(self, chat_id, self._sleep)

    async def pause(self, chat_id: int, seconds: float) -> None:
        if seconds <= 0:
            return
        await self._fallback.pause(chat_id, seconds)
        try:
            await self._write_pause(chat_id, seconds)
        except (RedisError, OSError) as error:
            self._unreachable(error)
            until = self._local_clock() + seconds
            self._unsent[chat_id] = max(self._unsent.get(chat_id, until), until)
            if self._resend is None or self._resend.done():
                self._resend = asyncio.get_running_loop().create_task(self._resend_unsent())

    async def _write_pause(self, chat_id: int, seconds: float) -> None:
        await self._pause(keys=[self._keys(chat_id)[3]], args=[repr(seconds), self._now()])

    async def _write_unsent(self) -> None:
        """Write the pauses taken while Redis was away, for what is left of them."""
        now = self._local_clock()
        for chat_id, until in list(self._unsent.items()):
            if until > now:
                await self._write_pause(chat_id, until - now)
            if self._unsent.get(chat_id) == until:  # not lengthened meanwhile
                del self._unsent[chat_id]

    async def _resend_unsent(self) -> None:
        # Real time: a test's virtual clock must not wait for this.
        while self._unsent:
            await asyncio.sleep(self.PAUSE_RETRY_EVERY)
            try:
                await self._write_unsent()
            except (RedisError, OSError):
                now = self._local_clock()
                for chat_id in [c for c, until in self._unsent.items() if until <= now]:
                    del self._unsent[chat_id]  # over: nothing left to tell


def create_limiter(redis: Redis | None, limits: Limits | None = None) -> SendLimiter:
    """Redis-backed when the process has Redis (replicas share the budget), else in memory."""
    if redis is not None:
        return RedisSendLimiter(redis, limits)
    return MemorySendLimiter(limits)


__all__ = [
    "Limits",
    "MemorySendLimiter",
    "RedisSendLimiter",
    "SendLimiter",
    "create_limiter",
    "is_group",
]
