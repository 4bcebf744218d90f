"""The last router: unknown commands, stray messages outside a dialog, and stale buttons.

In a private chat every message gets a helpful answer. In a group only a command addressed to
this bot by name is answered; other chatter, and commands meant for other bots, are left alone.
"""

from __future__ import annotations

import contextlib
import re

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from dialogs import suggestion
from dialogs.common import Reply

# Any /command at all; the known ones were taken by the routers before this one.
ANY_COMMAND = re.compile(r".+")


def unknown_command_text() -> str:
    return _("Sorry, I don't know that command. Send /help to see what I can do.")


async def unknown_command_private(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot, raw_state: str | None
) -> Reply:
    if suggestion.is_dialog_state(raw_state):
        note = unknown_command_text()
        return await suggestion.reask(bot, message.chat.id, state, session, note)
    return message.answer(unknown_command_text())


async def stray_private(message: Message) -> None:
    await message.answer(
        _(
            "To suggest a project for your community, send /suggest. "
            "Send /help to see everything I can do."
        )
    )


async def unknown_command_group(message: Message, command: CommandObject) -> None:
    if command.mention:  # this bot's name: Command checked it is not another bot's
        await message.reply(unknown_command_text())


async def stale_button(callback: CallbackQuery) -> None:
    """A button from an old message, or of a step that is over: say so, and take the old
    buttons away in a private chat (in a group they may still be someone else's to press)."""
    await callback.answer(_("This button is out of date."))
    message = callback.message
    if isinstance(message, Message) and message.chat.type == "private":
        with contextlib.suppress(TelegramBadRequest):
            await message.edit_reply_markup(reply_markup=None)


def create_router() -> Router:
    router = Router(name="fallback")
    private = F.chat.type == "private"
    router.message.register(unknown_command_private, private, Command(ANY_COMMAND))
    router.message.register(stray_private, private)
    router.message.register(unknown_command_group, ~private, Command(ANY_COMMAND))
    router.callback_query.register(stale_button)
    return router
