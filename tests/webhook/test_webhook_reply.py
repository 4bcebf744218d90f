"""The webhook route answers with the method a handler returned (Telegram's webhook reply).

`return message.answer(...)` costs the bot no call of its own: the 200's JSON body names the
method and Telegram runs it. An upload cannot ride in the answer, so the route calls it first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiogram import Dispatcher
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import SendPhoto
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)
from telegram_fakes import RecordingSession, make_bot
from webhook_fakes import (
    CHAT,
    message_update,
    next_update_id,
    post_update,
    replying_dispatcher,
    route_client,
)

from storage.db import create_engine, create_sessionmaker
from storage.settings import Settings
from webhook.runtime import Runtime

SECRET = "reply-secret"
KEYBOARD = InlineKeyboardMarkup(
    inline_keyboard=[[InlineKeyboardButton(text="好 ✓", callback_data="ok:1")]]
)


def build_dispatcher() -> Dispatcher:
    return replying_dispatcher(
        {
            "reply": lambda message: message.answer("收到 <b>x</b>", reply_markup=KEYBOARD),
            "photo": lambda message: message.answer_photo(
                BufferedInputFile(b"\x89PNG", "p.png"), caption="<b>c</b>"
            ),
            "quiet": lambda message: None,
        },
        pressed=lambda query: query.answer("已记录"),
    )


@pytest.fixture
async def webhook(sqlite_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, RecordingSession]]:
    engine = create_engine(sqlite_url)
    session = RecordingSession()
    runtime = Runtime(
        settings=Settings(database_url=sqlite_url, webhook_secret=SECRET),
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        bot=make_bot(session),
        dispatcher=build_dispatcher(),
        webhook_secret=SECRET,
    )
    async with route_client(runtime) as client:
        yield client, session
    await engine.dispose()


async def post(client: httpx.AsyncClient, update: dict[str, Any]) -> httpx.Response:
    return await post_update(client, update, SECRET)


async def test_a_returned_message_is_the_json_answer(webhook: Any) -> None:
    client, session = webhook
    response = await post(client, message_update("reply"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "method": "sendMessage",
        "chat_id": CHAT,
        "text": "收到 <b>x</b>",
        "parse_mode": ParseMode.HTML.value,
        "reply_markup": {"inline_keyboard": [[{"text": "好 ✓", "callback_data": "ok:1"}]]},
    }
    # Compact UTF-8, not \\u escapes; and the bot made no call of its own.
    assert "收到" in response.text and ", " not in response.text
    assert session.calls == []


async def test_a_returned_callback_answer(webhook: Any) -> None:
    client, session = webhook
    update = {
        "update_id": next_update_id(),
        "callback_query": {
            "id": "4000",
            "from": {"id": CHAT, "is_bot": False, "first_name": "张伟"},
            "chat_instance": "1",
            "data": "ok:1",
        },
    }
    response = await post(client, update)
    assert response.status_code == 200
    assert json.loads(response.content) == {
        "method": "answerCallbackQuery",
        "callback_query_id": "4000",
        "text": "已记录",
    }
    assert session.calls == []


async def test_nothing_returned_is_an_empty_200(webhook: Any) -> None:
    client, session = webhook
    for text in ("quiet", "unhandled text"):
        response = await post(client, message_update(text))
        assert response.status_code == 200 and response.content == b""
    assert session.calls == []


async def test_an_upload_is_called_before_the_200(webhook: Any) -> None:
    client, session = webhook
    response = await post(client, message_update("photo"))
    assert response.status_code == 200 and response.content == b""
    (call,) = session.calls
    assert isinstance(call.method, SendPhoto)
    assert call.method.chat_id == CHAT and call.method.caption == "<b>c</b>"


async def test_a_failed_upload_is_logged_not_retried(
    webhook: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, session = webhook
    refusal = TelegramBadRequest(
        method=SendPhoto(chat_id=CHAT, photo="x"), message="Bad Request: IMAGE_PROCESS_FAILED"
    )
    session.fail_next(SendPhoto, refusal)
    with caplog.at_level(logging.ERROR, logger="webhook.telegram"):
        response = await post(client, message_update("photo"))
    # The update is handled and committed: Telegram must not deliver it again.
    assert response.status_code == 200 and response.content == b""
    assert len(session.calls) == 1
    assert any("sendPhoto" in record.getMessage() for record in caplog.records)
