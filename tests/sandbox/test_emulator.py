"""The Bot API emulator driven by a real aiogram Bot over HTTP, and the web chat's API.

A FastAPI app holding only the sandbox's routers is served by a real uvicorn on a free port;
the bot reaches it with `AiohttpSession(api=TelegramAPIServer.from_base(...))`, so requests
are aiogram's own (form-urlencoded, multipart with files). Updates go to a recording deliver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BufferedInputFile,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    ReplyParameters,
    Update,
)
from fastapi import FastAPI
from servers import png, serve

from storage.settings import Settings
from webhook.sandbox.demo import (
    COUNCIL,
    DIRECTOR_CHEN,
    LI_NA,
    LIU_MIN,
    QIAN_DUODUO,
    SEEDED_PROPOSERS,
    SUN_LI,
    TIANAN_GROUP,
    WANG_FANG,
    WU_FANG,
    XINSHA_COUNCIL_GROUP,
    XINSHA_GROUP,
    ZHANG_WEI,
    ZHAO_LEI,
    ZHENG_HAO,
    ZHOU_QIANG,
)
from webhook.sandbox.emulator import BotAPIError, Emulator
from webhook.sandbox.page import create_sandbox_router

TOKEN = "7000000001:sandbox-test-token"
BOT_ID = 7000000001
BOT_USERNAME = "minsheng_sandbox_bot"
NOT_MODIFIED = (
    "Telegram server says - Bad Request: message is not modified: specified new message "
    "content and reply markup are exactly the same as a current content and reply markup of "
    "the message"
)

Handler = Callable[[Update], Awaitable[None]]


@dataclass
class Sandbox:
    emulator: Emulator
    bot: Bot
    http: httpx.AsyncClient
    base: str
    updates: list[dict[str, Any]] = field(default_factory=list)
    handler: Handler | None = None

    def parsed(self) -> list[Update]:
        return [Update.model_validate(d, context={"bot": self.bot}) for d in self.updates]

    def last(self, kind: str) -> dict[str, Any]:
        return next(u[kind] for u in reversed(self.updates) if kind in u)

    async def ui(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.http.request(method, f"/sandbox/api{path}", **kwargs)
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    emulator = Emulator(token=TOKEN, bot_id=BOT_ID, bot_username=BOT_USERNAME)
    app = FastAPI()
    app.include_router(emulator.telegram_router())
    app.include_router(create_sandbox_router(emulator))
    # serve() stops uvicorn without a graceful wait for keep-alives.
    async with serve(app, lifespan="off") as base:
        bot = Bot(
            TOKEN,
            session=AiohttpSession(api=TelegramAPIServer.from_base(f"{base}/sandbox/telegram")),
            default=DefaultBotProperties(parse_mode="HTML"),
        )
        http = httpx.AsyncClient(base_url=base, timeout=10)
        box = Sandbox(emulator, bot, http, base)

        async def deliver(update: dict[str, Any]) -> int:
            box.updates.append(update)
            if box.handler is not None:
                await box.handler(Update.model_validate(update, context={"bot": bot}))
            return 200

        emulator.set_deliver(deliver)
        try:
            yield box
        finally:
            await http.aclose()
            await bot.session.close()


async def test_get_me_token_and_unknown_method(sandbox: Sandbox) -> None:
    me = await sandbox.bot.get_me()
    assert (me.id, me.username, me.is_bot) == (BOT_ID, BOT_USERNAME, True)
    wrong = await sandbox.http.post("/sandbox/telegram/bot1:wrong/getMe")
    assert wrong.status_code == 401
    assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    missing = await sandbox.http.get(f"/sandbox/telegram/bot{TOKEN}/sendTelepathy")
    assert missing.status_code == 404
    assert missing.json() == {
        "ok": False,
        "error_code": 404,
        "description": "Not Found: method not found",
    }
    # JSON bodies work too, and method names are case-insensitive as in Telegram.
    as_json = await sandbox.http.post(f"/sandbox/telegram/bot{TOKEN}/GETME", json={})
    assert as_json.json()["result"]["username"] == BOT_USERNAME


async def test_world_gives_the_programme_time_zone(sandbox: Sandbox) -> None:
    """The page shows the times of messages in the programme's zone (TIMEZONE), which the world
    gives: the app's settings, or the default where there is no app runtime (as here)."""
    world = await sandbox.ui("GET", "/world")
    assert world["timezone"] == "Asia/Shanghai"
    app = FastAPI()
    app.state.runtime = SimpleNamespace(settings=Settings(_env_file=None, timezone="Europe/Berlin"))
    app.include_router(create_sandbox_router(sandbox.emulator))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        response = await client.get("/sandbox/api/world")
    assert response.json()["timezone"] == "Europe/Berlin"


async def test_the_seeded_proposers_have_started_the_bot(sandbox: Sandbox) -> None:
    """They suggested through its private chat: the news of their suggestions reaches them
    (the outbox would otherwise find them refusing, as people who never started the bot)."""
    for proposer in SEEDED_PROPOSERS:
        await sandbox.bot.send_message(proposer, "社区已采纳您的建议，将提交居民议事会讨论。")
    assert LI_NA in SEEDED_PROPOSERS and ZHANG_WEI not in SEEDED_PROPOSERS


