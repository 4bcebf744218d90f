"""`bot.session`: Bot API calls as JSON, multipart only for uploads.

The payload is compared with what aiogram's own multipart form carries for the same method;
the session is driven against a real aiohttp server (errors as Telegram gives them) and against
the sandbox's emulator under uvicorn (real results, parsed).
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
)
from aiogram.methods import (
    AnswerCallbackQuery,
    CopyMessage,
    EditMessageText,
    GetMe,
    RestrictChatMember,
    SendMediaGroup,
    SendMessage,
    SendPhoto,
    SendPoll,
    SetMyCommands,
    TelegramMethod,
)
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BufferedInputFile,
    ChatPermissions,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    InputPollOption,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    ReplyKeyboardRemove,
    ReplyParameters,
)
from aiohttp import ClientOSError, ClientSession, web
from fastapi import FastAPI
from servers import free_port, png, serve

from bot.factory import create_bot
from bot.session import JsonAiohttpSession, method_payload, redact_token
from webhook.sandbox.demo import XINSHA_GROUP, ZHANG_WEI
from webhook.sandbox.emulator import Emulator

TOKEN = "42:TEST-token"
KEYBOARD = InlineKeyboardMarkup(
    inline_keyboard=[
        [InlineKeyboardButton(text="支持 👍", callback_data="vote:1:yes")],
        [InlineKeyboardButton(text="Link", url="https://example.org/?a=1&b=2")],
    ]
)


def html_bot() -> Bot:
    return Bot(
        TOKEN,
        session=JsonAiohttpSession(),
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


def multipart_fields(bot: Bot, method: TelegramMethod[Any]) -> dict[str, str]:
    """The text parts aiogram's multipart form carries (AiohttpSession.build_form_data)."""
    files: dict[str, Any] = {}
    fields: dict[str, str] = {}
    for key, value in method.model_dump(warnings=False).items():
        prepared = bot.session.prepare_value(value, bot=bot, files=files)
        if prepared:
            fields[key] = prepared
    assert not files
    return fields


def assert_same_as_multipart(bot: Bot, method: TelegramMethod[Any]) -> dict[str, Any]:
    """Each form field means what the JSON value means: a string as itself, anything else as
    the JSON the form encoded it to."""
    payload = method_payload(bot, method)
    assert payload is not None
    fields = multipart_fields(bot, method)
    assert payload.keys() == fields.keys()
    for key, value in payload.items():
        form_value = fields[key]
        if isinstance(value, str):
            assert value == form_value, key
        else:
            assert value == json.loads(form_value), key
    # What goes over the wire is valid JSON and reads back the same.
    assert json.loads(json.dumps(payload)) == payload
    return payload


# --- the payload ------------------------------------------------------------------------------


def test_send_message_payload_is_what_the_form_carries() -> None:
    bot = html_bot()
    method = SendMessage(
        chat_id=-100123,
        text="<b>新沙社区</b> & more",
        reply_markup=KEYBOARD,
        link_preview_options=LinkPreviewOptions(is_disabled=True),
        reply_parameters=ReplyParameters(message_id=7),
        message_thread_id=None,
    )
    payload = assert_same_as_multipart(bot, method)
    assert payload["parse_mode"] == "HTML"  # Default("parse_mode") from DefaultBotProperties
    assert type(payload["parse_mode"]) is str
    assert payload["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "支持 👍", "callback_data": "vote:1:yes"}],
            [{"text": "Link", "url": "https://example.org/?a=1&b=2"}],
        ]
    }
    assert payload["link_preview_options"] == {"is_disabled": True}
    # The reply's quote parse mode is a nested default; unset defaults are left out.
    assert payload["reply_parameters"] == {"message_id": 7, "quote_parse_mode": "HTML"}
    assert "message_thread_id" not in payload and "protect_content" not in payload
    assert None not in payload.values()


def test_entities_and_explicit_parse_mode() -> None:
    bot = html_bot()
    method = SendMessage(
        chat_id=5,
        text="bold",
        parse_mode=None,
        entities=[MessageEntity(type="bold", offset=0, length=4)],
    )
    payload = assert_same_as_multipart(bot, method)
    assert payload == {
        "chat_id": 5,
        "text": "bold",
        "entities": [{"type": "bold", "offset": 0, "length": 4}],
    }
    markdown = method_payload(bot, SendMessage(chat_id=5, text="x", parse_mode="MarkdownV2"))
    assert markdown is not None and markdown["parse_mode"] == "MarkdownV2"


