"""The command menu (setMyCommands): private and group chats, in Chinese (the default, for
every client language without its own list) and in English.

Everyone's private menu holds the residents' commands. Someone holding a role gets a menu of
their own (a chat-scoped list, which outranks the lists for all private chats) with the
commands of their roles added: /votes for council members, /review and /convene for the
staff and officials the store lets screen and convene. It is brought in line whenever a grant
changes (the outbox's ``command_menu``, see storage.services.notifications) and when /lang
chooses a language.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aiogram import Bot
from aiogram.methods import DeleteMyCommands, SetMyCommands
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import lazy_gettext as __

from bot.i18n import create_i18n
from storage.rules import Role
from storage.services.council import CONVENE_ROLES
from storage.services.screening import SCREENING_ROLES

Commands = tuple[tuple[str, Any], ...]

RESIDENT_COMMANDS: Commands = (
    ("start", __("Start")),
    ("help", __("What I can do")),
    ("suggest", __("Suggest a project")),
    ("my", __("My suggestions")),
    ("cancel", __("Cancel the current suggestion")),
    ("lang", __("Language: 中文 / English")),
)
# A command, and the roles whose holders have it in their menu.
ROLE_COMMANDS: tuple[tuple[str, Any, frozenset[Role]], ...] = (
    ("votes", __("Council votes open for you"), frozenset({Role.COUNCIL_MEMBER})),
    ("review", __("Screen the residents' suggestions"), frozenset(SCREENING_ROLES)),
    ("convene", __("Put suggestions to the council"), frozenset(CONVENE_ROLES)),
)
GROUP_COMMANDS: Commands = (
    ("suggest", __("Suggest a project for this community")),
    ("help", __("What I can do here")),
    ("bind", __("Admins: link this group to its community")),
    ("lang", __("Admins: the language I speak in this group")),
)
# None is the default list, shown to every language without one of its own.
MENU_LANGUAGES: tuple[tuple[str, str | None], ...] = (("zh", None), ("en", "en"))


def private_commands(roles: Collection[Role]) -> Commands:
    """The private menu of someone holding `roles` (none: a resident's)."""
    held = frozenset(roles)
    extra = tuple((name, text) for name, text, allowed in ROLE_COMMANDS if allowed & held)
    return RESIDENT_COMMANDS + extra


def build_commands(i18n: I18n, locale: str, commands: Commands) -> list[BotCommand]:
    with i18n.context(), i18n.use_locale(locale):
        return [BotCommand(command=name, description=str(text)) for name, text in commands]


async def set_bot_commands(bot: Bot, i18n: I18n | None = None) -> None:
    i18n = i18n or create_i18n()
    for locale, language_code in MENU_LANGUAGES:
        await bot.set_my_commands(
            build_commands(i18n, locale, RESIDENT_COMMANDS),
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


MenuCall = SetMyCommands | DeleteMyCommands


def private_menu_calls(
    i18n: I18n,
    chat_id: int,
    roles: Collection[Role],
    chosen: str | None,
    language_code: str | None,
) -> list[MenuCall]:
    """The calls that bring one person's private menu in line with their `roles` and the
    language `chosen` with /lang (None: their client's, `language_code`). A chat's own lists
    outrank those set_bot_commands keeps current, so a resident who chose nothing, or the
    language their client shows anyway, gets none (and follows any change of the client's
    language); a role holder gets one list per menu language, unless they chose a language of
    their own, which then is the only list. Two calls; idempotent."""
    commands = private_commands(roles)
    scope = BotCommandScopeChat(chat_id=chat_id)
    codes = [code for _locale, code in MENU_LANGUAGES if code is not None]
    overridden = chosen is not None and chosen != client_menu_locale(language_code)
    if not overridden and commands == RESIDENT_COMMANDS:
        return [
            DeleteMyCommands(scope=scope),
            *(DeleteMyCommands(scope=scope, language_code=code) for code in codes),
        ]
    if overridden:
        assert chosen is not None
        return [
            SetMyCommands(commands=build_commands(i18n, chosen, commands), scope=scope),
            # A list for the client's language would outrank the choice.
            *(DeleteMyCommands(scope=scope, language_code=code) for code in codes),
        ]
    return [
        SetMyCommands(
            commands=build_commands(i18n, locale, commands), scope=scope, language_code=language
        )
        for locale, language in MENU_LANGUAGES
    ]
