"""Commands in a private chat: /start, /help, /my, /cancel, /lang; unknown commands and
stray messages; the user's language."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import AnswerCallbackQuery, DeleteMyCommands, SetMyCommands
from aiogram.types import BotCommandScopeChat
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import (
    MESSAGE_MAX,
    Driver,
    Group,
    Harness,
    Person,
    alerts,
    button_texts,
    last_text,
    make_harness,
    make_settings,
    parse_html,
    sent,
    texts,
    utf16_length,
)

from bot.i18n import create_i18n
from bot.notify_texts import NotificationRenderer
from bot.outbox import OutboxSender
from bot.ratelimit import MemorySendLimiter
from storage.models import COMMAND_MENU, Notification, Suggestion
from storage.models import Person as PersonRow
from storage.rules import Category, State
from storage.services.people import TelegramIdentity, ensure_person

pytest_plugins = ["telegram_fakes"]

RESIDENT = Person(1001, "小明")
STALE = "这个按钮已过期，请使用最新消息中的按钮。"


async def test_start_greets_and_lists_the_commands(bot_harness: Harness) -> None:
    calls = await bot_harness.say(RESIDENT, "/start")
    text = last_text(calls)
    assert text.startswith("小明，您好！")
    for command in ("/suggest", "/my", "/cancel", "/lang", "/help"):
        assert command in text


async def test_first_private_message_makes_the_person_known(
    bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Officials grant roles to people the store knows: someone who only pressed START is
    one of them. A command in a group makes nobody known."""
    await bot_harness.say(Person(1002, "路人"), "/help", Group(-100_777, "楼栋群"))
    await bot_harness.say(RESIDENT, "/start")
    await bot_harness.say(RESIDENT, "/help")
    async with sessionmaker() as session:
        people = (await session.scalars(select(PersonRow))).all()
    assert [(p.telegram_id, p.first_name) for p in people] == [(RESIDENT.id, "小明")]


async def test_help(bot_harness: Harness) -> None:
    calls = await bot_harness.say(RESIDENT, "/help")
    assert "消除安全隐患、社区环境整治、文化体育娱乐和居民生活关爱四类" in last_text(calls)


async def test_unknown_command(bot_harness: Harness) -> None:
    calls = await bot_harness.say(RESIDENT, "/frobnicate")
    assert last_text(calls) == "抱歉，我不认识这个命令。发送 /help 查看我能做什么。"


@pytest.mark.parametrize(
    "update",
    ["text", "photo", "sticker", "location"],
)
async def test_stray_messages_get_a_hint(bot_harness: Harness, update: str) -> None:
    u = bot_harness.updates
    built = {
        "text": lambda: u.text(RESIDENT, "你好"),
        "photo": lambda: u.photo(RESIDENT, "p"),
        "sticker": lambda: u.sticker(RESIDENT),
        "location": lambda: u.location(RESIDENT, 22.5, 114.0),
    }[update]()
    calls = await bot_harness.feed(built)
    assert "如需为社区提建议，请发送 /suggest" in last_text(calls)


async def test_cancel_with_nothing_to_cancel(bot_harness: Harness) -> None:
    calls = await bot_harness.say(RESIDENT, "/cancel")
    assert last_text(calls) == "目前没有需要取消的内容。"


async def test_a_stale_callback_outside_any_dialog(bot_harness: Harness) -> None:
    calls = await bot_harness.press_data(RESIDENT, "st:ok", 77)
    assert alerts(calls) == [STALE]


# --- languages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language_code", "expected"),
    [
        ("zh-hans", "小明，您好！"),
        ("zh-TW", "小明，您好！"),
        ("en", "Hello, 小明!"),
        ("en-GB", "Hello, 小明!"),
        ("fr", "小明，您好！"),  # not shipped: the default, Chinese
        (None, "小明，您好！"),
    ],
)
async def test_the_clients_language_picks(
    bot_harness: Harness, language_code: str | None, expected: str
) -> None:
    calls = await bot_harness.say(Person(1101, "小明", language_code=language_code), "/start")
    assert last_text(calls).startswith(expected)