async def test_start_and_message_length_in_utf16(sandbox: Sandbox) -> None:
    with pytest.raises(TelegramForbiddenError, match="bot can't initiate conversation"):
        await sandbox.bot.send_message(ZHANG_WEI, "hi")
    await sandbox.emulator.user_start(ZHANG_WEI)
    start = sandbox.parsed()[-1].message
    assert start is not None and start.text == "/start"
    assert start.chat.type == "private" and start.from_user is not None
    assert start.from_user.language_code == "zh"

    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await sandbox.bot.send_message(ZHANG_WEI, "a" * 4097)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await sandbox.bot.send_message(ZHANG_WEI, "😀" * 2048 + "a")  # 4097 UTF-16 units
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await sandbox.bot.send_message(ZHANG_WEI, " \n ")
    sent = await sandbox.bot.send_message(ZHANG_WEI, "😀" * 2048)  # 2048 characters, 4096 units
    assert sent.text == "😀" * 2048
    await sandbox.bot.send_message(ZHANG_WEI, "中" * 4096)
    # The limit applies after entity parsing: the tags do not count.
    await sandbox.bot.send_message(ZHANG_WEI, "<b>" + "a" * 4096 + "</b>")


async def test_html_is_parsed_and_malformed_html_refused(sandbox: Sandbox) -> None:
    await sandbox.emulator.user_start(LI_NA)
    sent = await sandbox.bot.send_message(LI_NA, "<b>粗体</b> &lt;ok&gt; Q&A 😀<i>x</i>")
    assert sent.text == "粗体 <ok> Q&A 😀x"
    assert sent.entities is not None
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 0, 2),
        ("italic", 14, 1),
    ]
    cases = {
        "<b>x": 'Can\'t find end tag corresponding to start tag "b"',
        "<foo>x</foo>": 'Unsupported start tag "foo" at byte offset 0',
        "1 < 2": 'Unsupported start tag "" at byte offset 2',
        "<b>x</i>": 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"',
    }
    for text, detail in cases.items():
        with pytest.raises(TelegramBadRequest) as caught:
            await sandbox.bot.send_message(LI_NA, text)
        assert caught.value.message == f"Bad Request: can't parse entities: {detail}"
    # Without parse_mode, the same text is fine.
    plain = await sandbox.bot.send_message(LI_NA, "<b>x", parse_mode=None)
    assert plain.text == "<b>x" and not plain.entities


async def test_callback_data_limit_and_unknown_chat(sandbox: Sandbox) -> None:
    await sandbox.emulator.user_start(ZHANG_WEI)

    def keyboard(data: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="b", callback_data=data)]]
        )

    await sandbox.bot.send_message(ZHANG_WEI, "ok", reply_markup=keyboard("x" * 64))
    for data in ("x" * 65, "中" * 22):  # 65 bytes; 22 CJK characters are 66 bytes
        with pytest.raises(TelegramBadRequest) as caught:
            await sandbox.bot.send_message(ZHANG_WEI, "no", reply_markup=keyboard(data))
        assert caught.value.message == "Bad Request: BUTTON_DATA_INVALID"
    with pytest.raises(TelegramBadRequest, match="text buttons are unallowed"):
        await sandbox.bot.send_message(
            ZHANG_WEI,
            "no",
            reply_markup=InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="t")]]),
        )
    with pytest.raises(TelegramBadRequest) as caught:
        await sandbox.bot.send_message(-1009999999999, "hello")
    assert caught.value.message == "Bad Request: chat not found"
    # A group the bot has never been in is unknown to it too.
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await sandbox.bot.send_message(TIANAN_GROUP, "hello")


async def test_blocked_persona_gets_403(sandbox: Sandbox) -> None:
    await sandbox.emulator.user_start(WANG_FANG)
    result = await sandbox.ui("POST", f"/personas/{WANG_FANG}/block", json={"blocked": True})
    assert result["ok"] and result["status"] == 200
    update = sandbox.parsed()[-1].my_chat_member
    assert update is not None and update.chat.type == "private"
    assert update.old_chat_member.status == "member"
    assert update.new_chat_member.status == "kicked"
    assert update.new_chat_member.user.id == BOT_ID and update.from_user.id == WANG_FANG
    with pytest.raises(TelegramForbiddenError) as caught:
        await sandbox.bot.send_message(WANG_FANG, "news")
    assert caught.value.message == "Forbidden: bot was blocked by the user"
    refused = await sandbox.ui(
        "POST", f"/chats/{WANG_FANG}/messages", json={"persona": WANG_FANG, "text": "hi"}
    )
    assert refused["ok"] is False
    await sandbox.ui("POST", f"/personas/{WANG_FANG}/block", json={"blocked": False})
    unblocked = sandbox.parsed()[-1].my_chat_member
    assert unblocked is not None and unblocked.new_chat_member.status == "member"
    await sandbox.bot.send_message(WANG_FANG, "welcome back")


