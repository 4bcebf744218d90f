"""Private commands return their last Bot API call (the webhook's reply) instead of making it;
what they say first, they say while the update is handled."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram.methods import SendMessage
from aiogram.types import ReplyKeyboardRemove
from telegram_fakes import Driver, Harness, Person

pytest_plugins = ["telegram_fakes"]

RESIDENT = Person(1001, "小明")
CONTINUE = "您有一条建议还没填完"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/start", "小明，您好！"),
        ("/help", "/suggest"),
        ("/my", "您还没有提过建议"),
        ("/cancel", "目前没有需要取消的内容。"),
        ("/lang", "请选择语言："),
        ("/suggest", "您要为哪个社区提建议？"),
    ],
)
async def test_a_command_returns_its_answer(
    bot_harness: Harness, org: Any, command: str, expected: str
) -> None:
    h = bot_harness
    made, reply = await h.say_unsent(RESIDENT, command)
    assert made == [], "nothing is sent while the update is handled"
    assert isinstance(reply, SendMessage) and reply.chat_id == RESIDENT.id
    assert expected in reply.text
    await h.bot(reply)
    assert h.session.calls[-1].method is reply


@pytest.mark.parametrize("command", ["/start", "/help", "/suggest"])
async def test_in_a_dialog_the_question_comes_last(
    dialog_driver: Driver, bot_harness: Harness, command: str
) -> None:
    h = bot_harness
    await dialog_driver.title(RESIDENT)
    made, reply = await h.say_unsent(RESIDENT, command)
    # /start and /help answer first; /suggest only continues.
    assert len(made) == (0 if command == "/suggest" else 1)
    assert all(CONTINUE not in (c.text or "") for c in made)
    assert isinstance(reply, SendMessage)
    assert reply.text.startswith(CONTINUE) and "请给建议起个简短的标题" in reply.text


async def test_the_deep_link_in_a_dialog_continues_it(
    dialog_driver: Driver, bot_harness: Harness, org: Any
) -> None:
    h = bot_harness
    await dialog_driver.title(RESIDENT)
    made, reply = await h.say_unsent(RESIDENT, f"/start s_{org.tianan_id}")
    assert made == []
    assert isinstance(reply, SendMessage) and reply.text.startswith(CONTINUE)


async def test_an_unknown_community_link_greets(bot_harness: Harness, org: Any) -> None:
    h = bot_harness
    for payload in ("s_999999", "s_99999999999"):
        made, reply = await h.say_unsent(RESIDENT, f"/start {payload}")
        assert made == []
        assert isinstance(reply, SendMessage) and reply.text.startswith("小明，您好！")


async def test_cancel_in_a_dialog_returns_the_goodbye(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    h = bot_harness
    await dialog_driver.location(RESIDENT)
    made, reply = await h.say_unsent(RESIDENT, "/cancel")
    assert made == []
    assert isinstance(reply, SendMessage) and "已取消" in reply.text
    assert isinstance(reply.reply_markup, ReplyKeyboardRemove)
