"""Bad input at every step: the same step is asked again, politely, and nothing entered so far
is lost. The recording session refuses what Telegram would refuse (HTML that does not parse,
messages over 4,096 characters), so every answer here is also one Telegram would deliver."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram.methods import EditMessageReplyMarkup
from dialog_helpers import fsm, fsm_key
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import (
    CATEGORY,
    SKIP,
    SUBMIT,
    Driver,
    Group,
    Harness,
    Person,
    alerts,
    all_text,
    button_texts,
    last_text,
    sent,
)

from bot.callbacks import CategoryCb, StepCb
from dialogs.suggestion import SuggestionForm
from storage.models import Suggestion
from storage.rules import DESCRIPTION_MAX, TITLE_MAX, Category

pytest_plugins = ["telegram_fakes"]

RESIDENT = Person(1001, "小明")
STALE = "这个按钮已过期，请使用最新消息中的按钮。"
HOSTILE = "<b>粗体</b> <script>alert(1)</script> & '; DROP TABLE suggestion; --"


async def stored(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Suggestion]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(Suggestion))).all())


# --- lengths: characters, not bytes -------------------------------------------------------


async def test_oversized_title_is_asked_again(dialog_driver: Driver, bot_harness: Harness) -> None:
    await dialog_driver.title(RESIDENT)
    calls = await bot_harness.say(RESIDENT, "长" * (TITLE_MAX + 1))
    text = last_text(calls)
    assert "这个标题有 61 个字，最多只能 60 个字" in text
    assert "请给建议起个简短的标题" in text, "the same question again"
    state, data = await fsm(bot_harness, RESIDENT)
    assert state == SuggestionForm.title.state
    assert data["category"] == Category.ENVIRONMENT.value, "nothing entered is lost"


@pytest.mark.parametrize(
    "title",
    [
        "社" * TITLE_MAX,  # CJK: 60 characters (180 bytes) fit
        "😀" * TITLE_MAX,  # emoji: 60 characters (240 bytes, 120 UTF-16 units) fit
        "修路灯" + "🚧" * (TITLE_MAX - 3),
    ],
    ids=["cjk", "emoji", "mixed"],
)
async def test_title_of_sixty_characters_fits(
    dialog_driver: Driver, bot_harness: Harness, title: str
) -> None:
    await dialog_driver.title(RESIDENT)
    calls = await bot_harness.say(RESIDENT, title)
    assert "请具体描述一下" in last_text(calls)
    _state, data = await fsm(bot_harness, RESIDENT)
    assert data["title"] == title


@pytest.mark.parametrize("extra", ["社", "😀"], ids=["cjk", "emoji"])
async def test_title_of_sixty_one_characters_does_not(
    dialog_driver: Driver, bot_harness: Harness, extra: str
) -> None:
    await dialog_driver.title(RESIDENT)
    calls = await bot_harness.say(RESIDENT, extra * (TITLE_MAX + 1))
    assert "这个标题有 61 个字" in last_text(calls)


async def test_blank_title_is_asked_again(dialog_driver: Driver, bot_harness: Harness) -> None:
    await dialog_driver.title(RESIDENT)
    calls = await bot_harness.say(RESIDENT, " \n\u3000 ")
    assert "标题不能为空" in last_text(calls)


async def test_oversized_description_is_asked_again(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    await dialog_driver.description(RESIDENT)
    calls = await bot_harness.say(RESIDENT, "述" * (DESCRIPTION_MAX + 1))
    assert "这段描述有 1001 个字，最多只能 1000 个字" in last_text(calls)
    state, data = await fsm(bot_harness, RESIDENT)
    assert state == SuggestionForm.description.state
    assert data["title"] == "修复3栋楼梯间照明灯"
    calls = await bot_harness.say(RESIDENT, "😀" * DESCRIPTION_MAX)
    assert "地点在哪里" in last_text(calls)


async def test_oversized_location_is_asked_again(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    await dialog_driver.location(RESIDENT)
    calls = await bot_harness.say(RESIDENT, "址" * 201)
    assert "这段地址有 201 个字" in last_text(calls)
    assert sent(calls)[-1].markup is not None, "the location keyboard is offered again"
    state, _data = await fsm(bot_harness, RESIDENT)
    assert state == SuggestionForm.location.state


# --- the wrong kind of message ---------------------------------------------------------------


@pytest.mark.parametrize("step", ["title", "description", "location"])
async def test_a_photo_where_text_is_expected(
    dialog_driver: Driver, bot_harness: Harness, step: str
) -> None:
    await getattr(dialog_driver, step)(RESIDENT)
    before = await fsm(bot_harness, RESIDENT)
    calls = await bot_harness.feed(bot_harness.updates.photo(RESIDENT, "not-now"))
    assert "这一步需要文字，请直接输入" in last_text(calls)
    assert await fsm(bot_harness, RESIDENT) == before


async def test_a_sticker_where_text_is_expected(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    await dialog_driver.description(RESIDENT)
    calls = await bot_harness.feed(bot_harness.updates.sticker(RESIDENT))
    assert "这一步需要文字" in last_text(calls)
    assert "请具体描述一下" in last_text(calls)


async def test_text_at_the_photo_step(dialog_driver: Driver, bot_harness: Harness) -> None:
    await dialog_driver.photos(RESIDENT)
    calls = await bot_harness.say(RESIDENT, "照片稍后发")
    assert "请发送照片（以图片形式发送，不要作为文件）" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [SKIP]


@pytest.mark.parametrize("step", ["category", "title", "kind", "summary"])
async def test_text_where_a_button_is_expected(
    dialog_driver: Driver, bot_harness: Harness, step: str
) -> None:
    """At the community, category, kind and summary steps only the buttons answer."""
    if step == "category":
        await bot_harness.say(RESIDENT, "/suggest")  # the community step
    elif step == "title":
        await dialog_driver.category(RESIDENT)  # the category step
    else:
        await getattr(dialog_driver, step)(RESIDENT)
    before = await fsm(bot_harness, RESIDENT)
    calls = await bot_harness.say(RESIDENT, "环境整治")
    text = last_text(calls)
    assert "请点击按钮进行选择" in text or "请使用确认信息下方的按钮" in text
    assert button_texts(sent(calls)[-1].markup), "the buttons come again"
    assert await fsm(bot_harness, RESIDENT) == before


# --- stale buttons and replays ---------------------------------------------------------------


async def test_a_stale_button_from_an_old_message(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    await dialog_driver.title(RESIDENT)  # the category message was answered
    before = await fsm(bot_harness, RESIDENT)
    category_message = max(
        m.message_id for m in bot_harness.session.messages.values() if m.text.startswith("类别：")
    )
    data = CategoryCb(category=Category.CARE).pack()
    calls = await bot_harness.press_data(RESIDENT, data, category_message)
    assert alerts(calls) == [STALE]
    assert await fsm(bot_harness, RESIDENT) == before


async def test_a_button_of_a_finished_dialog_is_stale(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await dialog_driver.summary(RESIDENT)
    summary_id = max(bot_harness.session.messages)[1]
    await bot_harness.say(RESIDENT, "/cancel")
    calls = await bot_harness.press_data(RESIDENT, StepCb(step="ok").pack(), summary_id)
    assert alerts(calls) == [STALE]
    assert any(isinstance(c.method, EditMessageReplyMarkup) for c in calls), "buttons removed"
    assert await stored(sessionmaker) == []


@pytest.mark.parametrize("data", ["zz:1", "ct:no_such_category", "pc:k:abc:0", "", "x" * 64])
async def test_garbage_callback_data_is_stale(
    dialog_driver: Driver, bot_harness: Harness, data: str
) -> None:
    await dialog_driver.category(RESIDENT)
    before = await fsm(bot_harness, RESIDENT)
    calls = await bot_harness.press_data(RESIDENT, data, 1)
    assert alerts(calls) == [STALE]
    assert await fsm(bot_harness, RESIDENT) == before


async def test_the_same_callback_update_twice_has_one_effect(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    await dialog_driver.category(RESIDENT)
    sent_message, button = bot_harness.find_button(RESIDENT.id, CATEGORY, exact=True)
    assert button.callback_data
    update = bot_harness.updates.callback(RESIDENT, button.callback_data, sent_message.message_id)
    first = await bot_harness.feed(update)
    assert "请给建议起个简短的标题" in last_text(first)
    again = await bot_harness.feed(update)
    assert again == [], "a redelivered update is not handled twice"
    state, _data = await fsm(bot_harness, RESIDENT)
    assert state == SuggestionForm.title.state


async def test_submit_pressed_twice_stores_once(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await dialog_driver.summary(RESIDENT)
    sent_message, button = bot_harness.find_button(RESIDENT.id, SUBMIT, exact=True)
    assert button.callback_data
    first = bot_harness.updates.callback(RESIDENT, button.callback_data, sent_message.message_id)
    second = bot_harness.updates.callback(RESIDENT, button.callback_data, sent_message.message_id)
    await bot_harness.feed(first)
    calls = await bot_harness.feed(second)
    assert alerts(calls) == [STALE]
    assert len(await stored(sessionmaker)) == 1


async def test_submit_pressed_twice_at_once_stores_once(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    import asyncio

    await dialog_driver.summary(RESIDENT)
    sent_message, button = bot_harness.find_button(RESIDENT.id, SUBMIT, exact=True)
    assert button.callback_data
    presses = [
        bot_harness.updates.callback(RESIDENT, button.callback_data, sent_message.message_id)
        for _ in range(2)
    ]
    await asyncio.gather(*(bot_harness.feed(p) for p in presses))
    assert len(await stored(sessionmaker)) == 1


# --- commands during the dialog ----------------------------------------------------------------


async def test_an_unknown_command_in_the_dialog(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    await dialog_driver.description(RESIDENT)
    before = await fsm(bot_harness, RESIDENT)
    calls = await bot_harness.say(RESIDENT, "/frobnicate now")
    text = last_text(calls)
    assert "抱歉，我不认识这个命令" in text and "/help" in text
    assert "请具体描述一下" in text, "and the dialog goes on"
    assert await fsm(bot_harness, RESIDENT) == before


@pytest.mark.parametrize("command", ["/suggest", "/start", "/help"])
async def test_starting_again_continues_the_draft(
    dialog_driver: Driver, bot_harness: Harness, command: str
) -> None:
    await dialog_driver.description(RESIDENT)
    before = await fsm(bot_harness, RESIDENT)
    calls = await bot_harness.say(RESIDENT, command)
    assert "您有一条建议还没填完" in all_text(calls)
    assert "请具体描述一下" in last_text(calls)
    assert await fsm(bot_harness, RESIDENT) == before


# --- HTML and SQL in every field -------------------------------------------------------------


async def test_html_and_sql_in_every_text_field(
    bot_harness: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Stored exactly as typed, shown escaped everywhere (the fake refuses HTML Telegram
    could not parse, so an unescaped `<script>` would fail the send)."""
    h = bot_harness
    title = HOSTILE[:TITLE_MAX]
    await h.say(RESIDENT, f"/start s_{org.xinsha_id}")
    await h.press(RESIDENT, CATEGORY, exact=True)
    await h.say(RESIDENT, title)
    await h.say(RESIDENT, HOSTILE + "\n第二行 &amp; &lt;")
    await h.say(RESIDENT, HOSTILE)
    await h.press(RESIDENT, SKIP, exact=True)
    await h.press(RESIDENT, "服务项目", exact=True)
    calls = await h.say(RESIDENT, "<b>1000</b>'; DROP TABLE suggestion; --")
    assert "抱歉，我没看懂这个金额" in last_text(calls)
    calls = await h.say(RESIDENT, "1000")
    summary = last_text(calls)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in summary
    assert "&amp;amp; &amp;lt;" in summary
    assert "<script>" not in summary
    await h.press(RESIDENT, SUBMIT, exact=True)
    [suggestion] = await stored(sessionmaker)
    assert suggestion.title == title
    assert suggestion.description == HOSTILE + "\n第二行 &amp; &lt;"
    assert suggestion.location_text == HOSTILE
    calls = await h.say(RESIDENT, "/my")
    assert "&lt;b&gt;粗体&lt;/b&gt;" in last_text(calls)


