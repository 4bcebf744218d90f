"""The emulator runs the webhook reply as Telegram does: the method named in the 200's body,
after the 200, as the bot's call; a refusal, which Telegram drops silently, is shown.

The emulator is wired to the real webhook route by `webhook.app._sandbox_start` (the sandbox's
own wiring); the dispatcher is a small one whose handlers return their methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Dispatcher
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from webhook_fakes import replying_dispatcher, route_app

from bot.factory import create_bot
from storage.db import create_engine, create_sessionmaker
from storage.settings import Settings
from webhook.app import _sandbox_start
from webhook.runtime import Runtime
from webhook.sandbox.demo import ZHANG_WEI
from webhook.sandbox.emulator import Emulator, WebhookAnswer

TOKEN = "7000000001:sandbox-reply-test"
BOT_ID = 7000000001
KEYBOARD = InlineKeyboardMarkup(
    inline_keyboard=[[InlineKeyboardButton(text="确认", callback_data="confirm")]]
)


def build_dispatcher() -> Dispatcher:
    return replying_dispatcher(
        {
            "reply": lambda message: message.answer("<b>已收到</b> & 谢谢", reply_markup=KEYBOARD),
            "long": lambda message: message.answer("长" * 5000),
        },
        pressed=lambda query: query.answer("已确认"),  # KEYBOARD's one button
    )


@pytest.fixture
async def emulator(sqlite_url: str) -> AsyncIterator[Emulator]:
    emulator = Emulator(token=TOKEN, bot_id=BOT_ID, bot_username="minsheng_sandbox_bot")
    engine = create_engine(sqlite_url)
    runtime = Runtime(
        settings=Settings(database_url=sqlite_url, webhook_secret="reply-test-secret"),
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        # Never called: every reply here rides in the webhook's answer.
        bot=create_bot(TOKEN, "http://127.0.0.1:9/sandbox/telegram"),
        dispatcher=build_dispatcher(),
        webhook_secret="reply-test-secret",
        emulator=emulator,
    )
    await _sandbox_start(runtime, route_app(runtime))
    try:
        yield emulator
    finally:
        assert runtime.sandbox_client is not None
        await runtime.sandbox_client.aclose()
        await runtime.bot.session.close()
        await engine.dispose()


def bot_messages(emulator: Emulator) -> list[dict[str, Any]]:
    """The Message objects the bot sent to 张伟, as the emulator stores them."""
    stored = emulator.chats[ZHANG_WEI].messages.values()
    return [m.data for m in stored if m.data["from"]["id"] == BOT_ID and not m.deleted]


async def test_the_reply_is_sent_as_the_bot(emulator: Emulator) -> None:
    sent_text = await emulator.user_send_text(ZHANG_WEI, ZHANG_WEI, "reply")
    assert sent_text["status"] == 200
    (sent,) = bot_messages(emulator)
    assert sent["text"] == "已收到 & 谢谢"  # parse_mode HTML, the bot's default, came along
    assert sent["entities"] == [{"type": "bold", "offset": 0, "length": 3}]
    assert sent["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "confirm"
    update, reply = list(emulator.log)[-2:]
    assert (update["kind"], update["status"]) == ("update", 200)
    assert (reply["kind"], reply["name"], reply["status"]) == ("api", "sendMessage", 200)
    assert reply["summary"].startswith("webhook reply")
    assert not emulator.delivery_errors


async def test_a_returned_callback_answer_reaches_the_person(emulator: Emulator) -> None:
    await emulator.user_send_text(ZHANG_WEI, ZHANG_WEI, "reply")
    (sent,) = bot_messages(emulator)
    pressed = await emulator.user_press_button(ZHANG_WEI, ZHANG_WEI, sent["message_id"], 0, 0)
    assert pressed.status == 200
    assert pressed.answer is not None and pressed.answer["text"] == "已确认"


async def test_a_refused_reply_is_shown_not_sent(emulator: Emulator) -> None:
    sent_text = await emulator.user_send_text(ZHANG_WEI, ZHANG_WEI, "long")
    # The webhook did its part; Telegram refuses the reply silently.
    assert sent_text["status"] == 200
    assert bot_messages(emulator) == []
    error = emulator.delivery_errors[-1]
    assert "sendMessage" in error["error"] and "too long" in error["error"]
    refused = emulator.log[-1]
    assert (refused["name"], refused["status"]) == ("sendMessage", 400)
    assert "too long" in refused["summary"]
    assert emulator.view(ZHANG_WEI, ZHANG_WEI)["errors"][-1] == error


# --- the answer's forms, with a deliver standing in for the webhook ---------------------------


async def _start(emulator: Emulator, answer: WebhookAnswer | int) -> int:
    async def deliver(update: dict[str, Any]) -> WebhookAnswer | int:
        return answer

    emulator.set_deliver(deliver)
    result = await emulator.user_start(ZHANG_WEI)
    status: int = result["status"]
    return status


def _texts(emulator: Emulator) -> list[str]:
    return [m["text"] for m in bot_messages(emulator)]


async def test_form_encoded_and_multipart_replies_run_too() -> None:
    emulator = Emulator(token=TOKEN, bot_id=BOT_ID, bot_username="minsheng_sandbox_bot")
    form = f"method=sendMessage&chat_id={ZHANG_WEI}&text=%E4%BD%A0%E5%A5%BD".encode()
    assert (
        await _start(emulator, WebhookAnswer(200, form, "application/x-www-form-urlencoded")) == 200
    )
    boundary = "b0undary"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="method"\r\n\r\nsendMessage\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="chat_id"\r\n\r\n{ZHANG_WEI}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n再见\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    content_type = f"multipart/form-data; boundary={boundary}"
    assert await _start(emulator, WebhookAnswer(200, multipart, content_type)) == 200
    assert _texts(emulator) == ["你好", "再见"]


async def test_answers_without_a_method_to_run() -> None:
    emulator = Emulator(token=TOKEN, bot_id=BOT_ID, bot_username="minsheng_sandbox_bot")
    reply = f'{{"method":"sendMessage","chat_id":{ZHANG_WEI},"text":"x"}}'.encode()
    # Not a 200: Telegram retries the update and runs nothing.
    assert await _start(emulator, WebhookAnswer(503, reply, "application/json")) == 503
    # A JSON body without a method, a body that is not JSON, a bare status: nothing to run.
    assert await _start(emulator, WebhookAnswer(200, b'{"ok":true}', "application/json")) == 200
    assert await _start(emulator, WebhookAnswer(200, b"{", "application/json")) == 200
    assert await _start(emulator, 200) == 200
    assert _texts(emulator) == []
    assert [e["error"] for e in emulator.delivery_errors] == ["the webhook answered HTTP 503"]


async def test_an_unknown_method_in_the_reply_is_shown() -> None:
    emulator = Emulator(token=TOKEN, bot_id=BOT_ID, bot_username="minsheng_sandbox_bot")
    body = b'{"method":"sendTelepathy","chat_id":1}'
    assert await _start(emulator, WebhookAnswer(200, body, "application/json")) == 200
    assert "sendTelepathy" in emulator.delivery_errors[-1]["error"]
    assert emulator.log[-1]["status"] == 404
