"""Telegram at the edge, faked: a recording `BaseSession` and builders of real `Update`s.

The pattern of aiogram's own tests/mocked_bot.py: the bot is a real `aiogram.Bot` whose
session, instead of talking HTTP, records every method and answers with a plausible result.
It is strict where Telegram is strict, so tests catch what Telegram would refuse: HTML that
does not parse (an unescaped `<` from a resident's text), a message over 4,096 characters,
callback data over 64 bytes, an edit that changes nothing ("message is not modified"), a
reply to a message that is gone ("message to be replied not found").

`Harness` drives the real Dispatcher from `bot.factory.create_dispatcher` with
`dp.feed_update`, and finds buttons on the messages the bot has sent, as a person would.

Test modules import helpers from here and load the fixtures with
`pytest_plugins = ["telegram_fakes"]`; pytest may not rewrite the asserts of a module already
imported, hence: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.default import Default
from aiogram.client.session.base import BaseSession
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import (
    AnswerCallbackQuery,
    DeleteMessage,
    EditMessageReplyMarkup,
    EditMessageText,
    GetChat,
    GetChatMember,
    GetMe,
    PinChatMessage,
    SendMessage,
    SetMyCommands,
    TelegramMethod,
)
from aiogram.types import (
    ChatFullInfo,
    ChatMemberAdministrator,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
    User,
)
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.factory import bot_defaults, create_dispatcher
from storage.settings import Settings

BOT_ID = 424242
ACCEPTED_GIFTS = (
    "unlimited_gifts",
    "limited_gifts",
    "unique_gifts",
    "premium_subscription",
    "gifts_from_channels",
)
BOT_TOKEN = f"{BOT_ID}:TEST-token-for-the-fake-session"
BOT_USERNAME = "minsheng_test_bot"

MESSAGE_MAX = 4096
CALLBACK_DATA_MAX = 64
ALERT_MAX = 200

# Telegram's HTML: these tags only, and the four named entities (plus numeric ones).
ALLOWED_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "tg-emoji", "code", "pre", "blockquote",
}  # fmt: skip
_HTML_TOKEN = re.compile(
    r"<(?P<close>/?)(?P<tag>[a-zA-Z][a-zA-Z0-9-]*)(?P<attrs>[^<>]*)>"
    r"|&(?P<entity>#[0-9]+|#x[0-9a-fA-F]+|lt|gt|amp|quot);"
    r"|(?P<bare>[<>&])"
)
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

# What a group administrator may do (every field Bot API 9 requires of ChatMemberAdministrator).
ADMIN_RIGHTS: dict[str, bool] = {
    "can_be_edited": False,
    "is_anonymous": False,
    "can_manage_chat": True,
    "can_delete_messages": True,
    "can_manage_video_chats": True,
    "can_restrict_members": True,
    "can_promote_members": False,
    "can_change_info": True,
    "can_invite_users": True,
    "can_post_stories": False,
    "can_edit_stories": False,
    "can_delete_stories": False,
    "can_send_welcome_messages": False,
}


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> str:
    """The plain text Telegram would show for `text` in HTML mode, or ValueError as Telegram's
    "can't parse entities" would be."""
    plain: list[str] = []
    stack: list[str] = []
    position = 0
    for match in _HTML_TOKEN.finditer(text):
        plain.append(text[position : match.start()])
        position = match.end()
        if match.group("bare"):
            raise ValueError(f"unescaped {match.group('bare')!r} at {match.start()}")
        entity = match.group("entity")
        if entity is not None:
            if entity.startswith("#x"):
                plain.append(chr(int(entity[2:], 16)))
            elif entity.startswith("#"):
                plain.append(chr(int(entity[1:])))
            else:
                plain.append(_ENTITIES[entity])
            continue
        tag = match.group("tag").lower()
        if tag not in ALLOWED_TAGS:
            raise ValueError(f"unsupported start tag {tag!r}")
        if match.group("close"):
            if not stack or stack.pop() != tag:
                raise ValueError(f"unexpected end tag {tag!r}")
        else:
            stack.append(tag)
    plain.append(text[position:])
    if stack:
        raise ValueError(f"unclosed tags {stack}")
    return "".join(plain)


@dataclass
class Call:
    """One request the bot made, and what the fake answered."""

    method: TelegramMethod[Any]
    result: Any = None

    @property
    def name(self) -> str:
        return type(self.method).__name__

    @property
    def text(self) -> str | None:
        return getattr(self.method, "text", None)

    @property
    def markup(self) -> Any:
        return getattr(self.method, "reply_markup", None)

    def buttons(self) -> list[InlineKeyboardButton]:
        return inline_buttons(self.markup)


def inline_buttons(markup: Any) -> list[InlineKeyboardButton]:
    if isinstance(markup, InlineKeyboardMarkup):
        return [button for row in markup.inline_keyboard for button in row]
    return []


def button_texts(markup: Any) -> list[str]:
    if isinstance(markup, ReplyKeyboardMarkup):
        return [button.text for row in markup.keyboard for button in row]
    return [button.text for button in inline_buttons(markup)]


@dataclass
class SentMessage:
    chat_id: int
    message_id: int
    text: str
    markup: Any


class RecordingSession(BaseSession):
    """Records every request; answers like Telegram would, including its refusals."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.messages: dict[tuple[int, int], SentMessage] = {}
        self.member_status: dict[tuple[int, int], str] = {}
        self.pinned: dict[int, int] = {}  # chat id -> the message pinned last
        # (chat id, message id) of messages that are gone: deleted by the bot, or by someone
        # else before the bot answered (an admin, an anti-spam bot); a test adds those.
        self.deleted: set[tuple[int, int]] = set()
        self.errors: dict[type[TelegramMethod[Any]], list[Exception]] = {}
        self._message_ids = itertools.count(5000)
        self.me = User(
            id=BOT_ID,
            is_bot=True,
            first_name="民生微实事",
            username=BOT_USERNAME,
            can_join_groups=True,
        )

    def fail_next(self, method: type[TelegramMethod[Any]], error: Exception) -> None:
        self.errors.setdefault(method, []).append(error)

    async def close(self) -> None:
        return None

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        yield b""

    async def make_request(
        self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None
    ) -> Any:
        call = Call(method)
        self.calls.append(call)
        queued = self.errors.get(type(method))
        if queued:
            raise queued.pop(0)
        self._check(bot, method)
        call.result = self._answer(bot, method)
        return call.result

    # --- Telegram's rules -----------------------------------------------------------------

    def _bad(self, method: TelegramMethod[Any], message: str) -> TelegramBadRequest:
        return TelegramBadRequest(method=method, message=f"Bad Request: {message}")

    def _check(self, bot: Bot, method: TelegramMethod[Any]) -> None:
        text = getattr(method, "text", None)
        if isinstance(method, SendMessage | EditMessageText) and text is not None:
            parse_mode = self.prepare_value(method.parse_mode, bot=bot, files={})
            plain = text
            if parse_mode == ParseMode.HTML:
                try:
                    plain = parse_html(text)
                except ValueError as exc:
                    raise self._bad(method, f"can't parse entities: {exc}") from exc
            if not plain.strip():
                raise self._bad(method, "message text is empty")
            if utf16_length(plain) > MESSAGE_MAX:
                raise self._bad(method, "message is too long")
        markup = getattr(method, "reply_markup", None)
        for button in inline_buttons(markup):
            if not button.text:
                raise self._bad(method, "button text is empty")
            data = button.callback_data
            if data is not None and not 1 <= len(data.encode()) <= CALLBACK_DATA_MAX:
                raise self._bad(method, "BUTTON_DATA_INVALID")
            if button.url is not None and not button.url.startswith(("https://", "tg://")):
                raise self._bad(method, "BUTTON_URL_INVALID")
        if (
            isinstance(method, AnswerCallbackQuery)
            and method.text
            and utf16_length(method.text) > ALERT_MAX
        ):
            raise self._bad(method, "MESSAGE_TOO_LONG")
        replied = _replied_to(bot, method)
        if replied is not None and replied in self.deleted:
            raise self._bad(method, "message to be replied not found")
        if isinstance(method, SetMyCommands):
            for command in method.commands:
                if not re.fullmatch(r"[a-z0-9_]{1,32}", command.command):
                    raise self._bad(method, "BOT_COMMAND_INVALID")
                if not 1 <= len(command.description) <= 256:
                    raise self._bad(method, "BOT_COMMAND_DESCRIPTION_INVALID")

    def _answer(self, bot: Bot, method: TelegramMethod[Any]) -> Any:
        if isinstance(method, GetMe):
            return self.me
        if isinstance(method, SendMessage):
            chat_id = int(method.chat_id)
            message_id = next(self._message_ids)
            self.messages[(chat_id, message_id)] = SentMessage(
                chat_id, message_id, method.text, method.reply_markup
            )
            return self._message(bot, chat_id, message_id)
        if isinstance(method, EditMessageText | EditMessageReplyMarkup):
            assert method.chat_id is not None and method.message_id is not None
            key = (int(method.chat_id), method.message_id)
            sent = self.messages.get(key)
            new_text = method.text if isinstance(method, EditMessageText) else None
            if sent is not None:
                text = new_text if new_text is not None else sent.text
                markup = method.reply_markup
                if text == sent.text and _same_markup(markup, sent.markup):
                    raise self._bad(
                        method,
                        "message is not modified: specified new message content and reply "
                        "markup are exactly the same as a current content and reply markup "
                        "of the message",
                    )
                sent.text, sent.markup = text, markup
            return self._message(bot, key[0], key[1])
        if isinstance(method, PinChatMessage):
            self.pinned[int(method.chat_id)] = method.message_id
            return True
        if isinstance(method, DeleteMessage):
            self.deleted.add((int(method.chat_id), method.message_id))
            return True
        if isinstance(method, GetChat):
            chat_id = int(method.chat_id)
            info: dict[str, Any] = {
                **_chat_json(chat_id),
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": dict.fromkeys(ACCEPTED_GIFTS, False),
            }
            if chat_id in self.pinned:
                pinned = self._message(bot, chat_id, self.pinned[chat_id])
                info["pinned_message"] = pinned.model_dump(exclude_none=True, by_alias=True)
            return ChatFullInfo.model_validate(info, context={"bot": bot})
        if isinstance(method, GetChatMember):
            status = self.member_status.get((int(method.chat_id), method.user_id), "member")
            user = User(id=method.user_id, is_bot=False, first_name="member")
            if status == "creator":
                return ChatMemberOwner(user=user, is_anonymous=False)
            if status == "administrator":
                return ChatMemberAdministrator(user=user, **ADMIN_RIGHTS)
            return ChatMemberMember(user=user)
        return True

    def _message(self, bot: Bot, chat_id: int, message_id: int) -> Message:
        sent = self.messages.get((chat_id, message_id))
        markup = sent.markup if sent is not None else None
        return Message.model_validate(
            {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": _chat_json(chat_id),
                "from": self.me.model_dump(exclude_none=True),
                "text": parse_html(sent.text) if sent is not None else "",
                "reply_markup": markup.model_dump(exclude_none=True)
                if isinstance(markup, InlineKeyboardMarkup)
                else None,
            },
            context={"bot": bot},
        )


