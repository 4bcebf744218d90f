"""The gate every update passes first: its de-duplication, one conversation at a time, and the
conversation's state, read once on the way in and written once on the way out.

With Redis, the way in is one round trip (claim the `update_id`, take the conversation's lock,
read its state, its data and the person's language) and so is the way out (write what changed,
mark the update done, release the lock). The claim and the lock are leases that a timer of
the process renews while the update is being handled (RedisGate). Without Redis (one process
on SQLite), the store de-duplicates in the update's own transaction and the lock is an
`asyncio.Lock`.

Handlers see an ordinary `FSMContext`, over `UpdateStorage`: the conversation's own key is
served from what the gate read, and what they write reaches the real storage only once the
update has succeeded, after the store committed. An update that fails leaves the conversation
as it found it, so Telegram's retry starts from the same step.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aiogram import Bot
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.dispatcher.middlewares.user_context import EVENT_CONTEXT_KEY, EventContext
from aiogram.fsm.context import FSMContext
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from aiogram.fsm.storage.memory import DisabledEventIsolation
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.methods import TelegramMethod
from aiogram.types import TelegramObject, Update

from bot.dedup import UpdateInProgress

log = logging.getLogger(__name__)
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]

# A person's language in the locale cache: "" means "no choice made with /lang"; NOT_STORED
# that the store has no Person for them yet (seen only in a group, say), so that their first
# private message still takes the way that makes them known (bot.middlewares).
NO_CHOICE = ""
NOT_STORED = "-"


@dataclass(slots=True)
class Conversation:
    """The state and data of one conversation as an update found them, and what it changed."""

    key: StorageKey
    state: str | None
    data_json: str | None  # as stored: parsed on every read, so callers never share a dict
    state_changed: bool = False
    data_changed: bool = False

    def get_data(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.data_json)) if self.data_json else {}

    def set_data(self, data: Mapping[str, Any]) -> None:
        self.data_json = json.dumps(data, ensure_ascii=False) if data else None
        self.data_changed = True

    def set_state(self, state: StateType) -> None:
        self.state = state.state if isinstance(state, State) else state
        self.state_changed = True


class UpdateStorage(BaseStorage):
    """The FSM storage of one update: its own conversation from memory, anything else from
    the real storage (another chat's state, as the group binding uses, is written at once)."""

    def __init__(self, inner: BaseStorage, conversation: Conversation | None) -> None:
        self.inner = inner
        self.conversation = conversation

    def _own(self, key: StorageKey) -> Conversation | None:
        conversation = self.conversation
        return conversation if conversation is not None and conversation.key == key else None

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        if (own := self._own(key)) is not None:
            own.set_state(state)
        else:
            await self.inner.set_state(key, state)

    async def get_state(self, key: StorageKey) -> str | None:
        if (own := self._own(key)) is not None:
            return own.state
        return await self.inner.get_state(key)

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        if (own := self._own(key)) is not None:
            own.set_data(data)
        else:
            await self.inner.set_data(key, data)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        if (own := self._own(key)) is not None:
            return own.get_data()
        return await self.inner.get_data(key)

    async def close(self) -> None:  # the real storage is closed with the dispatcher
        return None


@dataclass(slots=True)
class Passage:
    """One update's way through the gate."""

    fresh: bool  # False: this update was handled before
    conversation: Conversation | None
    # The person's /lang choice as cached (NO_CHOICE: none); None when the cache cannot tell.
    locale_choice: str | None = None
    # Set by a handler or middleware: the choice to cache once the update succeeded, ...
    remember_locale: str | None = None
    # ... as made now (/lang), or as read from the store. What was read only fills a cache
    # that has no choice yet: a /lang press handled meanwhile, elsewhere, must not be undone.
    locale_chosen: bool = False
    # False when the update was handled but its conversation could not be written back.
    saved: bool = True


class Gate(Protocol):
    # True if the gate itself claims each `update_id` (de-duplication); if not, the store
    # must (UpdateSessionMiddleware, in the update's own transaction).
    claims_updates: bool

    def passage(
        self, update_id: int, key: StorageKey | None, user_id: int | None, *, exclusive: bool
    ) -> AbstractAsyncContextManager[Passage]:
        """Let one update through: `exclusive` holds the conversation's lock until it leaves.
        On a clean exit what the update changed is written back; on an exception it is not."""


class LocalGate:
    """One process, no Redis: conversations queue on an `asyncio.Lock` each, their state and
    the locale cache live in memory, and the store de-duplicates (UpdateSessionMiddleware)."""

    LOCALES_KEPT = 100_000  # people whose /lang choice is remembered in memory
    claims_updates = False

    def __init__(self, storage: BaseStorage) -> None:
        self.storage = storage
        self._locks: dict[StorageKey, tuple[asyncio.Lock, int]] = {}
        self._locales: dict[int, str] = {}

    @asynccontextmanager
    async def _hold(self, key: StorageKey | None, exclusive: bool) -> AsyncIterator[None]:
        if key is None or not exclusive:
            yield
            return
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    @asynccontextmanager
    async def passage(
        self, update_id: int, key: StorageKey | None, user_id: int | None, *, exclusive: bool
    ) -> AsyncIterator[Passage]:
        async with self._hold(key, exclusive):
            conversation = None
            if key is not None:
                data = await self.storage.get_data(key)
                conversation = Conversation(
                    key,
                    await self.storage.get_state(key),
                    json.dumps(data, ensure_ascii=False) if data else None,
                )
            passage = Passage(
                fresh=True,
                conversation=conversation,
                locale_choice=self._locales.get(user_id) if user_id is not None else None,
            )
            yield passage
            if user_id is not None and passage.remember_locale is not None:
                if len(self._locales) >= self.LOCALES_KEPT:
                    self._locales.clear()  # rare; they are looked up again one by one
                if passage.locale_chosen or self._locales.get(user_id, NOT_STORED) == NOT_STORED:
                    self._locales[user_id] = passage.remember_locale
            if conversation is not None and conversation.state_changed:
                await self.storage.set_state(conversation.key, conversation.state)
            if conversation is not None and conversation.data_changed:
                await self.storage.set_data(conversation.key, conversation.get_data())


# KEYS: the update's mark, the conversation's lock ("" when not exclusive), its state, its
# data, the person's locale choice ("" when no user). ARGV: claim ("1" on the first attempt),
# processing TTL ms, the passage's token (the claim's and the lock's value), lock TTL ms.
# Returns {0, mark} when the update is taken or done; {2} when the lock is busy (the claim
# stays: retry with claim "0"); {1, state, data, locale} when the update may go ahead.
_ENTER = """
if ARGV[1] == '1' then
  if not redis.call('SET', KEYS[1], ARGV[3], 'NX', 'PX', ARGV[2]) then
    return {0, redis.call('GET', KEYS[1])}
  end
end
if KEYS[2] ~= '' then
  if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then
    return {2}
  end
end
local state, data, locale = false, false, false
if KEYS[3] ~= '' then
  state = redis.call('GET', KEYS[3])
  data = redis.call('GET', KEYS[4])
end
if KEYS[5] ~= '' then locale = redis.call('GET', KEYS[5]) end
return {1, state, data, locale}
"""

# KEYS as for _ENTER. ARGV: outcome ("done" or "abort"), done TTL s, the passage's token,
# state op ("" keep, "set", "del"), state, state TTL s (0: none), data op, data, data TTL s,
# locale op ("" keep, "set", "fill": set unless a choice is cached), locale, locale TTL s.
# Only what this passage still holds is touched. "done": the update is marked done unless
# another delivery of it has taken its claim since (an expired claim counts as still ours: no
# one else is handling it), and the conversation is written only if its lock is still ours
# too. Returns 1, or 0 when the conversation was not written (lost: someone else may have
# taken its next step meanwhile). The done mark ("done:<saved>:<token>") says which, so that
# a retry of this leaving whose first reply was lost (a timeout after Redis ran it) answers
# what the first did instead of finding the claim gone.
_LEAVE = f"""
local function put(key, value, ttl)
  if ttl == '0' then redis.call('SET', key, value)
  else redis.call('SET', key, value, 'EX', ttl) end
end
local claim = redis.call('GET', KEYS[1])
if claim == 'done:1:' .. ARGV[3] then return 1 end
if claim == 'done:0:' .. ARGV[3] then return 0 end
local locked = KEYS[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3]
local saved = 0
if ARGV[1] == 'done' then
  if claim == ARGV[3] or not claim then
    if KEYS[2] == '' or locked then saved = 1 end
    redis.call('SET', KEYS[1], 'done:' .. saved .. ':' .. ARGV[3], 'EX', ARGV[2])
    if saved == 1 then
      if ARGV[4] == 'set' then put(KEYS[3], ARGV[5], ARGV[6])
      elseif ARGV[4] == 'del' then redis.call('DEL', KEYS[3]) end
      if ARGV[7] == 'set' then put(KEYS[4], ARGV[8], ARGV[9])
      elseif ARGV[7] == 'del' then redis.call('DEL', KEYS[4]) end
    end
    if ARGV[10] == 'set' then redis.call('SET', KEYS[5], ARGV[11], 'EX', ARGV[12])
    elseif ARGV[10] == 'fill' then
      local cached = redis.call('GET', KEYS[5])
      if not cached or cached == '{NOT_STORED}' then
        redis.call('SET', KEYS[5], ARGV[11], 'EX', ARGV[12])
      end
    end
  end
elseif claim == ARGV[3] then
  redis.call('DEL', KEYS[1])
end
if locked then redis.call('DEL', KEYS[2]) end
return saved
"""

# KEYS: update marks (claims), then conversations' locks. ARGV: claim TTL ms, lock TTL ms,
# how many KEYS are claims, then each key's token. Extends each key still holding its token;
# returns how many did not (expired, or never taken: a passage waiting for a busy lock).
_RENEW = """
local claims = tonumber(ARGV[3])
local missed = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[3 + i] then
    redis.call('PEXPIRE', KEYS[i], i <= claims and ARGV[1] or ARGV[2])
  else
    missed = missed + 1
  end
end
return missed
"""


class RedisGate:
    """Replicas share Redis: the update's mark, the conversation's lock, its state and the
    locale cache all live there, read and written in one round trip each way.

    A second delivery of an update that is still being handled raises UpdateInProgress (the
    route answers 503, Telegram retries later) rather than being dropped, so that if the first
    attempt then fails, the update is not lost. Keys of one update may live in different hash
    slots: this needs one Redis (with replicas if wanted), not Redis Cluster.

    The update's claim and the conversation's lock are leases, so that a replica that dies
    holding them holds them for a minute or two, not for ever; an update that takes longer
    keeps them by renewal. Each passage puts its token and keys in `_held` on the way in and
    takes them out on the way out (a dict operation each, no round trip, no task); one timer
    per gate wakes every `renew_every()` seconds (a third of the shorter lease) while anything
    is held, and extends everything held in one script call, each key only if it still holds
    its token. The timer is armed by the first passage and stops by itself when a wake finds
    nothing held, so nothing has to start or stop it: webhook, polling and a test's dispatcher
    alike, and a loop that ends leaves no task behind. If renewal fails anyway (Redis away
    longer than a lease, a loop blocked), the lease's value says whose it is: the way out
    writes only while it still holds the claim and the lock, and otherwise marks the passage
    not saved (`Passage.saved`), and an abort deletes only its own claim and lock.
    """

    claims_updates = True
    PROCESSING_TTL = 120  # seconds; a crashed holder's update is "in progress" this long at most
    DONE_TTL = 7 * 24 * 3600  # Telegram gives up on an update after 24 h
    LOCK_TTL_MS = 60_000  # how long a crashed holder keeps a conversation locked at most
    WAIT_TIMEOUT = 30.0  # then the update fails and Telegram delivers it again
    RETRY_EVERY = 0.02  # seconds between attempts at a busy conversation
    LOCALE_TTL = 24 * 3600
    LEAVE_PAUSES = (0.05, 0.2)  # seconds between attempts at leaving a committed update

    def __init__(self, storage: RedisStorage, prefix: str = "minsheng:") -> None:
        self.storage = storage
        self.redis = storage.redis
        self.prefix = prefix
        # Lock tokens: unique per replica and passage, without asking the OS for randomness
        # on every update.
        self._holder = secrets.token_hex(8)
        self._passages = itertools.count()
        self._enter = self.redis.register_script(_ENTER)
        self._leave = self.redis.register_script(_LEAVE)
        self._renew = self.redis.register_script(_RENEW)
        # What this process's open passages hold: token -> (update mark, lock or "").
        self._held: dict[str, tuple[str, str]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._renewal: asyncio.Task[None] | None = None

    def renew_every(self) -> float:
        """Seconds between renewals: a held lease is extended at most this long after it was
        taken or last extended, with two more such spans to spare before it would expire."""
        return min(self.LOCK_TTL_MS / 1000, self.PROCESSING_TTL) / 3

    def _keys(
        self, update_id: int, key: StorageKey | None, user_id: int | None, exclusive: bool
    ) -> list[str]:
        build = self.storage.key_builder.build
        return [
            f"{self.prefix}update:{update_id}",
            build(key, "lock") if key is not None and exclusive else "",
            build(key, "state") if key is not None else "",
            build(key, "data") if key is not None else "",
            f"{self.prefix}locale:{user_id}" if user_id is not None else "",
        ]

    @asynccontextmanager
    async def passage(
        self, update_id: int, key: StorageKey | None, user_id: int | None, *, exclusive: bool
    ) -> AsyncIterator[Passage]:
        keys = self._keys(update_id, key, user_id, exclusive)
        token = f"{self._holder}:{next(self._passages)}"  # whose claim and lock they are
        held = self._held
        # Held from the claim on: waiting for a busy conversation keeps the claim too.
        held[token] = (keys[0], keys[1])
        self._keep_renewing()
        try:
            try:
                reply = await self._claim(update_id, keys, token)
            except UpdateInProgress:
                raise
            except BaseException:
                # The script may have run with its reply lost (a timeout, a cancelled
                # request): give back what this token may hold, or this update's redelivery
                # and the person's next messages would wait for the claim's and the lock's
                # time to live.
                await self._release(update_id, keys, token)
                raise
            if reply[0] == 0:
                del held[token]
                if (_text(reply[1]) or "").startswith("done"):
                    yield Passage(fresh=False, conversation=None)
                    return
                raise UpdateInProgress(update_id)
            _, state, data, locale = reply
            conversation = Conversation(key, _text(state), _text(data)) if key is not None else None
            passage = Passage(fresh=True, conversation=conversation, locale_choice=_text(locale))
            try:
                yield passage
            except BaseException:
                await self._release(update_id, keys, token)
                raise
            args = self._leave_args(passage, token, can_cache_locale=user_id is not None)
            await self._leave_after_commit(update_id, passage, keys, args)
        finally:
            held.pop(token, None)

    def _keep_renewing(self) -> None:
        """Arm the renewal timer unless it is armed (on this loop: a gate may outlive one)."""
        loop = asyncio.get_running_loop()
        if self._timer is None or self._timer_loop is not loop:
            self._timer_loop = loop
            self._timer = loop.call_later(self.renew_every(), self._tick)

    def _tick(self) -> None:
        self._timer = None
        if not self._held:
            return  # idle: the next passage arms the timer again
        loop = asyncio.get_running_loop()
        renewal = self._renewal
        # Unless the last renewal is still waiting on Redis.
        if renewal is None or renewal.done() or renewal.get_loop() is not loop:
            self._renewal = loop.create_task(self._renew_held())
        self._keep_renewing()

    async def _renew_held(self) -> None:
        claims: list[str] = []
        locks: list[str] = []
        claim_tokens: list[str] = []
        lock_tokens: list[str] = []
        for token, (claim, lock) in self._held.items():
            claims.append(claim)
            claim_tokens.append(token)
            if lock:
                locks.append(lock)
                lock_tokens.append(token)
        lock_ms = int(self.LOCK_TTL_MS)
        claim_ms = int(self.PROCESSING_TTL * 1000)
        try:
            missed = await self._renew(
                keys=[*claims, *locks],
                args=[claim_ms, lock_ms, len(claims), *claim_tokens, *lock_tokens],
            )
        except Exception:  # tried again at the next tick; the way out checks what it holds
            log.warning("could not renew the gate's %s leases", len(claims), exc_info=True)
            return
        if missed:
            log.debug("%s of the gate's leases were not held when renewed", missed)

    async def _leave_after_commit(
        self, update_id: int, passage: Passage, keys: list[str], args: list[Any]
    ) -> None:
        """Write back and mark done. The store has committed the update's effects by now, so
        failing here must not make Telegram deliver it again (it would be handled twice once
        the claim expired): retry briefly, then log and let it count as handled. What is lost
        then is the conversation's step: `passage.saved` turns False, and the middleware drops
        the reply that would ask the next step's question. The same when the conversation's
        lock or the update's claim was lost meanwhile (see the class)."""
        for pause in (*self.LEAVE_PAUSES, None):
            try:
                saved = await self._leave(keys=keys, args=args)
            except Exception:
                if pause is None:
                    log.exception(
                        "update %s committed, but its conversation state and done mark could "
                        "not be written to Redis",
                        update_id,
                    )
                    passage.saved = False
                    return
            else:
                if not saved:
                    log.warning(
                        "update %s committed, but it no longer held its conversation's lock or "
                        "its claim: its conversation state was not written",
                        update_id,
                    )
                    passage.saved = False
                return
            await asyncio.sleep(pause)

    async def _claim(self, update_id: int, keys: list[str], token: str) -> list[Any]:
        # "1": claim the update and try the lock. While the person's previous update is still
        # being handled (an album arrives as several updates at once), wait for it, keeping the
        # claim on this one ("0": only try the lock again).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.WAIT_TIMEOUT
        args: list[str | int] = ["1", int(self.PROCESSING_TTL * 1000), token, self.LOCK_TTL_MS]
        while True:
            reply = cast(list[Any], await self._enter(keys=keys, args=args))
            if reply[0] != 2:
                return reply
            if loop.time() >= deadline:
                break
            args[0] = "0"
            await asyncio.sleep(self.RETRY_EVERY)
        await self._abort(keys, token)
        raise UpdateInProgress(update_id)

    async def _abort(self, keys: list[str], token: str) -> None:
        """Give up the update's claim and the lock (those this token holds), writing nothing."""
        await self._leave(keys=keys, args=["abort", 0, token, *[""] * 9])

    async def _release(self, update_id: int, keys: list[str], token: str) -> None:
        """`_abort` on the way out of a failure, which it must not replace: shielded from
        the cancellation being handled, and quiet when Redis fails too."""
        try:
            await asyncio.shield(self._abort(keys, token))
        except Exception:  # the claim and the lock expire by themselves
            log.warning("update %s: could not release its claim", update_id, exc_info=True)

    def _leave_args(self, passage: Passage, token: str, *, can_cache_locale: bool) -> list[Any]:
        state_op = state = data_op = data = ""
        conversation = passage.conversation
        if conversation is not None:
            if conversation.state_changed:
                state_op, state = ("set", conversation.state) if conversation.state else ("del", "")
            if conversation.data_changed:
                data_op, data = (
                    ("set", conversation.data_json) if conversation.data_json else ("del", "")
                )
        locale_op = ""
        if can_cache_locale and passage.remember_locale is not None:
            locale_op = "set" if passage.locale_chosen else "fill"
        return [
            "done", self.DONE_TTL, token,
            state_op, state or "", _seconds(self.storage.state_ttl),
            data_op, data or "", _seconds(self.storage.data_ttl),
            locale_op, passage.remember_locale or "", self.LOCALE_TTL,
        ]  # fmt: skip


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return cast(str | None, value) if value is not False else None


def _seconds(ttl: Any) -> int:
    """aiogram's TTL (seconds, a timedelta, or None: no expiry) as the script takes it (0)."""
    if ttl is None:
        return 0
    return int(ttl.total_seconds()) if hasattr(ttl, "total_seconds") else int(ttl)


class UpdateGateMiddleware(FSMContextMiddleware):
    """aiogram's FSM middleware, made the update's first step: the passage through the gate
    (de-duplication, the conversation's lock in private chats, its state) wraps everything
    after it, the store's transaction included."""

    def __init__(self, storage: BaseStorage, gate: Gate) -> None:
        super().__init__(storage=storage, events_isolation=DisabledEventIsolation())
        self.gate = gate

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        bot = cast(Bot, data["bot"])
        context = self.resolve_event_context(bot, data)
        event_context = cast(EventContext | None, data.get(EVENT_CONTEXT_KEY))
        chat = event_context.chat if event_context is not None else None
        user_id = event_context.user_id if event_context is not None else None
        exclusive = chat is not None and chat.type == "private"
        key = context.key if context is not None else None
        async with self.gate.passage(event.update_id, key, user_id, exclusive=exclusive) as passage:
            if not passage.fresh:
                return UNHANDLED
            storage = UpdateStorage(self.storage, passage.conversation)
            data["fsm_storage"] = storage
            data["passage"] = passage
            if key is not None and passage.conversation is not None:
                data["state"] = FSMContext(storage=storage, key=key)
                data["raw_state"] = passage.conversation.state
            result = await handler(event, data)
        if not passage.saved and isinstance(result, TelegramMethod):
            # The conversation stayed at its old step: a reply asking the next step's question
            # would take the person's next answer for the wrong field. Say nothing; what they
            # send next meets the old step, which asks again.
            return None
        return result