async def test_inline_button_press_delivers_a_callback_query(sandbox: Sandbox) -> None:
    await sandbox.emulator.user_start(ZHANG_WEI)
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text="赞成", callback_data="vote:yes"),
                InlineKeyboardButton(text="反对", callback_data="vote:no"),
            ]
        ]
    )
    sent = await sandbox.bot.send_message(ZHANG_WEI, "表决？", reply_markup=markup)

    async def answer(update: Update) -> None:
        if update.callback_query is not None:
            await update.callback_query.answer(f"收到 {update.callback_query.data}")

    sandbox.handler = answer
    pressed = await sandbox.ui(
        "POST",
        f"/chats/{ZHANG_WEI}/press",
        json={"persona": ZHANG_WEI, "message_id": sent.message_id, "row": 0, "column": 1},
    )
    assert pressed["kind"] == "callback" and pressed["status"] == 200
    assert pressed["answer"] == {"text": "收到 vote:no", "show_alert": False, "url": None}
    query = sandbox.parsed()[-1].callback_query
    assert query is not None
    assert query.data == "vote:no" and query.from_user.id == ZHANG_WEI
    assert query.message is not None and query.message.message_id == sent.message_id
    assert query.chat_instance
    # A query is answered once.
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await sandbox.bot.answer_callback_query(query.id, text="again")