def _replied_to(bot: Bot, method: TelegramMethod[Any]) -> tuple[int, int] | None:
    """(chat id, message id) of the message `method` must reply to: None when it replies to
    nothing, or may be sent without its reply (`allow_sending_without_reply`, in its
    `reply_parameters` or, without those, the legacy top-level field; a `Default` is the bot's).
    """
    parameters = getattr(method, "reply_parameters", None)
    if parameters is not None:
        message_id = parameters.message_id
        chat_id = parameters.chat_id or getattr(method, "chat_id", None)
        allow = parameters.allow_sending_without_reply
    else:
        message_id = getattr(method, "reply_to_message_id", None)
        chat_id = getattr(method, "chat_id", None)
        allow = getattr(method, "allow_sending_without_reply", None)
    if isinstance(allow, Default):
        allow = bot.default[allow.name]
    if message_id is None or allow or not isinstance(chat_id, int):
        return None
    return chat_id, message_id


def _same_markup(a: Any, b: Any) -> bool:
    def dump(markup: Any) -> Any:
        return markup.model_dump(exclude_none=True) if markup is not None else None

    return bool(dump(a) == dump(b))


def _chat_json(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "resident"}
    return {"id": chat_id, "type": "supergroup", "title": "新沙社区居民群"}


def make_bot(session: RecordingSession | None = None) -> Bot:
    """A real Bot on the recording session, with the defaults of bot.factory.create_bot."""
    return Bot(BOT_TOKEN, session=session or RecordingSession(), default=bot_defaults())


