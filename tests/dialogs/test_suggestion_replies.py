"""The suggestion dialog's replies, and what each step costs the store.

A handler returns its update's last Bot API call instead of making it (the webhook answers
Telegram with it; Telegram makes it once the update is handled): everything the handler awaited
comes first. And the resident's flow issues a fixed, small number of SQL statements per step,
counted (never timed), so that a change adding a query to a step shows up here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import (
    AnswerCallbackQuery,
    EditMessageReplyMarkup,
    EditMessageText,
    SendMessage,
    TelegramMethod,
)
from aiogram.types import InlineKeyboardMarkup, ReplyKeyboardRemove, Update
from dialog_helpers import fsm
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram_fakes import (
    CATEGORY,
    PHYSICAL,
    SKIP,
    SUBMIT,
    Call,
    Driver,
    Harness,
    Person,
    button_texts,
    texts,
)

from bot.sender import StaleCallbackMiddleware
from dialogs.suggestion import SuggestionForm
from storage.models import Community
from storage.services.chats import bind_chat

pytest_plugins = ["telegram_fakes"]

RESIDENT = Person(1001, "小明")
GROUP_ID = -1001000000077  # a residents' group whose "Suggest" button the stream presses


# --- replies ---------------------------------------------------------------------------------


async def deliver(h: Harness, reply: Any) -> Call:
    """Make the returned call, as Telegram would after the webhook's answer."""
    assert isinstance(reply, TelegramMethod)
    await h.bot(reply)
    return h.session.calls[-1]