def test_without_a_default_parse_mode_none_is_sent() -> None:
    bot = Bot(TOKEN, session=JsonAiohttpSession())
    payload = assert_same_as_multipart(bot, SendMessage(chat_id=5, text="x"))
    assert payload == {"chat_id": 5, "text": "x"}


@pytest.mark.parametrize(
    "method",
    [
        EditMessageText(chat_id=5, message_id=9, text="edited", reply_markup=KEYBOARD),
        EditMessageText(inline_message_id="abc", text="edited"),
        AnswerCallbackQuery(callback_query_id="4000", text="已记录", show_alert=False),
        SendMessage(chat_id=5, text="bye", reply_markup=ReplyKeyboardRemove()),
        SendMessage(chat_id="@channel", text="x", disable_notification=False),
        CopyMessage(
            chat_id=5,
            from_chat_id=6,
            message_id=7,
            caption="c",
            caption_entities=[MessageEntity(type="url", offset=0, length=1)],
        ),
        SendPoll(
            chat_id=-100,
            question="修路灯？",
            options=[InputPollOption(text="支持"), InputPollOption(text="反对")],
            is_anonymous=False,
        ),
        SetMyCommands(
            commands=[BotCommand(command="start", description="开始")],
            scope=BotCommandScopeChat(chat_id=5),
            language_code="zh",
        ),
        SendPhoto(chat_id=5, photo="AgACAgIAAxkBAAI-file-id", caption="<i>c</i>"),
        GetMe(),
    ],
    ids=lambda method: type(method).__name__,
)
def test_methods_carry_what_the_form_carries(method: TelegramMethod[Any]) -> None:
    assert_same_as_multipart(html_bot(), method)


def test_false_and_zero_are_sent_empty_strings_are_not() -> None:
    bot = html_bot()
    payload = method_payload(
        bot, SendMessage(chat_id=0, text="", disable_notification=False, protect_content=False)
    )
    assert payload == {
        "chat_id": 0,
        "disable_notification": False,
        "protect_content": False,
        "parse_mode": "HTML",
    }


def test_datetimes_and_enums() -> None:
    bot = html_bot()
    until = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    method = RestrictChatMember(
        chat_id=-100,
        user_id=7,
        permissions=ChatPermissions(can_send_messages=False),
        until_date=until,
    )
    payload = assert_same_as_multipart(bot, method)
    assert payload["until_date"] == int(until.timestamp())
    assert payload["permissions"] == {"can_send_messages": False}
    later = method_payload(
        bot,
        RestrictChatMember(
            chat_id=-100,
            user_id=7,
            permissions=ChatPermissions(),
            until_date=datetime.timedelta(days=1),
        ),
    )
    assert later is not None and isinstance(later["until_date"], int)
    assert later["until_date"] > int(datetime.datetime.now().timestamp())
    enum = method_payload(bot, SendMessage(chat_id=1, text="x", parse_mode=ParseMode.HTML))
    assert enum is not None and type(enum["parse_mode"]) is str


def test_uploads_have_no_json_payload() -> None:
    bot = html_bot()
    photo = BufferedInputFile(b"\x89PNG", "a.png")
    assert method_payload(bot, SendPhoto(chat_id=5, photo=photo)) is None
    album = SendMediaGroup(
        chat_id=5,
        media=[InputMediaPhoto(media="file-id"), InputMediaPhoto(media=photo)],
    )
    assert method_payload(bot, album) is None


# --- the session against an aiohttp server ----------------------------------------------------


@dataclass
class Seen:
    method: str
    content_type: str
    fields: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class FakeTelegram:
    base: str
    seen: list[Seen]
    answers: dict[str, list[tuple[int, dict[str, Any]]]]  # method -> queued (status, body)
    hang: asyncio.Event


def _message(chat_id: Any, text: Any) -> dict[str, Any]:
    return {
        "message_id": 11,
        "date": 1_780_000_000,
        "chat": {"id": int(chat_id), "type": "private", "first_name": "张伟"},
        "text": text,
    }


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    seen: list[Seen] = []
    answers: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    hang = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            entry = Seen(method, request.content_type, await request.json())
        else:
            form = await request.post()
            entry = Seen(method, request.content_type, {})
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    entry.files[key] = value.file.read()
                else:
                    entry.fields[key] = value
        seen.append(entry)
        if method == "hang":
            await hang.wait()
        queued = answers.get(method)
        if queued:
            status, body = queued.pop(0)
            return web.json_response(body, status=status)
        fields = entry.fields
        result: Any = True
        if method in ("sendMessage", "sendPhoto"):
            result = _message(fields["chat_id"], fields.get("text") or fields.get("caption"))
        return web.json_response({"ok": True, "result": result})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield FakeTelegram(f"http://127.0.0.1:{port}", seen, answers, hang)
    finally:
        hang.set()
        await runner.cleanup()