# --- updates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    id: int
    first_name: str = "小明"
    language_code: str | None = "zh-hans"
    username: str | None = None

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.language_code:
            data["language_code"] = self.language_code
        if self.username:
            data["username"] = self.username
        return data


@dataclass(frozen=True)
class Group:
    id: int
    title: str = "新沙社区居民群"
    type: str = "supergroup"

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "title": self.title}


def private_chat(person: Person) -> dict[str, Any]:
    return {"id": person.id, "type": "private", "first_name": person.first_name}


_update_ids = itertools.count(int(time.time() * 1000) % 1_000_000_000)


class Updates:
    """Builds Updates as Telegram sends them (JSON), with increasing update_ids."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self._message_ids = itertools.count(1)

    def _update(self, **payload: Any) -> Update:
        return Update.model_validate(
            {"update_id": next(_update_ids), **payload}, context={"bot": self.bot}
        )

    def message(self, person: Person, chat: Group | None = None, **content: Any) -> Update:
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat.json() if chat else private_chat(person),
            "from": person.json(),
            **content,
        }
        return self._update(message=message)

    def text(self, person: Person, text: str, chat: Group | None = None) -> Update:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            content["entities"] = [
                {"type": "bot_command", "offset": 0, "length": utf16_length(command)}
            ]
        return self.message(person, chat, **content)

    def photo(
        self,
        person: Person,
        file_id: str,
        media_group_id: str | None = None,
        caption: str | None = None,
    ) -> Update:
        sizes = [
            {"file_id": f"{file_id}-small", "file_unique_id": f"{file_id}-s", "width": 90,
             "height": 67, "file_size": 1200},
            {"file_id": file_id, "file_unique_id": f"{file_id}-l", "width": 1280,
             "height": 960, "file_size": 150_000},
            {"file_id": f"{file_id}-medium", "file_unique_id": f"{file_id}-m", "width": 320,
             "height": 240, "file_size": 20_000},
        ]  # fmt: skip
        content: dict[str, Any] = {"photo": sizes}
        if media_group_id:
            content["media_group_id"] = media_group_id
        if caption:
            content["caption"] = caption
        return self.message(person, **content)

    def location(self, person: Person, latitude: float, longitude: float) -> Update:
        return self.message(person, location={"latitude": latitude, "longitude": longitude})

    def sticker(self, person: Person) -> Update:
        return self.message(
            person,
            sticker={
                "file_id": "sticker-1",
                "file_unique_id": "sticker-1u",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            },
        )

    def callback(
        self,
        person: Person,
        data: str,
        message_id: int,
        chat: Group | None = None,
        message_text: str = "…",
    ) -> Update:
        chat_json = chat.json() if chat else private_chat(person)
        return self._update(
            callback_query={
                "id": f"cq{next(_update_ids)}",
                "from": person.json(),
                "chat_instance": f"ci{chat_json['id']}",
                "data": data,
                "message": {
                    "message_id": message_id,
                    "date": int(time.time()),
                    "chat": chat_json,
                    "from": {
                        "id": BOT_ID,
                        "is_bot": True,
                        "first_name": "民生微实事",
                        "username": BOT_USERNAME,
                    },
                    "text": message_text,
                },
            }
        )

    def my_chat_member(
        self,
        by: Person,
        chat: Group | dict[str, Any],
        old_status: str,
        new_status: str,
    ) -> Update:
        bot_user = {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "民生微实事",
            "username": BOT_USERNAME,
        }

        def member(status: str) -> dict[str, Any]:
            data: dict[str, Any] = {"status": status, "user": bot_user}
            if status == "kicked":
                data["until_date"] = 0
            if status == "administrator":
                data.update(ADMIN_RIGHTS)
            return data

        return self._update(
            my_chat_member={
                "chat": chat.json() if isinstance(chat, Group) else chat,
                "from": by.json(),
                "date": int(time.time()),
                "old_chat_member": member(old_status),
                "new_chat_member": member(new_status),
            }
        )


# --- the harness ----------------------------------------------------------------------------


@dataclass
class Harness:
    """A person's-eye view of the bot: send things, press buttons, read what came back."""

    dispatcher: Dispatcher
    bot: Bot
    session: RecordingSession
    updates: Updates = field(init=False)

    def __post_init__(self) -> None:
        self.updates = Updates(self.bot)

    async def feed(self, update: Update) -> list[Call]:
        before = len(self.session.calls)
        _, result = await self.feed_unsent(update)
        if isinstance(result, TelegramMethod):
            # A method returned by a handler is the webhook's reply: Telegram runs it after 200.
            await self.bot(result)
        return self.session.calls[before:]

    async def feed_unsent(self, update: Update) -> tuple[list[Call], Any]:
        """Handle `update` without making the call its handler returned (the webhook's reply):
        (the calls made while it was handled, what the handler returned)."""
        before = len(self.session.calls)
        result = await self.dispatcher.feed_update(self.bot, update)
        return self.session.calls[before:], result

    async def say(self, person: Person, text: str, chat: Group | None = None) -> list[Call]:
        return await self.feed(self.updates.text(person, text, chat))

    async def say_unsent(
        self, person: Person, text: str, chat: Group | None = None
    ) -> tuple[list[Call], Any]:
        """`say`, but as `feed_unsent`: the returned call is not made."""
        return await self.feed_unsent(self.updates.text(person, text, chat))

    def find_button(
        self, chat_id: int, label: str, *, exact: bool = False
    ) -> tuple[SentMessage, InlineKeyboardButton]:
        """The newest message in the chat with an inline button labelled `label` (or whose
        label contains it)."""
        for sent in sorted(
            (m for m in self.session.messages.values() if m.chat_id == chat_id),
            key=lambda m: m.message_id,
            reverse=True,
        ):
            for button in inline_buttons(sent.markup):
                if button.text == label or (not exact and label in button.text):
                    return sent, button
        raise AssertionError(f"no button {label!r} in chat {chat_id}")

    def button_update(
        self, person: Person, label: str, chat: Group | None = None, *, exact: bool = False
    ) -> Update:
        """`person` pressing the newest button labelled `label` (see find_button), not fed."""
        chat_id = chat.id if chat else person.id
        sent, button = self.find_button(chat_id, label, exact=exact)
        assert button.callback_data is not None, f"{label!r} is not a callback button"
        return self.press_update(person, button.callback_data, sent.message_id, chat)

    def press_update(
        self, person: Person, data: str, message_id: int, chat: Group | None = None
    ) -> Update:
        """`person` pressing a button with `data` under the bot's message `message_id`."""
        chat_id = chat.id if chat else person.id
        sent = self.session.messages.get((chat_id, message_id))
        text = parse_html(sent.text) if sent is not None else "…"
        return self.updates.callback(person, data, message_id, chat, text)

    async def press(
        self, person: Person, label: str, chat: Group | None = None, *, exact: bool = False
    ) -> list[Call]:
        return await self.feed(self.button_update(person, label, chat, exact=exact))

    async def press_data(
        self, person: Person, data: str, message_id: int, chat: Group | None = None
    ) -> list[Call]:
        return await self.feed(self.press_update(person, data, message_id, chat))


