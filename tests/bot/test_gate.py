"""The gate: de-duplication, one conversation at a time, and the conversation's state written
back only when the update succeeds — with Redis (shared by replicas) and without (one process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Bot, Router
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage
from aiogram.methods import SendMessage
from aiogram.types import Message, Update
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from webhook_fakes import message_update

from bot.dedup import UpdateInProgress
from bot.factory import create_base_dispatcher, create_gate, create_storage
from bot.gate import (
    NO_CHOICE,
    NOT_STORED,
    LocalGate,
    RedisGate,
    UpdateGateMiddleware,
    UpdateStorage,
)
from storage.db import create_engine, create_sessionmaker

pytest_plugins = ["telegram_fakes"]

KEY = StorageKey(bot_id=42, chat_id=1001, user_id=1001)
OTHER = StorageKey(bot_id=42, chat_id=-500, user_id=0)


class Boom(Exception):
    pass


@pytest.fixture(params=["memory", "redis"])
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[BaseStorage]:
    if request.param == "memory":
        yield MemoryStorage()
        return
    # Its own client: fsm_redis, an async fixture, cannot be requested from a running loop.
    redis_url: str = request.getfixturevalue("redis_url")
    redis = Redis.from_url(redis_url)
    store = create_storage(redis)
    yield store
    await redis.aclose()


def context(storage: BaseStorage, conversation: Any, key: StorageKey = KEY) -> FSMContext:
    return FSMContext(storage=UpdateStorage(storage, conversation), key=key)


async def test_state_and_data_are_written_back_when_the_update_succeeds(
    storage: BaseStorage,
) -> None:
    gate = create_gate(storage)
    async with gate.passage(1, KEY, 1001, exclusive=True) as passage:
        assert passage.fresh and passage.conversation is not None
        assert passage.conversation.state is None
        state = context(storage, passage.conversation)
        await state.set_state("Form:title")
        await state.update_data(title="修路灯", photos=["a"])
        # Handlers see their own writes at once; the real storage does not yet.
        assert await state.get_state() == "Form:title"
        assert await state.get_data() == {"title": "修路灯", "photos": ["a"]}
        assert await storage.get_state(KEY) is None
    assert await storage.get_state(KEY) == "Form:title"
    assert await storage.get_data(KEY) == {"title": "修路灯", "photos": ["a"]}

    async with gate.passage(2, KEY, 1001, exclusive=True) as passage:
        assert passage.conversation is not None
        assert passage.conversation.state == "Form:title"
        state = context(storage, passage.conversation)
        await state.clear()
    assert await storage.get_state(KEY) is None
    assert await storage.get_data(KEY) == {}


async def test_a_failed_update_leaves_the_conversation_as_it_found_it(
    storage: BaseStorage,
) -> None:
    await storage.set_state(KEY, "Form:title")
    await storage.set_data(KEY, {"title": "old"})
    gate = create_gate(storage)
    with pytest.raises(Boom):
        async with gate.passage(3, KEY, 1001, exclusive=True) as passage:
            state = context(storage, passage.conversation)
            await state.set_state("Form:description")
            await state.update_data(title="new")
            raise Boom
    assert await storage.get_state(KEY) == "Form:title"
    assert await storage.get_data(KEY) == {"title": "old"}
    # The lock is free again: the retry goes through at once.
    async with gate.passage(3, KEY, 1001, exclusive=True) as passage:
        assert passage.fresh


async def test_data_read_twice_are_separate_copies(storage: BaseStorage) -> None:
    gate = create_gate(storage)
    async with gate.passage(4, KEY, 1001, exclusive=True) as passage:
        state = context(storage, passage.conversation)
        await state.update_data(photos=["a"])
        data = await state.get_data()
        data["photos"].append("b")  # not written back: the stored draft must not change
        assert await state.get_data() == {"photos": ["a"]}


async def test_other_conversations_are_read_and_written_directly(storage: BaseStorage) -> None:
    gate = create_gate(storage)
    async with gate.passage(5, KEY, 1001, exclusive=True) as passage:
        other = context(storage, passage.conversation, key=OTHER)
        await other.set_state("Binding:pick")
        assert await storage.get_state(OTHER) == "Binding:pick"
        await other.update_data(street=3)
        assert await storage.get_data(OTHER) == {"street": 3}


async def test_one_conversation_at_a_time(storage: BaseStorage) -> None:
    """Two photos of an album at once: the second reads what the first left behind."""
    gate = create_gate(storage)
    first_inside = asyncio.Event()
    release_first = asyncio.Event()

    async def add_photo(update_id: int, photo: str, hold: bool) -> None:
        async with gate.passage(update_id, KEY, 1001, exclusive=True) as passage:
            if hold:
                first_inside.set()
                await release_first.wait()
            state = context(storage, passage.conversation)
            photos = (await state.get_data()).get("photos", [])
            await state.update_data(photos=[*photos, photo])

    first = asyncio.create_task(add_photo(10, "a", hold=True))
    await first_inside.wait()
    second = asyncio.create_task(add_photo(11, "b", hold=False))
    await asyncio.sleep(0.1)
    assert not second.done()  # waiting for the first
    release_first.set()
    await asyncio.gather(first, second)
    assert await storage.get_data(KEY) == {"photos": ["a", "b"]}


async def test_updates_outside_private_chats_do_not_wait(storage: BaseStorage) -> None:
    gate = create_gate(storage)
    async with (
        gate.passage(12, KEY, 1001, exclusive=True),
        gate.passage(13, KEY, 1001, exclusive=False) as inner,
    ):
        assert inner.fresh


async def test_no_conversation_for_updates_without_a_chat_or_user(storage: BaseStorage) -> None:
    gate = create_gate(storage)
    async with gate.passage(14, None, None, exclusive=False) as passage:
        assert passage.fresh and passage.conversation is None


@pytest.mark.redis
async def test_redis_replay_is_not_fresh_and_in_progress_is_refused(fsm_redis: Redis) -> None:
    redis = fsm_redis
    gate = create_gate(create_storage(redis))
    assert isinstance(gate, RedisGate)
    async with gate.passage(20, KEY, 1001, exclusive=True) as passage:
        assert passage.fresh
        # Delivered again while the first delivery is still being handled (another
        # replica): refused, so that it is retried rather than lost.
        with pytest.raises(UpdateInProgress):
            async with gate.passage(20, KEY, 1001, exclusive=True):
                pass
    assert (await redis.get("minsheng:update:20") or b"").startswith(b"done")
    assert 0 < await redis.ttl("minsheng:update:20") <= RedisGate.DONE_TTL
    async with gate.passage(20, KEY, 1001, exclusive=True) as replay:
        assert not replay.fresh
    # A failed update drops its claim: the retry is handled.
    with pytest.raises(Boom):
        async with gate.passage(21, KEY, 1001, exclusive=True):
            raise Boom
    assert await redis.get("minsheng:update:21") is None
    async with gate.passage(21, KEY, 1001, exclusive=True) as retry:
        assert retry.fresh


@pytest.mark.redis
@pytest.mark.parametrize("with_ttl", [True, False], ids=["service-ttl", "no-ttl"])
async def test_redis_state_expires_as_the_storage_says(fsm_redis: Redis, with_ttl: bool) -> None:
    """Written back as aiogram's RedisStorage writes: with its TTL, or none when it has none."""
    redis = fsm_redis
    storage = (
        create_storage(redis)
        if with_ttl
        else RedisStorage(redis, key_builder=DefaultKeyBuilder(prefix="minsheng:fsm"))
    )
    gate = RedisGate(storage)
    async with gate.passage(30, KEY, 1001, exclusive=True) as passage:
        state = context(storage, passage.conversation)
        await state.set_state("Form:title")
        await state.update_data(title="x")
    assert await storage.get_state(KEY) == "Form:title"
    for suffix in ("state", "data"):
        ttl = await redis.ttl(f"minsheng:fsm:1001:1001:{suffix}")
        assert (0 < ttl <= 7 * 24 * 3600) if with_ttl else ttl == -1
    assert not await redis.exists("minsheng:fsm:1001:1001:lock")


