"""Migration 0007 and after: the menus owed to role holders and to people with a language of
their own, down and up again, and to those who had blocked the bot once they come back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.methods import DeleteMyCommands, SetMyCommands, TelegramMethod
from aiogram.types import BotCommandScopeChat
from aiogram.utils.i18n import I18n
from sending_fakes import TelegramDouble
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from telegram_fakes import Person, make_bot, make_harness, make_settings, private_chat

from bot.notify_texts import NotificationRenderer
from bot.outbox import OutboxSender
from bot.ratelimit import MemorySendLimiter
from storage import migrate
from storage.db import create_engine, create_sessionmaker

pytest_plugins = ["telegram_fakes", "sending_fakes"]


AT = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


async def upgraded_with(empty_url: str, person_sql: str, *, council_member: bool) -> AsyncEngine:
    """A database at 0006 holding person 1 (`person_sql`'s columns and values, with :at for
    a time), a council member of community 1 if asked; then upgraded to the head."""
    await migrate.upgrade(empty_url, "0006")
    engine = create_engine(empty_url)
    async with engine.begin() as conn:
        await conn.execute(text(f"INSERT INTO person {person_sql}"), {"at": AT})
        if council_member:
            await conn.execute(
                text(
                    "INSERT INTO role_grant (person_id, role, scope_level, scope_id, granted_at) "
                    "VALUES (1, 'council_member', 'community', 1, :at)"
                ),
                {"at": AT},
            )
    await migrate.upgrade(empty_url)
    return engine


def outbox(engine: AsyncEngine, i18n: I18n) -> tuple[OutboxSender, TelegramDouble]:
    double = TelegramDouble()
    renderer = NotificationRenderer(i18n, ZoneInfo("Asia/Shanghai"))
    sender = OutboxSender(
        make_bot(double), create_sessionmaker(engine), MemorySendLimiter(), renderer
    )
    return sender, double


def menu_calls(double: TelegramDouble, chat_id: int) -> list[TelegramMethod[Any]]:
    return [
        r.method
        for r in double.delivered()
        if isinstance(r.method, SetMyCommands | DeleteMyCommands)
        and r.method.scope == BotCommandScopeChat(chat_id=chat_id)
    ]


async def test_0007_down_and_up_again_after_a_menu_was_set(empty_url: str) -> None:
    """A role holder's menu owed by 0007 has been set (the row is `sent`). Downgrading to 0006
    keeps sent rows "as history"; upgrading again must not fail on their dedupe keys."""
    engine = await upgraded_with(
        empty_url,
        "(id, telegram_id, first_name, created_at) VALUES (1, 9001, 'x', :at)",
        council_member=True,
    )
    try:
        async with engine.begin() as conn:  # the outbox set the menu
            await conn.execute(text("UPDATE notification SET status = 'sent'"))
        await migrate.downgrade(empty_url, "0006")
        await migrate.upgrade(empty_url)  # its rows are owed once: no duplicate dedupe key
        assert await migrate.current(empty_url) == migrate.head_revision()
    finally:
        await engine.dispose()


async def test_a_role_holder_who_had_blocked_the_bot_gets_the_menu_on_coming_back(
    empty_url: str, pending_i18n: I18n
) -> None:
    """0007 leaves out role holders who had blocked the bot. Once they unblock it (Telegram's
    my_chat_member in their private chat), their menu must still follow their roles: the menu
    for all private chats no longer lists /votes."""
    engine = await upgraded_with(
        empty_url,
        "(id, telegram_id, first_name, blocked_bot_at, created_at) VALUES (1, 9001, 'x', :at, :at)",
        council_member=True,
    )
    try:
        h = make_harness(make_settings(), create_sessionmaker(engine))
        member = Person(9001, "x")
        await h.feed(h.updates.my_chat_member(member, private_chat(member), "kicked", "member"))
        async with engine.connect() as conn:  # they are back: the bot may write to them
            assert await conn.scalar(text("SELECT blocked_bot_at FROM person")) is None
        sender, double = outbox(engine, pending_i18n)
        await sender.run_once()
        menus = [m.commands for m in menu_calls(double, 9001) if isinstance(m, SetMyCommands)]
        assert menus, "the council member's menu is never set: no /votes for them"
        assert all("votes" in [c.command for c in m] for m in menus)
    finally:
        await engine.dispose()


async def test_0007_replaces_the_menu_old_lang_choices_gave_residents(
    empty_url: str, pending_i18n: I18n
) -> None:
    """Before 0007, /lang gave a person who chose a language other than their client's a menu
    of their own (the old set_chat_commands) holding every private command, /votes, /review
    and /convene included. That chat-scoped list outranks the residents' list for all private
    chats, so unless it is replaced, such a resident keeps the staff's commands."""
    # A resident on a Chinese client who chose English with /lang; no role.
    engine = await upgraded_with(
        empty_url,
        "(id, telegram_id, first_name, language_code, locale, created_at) "
        "VALUES (1, 9002, 'x', 'zh-hans', 'en', :at)",
        council_member=False,
    )
    try:
        sender, double = outbox(engine, pending_i18n)
        await sender.run_once()
        [menu, *_dropped] = menu_calls(double, 9002)
        assert isinstance(menu, SetMyCommands), "the resident's own menu must be replaced"
        assert [c.command for c in menu.commands] == [
            "start", "help", "suggest", "my", "cancel", "lang"
        ]  # fmt: skip
    finally:
        await engine.dispose()
