"""What every dialog shares: who is talking (as storage knows people), and one lock per
conversation so that updates of the same person are handled one at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiogram import BaseMiddleware
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import Chat, TelegramObject, Update, User
from redis.exceptions import LockError

from bot.dedup import UpdateInProgress
from storage.services.people import TelegramIdentity

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def identity(user: User) -> TelegramIdentity:
    return TelegramIdentity(
        telegram_id=user.id,
        first_name=user.first_name,
        username=user.username,
        language_code=user.language_code,
    )


class _LocalLocks:
    """asyncio locks by key, dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[StorageKey, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: StorageKey) -> AsyncIterator[None]:
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


class ConversationLockMiddleware(BaseMiddleware):
    """Serialises the updates of one private conversation, then re-reads its state.

    Telegram delivers an album as one update per photo, and the webhook handles updates
    concurrently: without this, two photos could both read "one photo so far" and one would
    be lost, and a double tap on "Submit" could store a suggestion twice. With Redis the lock
    lives in Redis, so it holds across replicas too. The state is read again once the lock is
    held, so the dialog's filters see what the previous update left behind.
    """

    LOCK_TIMEOUT = 60  # seconds a crashed holder keeps the lock at most
    WAIT_TIMEOUT = 30  # then the update fails and Telegram delivers it again

    def __init__(self) -> None:
        self._local = _LocalLocks()

    @asynccontextmanager
    async def _lock(
        self, storage: BaseStorage | None, key: StorageKey, update_id: int
    ) -> AsyncIterator[None]:
        if isinstance(storage, RedisStorage):
            name = f"minsheng:dialog-lock:{key.bot_id}:{key.chat_id}:{key.user_id}"
            lock = storage.redis.lock(
                name, timeout=self.LOCK_TIMEOUT, blocking_timeout=self.WAIT_TIMEOUT
            )
            if not await lock.acquire():
                # Still busy with this person's previous update: let Telegram retry this one.
                raise UpdateInProgress(update_id)
            try:
                yield
            finally:
                with contextlib.suppress(LockError):  # expired meanwhile: nothing to release
                    await lock.release()
        else:
            async with self._local.hold(key):
                yield

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        state: FSMContext | None = data.get("state")
        chat: Chat | None = data.get("event_chat")
        if state is None or chat is None or chat.type != "private":
            return await handler(event, data)
        update: Update | None = data.get("event_update")
        update_id = update.update_id if update is not None else 0
        async with self._lock(data.get("fsm_storage"), state.key, update_id):
            data["raw_state"] = await state.get_state()
            return await handler(event, data)


async def current_step(state: FSMContext, form: type[StatesGroup]) -> State | None:
    """The step of `form` the conversation is at, or None when it is elsewhere."""
    raw = await state.get_state()
    for step in form.__states__:
        if step.state == raw:
            return step
    return None