async def test_edits_deletes_and_not_modified(sandbox: Sandbox) -> None:
    await sandbox.emulator.user_start(ZHANG_WEI)
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="a", callback_data="a")]]
    )
    sent = await sandbox.bot.send_message(ZHANG_WEI, "<b>v1</b>", reply_markup=markup)
    edited = await sandbox.bot.edit_message_text(
        "<b>v2</b>", chat_id=ZHANG_WEI, message_id=sent.message_id, reply_markup=markup
    )
    assert not isinstance(edited, bool)
    assert edited.text == "v2" and edited.edit_date is not None
    with pytest.raises(TelegramBadRequest) as caught:
        await sandbox.bot.edit_message_text(
            "<b>v2</b>", chat_id=ZHANG_WEI, message_id=sent.message_id, reply_markup=markup
        )
    assert str(caught.value) == NOT_MODIFIED
    # The same text without the keyboard is a change: editing text drops an unnamed keyboard.
    await sandbox.bot.edit_message_text("<b>v2</b>", chat_id=ZHANG_WEI, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await sandbox.bot.edit_message_reply_markup(chat_id=ZHANG_WEI, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await sandbox.bot.edit_message_text("x", chat_id=ZHANG_WEI, message_id=999)
    user_message = sandbox.parsed()[-1].message
    assert user_message is not None
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await sandbox.bot.edit_message_text(
            "x", chat_id=ZHANG_WEI, message_id=user_message.message_id
        )
    assert await sandbox.bot.delete_message(ZHANG_WEI, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await sandbox.bot.delete_message(ZHANG_WEI, sent.message_id)
    view = await sandbox.ui("GET", f"/chats/{ZHANG_WEI}?persona={ZHANG_WEI}&since=0")
    assert {"id": sent.message_id, "rev": view["messages"][-1]["rev"], "deleted": True} in view[
        "messages"
    ]


async def test_a_reply_to_a_message_that_is_gone_is_refused_unless_allowed(
    sandbox: Sandbox,
) -> None:
    """Telegram's rule, met where anti-spam bots delete commands in groups at once: a reply to
    a message not in the chat (deleted, or never there) is 400 unless
    allow_sending_without_reply is true, in reply_parameters or, without those, beside the
    legacy reply_to_message_id; then the message goes as a plain one."""
    await sandbox.ui(
        "POST", f"/chats/{XINSHA_GROUP}/messages", json={"persona": ZHANG_WEI, "text": "/help"}
    )
    command = sandbox.parsed()[-1].message
    assert command is not None
    there = await sandbox.bot.send_message(
        XINSHA_GROUP, "好", reply_parameters=ReplyParameters(message_id=command.message_id)
    )
    assert there.reply_to_message is not None
    assert there.reply_to_message.message_id == command.message_id
    assert await sandbox.bot.delete_message(XINSHA_GROUP, command.message_id)  # an admin here
    for gone in (command.message_id, 999_999):
        with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
            await sandbox.bot.send_message(
                XINSHA_GROUP, "好", reply_parameters=ReplyParameters(message_id=gone)
            )
        with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
            await sandbox.bot.send_photo(
                XINSHA_GROUP,
                BufferedInputFile(png(2, 2), "p.png"),
                reply_parameters=ReplyParameters(message_id=gone),
            )
        plain = await sandbox.bot.send_message(
            XINSHA_GROUP,
            "好",
            reply_parameters=ReplyParameters(message_id=gone, allow_sending_without_reply=True),
        )
        assert plain.text == "好" and plain.reply_to_message is None
        # The legacy fields, as a client of Bot API 6 sends them.
        legacy = {"chat_id": str(XINSHA_GROUP), "text": "好", "reply_to_message_id": str(gone)}
        with pytest.raises(BotAPIError, match="message to be replied not found") as caught:
            await sandbox.emulator.call("sendMessage", legacy)
        assert caught.value.code == 400
        sent = await sandbox.emulator.call(
            "sendMessage", {**legacy, "allow_sending_without_reply": "true"}
        )
        assert "reply_to_message" not in sent


async def test_deep_link_button_starts_the_private_chat(sandbox: Sandbox) -> None:
    link = f"https://t.me/{BOT_USERNAME}?start=suggest"
    sent = await sandbox.bot.send_message(
        XINSHA_GROUP,
        "点击下方按钮提建议",
        reply_markup=InlineKeyboardMarkup(
            inline_keyboard=[
                [InlineKeyboardButton(text="我要提建议", url=link)],
                [InlineKeyboardButton(text="政策", url="https://example.com/policy")],
            ]
        ),
    )
    await sandbox.bot.pin_chat_message(XINSHA_GROUP, sent.message_id)
    view = await sandbox.ui("GET", f"/chats/{XINSHA_GROUP}?persona={LI_NA}")
    assert view["pinned"]["message_id"] == sent.message_id
    buttons = next(m for m in view["messages"] if m["id"] == sent.message_id)["inline_keyboard"]
    assert [b["kind"] for row in buttons for b in row] == ["deeplink", "url"]

    pressed = await sandbox.ui(
        "POST",
        f"/chats/{XINSHA_GROUP}/press",
        json={"persona": LI_NA, "message_id": sent.message_id, "row": 0, "column": 0},
    )
    assert pressed["kind"] == "deeplink" and pressed["chat_id"] == LI_NA
    message = sandbox.parsed()[-1].message
    assert message is not None
    assert message.text == "/start suggest" and message.chat.id == LI_NA
    assert message.chat.type == "private"
    assert message.entities is not None
    assert (message.entities[0].type, message.entities[0].offset) == ("bot_command", 0)
    assert message.entities[0].length == len("/start")
    count = len(sandbox.updates)
    other = await sandbox.ui(
        "POST",
        f"/chats/{XINSHA_GROUP}/press",
        json={"persona": LI_NA, "message_id": sent.message_id, "row": 1, "column": 0},
    )
    assert other["kind"] == "url" and other["url"] == "https://example.com/policy"
    assert len(sandbox.updates) == count
    # A deep link in a text link or typed into the page works the same way.
    opened = await sandbox.ui(
        "POST", f"/personas/{ZHANG_WEI}/link", json={"url": f"tg://resolve?domain={BOT_USERNAME}"}
    )
    assert opened["kind"] == "deeplink"
    assert sandbox.last("message")["text"] == "/start"


async def test_group_commands_and_privacy_mode(sandbox: Sandbox) -> None:
    # In the bound group the bot is an admin: it gets every message.
    await sandbox.ui(
        "POST",
        f"/chats/{XINSHA_GROUP}/messages",
        json={"persona": ZHANG_WEI, "text": f"/suggest@{BOT_USERNAME} 路灯"},
    )
    command = sandbox.parsed()[-1].message
    assert command is not None and command.chat.type == "supergroup"
    assert command.chat.title == "新沙社区居民群"
    assert command.entities is not None
    assert command.entities[0].type == "bot_command"
    assert command.entities[0].length == len(f"/suggest@{BOT_USERNAME}")
    await sandbox.ui(
        "POST", f"/chats/{XINSHA_GROUP}/messages", json={"persona": ZHANG_WEI, "text": "大家好"}
    )
    assert sandbox.last("message")["text"] == "大家好"

    # A group where the bot is a plain member: commands only, by Telegram's privacy mode.
    await sandbox.ui(
        "POST", f"/chats/{TIANAN_GROUP}/bot", json={"persona": DIRECTOR_CHEN, "action": "add"}
    )
    count = len(sandbox.updates)
    await sandbox.ui(
        "POST", f"/chats/{TIANAN_GROUP}/messages", json={"persona": LI_NA, "text": "闲聊"}
    )
    assert len(sandbox.updates) == count
    await sandbox.ui(
        "POST", f"/chats/{TIANAN_GROUP}/messages", json={"persona": LI_NA, "text": "/help"}
    )
    assert sandbox.last("message")["text"] == "/help"
    not_member = await sandbox.ui(
        "POST", f"/chats/{TIANAN_GROUP}/messages", json={"persona": ZHANG_WEI, "text": "hi"}
    )
    assert not_member["ok"] is False


async def test_adding_the_bot_sends_my_chat_member(sandbox: Sandbox) -> None:
    result = await sandbox.ui(
        "POST", f"/chats/{TIANAN_GROUP}/bot", json={"persona": DIRECTOR_CHEN, "action": "add"}
    )
    assert result["ok"]
    member_update, service = sandbox.parsed()[-2:]
    change = member_update.my_chat_member
    assert change is not None
    assert change.chat.id == TIANAN_GROUP and change.chat.type == "supergroup"
    assert change.from_user.id == DIRECTOR_CHEN
    assert (change.old_chat_member.status, change.new_chat_member.status) == ("left", "member")
    assert change.new_chat_member.user.id == BOT_ID
    assert service.message is not None and service.message.new_chat_members is not None
    assert service.message.new_chat_members[0].id == BOT_ID

    await sandbox.bot.send_message(TIANAN_GROUP, "请管理员绑定社区")
    owner = await sandbox.bot.get_chat_member(TIANAN_GROUP, DIRECTOR_CHEN)
    assert owner.status == "creator"
    resident = await sandbox.bot.get_chat_member(TIANAN_GROUP, LI_NA)
    assert resident.status == "member"
    outsider = await sandbox.bot.get_chat_member(TIANAN_GROUP, ZHANG_WEI)
    assert outsider.status == "left"
    admins = await sandbox.bot.get_chat_administrators(TIANAN_GROUP)
    assert [a.user.id for a in admins] == [DIRECTOR_CHEN]
    chat = await sandbox.bot.get_chat(TIANAN_GROUP)
    assert chat.title == "天安社区邻里群"
    with pytest.raises(TelegramBadRequest, match="not enough rights"):
        await sandbox.bot.pin_chat_message(TIANAN_GROUP, 1)

    await sandbox.ui(
        "POST", f"/chats/{TIANAN_GROUP}/bot", json={"persona": DIRECTOR_CHEN, "action": "promote"}
    )
    promoted = sandbox.parsed()[-1].my_chat_member
    assert promoted is not None and promoted.new_chat_member.status == "administrator"
    assert await sandbox.bot.leave_chat(TIANAN_GROUP)
    await sandbox.emulator.drain()
    left = sandbox.parsed()[-1].my_chat_member
    assert left is not None and left.new_chat_member.status == "left"
    assert left.from_user.id == BOT_ID
    with pytest.raises(TelegramForbiddenError, match="bot is not a member"):
        await sandbox.bot.send_message(TIANAN_GROUP, "still here?")


async def test_photo_upload_round_trip(sandbox: Sandbox) -> None:
    image = png(5, 7)
    response = await sandbox.http.post(
        f"/sandbox/api/chats/{ZHANG_WEI}/photo",
        params={"persona": ZHANG_WEI, "caption": "路灯坏了"},
        content=image,
        headers={"Content-Type": "image/png"},
    )
    assert response.json()["ok"]
    message = sandbox.parsed()[-1].message
    assert message is not None and message.photo and message.caption == "路灯坏了"
    size = message.photo[-1]
    assert (size.width, size.height) == (5, 7)
    file = await sandbox.bot.get_file(size.file_id)
    assert file.file_path is not None
    downloaded = await sandbox.bot.download_file(file.file_path)
    assert downloaded is not None and downloaded.read() == image
    # The bot sends it back by file_id, and a new one as an upload (multipart/form-data).
    again = await sandbox.bot.send_photo(ZHANG_WEI, size.file_id, caption="<b>收到</b>")
    assert again.photo is not None and again.photo[-1].file_id == size.file_id
    assert again.caption == "收到"
    other = png(2, 2)
    uploaded = await sandbox.bot.send_photo(ZHANG_WEI, BufferedInputFile(other, "p.png"))
    assert uploaded.photo is not None
    served = await sandbox.http.get(f"/sandbox/api/files/{uploaded.photo[-1].file_id}")
    assert served.content == other and served.headers["content-type"] == "image/png"
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await sandbox.bot.send_photo(ZHANG_WEI, "AgACnotafile")
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await sandbox.bot.send_photo(ZHANG_WEI, size.file_id, caption="长" * 1025)
    not_image = await sandbox.http.post(
        f"/sandbox/api/chats/{ZHANG_WEI}/photo",
        params={"persona": ZHANG_WEI},
        content=b"<svg onload=alert(1)>",
    )
    assert not_image.json()["ok"] is False


async def test_locations_and_reply_keyboards(sandbox: Sandbox) -> None:
    await sandbox.emulator.user_start(ZHANG_WEI)
    await sandbox.bot.send_message(
        ZHANG_WEI,
        "在哪里？",
        reply_markup=ReplyKeyboardMarkup(
            keyboard=[
                [KeyboardButton(text="📍 发送位置", request_location=True)],
                [KeyboardButton(text="跳过")],
            ],
            resize_keyboard=True,
            one_time_keyboard=True,
        ),
    )
    view = await sandbox.ui("GET", f"/chats/{ZHANG_WEI}?persona={ZHANG_WEI}")
    assert view["keyboard"]["rows"][0][0] == {
        "text": "📍 发送位置",
        "location": True,
        "contact": False,
    }
    await sandbox.ui(
        "POST", f"/chats/{ZHANG_WEI}/keyboard", json={"persona": ZHANG_WEI, "row": 0, "column": 0}
    )
    shared = sandbox.parsed()[-1].message
    assert shared is not None and shared.location is not None
    assert (shared.location.latitude, shared.location.longitude) == (22.5204, 114.0262)
    view = await sandbox.ui("GET", f"/chats/{ZHANG_WEI}?persona={ZHANG_WEI}")
    assert view["keyboard"] is None  # one_time_keyboard

    await sandbox.ui(
        "POST",
        f"/chats/{ZHANG_WEI}/location",
        json={"persona": ZHANG_WEI, "latitude": 22.53, "longitude": 114.03},
    )
    typed = sandbox.parsed()[-1].message
    assert typed is not None and typed.location is not None and typed.location.latitude == 22.53
    sent = await sandbox.bot.send_location(ZHANG_WEI, 22.5, 114.0)
    assert sent.location is not None
    view = await sandbox.ui("GET", f"/chats/{ZHANG_WEI}?persona={ZHANG_WEI}")
    assert view["messages"][-1]["location"] == {"latitude": 22.5, "longitude": 114.0}

    await sandbox.bot.send_message(
        ZHANG_WEI, "选", reply_markup=ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="甲")]])
    )
    await sandbox.ui(
        "POST", f"/chats/{ZHANG_WEI}/keyboard", json={"persona": ZHANG_WEI, "row": 0, "column": 0}
    )
    assert sandbox.last("message")["text"] == "甲"
    await sandbox.bot.send_message(ZHANG_WEI, "好", reply_markup=ReplyKeyboardRemove())
    view = await sandbox.ui("GET", f"/chats/{ZHANG_WEI}?persona={ZHANG_WEI}")
    assert view["keyboard"] is None


