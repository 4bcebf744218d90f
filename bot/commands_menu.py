"""The command menu (setMyCommands): private and group chats, in Chinese (the default, for
every client language without its own list) and in English."""

from __future__ import annotations

from typing import Any

from aiogram import Bot
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import lazy_gettext as __

from bot.i18n import create_i18n

PRIVATE_COMMANDS: tuple[tuple[str, Any], ...] = (
    ("start", __("Start")),
    ("help", __("What I can do")),
    ("suggest", __("Suggest a project")),
    ("my", __("My suggestions")),
    ("cancel", __("Cancel the current suggestion")),
    ("lang", __("Language: 中文 / English")),
    ("votes", __("Council members: votes open for you")),
    ("review", __("Staff: screen the suggestions")),
    ("convene", __("Staff: put candidates to the council")),
)
GROUP_COMMANDS: tuple[tuple[str, Any], ...] = (
    ("suggest", __("Suggest a project for this community")),
    ("help", __("What I can do here")),
    ("bind", __("Admins: link this group to its community")),
)
# None is the default list, shown to every language without one of its own.
MENU_LANGUAGES: tuple[tuple[str, str | None], ...] = (("zh", None), ("en", "en"))


def build_commands(
    i18n: I18n, locale: str, commands: tuple[tuple[str, Any], ...]
) -> list[BotCommand]:
    with i18n.context(), i18n.use_locale(locale):
        return [BotCommand(command=name, description=str(text)) for name, text in commands]


async def set_bot_commands(bot: Bot, i18n: I18n | None = None) -> None:
    i18n = i18n or create_i18n()
    for locale, language_code in MENU_LANGUAGES:
        await bot.set_my_commands(
            build_commands(i18n, locale, PRIVATE_COMMANDS),
            scope=BotCommandScopeAllPrivateChats(),
            language_code=language_code,
        )
        await bot.set_my_commands(
            build_commands(i18n, locale, GROUP_COMMANDS),
            scope=BotCommandScopeAllGroupChats(),
            language_code=language_code,
        )


def client_menu_locale(language_code: str | None) -> str:
    """The menu a Telegram client shows by its own language (see MENU_LANGUAGES)."""
    base = (language_code or "").split("-")[0].lower()
    for locale, code in MENU_LANGUAGES:
        if code is not None and code == base:
            return locale
    return next(locale for locale, code in MENU_LANGUAGES if code is None)


async def set_chat_commands(
    bot: Bot, i18n: I18n, chat_id: int, locale: str, language_code: str | None
) -> None:
    """One private chat's menu after /lang chose `locale`. A chat's own menu outranks the
    lists set_bot_commands keeps current, so it is set only where the choice differs from
    what the client's language (`language_code`) shows anyway, and deleted otherwise."""
    scope = BotCommandScopeChat(chat_id=chat_id)
    if locale == client_menu_locale(language_code):
        await bot.delete_my_commands(scope=scope)
    else:
        await bot.set_my_commands(build_commands(i18n, locale, PRIVATE_COMMANDS), scope=scope)