async def test_html_in_a_persons_name_is_escaped(bot_harness: Harness) -> None:
    calls = await bot_harness.say(Person(3003, "<i>Bobby</i> & co"), "/start")
    assert "&lt;i&gt;Bobby&lt;/i&gt; &amp; co" in last_text(calls)


# --- deep links --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "s_abc",
        "s_999999999",
        "s_99999999999",  # beyond a 32-bit id: nothing, on PostgreSQL too
        "s_999999999999999999",
        "s_0",
        "s_-1",
        "s_1 extra",
        "<script>",
        "x" * 65,
        "s_" + "9" * 40,
        "invite_XYZ",
        "s__1",
        "中文",
    ],
)
async def test_malformed_or_unknown_deep_link_is_a_plain_start(
    bot_harness: Harness, org: Any, payload: str
) -> None:
    calls = await bot_harness.say(RESIDENT, f"/start {payload}")
    assert "小明，您好！" in last_text(calls)
    assert await fsm(bot_harness, RESIDENT) == (None, {})


# --- the dialog lives in private chats only ------------------------------------------------------


async def test_the_dialog_never_runs_in_a_group(bot_harness: Harness, org: Any) -> None:
    group = Group(-100777)
    # Even with dialog state under the group's key (as an older version might have left),
    # text in the group is not taken as an answer.
    key = fsm_key(RESIDENT, group.id)
    await bot_harness.dispatcher.storage.set_state(key, SuggestionForm.title)
    calls = await bot_harness.say(RESIDENT, "修复路灯", chat=group)
    assert calls == []
    calls = await bot_harness.feed(
        bot_harness.updates.message(
            RESIDENT,
            group,
            photo=[{"file_id": "g", "file_unique_id": "g", "width": 1, "height": 1}],
        )
    )
    assert calls == []
    # /suggest in a group never opens the dialog there.
    await bot_harness.dispatcher.storage.set_state(key, None)
    await bot_harness.say(RESIDENT, "/suggest", chat=group)
    assert await bot_harness.dispatcher.storage.get_state(key) is None
    assert await fsm(bot_harness, RESIDENT) == (None, {})