async def test_force_reply_makes_the_next_message_a_reply(sandbox: Sandbox) -> None:
    await sandbox.emulator.user_start(LI_NA)
    asked = await sandbox.bot.send_message(
        LI_NA, "标题？", reply_markup=ForceReply(input_field_placeholder="标题")
    )
    view = await sandbox.ui("GET", f"/chats/{LI_NA}?persona={LI_NA}")
    assert view["force_reply"] == {"message_id": asked.message_id, "placeholder": "标题"}
    await sandbox.ui("POST", f"/chats/{LI_NA}/messages", json={"persona": LI_NA, "text": "修路灯"})
    reply = sandbox.parsed()[-1].message
    assert reply is not None and reply.reply_to_message is not None
    assert reply.reply_to_message.message_id == asked.message_id
    # Dismissing the reply the client opened sends a plain message.
    await sandbox.bot.send_message(LI_NA, "描述？", reply_markup=ForceReply())
    await sandbox.ui(
        "POST",
        f"/chats/{LI_NA}/messages",
        json={"persona": LI_NA, "text": "算了", "ignore_force_reply": True},
    )
    plain = sandbox.parsed()[-1].message
    assert plain is not None and plain.text == "算了" and plain.reply_to_message is None


async def test_polls_votes_and_stop(sandbox: Sandbox) -> None:
    poll_message = await sandbox.bot.send_poll(
        XINSHA_GROUP, "是否同意立项？", options=["同意", "反对", "弃权"], is_anonymous=False
    )
    assert poll_message.poll is not None and not poll_message.poll.is_anonymous
    for persona, option in ((ZHANG_WEI, 0), (LI_NA, 0), (WANG_FANG, 1)):
        voted = await sandbox.ui(
            "POST",
            f"/chats/{XINSHA_GROUP}/vote",
            json={
                "persona": persona,
                "message_id": poll_message.message_id,
                "option_ids": [option],
            },
        )
        assert voted["ok"]
    answers = [u.poll_answer for u in sandbox.parsed() if u.poll_answer is not None]
    assert [(a.user.id if a.user else None, a.option_ids) for a in answers] == [
        (ZHANG_WEI, [0]),
        (LI_NA, [0]),
        (WANG_FANG, [1]),
    ]
    assert answers[0].poll_id == poll_message.poll.id
    stopped = await sandbox.bot.stop_poll(XINSHA_GROUP, poll_message.message_id)
    assert stopped.is_closed
    assert [o.voter_count for o in stopped.options] == [2, 1, 0]
    assert stopped.total_voter_count == 3
    await sandbox.emulator.drain()
    final = sandbox.parsed()[-1].poll
    assert final is not None and final.is_closed
    late = await sandbox.ui(
        "POST",
        f"/chats/{XINSHA_GROUP}/vote",
        json={"persona": DIRECTOR_CHEN, "message_id": poll_message.message_id, "option_ids": [2]},
    )
    assert late["ok"] is False
    with pytest.raises(TelegramBadRequest, match="poll has already been closed"):
        await sandbox.bot.stop_poll(XINSHA_GROUP, poll_message.message_id)
    with pytest.raises(TelegramBadRequest, match="poll can't have more than 12 options"):
        await sandbox.bot.send_poll(XINSHA_GROUP, "q", options=[str(i) for i in range(13)])
    with pytest.raises(TelegramBadRequest, match="poll question length must not exceed 300"):
        await sandbox.bot.send_poll(XINSHA_GROUP, "问" * 301, options=["a", "b"])
    with pytest.raises(TelegramBadRequest, match="poll options length must not exceed 100"):
        await sandbox.bot.send_poll(XINSHA_GROUP, "q", options=["a" * 101, "b"])