def texts(calls: Iterable[Call]) -> list[str]:
    """Texts the bot sent or edited in, in order."""
    return [c.text for c in calls if isinstance(c.method, SendMessage | EditMessageText) and c.text]


def sent(calls: Iterable[Call]) -> list[Call]:
    return [c for c in calls if isinstance(c.method, SendMessage)]


def alerts(calls: Iterable[Call]) -> list[str | None]:
    """What answerCallbackQuery said (None for a silent answer)."""
    return [c.method.text for c in calls if isinstance(c.method, AnswerCallbackQuery)]


def last_text(calls: Sequence[Call]) -> str:
    found = texts(calls)
    assert found, f"the bot said nothing: {[c.name for c in calls]}"
    return found[-1]


def all_text(calls: Iterable[Call]) -> str:
    return "\n".join(texts(calls))


def removes_reply_keyboard(calls: Iterable[Call]) -> bool:
    return any(isinstance(c.markup, ReplyKeyboardRemove) for c in calls)


# --- fixtures --------------------------------------------------------------------------------
# Test modules load them with `pytest_plugins = ["telegram_fakes"]`: a conftest.py in tests/bot
# or tests/dialogs would shadow the root conftest's module name, which others import from.

DAILY_LIMIT = 3


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bot_token": None,
        "timezone": "Asia/Shanghai",
        "default_locale": "zh",
        "max_suggestions_per_day": DAILY_LIMIT,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def make_harness(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis | None = None,
    session: RecordingSession | None = None,
) -> Harness:
    """A fresh dispatcher (as the service builds it) with a bot on a recording session.
    Pass the `session` of an earlier harness to keep the chat history across a "restart"."""
    recording = session or RecordingSession()
    dispatcher = create_dispatcher(settings, sessionmaker, redis)
    return Harness(dispatcher, make_bot(recording), recording)


