"""/lang in a group: its admins choose the language the bot speaks there. From then on the bot
answers everyone in the group in it, and writes its posts to the group in it; a person's own
language (private /lang) stays theirs. Before any choice, the bot answers each person in their
own language, as before."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram.methods import AnswerCallbackQuery, EditMessageText
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import BOT_USERNAME, Harness, Person, alerts, button_texts, last_text, sent
from test_group_binding import ADMIN, GROUP, MEMBER, add_bot, bind, chat_row
from test_group_rebind import newest_with

from bot.callbacks import GroupLangCb
from storage.models import AuditEvent
from storage.services.chats import migrate_chat

pytest_plugins = ["telegram_fakes"]

ENGLISH = GroupLangCb(locale="en").pack()


@pytest.fixture
async def h(bot_harness: Harness, org: Any) -> Harness:
    """The bot in GROUP, which ADMIN administers."""
    bot_harness.session.member_status[(GROUP.id, ADMIN.id)] = "administrator"
    await add_bot(bot_harness)
    return bot_harness


@pytest.fixture
async def bound(h: Harness) -> Harness:
    """GROUP linked to its community, too."""
    await bind(h)
    return h


async def choose(h: Harness, person: Person, data: str = ENGLISH) -> list[Any]:
    """`person` presses `data` (forged, if no button carries it) under the newest language
    question in GROUP."""
    message, _button = newest_with(h, ENGLISH)
    return await h.press_data(person, data, message.message_id, GROUP)


async def test_an_admin_chooses_english_for_the_group(
    bound: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    h = bound
    calls = await h.say(ADMIN, f"/lang@{BOT_USERNAME}", chat=GROUP)
    assert last_text(calls) == "我在本群使用哪种语言？"
    assert button_texts(sent(calls)[-1].method.reply_markup) == ["中文", "English"]

    calls = await choose(h, ADMIN)
    [edit] = [c.method for c in calls if isinstance(c.method, EditMessageText)]
    assert edit.text == "In this group I will speak English from now on."
    chat = await chat_row(sessionmaker, GROUP.id)
    assert chat is not None and chat.locale == "en"
    async with sessionmaker() as session:
        [event] = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "set_chat_locale"))
        ).all()
    assert event.details == {"previous": None, "locale": "en"} and not event.public

    # A Chinese-speaking member is answered in English in the group ...
    calls = await h.say(MEMBER, "/help", chat=GROUP)
    assert "This group is linked to 福田区 › 沙头街道 › 新沙社区." in last_text(calls)
    assert "/lang — (admins) the language I speak in this group" in last_text(calls)
    # Whatever Telegram's command filter takes for a command is answered in it too.
    calls = await h.say(MEMBER, "  /help", chat=GROUP)
    assert "This group is linked to 福田区 › 沙头街道 › 新沙社区." in last_text(calls)
    calls = await h.say(MEMBER, "/suggest", chat=GROUP)
    assert button_texts(sent(calls)[-1].method.reply_markup) == ["Suggest a project"]
    # ... and in Chinese in his own chat with the bot.
    calls = await h.say(MEMBER, "/help")
    assert "/suggest — 为您的社区提民生微实事建议" in last_text(calls)

    # Back to Chinese.
    await h.say(ADMIN, "/lang", chat=GROUP)
    calls = await choose(h, ADMIN, GroupLangCb(locale="zh").pack())
    [edit] = [c.method for c in calls if isinstance(c.method, EditMessageText)]
    assert edit.text == "好的，之后我在本群使用中文。"
    calls = await h.say(MEMBER, "/help", chat=GROUP)
    assert "本群已绑定福田区 › 沙头街道 › 新沙社区" in last_text(calls)


async def test_before_any_choice_each_person_is_answered_in_their_language(bound: Harness) -> None:
    h = bound
    ann = Person(504, "Ann", language_code="en")
    assert "This group is linked to" in last_text(await h.say(ann, "/help", chat=GROUP))
    assert "本群已绑定" in last_text(await h.say(MEMBER, "/help", chat=GROUP))


async def test_only_admins_choose_the_groups_language(
    h: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    calls = await h.say(MEMBER, "/lang", chat=GROUP)
    assert last_text(calls) == (
        "只有群管理员才能选择我在本群使用的语言。您自己的语言，请在与我的私聊中用 /lang 设置。"
    )
    # With the way to the private chat, where /lang is the member's own.
    [button] = sent(calls)[-1].method.reply_markup.inline_keyboard[0]
    assert button.url == f"https://t.me/{BOT_USERNAME}"

    # A member pressing the admin's buttons changes nothing.
    await h.say(ADMIN, "/lang", chat=GROUP)
    calls = await choose(h, MEMBER)
    assert alerts(calls) == ["只有群管理员才能选择我在本群使用的语言，谢谢理解！"]
    [answer] = [c.method for c in calls if isinstance(c.method, AnswerCallbackQuery)]
    assert answer.show_alert
    assert not [c for c in calls if isinstance(c.method, EditMessageText)]
    chat = await chat_row(sessionmaker, GROUP.id)
    assert chat is not None and chat.locale is None


async def test_a_forged_language_is_a_stale_button(
    h: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await h.say(ADMIN, "/lang", chat=GROUP)
    calls = await choose(h, ADMIN, GroupLangCb(locale="fr").pack())
    assert alerts(calls) == ["这个按钮已过期，请使用最新消息中的按钮。"]
    chat = await chat_row(sessionmaker, GROUP.id)
    assert chat is not None and chat.locale is None


async def test_the_choice_follows_the_group_to_its_supergroup(
    bound: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    h = bound
    await h.say(ADMIN, "/lang", chat=GROUP)
    await choose(h, ADMIN)
    async with sessionmaker() as session:
        await migrate_chat(session, GROUP.id, -1009999)
    moved = await chat_row(sessionmaker, -1009999)
    assert moved is not None and moved.locale == "en"