def _bot_for(base: str) -> Bot:
    return Bot(
        TOKEN,
        session=JsonAiohttpSession(api=TelegramAPIServer.from_base(base)),
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


async def test_calls_go_as_json_and_results_are_parsed(telegram: FakeTelegram) -> None:
    bot = _bot_for(telegram.base)
    try:
        sent = await bot.send_message(ZHANG_WEI, "你好 <b>x</b>", reply_markup=KEYBOARD)
        assert sent.message_id == 11 and sent.text == "你好 <b>x</b>"
        assert sent.chat.id == ZHANG_WEI
        assert await bot.answer_callback_query("4000", text="ok") is True
    finally:
        await bot.session.close()
    first, second = telegram.seen
    assert first.method == "sendMessage" and first.content_type == "application/json"
    assert first.fields == {
        "chat_id": ZHANG_WEI,
        "text": "你好 <b>x</b>",
        "parse_mode": "HTML",
        "reply_markup": KEYBOARD.model_dump(exclude_none=True),
    }
    assert second.fields == {"callback_query_id": "4000", "text": "ok"}


async def test_uploads_fall_back_to_multipart(telegram: FakeTelegram) -> None:
    bot = _bot_for(telegram.base)
    try:
        sent = await bot.send_photo(
            ZHANG_WEI, BufferedInputFile(b"\x89PNG-bytes", "a.png"), caption="<b>c</b>"
        )
        assert sent.message_id == 11
    finally:
        await bot.session.close()
    (seen,) = telegram.seen
    assert seen.content_type == "multipart/form-data"
    assert seen.fields["caption"] == "<b>c</b>" and seen.fields["parse_mode"] == "HTML"
    assert seen.fields["photo"].startswith("attach://")
    assert list(seen.files.values()) == [b"\x89PNG-bytes"]


async def test_telegram_refusals_raise_as_before(telegram: FakeTelegram) -> None:
    telegram.answers["sendMessage"] = [
        (400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}),
        (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 7",
                "parameters": {"retry_after": 7},
            },
        ),
        (
            403,
            {
                "ok": False,
                "error_code": 403,
                "description": "Forbidden: bot was blocked by the user",
            },
        ),
    ]
    bot = _bot_for(telegram.base)
    try:
        with pytest.raises(TelegramBadRequest, match="message is too long"):
            await bot.send_message(1, "x")
        with pytest.raises(TelegramRetryAfter) as retry:
            await bot.send_message(1, "x")
        assert retry.value.retry_after == 7
        with pytest.raises(TelegramForbiddenError, match="blocked"):
            await bot.send_message(1, "x")
    finally:
        await bot.session.close()
    assert [s.content_type for s in telegram.seen] == ["application/json"] * 3


async def test_network_failures_are_telegram_network_errors(telegram: FakeTelegram) -> None:
    bot = _bot_for(f"http://127.0.0.1:{free_port()}")  # a port nobody listens on
    try:
        with pytest.raises(TelegramNetworkError, match="Client"):
            await bot.send_message(1, "x")
    finally:
        await bot.session.close()

    class Hang(SendMessage):
        __api_method__ = "hang"

    bot = _bot_for(telegram.base)
    bot.session.timeout = 0.2
    try:
        with pytest.raises(TelegramNetworkError, match="Request timeout error"):
            await bot(Hang(chat_id=1, text="x"))
    finally:
        await bot.session.close()