@pytest.mark.redis
async def test_redis_busy_conversation_times_out_and_releases_the_claim(
    fsm_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = fsm_redis
    gate = create_gate(create_storage(redis))
    monkeypatch.setattr(RedisGate, "WAIT_TIMEOUT", 0.2)
    # A replica that crashed holding the lock (it expires after LOCK_TTL_MS).
    await redis.set("minsheng:fsm:1001:1001:lock", "someone-else", px=60_000)
    with pytest.raises(UpdateInProgress):
        async with gate.passage(40, KEY, 1001, exclusive=True):
            pass
    assert await redis.get("minsheng:update:40") is None
    # The other holder's lock is not ours to release.
    assert await redis.get("minsheng:fsm:1001:1001:lock") == b"someone-else"


async def test_the_locale_choice_is_cached_with_the_update(storage: BaseStorage) -> None:
    gate = create_gate(storage)
    async with gate.passage(50, KEY, 1001, exclusive=True) as passage:
        assert passage.locale_choice is None  # not known: look it up
        passage.remember_locale = NO_CHOICE
    async with gate.passage(51, KEY, 1001, exclusive=True) as passage:
        assert passage.locale_choice == NO_CHOICE
        passage.remember_locale, passage.locale_chosen = "en", True  # /lang
    async with gate.passage(52, KEY, 1001, exclusive=True) as passage:
        assert passage.locale_choice == "en"
    with pytest.raises(Boom):
        async with gate.passage(53, KEY, 1001, exclusive=True) as passage:
            passage.remember_locale = "zh"
            raise Boom
    async with gate.passage(54, KEY, 1001, exclusive=True) as passage:
        assert passage.locale_choice == "en"
    async with gate.passage(55, KEY, 2002, exclusive=True) as passage:
        assert passage.locale_choice is None  # someone else


async def test_a_locale_read_before_a_choice_does_not_undo_it(storage: BaseStorage) -> None:
    """A group message (no lock) reads "no choice" from the store; meanwhile the person picks
    English with /lang in their private chat (on another replica, say), which leaves first.
    The group message, leaving last, must not put its stale reading over the choice."""
    gate = create_gate(storage)
    async with gate.passage(60, OTHER, 1001, exclusive=False) as stale:
        assert stale.locale_choice is None  # not cached: read from the store
        stale.remember_locale = NO_CHOICE
        async with gate.passage(61, KEY, 1001, exclusive=True) as chosen:
            chosen.remember_locale, chosen.locale_chosen = "en", True
    async with gate.passage(62, KEY, 1001, exclusive=True) as passage:
        assert passage.locale_choice == "en"
    # A reading still fills a cache that says only "not stored yet".
    async with gate.passage(63, KEY, 3003, exclusive=True) as passage:
        passage.remember_locale = NOT_STORED
    async with gate.passage(64, KEY, 3003, exclusive=True) as passage:
        assert passage.locale_choice == NOT_STORED
        passage.remember_locale = NO_CHOICE
    async with gate.passage(65, KEY, 3003, exclusive=True) as passage:
        assert passage.locale_choice == NO_CHOICE


def test_without_redis_the_gate_is_local() -> None:
    assert isinstance(create_gate(MemoryStorage()), LocalGate)


class FlakyScript:
    """Stands in for one of the gate's Redis scripts: fails `failures` times, then runs it."""

    def __init__(self, script: Any, failures: int) -> None:
        self.script = script
        self.failures = failures
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise RedisConnectionError("Redis went away")
        return await self.script(*args, **kwargs)


@pytest.mark.redis
async def test_redis_leaving_a_committed_update_retries_then_gives_up_quietly(
    fsm_redis: Redis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """After the store committed, a Redis failure must not fail the update: Telegram would
    deliver it again and, once the claim expired, it would be handled twice."""
    redis = fsm_redis
    storage = create_storage(redis)
    gate = create_gate(storage)
    assert isinstance(gate, RedisGate)
    monkeypatch.setattr(RedisGate, "LEAVE_PAUSES", (0.0, 0.0))
    # A blip: the second attempt writes everything back.
    gate._leave = FlakyScript(gate._leave, failures=1)  # type: ignore[method-assign]
    async with gate.passage(60, KEY, 1001, exclusive=True) as passage:
        await context(storage, passage.conversation).set_state("Form:title")
    assert (await redis.get("minsheng:update:60") or b"").startswith(b"done")
    assert await storage.get_state(KEY) == "Form:title"

    # Down for good: no exception, an error in the log, and the claim left to expire.
    flaky = FlakyScript(gate._leave.script, failures=99)
    gate._leave = flaky  # type: ignore[method-assign]
    with caplog.at_level("ERROR", logger="bot.gate"):
        async with gate.passage(61, KEY, 1001, exclusive=True) as passage:
            await context(storage, passage.conversation).set_state("Form:description")
    assert flaky.calls == 3 and passage.saved is False
    assert "update 61 committed" in caplog.text
    assert not (await redis.get("minsheng:update:61") or b"done").startswith(
        b"done"
    )  # still claimed
    assert await storage.get_state(KEY) == "Form:title"


@pytest.mark.redis
async def test_redis_a_failed_update_keeps_its_own_error_when_redis_fails_too(
    fsm_redis: Redis,
) -> None:
    redis = fsm_redis
    gate = create_gate(create_storage(redis))
    assert isinstance(gate, RedisGate)
    gate._leave = FlakyScript(gate._leave, failures=99)  # type: ignore[method-assign]
    with pytest.raises(Boom):
        async with gate.passage(70, KEY, 1001, exclusive=True):
            raise Boom


@pytest.mark.redis
async def test_redis_no_reply_when_the_conversation_could_not_be_saved(
    fsm_redis: Redis, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply would ask the next step's question while the conversation stayed at the old
    step: the person's next answer would land in the wrong field. It is dropped."""
    redis = fsm_redis
    engine = create_engine(sqlite_url)
    monkeypatch.setattr(RedisGate, "LEAVE_PAUSES", ())
    try:
        dispatcher = create_base_dispatcher(create_sessionmaker(engine), redis)
        router = Router()

        @router.message()
        async def ask_next(message: Message, state: FSMContext) -> Any:
            await state.set_state("Form:description")
            return message.answer("And now the description, please.")

        dispatcher.include_router(router)
        [gate_middleware] = [
            m for m in dispatcher.update.outer_middleware if isinstance(m, UpdateGateMiddleware)
        ]
        gate = gate_middleware.gate
        assert isinstance(gate, RedisGate)
        bot = Bot("42:TEST")
        update = Update.model_validate(
            message_update("my title", chat_id=1001), context={"bot": bot}
        )
        assert isinstance(await dispatcher.feed_update(bot, update), SendMessage)
        gate._leave = FlakyScript(gate._leave, failures=99)  # type: ignore[method-assign]
        update = Update.model_validate(message_update("again", chat_id=1001), context={"bot": bot})
        assert await dispatcher.feed_update(bot, update) is None
    finally:
        await engine.dispose()


# --- leases: the claim and the lock outlive a slow update, and are checked on the way out ---


async def _replicas(redis_url: str) -> list[Redis]:
    """Two replicas' own Redis clients."""
    return [Redis.from_url(redis_url) for _ in range(2)]


def _gate_on(client: Redis) -> RedisGate:
    gate = create_gate(create_storage(client))
    assert isinstance(gate, RedisGate)
    return gate


@pytest.mark.redis
async def test_redis_a_slow_update_keeps_its_conversation_until_it_has_left(
    redis_url: str,
) -> None:
    """The person's next message reaches another replica while the previous one is still
    being handled, for longer than the lock's lease (scaled: 300 ms for 60 s): it waits for
    that step, and starts from it, rather than going in with the old state and having its
    own step overwritten when the slow one leaves."""
    clients = await _replicas(redis_url)
    try:
        a, b = (_gate_on(client) for client in clients)
        for gate in (a, b):
            gate.LOCK_TTL_MS = 300
        storage = a.storage
        await storage.set_state(KEY, "Suggest:title")
        seen_by_b: list[Any] = []

        async def slow_title_on_a() -> None:
            async with a.passage(101, KEY, 1001, exclusive=True) as passage:
                state = context(storage, passage.conversation)
                await asyncio.sleep(1.0)  # over three leases
                await state.update_data(title="修路灯")
                await state.set_state("Suggest:description")
            assert passage.saved

        async def description_on_b() -> None:
            await asyncio.sleep(0.05)
            async with b.passage(102, KEY, 1001, exclusive=True) as passage:
                state = context(storage, passage.conversation)
                seen_by_b.append((await state.get_state(), await state.get_data()))
                await state.update_data(description="楼道太黑")
                await state.set_state("Suggest:location")
            assert passage.saved

        await asyncio.gather(slow_title_on_a(), description_on_b())
        assert seen_by_b == [("Suggest:description", {"title": "修路灯"})]
        assert await storage.get_state(KEY) == "Suggest:location"
        assert await storage.get_data(KEY) == {"title": "修路灯", "description": "楼道太黑"}
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.redis
async def test_redis_an_update_handled_longer_than_its_claim_is_not_handled_again(
    redis_url: str,
) -> None:
    """Telegram delivers the update again to another replica while the first is still on it,
    after the claim's lease (scaled: 1 s for 120 s): refused (503), not handled twice; and
    once the first has finished, the redelivery finds it done."""
    clients = await _replicas(redis_url)
    try:
        a, b = (_gate_on(client) for client in clients)
        for gate in (a, b):
            gate.PROCESSING_TTL = 1
        handled: list[str] = []

        async def slow_on_a() -> None:
            async with a.passage(201, None, 1001, exclusive=False) as passage:
                assert passage.fresh
                handled.append("A")
                await asyncio.sleep(1.5)

        async def redelivered_to_b() -> None:
            await asyncio.sleep(1.2)
            try:
                async with b.passage(201, None, 1001, exclusive=False) as passage:
                    if passage.fresh:
                        handled.append("B")
            except UpdateInProgress:
                handled.append("B refused")

        await asyncio.gather(slow_on_a(), redelivered_to_b())
        assert handled == ["A", "B refused"]
        async with b.passage(201, None, 1001, exclusive=False) as replay:
            assert not replay.fresh
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.redis
async def test_redis_leases_are_renewed_while_held_and_no_longer(fsm_redis: Redis) -> None:
    """The claim and the lock carry the passage's token and are extended while it is open;
    once every passage has left, nothing is held and the renewal timer stops."""
    redis = fsm_redis
    gate = _gate_on(redis)
    gate.LOCK_TTL_MS, gate.PROCESSING_TTL = 600, 2
    lock = "minsheng:fsm:1001:1001:lock"
    async with gate.passage(300, KEY, 1001, exclusive=True):
        token = await redis.get(lock)
        assert token is not None and await redis.get("minsheng:update:300") == token
        for _ in range(6):  # 1.2 s: twice the lock's lease
            await asyncio.sleep(0.2)
            assert await redis.get(lock) == token
            assert 0 < await redis.pttl(lock) <= 600
    assert not gate._held and not await redis.exists(lock)
    await asyncio.sleep(gate.renew_every() * 2.5)
    assert gate._timer is None
    # An update refused or replayed leaves nothing held either.
    async with gate.passage(300, KEY, 1001, exclusive=True) as replay:
        assert not replay.fresh
    await redis.set("minsheng:update:301", "someone-else:1", px=10_000)
    with pytest.raises(UpdateInProgress):
        async with gate.passage(301, KEY, 1001, exclusive=True):
            pass
    assert not gate._held


@pytest.mark.redis
async def test_redis_a_lost_lock_writes_no_state_and_keeps_the_new_holders_lock(
    fsm_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Renewal failed (Redis away, a loop blocked) and another replica took the conversation:
    the late update's step is not written over the other's, the other's lock stays, and the
    update still counts as handled (its effects are committed); `saved` turns False, so its
    reply is dropped."""
    redis = fsm_redis
    storage = create_storage(redis)
    gate = _gate_on(redis)
    lock = "minsheng:fsm:1001:1001:lock"
    with caplog.at_level("WARNING", logger="bot.gate"):
        async with gate.passage(310, KEY, 1001, exclusive=True) as passage:
            await redis.set(lock, "other-replica:7", px=60_000)  # expired, taken meanwhile
            await storage.set_state(KEY, "Form:location")  # the other's step
            state = context(storage, passage.conversation)
            await state.set_state("Form:description")
            await state.update_data(title="x")
    assert passage.saved is False
    assert "no longer held its conversation's lock" in caplog.text
    assert await storage.get_state(KEY) == "Form:location"
    assert await storage.get_data(KEY) == {}
    assert await redis.get(lock) == b"other-replica:7"
    assert (await redis.get("minsheng:update:310") or b"").startswith(b"done")


@pytest.mark.redis
async def test_redis_a_lost_claim_is_left_to_the_delivery_that_took_it(fsm_redis: Redis) -> None:
    """The claim expired and a redelivery holds it now: the late passage neither marks the
    update done nor writes its conversation, and an abort does not delete the other's claim;
    its own lock it releases."""
    redis = fsm_redis
    storage = create_storage(redis)
    gate = _gate_on(redis)
    mark, lock = "minsheng:update:320", "minsheng:fsm:1001:1001:lock"
    async with gate.passage(320, KEY, 1001, exclusive=True) as passage:
        await redis.set(mark, "other-replica:8", px=60_000)
        await context(storage, passage.conversation).set_state("Form:description")
    assert passage.saved is False
    assert await redis.get(mark) == b"other-replica:8"
    assert await storage.get_state(KEY) is None
    assert not await redis.exists(lock)

    with pytest.raises(Boom):
        async with gate.passage(321, KEY, 1001, exclusive=True):
            await redis.set("minsheng:update:321", "other-replica:9", px=60_000)
            raise Boom
    assert await redis.get("minsheng:update:321") == b"other-replica:9"
    assert not await redis.exists(lock)


@pytest.mark.redis
async def test_redis_an_expired_claim_still_held_by_no_one_is_marked_done(
    fsm_redis: Redis,
) -> None:
    """No other delivery took the update: it was handled, and a redelivery must find it done."""
    redis = fsm_redis
    storage = create_storage(redis)
    gate = _gate_on(redis)
    async with gate.passage(330, KEY, 1001, exclusive=True) as passage:
        await redis.delete("minsheng:update:330")
        await context(storage, passage.conversation).set_state("Form:description")
    assert passage.saved
    assert (await redis.get("minsheng:update:330") or b"").startswith(b"done")
    assert await storage.get_state(KEY) == "Form:description"


class ReplyLost:
    """The script runs on the server, then the client times out waiting for its reply."""

    def __init__(self, script: Any, lost: int = 1) -> None:
        self.script = script
        self.lost = lost
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        result = await self.script(*args, **kwargs)
        if self.calls <= self.lost:
            raise RedisTimeoutError("Timeout reading from socket")
        return result


@pytest.mark.redis
async def test_redis_a_leave_whose_reply_was_lost_is_still_saved(
    fsm_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = fsm_redis
    storage = create_storage(redis)
    gate = create_gate(storage)
    assert isinstance(gate, RedisGate)
    monkeypatch.setattr(RedisGate, "LEAVE_PAUSES", (0.0, 0.0))
    gate._leave = ReplyLost(gate._leave)  # type: ignore[method-assign]
    async with gate.passage(80, KEY, 1001, exclusive=True) as passage:
        assert passage.conversation is not None
        state = FSMContext(storage=UpdateStorage(storage, passage.conversation), key=KEY)
        await state.set_state("Form:description")
    # The first attempt wrote everything: the step is saved and the update is done ...
    assert await storage.get_state(KEY) == "Form:description"
    assert (await redis.get("minsheng:update:80") or b"").startswith(b"done")
    # ... and the retry, finding this passage's own done mark, says so: the reply that asks
    # the next step's question is not dropped.
    assert passage.saved is True


@pytest.mark.redis
async def test_redis_an_entry_whose_reply_was_lost_gives_back_its_claim_and_lock(
    fsm_redis: Redis,
) -> None:
    """The first script ran (the update claimed, the conversation locked), but its reply
    never came: the update fails (503, Telegram delivers it again) and what it took is given
    back at once. Before, the redelivery was refused as in progress and the person's next
    messages waited, until the claim and the lock expired (up to two minutes)."""
    redis = fsm_redis
    storage = create_storage(redis)
    gate = create_gate(storage)
    assert isinstance(gate, RedisGate)
    entry = gate._enter
    gate._enter = ReplyLost(entry)  # type: ignore[method-assign]
    with pytest.raises(RedisTimeoutError):
        async with gate.passage(90, KEY, 1001, exclusive=True):
            raise AssertionError("not entered")
    assert await redis.get("minsheng:update:90") is None
    assert await redis.get("minsheng:fsm:1001:1001:lock") is None

    # The redelivery is handled, once.
    gate._enter = entry  # type: ignore[method-assign]
    async with gate.passage(90, KEY, 1001, exclusive=True) as passage:
        assert passage.fresh
        await context(storage, passage.conversation).set_state("Form:title")
    assert await storage.get_state(KEY) == "Form:title"


@pytest.mark.redis
async def test_redis_a_cancelled_entry_gives_back_its_claim_and_lock(fsm_redis: Redis) -> None:
    """The request is cancelled (its client went away) while the first script's reply is on
    its way: the claim and the lock are given back all the same."""
    redis = fsm_redis
    gate = create_gate(create_storage(redis))
    assert isinstance(gate, RedisGate)
    entry = gate._enter
    arrived = asyncio.Event()

    async def ran_then_hung(*args: Any, **kwargs: Any) -> Any:
        await entry(*args, **kwargs)
        arrived.set()
        await asyncio.Event().wait()  # the reply never comes

    gate._enter = ran_then_hung  # type: ignore[method-assign]

    async def handle() -> None:
        async with gate.passage(91, KEY, 1001, exclusive=True):
            raise AssertionError("not entered")

    task = asyncio.create_task(handle())
    await arrived.wait()
    assert await redis.get("minsheng:update:91") is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await redis.get("minsheng:update:91") is None
    assert await redis.get("minsheng:fsm:1001:1001:lock") is None