async def test_council_polls_with_several_voters(sandbox: Sandbox) -> None:
    """A council vote as the bot runs it: one non-anonymous poll per candidate in the council's
    group; every member votes on each; each sees their own choice; the bot hears who chose
    what (poll_answer) and the counts (poll), and stops the polls once all have voted."""
    polls = [
        await sandbox.bot.send_poll(
            XINSHA_COUNCIL_GROUP,
            f"候选项目 {n}：是否同意列为社区备选项目？",
            options=["同意", "反对", "弃权"],
            is_anonymous=False,
        )
        for n in (1, 2)
    ]
    first, second = polls
    assert first.poll is not None and second.poll is not None
    plan = {
        first.message_id: dict(zip(COUNCIL, (0, 0, 0, 1, 2), strict=True)),
        second.message_id: dict(zip(COUNCIL, (1, 1, 0, 2, 0), strict=True)),
    }
    for message_id, choices in plan.items():
        for voter, option in choices.items():
            voted = await sandbox.ui(
                "POST",
                f"/chats/{XINSHA_COUNCIL_GROUP}/vote",
                json={"persona": voter, "message_id": message_id, "option_ids": [option]},
            )
            assert voted["ok"], voted
    # Each persona sees their own choice, and the running counts once they have voted.
    for voter in COUNCIL:
        view = await sandbox.ui("GET", f"/chats/{XINSHA_COUNCIL_GROUP}?persona={voter}")
        shown = {m["id"]: m["poll"] for m in view["messages"] if "poll" in m}
        for message_id, choices in plan.items():
            assert shown[message_id]["mine"] == [choices[voter]]
            assert shown[message_id]["total"] == 5
    staff_view = await sandbox.ui("GET", f"/chats/{XINSHA_COUNCIL_GROUP}?persona={LIU_MIN}")
    staff_polls = [m["poll"] for m in staff_view["messages"] if "poll" in m]
    assert [p["mine"] for p in staff_polls] == [[], []]  # has not voted: sees the options
    # Someone outside the group cannot vote in it.
    outsider = await sandbox.ui(
        "POST",
        f"/chats/{XINSHA_COUNCIL_GROUP}/vote",
        json={"persona": QIAN_DUODUO, "message_id": first.message_id, "option_ids": [0]},
    )
    assert outsider["ok"] is False

    # poll_answer carries the voter and their option, in the order they voted.
    answers = [u.poll_answer for u in sandbox.parsed() if u.poll_answer is not None]
    expected = [
        (poll.poll.id, voter, [option])
        for poll in polls
        if poll.poll is not None
        for voter, option in plan[poll.message_id].items()
    ]
    assert [(a.poll_id, a.user.id if a.user else None, a.option_ids) for a in answers] == expected
    # poll updates carry the counts only, never who voted.
    states = [u.poll for u in sandbox.parsed() if u.poll is not None]
    assert len(states) == 10
    latest = {state.id: state for state in states}
    assert [o.voter_count for o in latest[first.poll.id].options] == [3, 1, 1]
    assert [o.voter_count for o in latest[second.poll.id].options] == [2, 2, 1]
    assert "user" not in str(sandbox.last("poll"))

    # A change of mind: a retraction (empty option_ids), then a new choice.
    for options in ([], [0]):
        changed = await sandbox.ui(
            "POST",
            f"/chats/{XINSHA_COUNCIL_GROUP}/vote",
            json={"persona": ZHENG_HAO, "message_id": first.message_id, "option_ids": options},
        )
        assert changed["ok"]
        assert sandbox.last("poll_answer")["option_ids"] == options
        assert sandbox.last("poll_answer")["user"]["id"] == ZHENG_HAO

    # The bot closes early from its poll_answer handler, as the vote does once all have voted.
    async def close_on_answer(update: Update) -> None:
        if update.poll_answer is not None:
            for poll in polls:
                await sandbox.bot.stop_poll(XINSHA_COUNCIL_GROUP, poll.message_id)

    sandbox.handler = close_on_answer
    again = await sandbox.ui(
        "POST",
        f"/chats/{XINSHA_COUNCIL_GROUP}/vote",
        json={"persona": WU_FANG, "message_id": first.message_id, "option_ids": [1]},
    )
    assert again["ok"]
    await sandbox.emulator.drain()
    sandbox.handler = None
    closed = [u.poll for u in sandbox.parsed() if u.poll is not None and u.poll.is_closed]
    assert {p.id for p in closed} == {first.poll.id, second.poll.id}
    # Everyone in the group, voter or not, now sees the final results.
    for viewer in (LIU_MIN, ZHAO_LEI, SUN_LI, ZHOU_QIANG):
        view = await sandbox.ui("GET", f"/chats/{XINSHA_COUNCIL_GROUP}?persona={viewer}")
        final = [m["poll"] for m in view["messages"] if "poll" in m]
        assert [p["closed"] for p in final] == [True, True]
        assert [o["count"] for o in final[0]["options"]] == [4, 1, 0]
    late = await sandbox.ui(
        "POST",
        f"/chats/{XINSHA_COUNCIL_GROUP}/vote",
        json={"persona": ZHAO_LEI, "message_id": second.message_id, "option_ids": [2]},
    )
    assert late["ok"] is False