async def test_lang_overrides_and_is_remembered(
    bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    calls = await bot_harness.say(RESIDENT, "/lang")
    assert last_text(calls) == "请选择语言："
    assert button_texts(sent(calls)[-1].markup) == ["中文", "English"]
    calls = await bot_harness.press(RESIDENT, "English", exact=True)
    assert last_text(calls) == "From now on I will speak English with you."
    # The menu follows once the choice is committed, from the outbox.
    assert not [c for c in calls if isinstance(c.method, SetMyCommands | DeleteMyCommands)]
    [menu, dropped] = await menu_calls(bot_harness, sessionmaker)
    assert isinstance(menu, SetMyCommands) and menu.language_code is None
    assert menu.scope == BotCommandScopeChat(chat_id=RESIDENT.id)
    assert ("suggest", "Suggest a project") in [(c.command, c.description) for c in menu.commands]
    assert isinstance(dropped, DeleteMyCommands) and dropped.language_code == "en"
    async with sessionmaker() as session:
        person = (
            await session.scalars(select(PersonRow).where(PersonRow.telegram_id == RESIDENT.id))
        ).one()
        assert person.locale == "en"
    # The Telegram client still says zh; the choice wins, in later updates too.
    calls = await bot_harness.say(RESIDENT, "/help")
    assert "A micro-project is something small" in last_text(calls)
    calls = await bot_harness.say(RESIDENT, "/lang")
    assert last_text(calls) == "Please choose your language:"
    calls = await bot_harness.press(RESIDENT, "中文", exact=True)
    assert last_text(calls) == "好的，之后我会用中文和您交流。"
    # The client's own language again: the chat's menus go, the current lists apply.
    dropped = await menu_calls(bot_harness, sessionmaker)
    assert all(isinstance(d, DeleteMyCommands) for d in dropped)
    assert {d.scope for d in dropped} == {BotCommandScopeChat(chat_id=RESIDENT.id)}
    assert {d.language_code for d in dropped} == {None, "en"}


async def menu_calls(h: Harness, sessionmaker: async_sessionmaker[AsyncSession]) -> list[Any]:
    """The menu calls the outbox makes for what is owed now."""
    renderer = NotificationRenderer(create_i18n(), ZoneInfo("Asia/Shanghai"))
    sender = OutboxSender(h.bot, sessionmaker, MemorySendLimiter(), renderer)
    before = len(h.session.calls)
    await sender.run_once()
    return [c.method for c in h.session.calls[before:]]


async def test_my_and_lang_in_the_middle_of_a_suggestion_keep_its_place(
    dialog_driver: Driver,
) -> None:
    """Both answer, then ask the suggestion's question again (in the new language, after
    /lang), as /help and /start do."""
    h = dialog_driver.h
    await dialog_driver.description(RESIDENT)
    calls = await h.say(RESIDENT, "/my")
    assert texts(calls)[0] == "您还没有提交过建议。"
    assert "您有一条建议还没填完" in last_text(calls) and "请具体描述一下" in last_text(calls)
    await h.say(RESIDENT, "/lang")
    calls = await h.press(RESIDENT, "English", exact=True)
    assert "From now on I will speak English with you." in texts(calls)
    assert "Now please describe it" in last_text(calls)
    calls = await h.say(RESIDENT, "楼道灯坏了")
    assert "Where is it?" in last_text(calls)


async def test_a_forged_language_is_refused(bot_harness: Harness) -> None:
    calls = await bot_harness.press_data(RESIDENT, "lg:fr", 5)
    assert alerts(calls) == [STALE]


# --- /my -----------------------------------------------------------------------------------


async def add_suggestions(
    sessionmaker: async_sessionmaker[AsyncSession],
    org: Any,
    telegram_id: int,
    titles: list[str],
    when: datetime,
) -> None:
    """Rows straight into the store: /my only reads them."""
    async with sessionmaker() as session:
        person = await ensure_person(session, TelegramIdentity(telegram_id, "小明"))
        for seq, title in enumerate(titles, start=1):
            session.add(
                Suggestion(
                    number=f"新沙-{when.year}-{seq:04d}",
                    community_id=org.xinsha_id,
                    year=when.year,
                    seq=seq,
                    proposer_id=person.id,
                    category=Category.CARE,
                    title=title,
                    description="…",
                    status=State.UNDER_REVIEW if seq % 2 else State.SUBMITTED,
                    created_at=when,
                )
            )
        await session.commit()


async def test_my_when_there_is_nothing(bot_harness: Harness) -> None:
    calls = await bot_harness.say(RESIDENT, "/my")
    assert last_text(calls) == "您还没有提过建议。发送 /suggest 提出您的第一条建议吧。"


async def test_my_lists_number_status_and_local_date(
    bot_harness: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # 17:30 UTC on 31 Dec is already 1 Jan in Shenzhen.
    when = datetime(2025, 12, 31, 17, 30, tzinfo=UTC)
    await add_suggestions(sessionmaker, org, RESIDENT.id, ["修路灯 <b>", "加装扶手"], when)
    await add_suggestions(sessionmaker, org, 9999, ["别人的建议"], when.replace(year=2024))
    calls = await bot_harness.say(RESIDENT, "/my")
    text = last_text(calls)
    assert "<b>新沙-2025-0001</b> · 审核中 · 2026-01-01\n修路灯 &lt;b&gt;" in text
    assert "<b>新沙-2025-0002</b> · 已提交 · 2026-01-01\n加装扶手" in text
    assert "别人的建议" not in text


async def test_my_links_each_number_to_its_page_on_the_board(
    org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    h = make_harness(make_settings(site_url="http://127.0.0.1:8000/"), sessionmaker)
    when = datetime(2026, 3, 1, 8, tzinfo=UTC)
    await add_suggestions(sessionmaker, org, RESIDENT.id, ["修路灯"], when)
    text = last_text(await h.say(RESIDENT, "/my"))
    href = "http://127.0.0.1:8000/board/suggestions/%E6%96%B0%E6%B2%99-2026-0001"
    assert f'<b><a href="{href}">新沙-2026-0001</a></b> · 审核中' in text


async def test_my_stays_within_one_message(
    bot_harness: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    titles = [f"{i:03d}" + "<&>" * 19 for i in range(120)]  # 60 characters, escaped to 240
    await add_suggestions(
        sessionmaker, org, RESIDENT.id, titles, datetime(2026, 3, 1, 8, tzinfo=UTC)
    )
    calls = await bot_harness.say(RESIDENT, "/my")
    text = last_text(calls)
    assert utf16_length(parse_html(text)) <= MESSAGE_MAX
    shown = text.count("新沙-2026-")
    assert 0 < shown < 120
    assert f"……另有 {120 - shown} 条未列出。" in text


LANG_RESIDENT = Person(7301, "小明", language_code="zh-hans")


async def test_a_failed_lang_update_still_owes_the_menu_of_the_stored_choice(
    bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    h = bot_harness
    await h.say(LANG_RESIDENT, "/lang")
    update = h.button_update(LANG_RESIDENT, "English", exact=True)
    # Telegram does not answer the callback query in time: the update fails (webhook 503).
    h.session.fail_next(
        AnswerCallbackQuery,
        TelegramNetworkError(AnswerCallbackQuery(callback_query_id="x"), "timeout"),
    )
    with contextlib.suppress(TelegramNetworkError):
        await h.feed(update)
    await h.feed(update)  # Telegram delivers the same update again
    async with sessionmaker() as session:
        locale = await session.scalar(
            select(PersonRow.locale).where(PersonRow.telegram_id == LANG_RESIDENT.id)
        )
        menus = await session.scalar(
            select(func.count()).where(
                Notification.kind == COMMAND_MENU, Notification.chat_id == LANG_RESIDENT.id
            )
        )
    assert locale == "en"
    assert menus, "English is stored as the choice, but no command menu is owed for it"