@pytest.fixture
def bot_settings() -> Settings:
    return make_settings()


@pytest.fixture
def bot_harness(bot_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> Harness:
    """The bot on the in-process FSM storage, over the `database_url` backends."""
    return make_harness(bot_settings, sessionmaker)


@pytest.fixture
async def fsm_redis(redis_url: str) -> AsyncGenerator[Redis, None]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


# --- the resident's flow --------------------------------------------------------------------

# The exact Chinese labels of the resident's flow (the default language), for the seeded tree
# of tests/conftest.py (福田区 › 沙头街道 › 新沙社区).
DISTRICT, STREET, COMMUNITY = "福田区", "沙头街道", "新沙社区"
CATEGORY = "社区环境整治"
DONE, SKIP = "✅ 完成", "⏭ 跳过"
SERVICE, PHYSICAL = "服务项目", "实物项目"
SUBMIT, EDIT, CANCEL = "✅ 确认提交", "✏️ 修改", "✖️ 取消"
SUGGEST_BUTTON = "我要提建议"


@dataclass
class Driver:
    """Takes a resident to a step of the suggestion dialog with ordinary answers; each method
    returns the calls made by the last update it fed."""

    h: Harness

    async def category(self, p: Person) -> list[Call]:
        await self.h.say(p, "/suggest")
        for label in (DISTRICT, STREET):
            await self.h.press(p, label, exact=True)
        return await self.h.press(p, COMMUNITY, exact=True)

    async def title(self, p: Person) -> list[Call]:
        await self.category(p)
        return await self.h.press(p, CATEGORY, exact=True)

    async def description(self, p: Person, title: str = "修复3栋楼梯间照明灯") -> list[Call]:
        await self.title(p)
        return await self.h.say(p, title)

    async def location(
        self, p: Person, description: str = "楼梯间太黑，老人晚上容易摔倒。"
    ) -> list[Call]:
        await self.description(p)
        return await self.h.say(p, description)

    async def photos(self, p: Person, location: str = "新沙小区3栋") -> list[Call]:
        await self.location(p)
        return await self.h.say(p, location)

    async def kind(self, p: Person) -> list[Call]:
        await self.photos(p)
        return await self.h.press(p, SKIP, exact=True)

    async def summary(
        self, p: Person, kind: str | None = SERVICE, cost: str | None = "12000"
    ) -> list[Call]:
        await self.kind(p)
        if kind is None:
            return await self.h.press(p, SKIP, exact=True)
        await self.h.press(p, kind, exact=True)
        if cost is None:
            return await self.h.press(p, SKIP, exact=True)
        return await self.h.say(p, cost)

    async def submitted(self, p: Person) -> list[Call]:
        await self.summary(p)
        return await self.h.press(p, SUBMIT, exact=True)


@pytest.fixture
def dialog_driver(bot_harness: Harness, org: Any) -> Driver:
    """A driver on `bot_harness`, with the seeded tree (`org`) in place."""
    return Driver(bot_harness)
