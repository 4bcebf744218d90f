"""Middlewares: one database session and de-duplication per update, and the user's locale."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.enums import ChatType
from aiogram.types import (
    CallbackQuery,
    Chat,
    ChatMemberUpdated,
    Message,
    TelegramObject,
    Update,
    User,
)
from aiogram.utils.i18n import I18n, I18nMiddleware
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.filters import GROUP_TYPES, could_be_command
from bot.gate import NO_CHOICE, NOT_STORED, Passage
from bot.polls import send_owed_polls
from dialogs.common import identity
from storage.services.chats import chat_locale
from storage.services.people import find_person, pick_locale, refresh_person
from storage.services.updates import claim_update, release_update

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]
AfterCommit = Callable[[], Awaitable[Any]]
log = logging.getLogger(__name__)


class UpdateSessionMiddleware(BaseMiddleware):
    """Opens the session an update is handled in; without Redis, claims its `update_id` first.

    In the store, the update's effects and its de-duplication mark commit together; if anything
    fails, both roll back (a mark committed early is released) and the error reaches the
    webhook route, which answers 503 so Telegram retries. With Redis the gate (bot.gate)
    claims the update before this runs; then `claim_updates` is False.
    The session connects on its first statement, so an update that needs no SQL costs none.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        claim_updates: bool,
        serialize: bool = False,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.claim_updates = claim_updates
        # SQLite has one writer: concurrent updates would wait in its busy handler, which
        # sleeps with growing back-off (seconds of tail latency). Queueing them here instead
        # hands the write lock over at once.
        self._serial: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if serialize else contextlib.nullcontext()
        )

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        after_commit: list[AfterCommit] = []
        async with self._serial:
            result = await self._in_transaction(handler, event, data, after_commit)
        # Work that must see this update's effects committed (closing a vote once its last
        # ballot is in). It is already durable, so a failure here is logged, not retried by
        # Telegram: the scheduler's own tick picks up what did not happen.
        for hook in after_commit:
            try:
                await hook()
            except Exception:
                log.exception("after-commit hook failed for update %s", event.update_id)
        return result

    async def _in_transaction(
        self,
        handler: Handler,
        event: Update,
        data: dict[str, Any],
        after_commit: list[AfterCommit],
    ) -> Any:
        session = self.sessionmaker()
        claimed = False
        try:
            # The mark is a row in the update's own transaction: it commits or rolls back with
            # the update's effects.
            if self.claim_updates:
                if not await claim_update(session, event.update_id):
                    return UNHANDLED
                claimed = True
            data["session"] = session
            data["after_commit"] = after_commit
            result = await handler(event, data)
            # Most dialog steps issue no SQL: then there is nothing to commit or to close.
            if session.in_transaction():
                await session.commit()
            return result
        except Exception:
            if claimed:
                await session.close()  # roll back first: SQLite's writer lock goes with it
                await self._release(event.update_id)
            raise
        finally:
            if session.in_transaction():  # the handler failed mid-transaction
                await session.close()  # rolls back and returns the connection

    async def _release(self, update_id: int) -> None:
        """A service that commits part of its work (submitting a suggestion, binding a group)
        commits the update's mark with it; if the update then fails, Telegram redelivers it
        after the 503, and the mark would turn the redelivery away as a duplicate. The
        services make the redelivery safe (a draft's key finds the suggestion it made; a
        binding to the same community changes nothing), so the mark is forgotten."""
        try:
            async with self.sessionmaker() as session:
                await release_update(session, update_id)
        except Exception as error:  # the store is down: then it committed nothing either
            log.warning("could not release update %s after its failure: %r", update_id, error)


def _is_start(event: TelegramObject) -> bool:
    return isinstance(event, Message) and (event.text or "").startswith("/start")


def _may_answer_in_group(event: TelegramObject) -> bool:
    """A group's update the bot may answer: a command, a press, the bot added or removed.
    Whatever else a group says (with privacy mode off) is never answered, so it costs no
    statement for the group's language."""
    if isinstance(event, Message):
        return could_be_command(event)
    return isinstance(event, CallbackQuery | ChatMemberUpdated)


class PersonLocaleMiddleware(I18nMiddleware):
    """/lang's choice if the person made one, else the Telegram client's language.

    The choice is cached where the gate reads it (Redis) in the same round trip as the
    update's state, so most updates need no SQL for it; a miss looks it up and caches it.
    A miss in a private chat makes the person known to the store (a Person row: officials
    can then give them a role) or refreshes them (a person marked as having blocked the bot,
    after a 403, is writing to it again). Someone seen only in groups is cached as NOT_STORED,
    which a private chat takes as a miss; a private /start always takes that way, since
    Telegram says nothing else when someone who had never started the bot (a 403 on record)
    starts it. Someone coming back that way is also owed the council polls Telegram refused
    them meanwhile (bot.polls.send_owed_polls): that one statement is paid only then.

    In a group whose admins chose a language (/lang there), the bot answers in it, whoever
    asked: the whole group reads the answer. That costs a statement, only for what the bot
    may answer there (commands, presses)."""

    def __init__(self, i18n: I18n, default_locale: str) -> None:
        super().__init__(i18n)
        self.default_locale = default_locale

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        if user is None:
            return self.default_locale
        passage: Passage | None = data.get("passage")
        chat: Chat | None = data.get("event_chat")
        session: AsyncSession | None = data.get("session")
        if (
            chat is not None
            and session is not None
            and chat.type in GROUP_TYPES
            and _may_answer_in_group(event)
        ):
            chosen_here = await chat_locale(session, chat.id)
            if chosen_here is not None:
                return chosen_here
        private = chat is not None and chat.type == ChatType.PRIVATE
        cached = passage.locale_choice if passage is not None else None
        if cached is not None and not (private and (cached == NOT_STORED or _is_start(event))):
            chosen = None if cached in (NO_CHOICE, NOT_STORED) else cached
            return pick_locale(chosen, user.language_code, self.default_locale)
        chosen = None
        remember = NOT_STORED
        if session is not None:
            person = await find_person(session, user.id)
            if private:
                # Added if new; refreshed if known, which clears a mark of having blocked
                # the bot (they are writing to it). No statement unless something changed.
                returning = person is not None and person.blocked_bot_at is not None
                person = refresh_person(session, person, identity(user))
                if returning:
                    await send_owed_polls(
                        session,
                        user.id,
                        data.get("council_poll_sender"),
                        data.get("after_commit"),
                    )
            if person is not None:
                chosen, remember = person.locale, person.locale or NO_CHOICE
        if passage is not None:
            passage.remember_locale = remember
        return pick_locale(chosen, user.language_code, self.default_locale)