async def test_a_network_error_naming_the_url_does_not_carry_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiohttp names the URL in some errors ("Can not write request body for …/bot<token>/
    sendPoll"); the text goes on to logs, the audit trail and officials' messages, so the
    session takes the token out, for JSON calls and uploads alike."""

    def post(_session: Any, url: Any, **_kwargs: Any) -> Any:
        raise ClientOSError(None, f"Can not write request body for {url}")

    monkeypatch.setattr(ClientSession, "post", post)
    bot = _bot_for("https://api.telegram.org")
    try:
        calls = (
            lambda: bot.send_message(1, "x"),
            lambda: bot.send_photo(1, BufferedInputFile(b"\x89PNG", filename="chart.png")),
        )
        for call in calls:
            with pytest.raises(TelegramNetworkError) as raised:
                await call()
            assert TOKEN not in str(raised.value) and "<token>" in str(raised.value)
            assert raised.value.__cause__ is None and raised.value.__suppress_context__
    finally:
        await bot.session.close()


def test_anything_shaped_like_a_token_is_redacted() -> None:
    text = "for http://127.0.0.1:8000/sandbox/telegram/bot7000000001:sandbox-LVxOiNI6NA4y/x"
    assert redact_token(text, "other:token") == (
        "for http://127.0.0.1:8000/sandbox/telegram/bot<token>/x"
    )
    assert redact_token("port 127.0.0.1:8000 refused", "1:x") == "port 127.0.0.1:8000 refused"


async def test_create_bot_keeps_the_retry_after_middleware(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("bot.sender.asyncio.sleep", fake_sleep)
    telegram.answers["sendMessage"] = [
        (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 1},
            },
        )
    ]
    bot = create_bot(TOKEN, telegram.base)
    assert isinstance(bot.session, JsonAiohttpSession)
    assert bot.default.parse_mode == ParseMode.HTML
    try:
        sent = await bot.send_message(3, "again")
        assert sent.text == "again" and slept == [1]  # (asyncio.sleep is patched everywhere)
    finally:
        await bot.session.close()
    assert [s.fields["text"] for s in telegram.seen] == ["again", "again"]


def test_create_bot_for_telegram_itself() -> None:
    bot = create_bot(TOKEN)
    assert isinstance(bot.session, JsonAiohttpSession)
    assert isinstance(bot.session, AiohttpSession)
    assert bot.session.api.base == "https://api.telegram.org/bot{token}/{method}"


# --- the session against the sandbox's emulator -----------------------------------------------


@pytest.fixture
async def emulator_bot() -> AsyncIterator[tuple[Emulator, Bot]]:
    emulator = Emulator(
        token="7000000001:sandbox-session-test",
        bot_id=7000000001,
        bot_username="minsheng_sandbox_bot",
    )
    app = FastAPI()
    app.include_router(emulator.telegram_router())
    async with serve(app, lifespan="off") as base:
        bot = create_bot(emulator.token, f"{base}/sandbox/telegram")
        try:
            yield emulator, bot
        finally:
            await bot.session.close()


async def test_the_emulator_reads_json_calls(emulator_bot: tuple[Emulator, Bot]) -> None:
    emulator, bot = emulator_bot
    await emulator.user_start(ZHANG_WEI)
    sent = await bot.send_message(ZHANG_WEI, "<b>路灯</b> 已修好", reply_markup=KEYBOARD)
    assert sent.text == "路灯 已修好"  # parse_mode HTML reached the emulator
    assert sent.entities is not None and sent.entities[0].type == "bold"
    assert sent.reply_markup is not None
    assert sent.reply_markup.inline_keyboard[0][0].callback_data == "vote:1:yes"
    edited = await bot.edit_message_text(
        "<i>已结束</i>", chat_id=ZHANG_WEI, message_id=sent.message_id
    )
    assert not isinstance(edited, bool) and edited.text == "已结束"
    with pytest.raises(TelegramBadRequest, match="too long"):
        await bot.send_message(ZHANG_WEI, "长" * 5000)
    photo = await bot.send_photo(
        ZHANG_WEI, BufferedInputFile(png(2, 2), "p.png"), caption="<b>p</b>"
    )
    assert photo.caption == "p" and photo.photo
    emulator.users[ZHANG_WEI].blocked = True
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(ZHANG_WEI, "x")


async def test_create_bot_s_replies_outlive_the_message_replied_to(
    emulator_bot: tuple[Emulator, Bot],
) -> None:
    """Groups whose anti-spam bot deletes commands at once: `message.reply` still answers, as a
    plain message, where Telegram (and the emulator) refuse a reply to a message that is gone
    (create_bot's `allow_sending_without_reply` default)."""
    emulator, bot = emulator_bot
    assert bot.default.allow_sending_without_reply is True
    typed = await emulator.user_send_text(ZHANG_WEI, XINSHA_GROUP, "/help")
    command = Message.model_validate(typed["message"], context={"bot": bot})
    answer = await command.reply("<b>帮助</b>")
    assert answer.reply_to_message is not None  # a reply while the command is there
    assert answer.reply_to_message.message_id == command.message_id
    assert await bot.delete_message(XINSHA_GROUP, command.message_id)  # the bot is an admin
    late = await command.reply("<b>帮助</b>")
    assert late.text == "帮助" and late.reply_to_message is None