async def test_a_text_step_returns_the_next_question(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    h = bot_harness
    await dialog_driver.description(RESIDENT)
    made, reply = await h.say_unsent(RESIDENT, "楼梯间太黑，老人晚上容易摔倒。")
    assert made == [], "nothing is sent while the update is handled"
    assert isinstance(reply, SendMessage) and reply.chat_id == RESIDENT.id
    assert "地点在哪里" in reply.text
    assert (await fsm(h, RESIDENT))[0] == SuggestionForm.location.state
    delivered = await deliver(h, reply)
    assert delivered.method is reply and delivered.result is not None
    # Delivered, the question's keyboard works as before: "type instead" is answered.
    calls = await h.say(RESIDENT, "⌨️ 改为输入文字地址")
    assert [c.text for c in calls] == ["请输入地址："]


async def test_bad_input_returns_the_question_again(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    h = bot_harness
    await dialog_driver.title(RESIDENT)
    made, reply = await h.say_unsent(RESIDENT, "   ")
    assert made == []
    assert isinstance(reply, SendMessage)
    assert reply.text.startswith("标题不能为空") and "请给建议起个简短的标题" in reply.text
    assert (await fsm(h, RESIDENT))[0] == SuggestionForm.title.state


async def test_a_button_step_answers_and_edits_first(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    h = bot_harness
    await dialog_driver.category(RESIDENT)
    made, reply = await h.feed_unsent(h.button_update(RESIDENT, CATEGORY, exact=True))
    assert [type(c.method) for c in made] == [AnswerCallbackQuery, EditMessageText]
    assert made[1].text == "类别：社区环境整治"
    assert isinstance(reply, SendMessage) and "请给建议起个简短的标题" in reply.text
    await deliver(h, reply)


async def test_the_location_step_removes_the_keyboard_before_the_next_question(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    h = bot_harness
    await dialog_driver.location(RESIDENT)
    made, reply = await h.say_unsent(RESIDENT, "新沙小区3栋")
    assert [type(c.method) for c in made] == [SendMessage]
    assert isinstance(made[0].markup, ReplyKeyboardRemove) and "地点已记录" in (made[0].text or "")
    assert isinstance(reply, SendMessage) and isinstance(reply.reply_markup, InlineKeyboardMarkup)
    assert button_texts(reply.reply_markup) == [SKIP]


async def test_confirm_returns_the_thanks(dialog_driver: Driver, bot_harness: Harness) -> None:
    h = bot_harness
    await dialog_driver.summary(RESIDENT)
    made, reply = await h.feed_unsent(h.button_update(RESIDENT, SUBMIT, exact=True))
    assert [type(c.method) for c in made] == [AnswerCallbackQuery, EditMessageReplyMarkup]
    assert isinstance(made[0].method, AnswerCallbackQuery)
    assert made[0].method.text == "提交成功，谢谢您！"
    assert isinstance(reply, SendMessage) and "编号 <b>新沙-" in reply.text
    assert (await fsm(h, RESIDENT))[0] is None


async def test_the_deep_link_returns_the_first_question(bot_harness: Harness, org: Any) -> None:
    h = bot_harness
    made, reply = await h.say_unsent(RESIDENT, f"/start s_{org.xinsha_id}")
    assert made == []
    assert isinstance(reply, SendMessage) and "<b>新沙社区</b>" in reply.text
    assert (await fsm(h, RESIDENT))[0] == SuggestionForm.category.state


async def test_a_photo_is_answered_at_once(dialog_driver: Driver, bot_harness: Harness) -> None:
    """Album photos are concurrent updates: their answers are made in order, not returned."""
    h = bot_harness
    await dialog_driver.photos(RESIDENT)
    made, reply = await h.feed_unsent(h.updates.photo(RESIDENT, "photo-a"))
    assert reply is None
    assert [type(c.method) for c in made] == [SendMessage]


# --- statements per step ---------------------------------------------------------------------


@pytest.fixture
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement sent to the test's database, in order."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])  # (conn, cursor, statement, parameters, context, executemany)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", record)


async def step_statements(h: Harness, seen: list[str], person: Person, update: Update) -> int:
    """The statements handling `update` took beyond what any update costs (de-duplication,
    the locale, …): that cost is measured just before, on /lang, whose handler takes none
    (twice, the first warming what the middlewares may cache)."""
    await h.say(person, "/lang")
    seen.clear()
    await h.say(person, "/lang")
    baseline = len(seen)
    seen.clear()
    await h.feed(update)
    return len(seen) - baseline


async def walk_counting(h: Harness, seen: list[str], person: Person, org: Any) -> dict[str, int]:
    """The benchmark's stream (bench/stream.py) for one resident: statements per step."""
    counts: dict[str, int] = {}

    async def text(name: str, value: str) -> None:
        counts[name] = await step_statements(h, seen, person, h.updates.text(person, value))

    async def press(name: str, label: str) -> None:
        counts[name] = await step_statements(
            h, seen, person, h.button_update(person, label, exact=True)
        )

    await text("/start g_<group>", f"/start g_{GROUP_ID}")
    await press("category", CATEGORY)
    await text("title", "修复3栋楼道的声控灯")
    await text("description", "3栋楼道的声控灯坏了半年多，晚上老人和孩子上下楼看不清台阶。")
    await text("location", "新沙社区3栋1单元")
    await press("skip photos", SKIP)
    await press("kind", PHYSICAL)
    await text("cost", "1.5万")
    await press("confirm", SUBMIT)
    await text("/my", "/my")
    await text("/help", "/help")
    return counts


DIALOG_STEPS_WITHOUT_SQL = {
    "category": 0,
    "title": 0,
    "description": 0,
    "location": 0,
    "skip photos": 0,
    "kind": 0,
    "cost": 0,
}


async def test_statements_per_step(
    bot_harness: Harness,
    org: Any,
    statements: list[str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        community = await session.get(Community, org.xinsha_id)
        assert community is not None
        await bind_chat(
            session, GROUP_ID, community, title="", chat_type="supergroup", bound_by_person_id=None
        )
    first = await walk_counting(bot_harness, statements, RESIDENT, org)
    assert first == {
        # The person (a private /start refreshes them: someone who had never started the bot
        # may be marked after a 403); the community the group is linked to, with its street's
        # and district's names; today's suggestions.
        "/start g_<group>": 3,
        **DIALOG_STEPS_WITHOUT_SQL,
        # The community; the proposer with today's count (known since their first private
        # message); the number; the suggestion, its audit event, its follower.
        "confirm": 6,
        "/my": 1,  # the suggestions with their communities
        "/help": 1,  # the roles held
    }
    again = await walk_counting(bot_harness, statements, RESIDENT, org)
    assert again == first


async def test_a_press_answered_too_late_still_counts(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    """Telegram refuses answerCallbackQuery ~15 s after the press (and redelivers presses
    much older after an outage). The choice is kept and the dialog goes on, instead of the
    update failing and being dead-lettered."""
    h = bot_harness
    h.session.middleware(StaleCallbackMiddleware())  # as bot.factory.create_bot installs it
    await dialog_driver.category(RESIDENT)
    h.session.fail_next(
        AnswerCallbackQuery,
        TelegramBadRequest(
            method=AnswerCallbackQuery(callback_query_id="q"),
            message="Bad Request: query is too old and response timeout expired or query ID "
            "is invalid",
        ),
    )
    calls = await h.press(RESIDENT, CATEGORY, exact=True)
    assert (await fsm(h, RESIDENT))[0] == SuggestionForm.title.state
    assert "标题" in texts(calls)[-1]

    # Any other refusal of the answer still fails the update.
    await h.say(RESIDENT, "/cancel")
    await dialog_driver.category(RESIDENT)
    h.session.fail_next(
        AnswerCallbackQuery,
        TelegramBadRequest(
            method=AnswerCallbackQuery(callback_query_id="q"), message="Bad Request: x"
        ),
    )
    with pytest.raises(TelegramBadRequest):
        await h.press(RESIDENT, CATEGORY, exact=True)


async def test_a_press_is_answered_and_its_keyboard_closed_together(
    dialog_driver: Driver, bot_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two independent calls: the press waits for one round trip to Telegram, not two. The
    answer here is held until the edit has started, which only happens if both are under
    way at once (one after the other, the answer would wait for ever: the guard fails it)."""
    h = bot_harness
    await dialog_driver.category(RESIDENT)
    edit_started = asyncio.Event()
    record = h.session.make_request

    async def slow_answer(bot: Any, method: TelegramMethod[Any], timeout: Any = None) -> Any:
        if isinstance(method, AnswerCallbackQuery):
            await asyncio.wait_for(edit_started.wait(), 5)
        if isinstance(method, EditMessageText):
            edit_started.set()
        return await record(bot, method, timeout)

    monkeypatch.setattr(h.session, "make_request", slow_answer)
    calls = await h.press(RESIDENT, CATEGORY, exact=True)
    assert {type(c.method) for c in calls[:2]} == {AnswerCallbackQuery, EditMessageText}
    assert (await fsm(h, RESIDENT))[0] == SuggestionForm.title.state