async def test_anonymous_polls_send_no_answers(sandbox: Sandbox) -> None:
    poll = await sandbox.bot.send_poll(XINSHA_GROUP, "匿名？", options=["是", "否"])
    for voter in (ZHANG_WEI, LI_NA):
        await sandbox.ui(
            "POST",
            f"/chats/{XINSHA_GROUP}/vote",
            json={"persona": voter, "message_id": poll.message_id, "option_ids": [0]},
        )
    assert not any("poll_answer" in u for u in sandbox.updates)
    assert sandbox.last("poll")["total_voter_count"] == 2


async def test_command_menu_per_language_and_scope(sandbox: Sandbox) -> None:
    await sandbox.bot.set_my_commands([BotCommand(command="start", description="Start")])
    await sandbox.bot.set_my_commands(
        [
            BotCommand(command="start", description="开始"),
            BotCommand(command="my", description="我的建议"),
        ],
        language_code="zh",
    )
    await sandbox.bot.set_my_commands(
        [BotCommand(command="suggest", description="我要提建议")],
        scope=BotCommandScopeAllGroupChats(),
    )
    zh = await sandbox.ui("GET", f"/chats/{ZHANG_WEI}?persona={ZHANG_WEI}")
    assert [c["command"] for c in zh["commands"]] == ["start", "my"]
    en = await sandbox.ui("GET", f"/chats/{WANG_FANG}?persona={WANG_FANG}")
    assert en["commands"] == [{"command": "start", "description": "Start"}]
    group = await sandbox.ui("GET", f"/chats/{XINSHA_GROUP}?persona={ZHANG_WEI}")
    assert [c["command"] for c in group["commands"]] == ["suggest"]
    got = await sandbox.bot.get_my_commands(language_code="zh")
    assert [c.command for c in got] == ["start", "my"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await sandbox.bot.set_my_commands([BotCommand(command="Bad-Name", description="x")])


async def test_updates_are_numbered_in_order_and_parse(sandbox: Sandbox) -> None:
    await sandbox.emulator.user_start(ZHANG_WEI)
    await sandbox.ui(
        "POST", f"/chats/{ZHANG_WEI}/messages", json={"persona": ZHANG_WEI, "text": "one"}
    )
    await sandbox.ui(
        "POST", f"/chats/{XINSHA_GROUP}/messages", json={"persona": ZHANG_WEI, "text": "two"}
    )
    await sandbox.ui(
        "POST", f"/chats/{ZHANG_WEI}/messages", json={"persona": ZHANG_WEI, "text": "three"}
    )
    ids = [u["update_id"] for u in sandbox.updates]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    private_ids = [
        u.message.message_id
        for u in sandbox.parsed()
        if u.message and u.message.chat.id == ZHANG_WEI
    ]
    assert private_ids == sorted(private_ids)
    for update in sandbox.parsed():
        assert update.message is not None and update.message.from_user is not None
        assert update.message.from_user.is_bot is False
        assert update.message.date.timestamp() > 0


async def test_web_chat_escapes_what_people_type(sandbox: Sandbox) -> None:
    await sandbox.emulator.user_start(ZHANG_WEI)
    await sandbox.ui(
        "POST",
        f"/chats/{ZHANG_WEI}/messages",
        json={"persona": ZHANG_WEI, "text": '<img src=x onerror="alert(1)"> & </b>'},
    )
    view = await sandbox.ui("GET", f"/chats/{ZHANG_WEI}?persona={ZHANG_WEI}")
    html = view["messages"][-1]["html"]
    assert "<img" not in html and "&lt;img" in html and "&amp;" in html
    page = await sandbox.http.get("/sandbox")
    assert page.status_code == 200 and "发送" in page.text and "Send" in page.text
    script = await sandbox.http.get("/sandbox/static/sandbox.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert (await sandbox.http.get("/sandbox/static/../emulator.py")).status_code == 404


async def test_webhook_failures_are_shown(sandbox: Sandbox) -> None:
    async def broken(update: dict[str, Any]) -> int:
        return 500

    sandbox.emulator.set_deliver(broken)
    await sandbox.emulator.user_start(ZHANG_WEI)
    view = await sandbox.ui("GET", f"/chats/{ZHANG_WEI}?persona={ZHANG_WEI}")
    assert "HTTP 500" in view["errors"][-1]["error"]


async def test_media_group_over_multipart(sandbox: Sandbox) -> None:
    await sandbox.emulator.user_start(ZHANG_WEI)
    album = await sandbox.bot.send_media_group(
        ZHANG_WEI,
        media=[
            InputMediaPhoto(media=BufferedInputFile(png(3, 3), "a.png"), caption="<b>一</b>"),
            InputMediaPhoto(media=BufferedInputFile(png(4, 4), "b.png")),
        ],
    )
    assert len(album) == 2 and album[0].media_group_id == album[1].media_group_id
    assert album[0].caption == "一" and album[0].photo is not None
    assert (album[1].photo or [])[-1].width == 4


async def test_updates_queue_for_get_updates_without_a_webhook() -> None:
    emulator = Emulator(token=TOKEN, bot_id=BOT_ID, bot_username=BOT_USERNAME)
    result = await emulator.user_start(ZHANG_WEI)
    assert result["status"] == 0  # queued
    updates = await emulator.call("getUpdates", {"offset": "0", "timeout": "0"})
    assert [u["message"]["text"] for u in updates] == ["/start"]
    later = await emulator.call("getUpdates", {"offset": str(updates[-1]["update_id"] + 1)})
    assert later == []
    emulator.set_deliver(_ok_deliver)
    with pytest.raises(BotAPIError) as caught:
        await emulator.call("getUpdates", {})
    assert caught.value.code == 409


async def _ok_deliver(update: dict[str, Any]) -> int:
    return 200
