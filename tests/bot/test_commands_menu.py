"""The command menu: setMyCommands for private and group chats, in Chinese and English."""

from __future__ import annotations

from aiogram.methods import SetMyCommands
from aiogram.types import BotCommandScopeAllGroupChats, BotCommandScopeAllPrivateChats
from telegram_fakes import RecordingSession, make_bot

from bot.commands_menu import client_menu_locale, set_bot_commands


async def test_menus_in_both_languages() -> None:
    session = RecordingSession()
    await set_bot_commands(make_bot(session))  # the fake refuses invalid names/descriptions
    calls = [c.method for c in session.calls if isinstance(c.method, SetMyCommands)]
    menus = {
        (type(call.scope).__name__, call.language_code): {
            c.command: c.description for c in call.commands
        }
        for call in calls
    }
    assert len(calls) == 4
    private_zh = menus[(BotCommandScopeAllPrivateChats.__name__, None)]
    # Residents' commands only: the roles' commands are in their holders' own menus.
    assert list(private_zh) == ["start", "help", "suggest", "my", "cancel", "lang"]
    assert private_zh["suggest"] == "我要提建议"
    assert private_zh["my"] == "我的建议"
    private_en = menus[(BotCommandScopeAllPrivateChats.__name__, "en")]
    assert list(private_en) == list(private_zh)
    assert private_en["suggest"] == "Suggest a project"
    group_zh = menus[(BotCommandScopeAllGroupChats.__name__, None)]
    assert list(group_zh) == ["suggest", "help", "bind", "lang"]
    assert group_zh["bind"] == "群管理员：绑定本群所属社区"
    assert group_zh["lang"] == "群管理员：设置我在本群使用的语言"
    group_en = menus[(BotCommandScopeAllGroupChats.__name__, "en")]
    assert group_en["bind"] == "Admins: link this group to its community"
    assert group_en["lang"] == "Admins: the language I speak in this group"


def test_the_menu_a_client_shows_by_its_language() -> None:
    assert [client_menu_locale(code) for code in ("en", "en-GB", "zh-hans", "fr", "", None)] == [
        "en",
        "en",
        "zh",
        "zh",
        "zh",
        "zh",
    ]
