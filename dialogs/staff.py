"""What the staff's dialogs (/review, /convene) share: which of a person's roles act, narrowest
scope first, and the answer to a message that does not fit the step they are at."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from aiogram import Bot
from aiogram.fsm.context import FSMContext
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.texts import quote
from dialogs.common import Reply
from storage.rules import Role
from storage.services import access
from storage.settings import Settings


async def staff_principals(
    session: AsyncSession, telegram_id: int, roles: frozenset[Role]
) -> list[access.Principal]:
    """The person's roles among `roles`, narrowest scope first."""
    found = [
        p for p in await access.principals_of_telegram_user(session, telegram_id) if p.role in roles
    ]
    return sorted(found, key=lambda p: access.NARROWEST_FIRST.index(p.scope.level))


def failed_text(code: str) -> str:
    """What to say when the store refused for a reason the dialog has no better words for."""
    return _("Sorry, that could not be done ({code}).").format(code=quote(code))


class Reask(Protocol):
    """A staff dialog's way of asking the current step again, after `note`."""

    def __call__(
        self,
        bot: Bot,
        chat_id: int,
        telegram_id: int,
        state: FSMContext,
        session: AsyncSession,
        settings: Settings,
        note: str,
    ) -> Awaitable[Reply]: ...


MessageHandler = Callable[[Message, FSMContext, AsyncSession, Bot, Settings], Awaitable[Reply]]


def reasking(reask: Reask, note: Callable[[], str]) -> MessageHandler:
    """A handler for a message that does not fit the step: `note` (translated when the message
    comes), then the step's question again, by the dialog's `reask`."""

    async def handler(
        message: Message, state: FSMContext, session: AsyncSession, bot: Bot, settings: Settings
    ) -> Reply:
        assert message.from_user is not None
        who = message.from_user.id
        return await reask(bot, message.chat.id, who, state, session, settings, note())

    return handler
