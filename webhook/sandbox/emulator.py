"""A Bot API server in the process: the sandbox's stand-in for Telegram.

The real aiogram `Bot` talks to it over HTTP (`TelegramAPIServer.from_base`); what a person does
on /sandbox becomes real `Update` objects, handed to `deliver` (the webhook route, secret
included). It answers like Telegram, refusals included (400 for a message over 4,096 UTF-16
units, callback data over 64 bytes, malformed HTML, a reply to a message that is gone unless
`allow_sending_without_reply`; 403 when the user blocked the bot), so the sandbox catches the
bugs Telegram would. A method in the webhook's answer (`{"method": ...}`, Telegram's webhook
reply) is run as the bot's call after the 200; a refusal of it, which Telegram drops silently,
shows in the log and the delivery errors.

All state is in memory: one process holds the sandbox. State changes are synchronous (no await
between reading and writing), so they are atomic on the event loop; the one lock keeps update
ids in delivery order. A delivery is awaited with the lock held, so what the bot calls back
while handling it must not deliver again inline: such updates (leaveChat, stopPoll) are
delivered from a task once the current one is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from webhook.sandbox import demo
from webhook.sandbox.telegram_html import (
    EntityParseError,
    checked_url,
    detect_entities,
    merge_entities,
    parse_html,
    render_html,
    sort_entities,
    trim_text,
    utf16_len,
)

__all__ = ["BotAPIError", "Deliver", "Emulator", "SandboxError", "WebhookAnswer"]

log = logging.getLogger(__name__)

JSON = dict[str, Any]

MESSAGE_MAX = 4096
CAPTION_MAX = 1024
CALLBACK_DATA_MAX = 64
CALLBACK_ANSWER_MAX = 200
POLL_QUESTION_MAX = 300
POLL_OPTION_MAX = 100
# Bot API 10.3 (aiogram 3.31): "A JSON-serialized list of 1-12 answer options".
POLL_OPTIONS_MIN = 1
POLL_OPTIONS_MAX = 12
PHOTO_MAX_BYTES = 10 * 1024 * 1024
FILES_MAX_BYTES = 200 * 1024 * 1024  # all uploads together: the sandbox keeps them in memory
INLINE_BUTTONS_MAX = 100
MEMBER_STATUSES = ("creator", "administrator", "member")
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# Telegram's default when setWebhook gave no allowed_updates: everything but these.
DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
INLINE_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_START_PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")


class BotAPIError(Exception):
    """A refusal, answered as Telegram does: {"ok": false, "error_code", "description"}."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description

    def body(self) -> JSON:
        return {"ok": False, "error_code": self.code, "description": self.description}


def _bad(description: str) -> BotAPIError:
    return BotAPIError(400, f"Bad Request: {description}")


def _forbidden(description: str) -> BotAPIError:
    return BotAPIError(403, f"Forbidden: {description}")


class SandboxError(Exception):
    """Something the person in the web chat cannot do (not a member, the bot is blocked, …)."""


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    mime: str
    file_path: str
    file_name: str | None = None
    width: int = 0
    height: int = 0


@dataclass
class StoredMessage:
    data: JSON
    rev: int
    deleted: bool = False


@dataclass
class UserState:
    id: int
    first_name: str
    language_code: str | None
    last_name: str | None = None
    username: str | None = None
    role_zh: str = ""
    role_en: str = ""
    group: str = "resident"  # how the page groups personas (demo.PERSONA_GROUPS)
    blocked: bool = False  # has blocked the bot
    started: bool = False  # has ever written to the bot (so the bot may write to them)

    def as_user(self) -> JSON:
        user: JSON = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            user["last_name"] = self.last_name
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}" if self.last_name else self.first_name


@dataclass
class ChatState:
    id: int
    type: str  # "private" or "supergroup"
    title: str | None = None
    about_zh: str = ""
    about_en: str = ""
    # user id -> "creator" | "administrator" | "member" | "left" | "kicked"; the bot included.
    members: dict[int, str] = field(default_factory=dict)
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    next_message_id: int = 1
    pinned: list[int] = field(default_factory=list)
    # Reply keyboards and force-reply requests, per target user (None: everyone in the chat).
    keyboards: dict[int | None, JSON] = field(default_factory=dict)
    force_reply: dict[int | None, JSON] = field(default_factory=dict)
    action: tuple[str, float] | None = None
    bot_ever_member: bool = False
    rev: int = 0


@dataclass
class PollState:
    id: str
    chat_id: int
    message_id: int
    question: str
    options: list[JSON]  # {"persistent_id", "text"}
    is_anonymous: bool
    type: str
    allows_multiple_answers: bool
    allows_revoting: bool
    is_closed: bool = False
    close_date: int | None = None
    open_period: int | None = None
    correct_option_ids: list[int] | None = None
    explanation: str | None = None
    votes: dict[int, list[int]] = field(default_factory=dict)

    def as_poll(self) -> JSON:
        counts = [0] * len(self.options)
        for chosen in self.votes.values():
            for index in chosen:
                counts[index] += 1
        poll: JSON = {
            "id": self.id,
            "question": self.question,
            "options": [
                {**option, "voter_count": counts[index]}
                for index, option in enumerate(self.options)
            ],
            "total_voter_count": sum(1 for chosen in self.votes.values() if chosen),
            "is_closed": self.is_closed,
            "is_anonymous": self.is_anonymous,
            "type": self.type,
            "allows_multiple_answers": self.allows_multiple_answers,
            "allows_revoting": self.allows_revoting,
            "members_only": False,
        }
        if self.open_period is not None:
            poll["open_period"] = self.open_period
        if self.close_date is not None:
            poll["close_date"] = self.close_date
        if self.correct_option_ids is not None:
            poll["correct_option_ids"] = self.correct_option_ids
        if self.explanation:
            poll["explanation"] = self.explanation
        return poll


def _flag(value: Any, default: bool = False) -> bool:
    """A boolean parameter as Telegram reads it: JSON true, or its spelling in a form."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    return str(value).strip().lower() in ("true", "1", "yes", "on")


class Params:
    """A method's parameters, from JSON (typed) or a form (every value a string, objects JSON)."""

    def __init__(self, raw: dict[str, Any], files: dict[str, StoredUpload]) -> None:
        self.raw = raw
        self.files = files

    def has(self, name: str) -> bool:
        return self.raw.get(name) not in (None, "")

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                raise _bad(f"{name} is empty")
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    def integer(self, name: str, *, required: bool = False) -> int | None:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                raise _bad(f"{name} is empty")
            return None
        if isinstance(value, bool):
            return int(value)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad(f"invalid {name} specified") from None

    def number(self, name: str, *, required: bool = False) -> float | None:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                raise _bad(f"{name} is empty")
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _bad(f"invalid {name} specified") from None

    def flag(self, name: str, default: bool = False) -> bool:
        return _flag(self.raw.get(name), default)

    def obj(self, name: str, what: str | None = None) -> Any:
        value = self.raw.get(name)
        if not isinstance(value, str):
            return value
        if value == "":
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise _bad(f"can't parse {what or name} JSON object") from None

    def chat_id(self, name: str = "chat_id") -> int | str:
        value = self.raw.get(name)
        if value is None or value == "":
            raise _bad(f"{name} is empty")
        if isinstance(value, str) and value.startswith("@"):
            return value
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad("chat not found") from None


@dataclass
class StoredUpload:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class WebhookAnswer:
    """The webhook's HTTP answer to one update: its status and body, which may name a method
    for Telegram to run (the webhook reply)."""

    status: int
    body: bytes = b""
    content_type: str = ""


# Where updates go; a bare status stands for an answer without a body.
Deliver = Callable[[JSON], Awaitable[WebhookAnswer | int]]


@dataclass
class PressResult:
    """What pressing an inline button did, for the web chat."""

    kind: str  # "callback", "url", "deeplink", "copy", "unsupported"
    answer: JSON | None = None
    url: str | None = None
    chat_id: int | None = None
    status: int | None = None

    def as_json(self) -> JSON:
        return {
            "kind": self.kind,
            "answer": self.answer,
            "url": self.url,
            "chat_id": self.chat_id,
            "status": self.status,
        }


def _now() -> int:
    return int(time.time())


def _image_size(data: bytes) -> tuple[str, int, int] | None:
    """(mime, width, height) of a PNG, JPEG, GIF or WebP, from its header; None otherwise."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return "image/png", width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return "image/gif", width, height
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", 0, 0
    if data[:2] == b"\xff\xd8":
        index = 2
        while index + 9 < len(data):
            if data[index] != 0xFF:
                index += 1
                continue
            marker = data[index + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                index += 1 if marker == 0xFF else 2
                continue
            (length,) = struct.unpack(">H", data[index + 2 : index + 4])
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE):
                height, width = struct.unpack(">HH", data[index + 5 : index + 9])
                return "image/jpeg", width, height
            index += 2 + length
        return "image/jpeg", 0, 0
    return None


def _parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, Any]]:
    """multipart/form-data without python-multipart: (text fields, file fields)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise _bad("can't parse multipart/form-data: no boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    fields: dict[str, str] = {}
    uploads: dict[str, StoredUpload] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        part = part.removeprefix(b"\r\n")
        head, _, content = part.partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name_match = re.search(r'(?:^|;)\s*name="([^"]*)"', disposition)
        if not name_match:
            continue
        file_match = re.search(r'filename="([^"]*)"', disposition)
        if file_match:
            uploads[name_match.group(1)] = StoredUpload(
                file_match.group(1),
                headers.get("content-type", "application/octet-stream"),
                content,
            )
        else:
            fields[name_match.group(1)] = content.decode("utf-8", "replace")
    return fields, uploads


def _parse_body(body: bytes, content_type: str) -> tuple[dict[str, Any], dict[str, StoredUpload]]:
    """A method's parameters from a JSON, multipart or urlencoded body: (fields, uploads)."""
    kind = content_type.lower()
    if not body:
        return {}, {}
    if kind.startswith("application/json"):
        try:
            parsed = json.loads(body)
        except ValueError:
            raise _bad("can't parse JSON request") from None
        if not isinstance(parsed, dict):
            raise _bad("can't parse JSON request")
        return parsed, {}
    if kind.startswith("multipart/form-data"):
        fields, uploads = _parse_multipart(body, content_type)
        return dict(fields), uploads
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)), {}


def deep_link_payload(url: str, bot_username: str) -> tuple[bool, str | None]:
    """(is a link to this bot, its start payload) for t.me / telegram.me / tg://resolve links."""
    raw = url.strip()
    if raw.startswith(("t.me/", "telegram.me/")):
        raw = "https://" + raw
    parts = urlsplit(raw)
    query = parse_qs(parts.query)
    if parts.scheme in ("http", "https") and parts.hostname in ("t.me", "telegram.me"):
        username = parts.path.strip("/").split("/")[0]
    elif parts.scheme == "tg" and parts.netloc == "resolve":
        username = (query.get("domain") or [""])[0]
    else:
        return False, None
    if username.lower() != bot_username.lower() or "startgroup" in query:
        return False, None  # another bot, or "add this bot to a group": not a private start
    starts = query.get("start") or []
    payload = starts[0] if starts else None
    if payload is not None and not _START_PAYLOAD.match(payload):
        payload = None  # Telegram drops a payload it does not accept and just opens the chat
    return True, payload


class Emulator:
    """The Bot API of one sandbox bot, its chats and its users."""

    def __init__(
        self,
        *,
        token: str,
        bot_id: int,
        bot_username: str,
        bot_first_name: str = "民生微实事",
        personas: Iterable[demo.Persona] = demo.PERSONAS,
        chats: Iterable[demo.DemoChat] = demo.CHATS,
        privacy_mode: bool = True,
        started: Iterable[int] = demo.SEEDED_PROPOSERS,
    ) -> None:
        if not re.match(r"^\d+:[\w-]+$", token):
            raise ValueError("a bot token looks like 123456:secret")
        self.token = token
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        # Privacy mode (Telegram's default): in groups where it is not an admin, the bot gets
        # commands, replies to its messages and service messages only.
        self.privacy_mode = privacy_mode
        self._deliver: Deliver | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._update_id = 100000
        self._rev = 0
        self._poll_seq = 0
        self._callback_seq = 0
        self.users: dict[int, UserState] = {}
        self.chats: dict[int, ChatState] = {}
        self.files: dict[str, StoredFile] = {}
        self.polls: dict[str, PollState] = {}
        self.commands: dict[tuple[str, int | None, int | None, str], list[JSON]] = {}
        self.webhook: JSON = {"url": ""}
        self.menu_button: JSON = {"type": "commands"}
        self._callbacks: dict[str, JSON] = {}  # query id -> {"user_id", "answer"}
        self._toasts: dict[int, list[JSON]] = {}
        self._pending_updates: deque[JSON] = deque(maxlen=1000)
        self._updates_ready = asyncio.Event()
        self.delivered: deque[JSON] = deque(maxlen=500)
        self.log: deque[JSON] = deque(maxlen=300)
        self.delivery_errors: deque[JSON] = deque(maxlen=50)
        self._method_table = self._methods()
        started = frozenset(started)
        for who in personas:
            self.users[who.user_id] = UserState(
                id=who.user_id,
                first_name=who.first_name,
                last_name=who.last_name,
                username=who.username,
                language_code=who.language_code,
                role_zh=who.role_zh,
                role_en=who.role_en,
                group=who.group,
                started=who.user_id in started,
            )
            self.chats[who.user_id] = ChatState(
                id=who.user_id,
                type="private",
                members={who.user_id: "member", bot_id: "member"},
                bot_ever_member=True,
            )
        for group in chats:
            state = ChatState(
                id=group.chat_id,
                type="supergroup",
                title=group.title,
                about_zh=group.about_zh,
                about_en=group.about_en,
                members=dict(group.members),
            )
            state.members[bot_id] = group.bot_status
            state.bot_ever_member = group.bot_status in MEMBER_STATUSES
            self.chats[group.chat_id] = state

    # --- wiring ------------------------------------------------------------------------------

    def set_deliver(self, deliver: Deliver) -> None:
        """Where updates go: the webhook POST; returns its answer (or only its HTTP status)."""
        self._deliver = deliver

    @property
    def bot_user(self) -> JSON:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def telegram_router(self) -> APIRouter:
        """The Bot API at /sandbox/telegram/bot{token}/{method} and file downloads."""
        router = APIRouter(include_in_schema=False)

        async def api(token: str, method: str, request: Request) -> Response:
            if not secrets.compare_digest(token.encode(), self.token.encode()):
                return JSONResponse(
                    {"ok": False, "error_code": 401, "description": "Unauthorized"},
                    status_code=401,
                )
            try:
                raw, uploads = await self._read_params(request)
                result = await self.call(method, raw, uploads)
            except BotAPIError as error:
                self._log("api", method, error.description, error.code)
                return JSONResponse(error.body(), status_code=error.code)
            self._log("api", method, _summary(raw), 200)
            return JSONResponse({"ok": True, "result": result})

        async def download(token: str, path: str) -> Response:
            if not secrets.compare_digest(token.encode(), self.token.encode()):
                return JSONResponse(
                    {"ok": False, "error_code": 401, "description": "Unauthorized"},
                    status_code=401,
                )
            for stored in self.files.values():
                if stored.file_path == path:
                    return Response(stored.data, media_type=stored.mime)
            return JSONResponse(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404
            )

        router.add_api_route("/sandbox/telegram/bot{token}/{method}", api, methods=["GET", "POST"])
        router.add_api_route("/sandbox/telegram/file/bot{token}/{path:path}", download)
        return router

    async def _read_params(self, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
        raw: dict[str, Any] = dict(request.query_params)
        uploads: dict[str, StoredUpload] = {}
        if request.method == "POST":
            body = await request.body()
            fields, uploads = _parse_body(body, request.headers.get("content-type", ""))
            raw.update(fields)
        return raw, uploads

    def _log(self, kind: str, name: str, summary: str, status: int) -> None:
        self.log.append(
            {"at": time.time(), "kind": kind, "name": name, "summary": summary, "status": status}
        )

    def _bump(self, chat: ChatState) -> int:
        self._rev += 1
        chat.rev = self._rev
        return self._rev

    # --- the Bot API -------------------------------------------------------------------------

    async def call(
        self, method: str, raw: dict[str, Any], uploads: dict[str, Any] | None = None
    ) -> Any:
        """Run one Bot API method; raises BotAPIError as Telegram would refuse."""
        handler = self._method_table.get(method.lower())
        if handler is None:
            raise BotAPIError(404, "Not Found: method not found")
        try:
            result = handler(Params(raw, uploads or {}))
            if asyncio.iscoroutine(result):
                return await result
            return result
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            # Parameters of the wrong shape: Telegram answers 400, so the bot sees a refusal.
            log.warning("sandbox: %s refused: %r", method, error)
            raise _bad(f"wrong parameters for {method}: {error}") from None

    def _methods(self) -> dict[str, Callable[[Params], Any]]:
        methods: dict[str, Callable[[Params], Any]] = {
            "getMe": self._get_me,
            "logOut": lambda p: True,
            "close": lambda p: True,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getUpdates": self._get_updates,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setMyName": lambda p: True,
            "getMyName": lambda p: {"name": self.bot_first_name},
            "setMyDescription": lambda p: True,
            "getMyDescription": lambda p: {"description": ""},
            "setMyShortDescription": lambda p: True,
            "getMyShortDescription": lambda p: {"short_description": ""},
            "setChatMenuButton": self._set_menu_button,
            "getChatMenuButton": lambda p: self.menu_button,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "deleteMessages": self._delete_messages,
            "forwardMessage": self._forward_message,
            "copyMessage": self._copy_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "sendMediaGroup": self._send_media_group,
            "sendLocation": self._send_location,
            "sendChatAction": self._send_chat_action,
            "getFile": self._get_file,
            "pinChatMessage": self._pin_chat_message,
            "unpinChatMessage": self._unpin_chat_message,
            "unpinAllChatMessages": self._unpin_all_chat_messages,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "getChatAdministrators": self._get_chat_administrators,
            "getChatMemberCount": self._get_chat_member_count,
            "leaveChat": self._leave_chat,
            "sendPoll": self._send_poll,
            "stopPoll": self._stop_poll,
        }
        return {name.lower(): handler for name, handler in methods.items()}

    def _get_me(self, p: Params) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _set_webhook(self, p: Params) -> bool:
        url = p.string("url") or ""
        secret = p.string("secret_token")
        if secret is not None and not re.match(r"^[A-Za-z0-9_-]{1,256}$", secret):
            raise _bad("secret token contains unallowed characters")
        allowed = p.obj("allowed_updates")
        self.webhook = {"url": url}
        if secret:
            self.webhook["secret_token"] = secret
        if isinstance(allowed, list):
            self.webhook["allowed_updates"] = [str(kind) for kind in allowed]
        max_connections = p.integer("max_connections")
        if max_connections is not None:
            self.webhook["max_connections"] = max_connections
        return True

    def _delete_webhook(self, p: Params) -> bool:
        self.webhook = {"url": ""}
        if p.flag("drop_pending_updates"):
            self._pending_updates.clear()
        return True

    def _get_webhook_info(self, p: Params) -> JSON:
        info: JSON = {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending_updates),
        }
        for key in ("max_connections", "allowed_updates"):
            if key in self.webhook:
                info[key] = self.webhook[key]
        return info

    async def _get_updates(self, p: Params) -> list[JSON]:
        if self.webhook.get("url") or self._deliver is not None:
            raise BotAPIError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = p.integer("offset") or 0
        limit = min(max(p.integer("limit") or 100, 1), 100)
        timeout = min(max(p.integer("timeout") or 0, 0), 50)
        while self._pending_updates and self._pending_updates[0]["update_id"] < offset:
            self._pending_updates.popleft()
        if not self._pending_updates and timeout:
            self._updates_ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._updates_ready.wait(), timeout)
        return list(self._pending_updates)[:limit]

    def _set_menu_button(self, p: Params) -> bool:
        button = p.obj("menu_button")
        if isinstance(button, dict):
            self.menu_button = button
        return True

    # --- commands ----------------------------------------------------------------------------

    @staticmethod
    def _scope_key(p: Params) -> tuple[str, int | None, int | None]:
        scope = p.obj("scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise _bad("can't parse BotCommandScope JSON object")
        kind = str(scope["type"])
        known = {
            "default",
            "all_private_chats",
            "all_group_chats",
            "all_chat_administrators",
            "chat",
            "chat_administrators",
            "chat_member",
        }
        if kind not in known:
            raise _bad("wrong scope type specified")
        chat_id = scope.get("chat_id")
        user_id = scope.get("user_id")
        if kind in ("chat", "chat_administrators", "chat_member") and chat_id is None:
            raise _bad("chat_id is empty")
        if kind == "chat_member" and user_id is None:
            raise _bad("user_id is empty")
        return (
            kind,
            int(chat_id) if chat_id is not None else None,
            int(user_id) if user_id is not None else None,
        )

    def _set_my_commands(self, p: Params) -> bool:
        commands = p.obj("commands", "bot commands")
        if not isinstance(commands, list):
            raise _bad("can't parse bot commands JSON object")
        if len(commands) > 100:
            raise _bad("too many commands specified")
        cleaned: list[JSON] = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand JSON object")
            name = str(command.get("command", "")).removeprefix("/")
            description = str(command.get("description", "")).strip()
            if not _COMMAND.match(name):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise _bad("command description must be non-empty")
            cleaned.append({"command": name, "description": description})
        language = p.string("language_code") or ""
        kind, chat_id, user_id = self._scope_key(p)
        self.commands[(kind, chat_id, user_id, language)] = cleaned
        return True

    def _get_my_commands(self, p: Params) -> list[JSON]:
        kind, chat_id, user_id = self._scope_key(p)
        return list(
            self.commands.get((kind, chat_id, user_id, p.string("language_code") or ""), [])
        )

    def _delete_my_commands(self, p: Params) -> bool:
        kind, chat_id, user_id = self._scope_key(p)
        self.commands.pop((kind, chat_id, user_id, p.string("language_code") or ""), None)
        return True

    def commands_for(self, user_id: int, chat_id: int) -> list[JSON]:
        """The command menu this user sees in this chat, by Telegram's scope order."""
        chat = self.chats.get(chat_id)
        user = self.users.get(user_id)
        if chat is None or user is None:
            return []
        language = (user.language_code or "").split("-")[0]
        if chat.type == "private":
            scopes: list[tuple[str, int | None, int | None]] = [
                ("chat", chat_id, None),
                ("all_private_chats", None, None),
                ("default", None, None),
            ]
        else:
            is_admin = chat.members.get(user_id) in ("creator", "administrator")
            scopes = [("chat_member", chat_id, user_id)]
            if is_admin:
                scopes.append(("chat_administrators", chat_id, None))
            scopes.append(("chat", chat_id, None))
            if is_admin:
                scopes.append(("all_chat_administrators", None, None))
            scopes += [("all_group_chats", None, None), ("default", None, None)]
        for kind, scope_chat, scope_user in scopes:
            for lang in (language, ""):
                found = self.commands.get((kind, scope_chat, scope_user, lang))
                if found:
                    return list(found)
        return []

    # --- chats and members -------------------------------------------------------------------

    def _known_chat(self, chat_id: int | str) -> ChatState:
        """The stored chat with this id (looking a chat up by @username is not emulated)."""
        if isinstance(chat_id, str):
            raise _bad("chat not found")
        chat = self.chats.get(chat_id)
        if chat is None:
            raise _bad("chat not found")
        return chat

    def _chat(self, chat_id: int | str) -> ChatState:
        chat = self._known_chat(chat_id)
        if chat.type == "private":
            if not self.users[chat.id].started:
                raise _bad("chat not found")
        elif not chat.bot_ever_member:
            raise _bad("chat not found")
        return chat

    def _writable_chat(self, chat_id: int | str) -> ChatState:
        """The chat the bot sends to, refused like Telegram when the bot may not write there."""
        chat = self._known_chat(chat_id)
        if chat.type == "private":
            user = self.users[chat.id]
            if user.blocked:
                raise _forbidden("bot was blocked by the user")
            if not user.started:
                raise _forbidden("bot can't initiate conversation with a user")
            return chat
        if not chat.bot_ever_member:
            raise _bad("chat not found")
        status = chat.members.get(self.bot_id, "left")
        if status == "kicked":
            raise _forbidden("bot was kicked from the supergroup chat")
        if status not in MEMBER_STATUSES:
            raise _forbidden("bot is not a member of the supergroup chat")
        return chat

    def _chat_json(self, chat: ChatState) -> JSON:
        if chat.type == "private":
            user = self.users[chat.id]
            data: JSON = {"id": chat.id, "first_name": user.first_name, "type": "private"}
            if user.last_name:
                data["last_name"] = user.last_name
            if user.username:
                data["username"] = user.username
            return data
        return {"id": chat.id, "title": chat.title or "", "type": chat.type}

    def _user_json(self, user_id: int) -> JSON:
        if user_id == self.bot_id:
            return dict(self.bot_user)
        user = self.users.get(user_id)
        if user is None:
            return {"id": user_id, "is_bot": False, "first_name": str(user_id)}
        return user.as_user()

    def _member_json(self, user_id: int, status: str) -> JSON:
        user = self._user_json(user_id)
        if status == "creator":
            return {"status": "creator", "user": user, "is_anonymous": False}
        if status == "administrator":
            is_bot = user_id == self.bot_id
            rights = dict.fromkeys(
                (
                    "can_manage_chat",
                    "can_delete_messages",
                    "can_manage_video_chats",
                    "can_restrict_members",
                    "can_change_info",
                    "can_invite_users",
                    "can_post_stories",
                    "can_edit_stories",
                    "can_delete_stories",
                    "can_send_welcome_messages",
                    "can_pin_messages",
                ),
                True,
            )
            return {
                "status": "administrator",
                "user": user,
                "can_be_edited": is_bot,
                "is_anonymous": False,
                "can_promote_members": False,
                **rights,
            }
        if status == "kicked":
            return {"status": "kicked", "user": user, "until_date": 0}
        if status == "member":
            return {"status": "member", "user": user}
        return {"status": "left", "user": user}

    def _get_chat(self, p: Params) -> JSON:
        chat = self._chat(p.chat_id())
        info: JSON = {
            **self._chat_json(chat),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
        if chat.pinned and chat.pinned[-1] in chat.messages:
            info["pinned_message"] = chat.messages[chat.pinned[-1]].data
        if chat.type != "private":
            info["permissions"] = {"can_send_messages": True, "can_send_polls": True}
        return info

    def _get_chat_member(self, p: Params) -> JSON:
        chat = self._chat(p.chat_id())
        user_id = p.integer("user_id", required=True)
        assert user_id is not None
        if user_id != self.bot_id and user_id not in self.users:
            raise _bad("user not found")
        if chat.type == "private":
            if user_id == self.bot_id:
                return self._member_json(user_id, "member")
            if user_id != chat.id:
                raise _bad("user not found")
            return self._member_json(user_id, "member")
        return self._member_json(user_id, chat.members.get(user_id, "left"))

    def _get_chat_administrators(self, p: Params) -> list[JSON]:
        chat = self._chat(p.chat_id())
        if chat.type == "private":
            raise _bad("there are no administrators in the private chat")
        return [
            self._member_json(uid, status)
            for uid, status in chat.members.items()
            if status in ("creator", "administrator")
        ]

    def _get_chat_member_count(self, p: Params) -> int:
        chat = self._chat(p.chat_id())
        return sum(1 for status in chat.members.values() if status in MEMBER_STATUSES)

    def _leave_chat(self, p: Params) -> bool:
        chat = self._chat(p.chat_id())
        if chat.type == "private":
            raise _bad("chat member status can't be changed in private chats")
        old = chat.members.get(self.bot_id, "left")
        if old not in MEMBER_STATUSES:
            raise _forbidden("bot is not a member of the supergroup chat")
        chat.members[self.bot_id] = "left"
        self._service_message(chat, self.bot_id, {"left_chat_member": self.bot_user})
        self._later(
            {"my_chat_member": self._member_update(chat, self.bot_id, self.bot_id, old, "left")}
        )
        return True

    def _member_update(
        self, chat: ChatState, actor_id: int, user_id: int, old: str, new: str
    ) -> JSON:
        return {
            "chat": self._chat_json(chat),
            "from": self._user_json(actor_id),
            "date": _now(),
            "old_chat_member": self._member_json(user_id, old),
            "new_chat_member": self._member_json(user_id, new),
        }

    # --- messages ----------------------------------------------------------------------------

    def _format(
        self,
        text: str,
        parse_mode: str | None,
        entities: Any,
        *,
        what: str,
    ) -> tuple[str, list[JSON]]:
        """Parse parse_mode or explicit entities, trim, and add what Telegram detects."""
        mode = (parse_mode or "").strip().lower()
        if mode == "html":
            try:
                text, found = parse_html(text)
            except EntityParseError as error:
                raise _bad(f"can't parse entities: {error}") from None
        elif mode in ("markdown", "markdownv2"):
            # Not emulated: shown as sent, without formatting (the project writes HTML).
            found = []
        elif mode:
            raise _bad("unsupported parse_mode")
        else:
            found = self._explicit_entities(text, entities, what)
        text, found = trim_text(text, found)
        for entity in found:
            if entity["type"] == "text_mention":
                entity["user"] = self._user_json(int(entity["user"]["id"]))
        return text, merge_entities(found, detect_entities(text))

    @staticmethod
    def _explicit_entities(text: str, entities: Any, what: str) -> list[JSON]:
        if entities in (None, ""):
            return []
        if isinstance(entities, str):
            try:
                entities = json.loads(entities)
            except ValueError:
                raise _bad(f"can't parse {what} entities JSON object") from None
        if not isinstance(entities, list):
            raise _bad(f"can't parse {what} entities JSON object")
        total = utf16_len(text)
        result: list[JSON] = []
        for entity in entities:
            if not isinstance(entity, dict) or "type" not in entity:
                raise _bad("can't parse MessageEntity JSON object")
            try:
                offset = int(entity.get("offset", 0))
                length = int(entity.get("length", 0))
            except (TypeError, ValueError):
                raise _bad("can't parse MessageEntity JSON object") from None
            end = min(offset + length, total)
            if offset < 0 or end <= offset:
                continue
            cleaned = {key: value for key, value in entity.items() if value is not None} | {
                "offset": offset,
                "length": end - offset,
            }
            result.append(cleaned)
        return sort_entities(result)

    def _markup(self, p: Params, *, inline_only: bool = False) -> JSON | None:
        markup = p.obj("reply_markup", "reply keyboard markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            return {"inline_keyboard": self._inline_keyboard(markup["inline_keyboard"])}
        if inline_only:
            raise _bad("inline keyboard expected")
        if "keyboard" in markup:
            rows = markup["keyboard"]
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise _bad("can't parse keyboard button JSON object")
            keyboard = [
                [{"text": button} if isinstance(button, str) else dict(button) for button in row]
                for row in rows
            ]
            for row in keyboard:
                for button in row:
                    if not str(button.get("text", "")).strip():
                        raise _bad("keyboard button text must be non-empty")
            return {**markup, "keyboard": keyboard}
        if markup.get("remove_keyboard") or markup.get("force_reply"):
            return markup
        raise _bad("can't parse reply keyboard markup JSON object")

    @staticmethod
    def _inline_keyboard(rows: Any) -> list[list[JSON]]:
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad("can't parse inline keyboard button JSON object")
        if sum(len(row) for row in rows) > INLINE_BUTTONS_MAX:
            raise _bad("reply markup is too long")
        keyboard: list[list[JSON]] = []
        for row in rows:
            cleaned_row: list[JSON] = []
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad("can't parse inline keyboard button JSON object")
                button = {key: value for key, value in button.items() if value is not None}
                actions = [key for key in INLINE_ACTIONS if key in button]
                if not actions:
                    raise _bad("text buttons are unallowed in the inline keyboard")
                if "callback_data" in button:
                    data = str(button["callback_data"])
                    if not 1 <= len(data.encode("utf-8")) <= CALLBACK_DATA_MAX:
                        raise _bad("BUTTON_DATA_INVALID")
                if "url" in button and checked_url(str(button["url"])) is None:
                    raise _bad("BUTTON_URL_INVALID")
                cleaned_row.append(button)
            if cleaned_row:
                keyboard.append(cleaned_row)
        return keyboard

    def _reply_to(self, chat: ChatState, p: Params) -> JSON | None:
        """The message replied to, as the new message carries it (None for no reply).

        Telegram's rule: a reply to a message that is not in the chat (never was, or deleted,
        as anti-spam bots delete commands in groups) is refused with 400 "message to be
        replied not found", unless `allow_sending_without_reply` is true, when the message is
        sent as a plain one. The flag is read from `reply_parameters` when those are given,
        else from the legacy top-level field beside `reply_to_message_id`."""
        parameters = p.obj("reply_parameters", "reply parameters")
        message_id: int | None = None
        allow_without = False
        if isinstance(parameters, dict) and parameters.get("message_id") is not None:
            target_chat = parameters.get("chat_id")
            if target_chat not in (None, chat.id, str(chat.id)):
                raise _bad("replies to messages in other chats are not supported in the sandbox")
            message_id = int(parameters["message_id"])
            allow_without = _flag(parameters.get("allow_sending_without_reply"))
        elif p.has("reply_to_message_id"):
            message_id = p.integer("reply_to_message_id")
            allow_without = p.flag("allow_sending_without_reply")
        if message_id is None:
            return None
        stored = chat.messages.get(message_id)
        if stored is None or stored.deleted:
            if allow_without:
                return None
            raise _bad("message to be replied not found")
        replied = dict(stored.data)
        replied.pop("reply_to_message", None)
        return replied

    def _new_message(self, chat: ChatState, sender_id: int, content: JSON) -> JSON:
        message_id = chat.next_message_id
        chat.next_message_id += 1
        data: JSON = {
            "message_id": message_id,
            "from": self._user_json(sender_id),
            "chat": self._chat_json(chat),
            "date": _now(),
        }
        data.update({key: value for key, value in content.items() if value is not None})
        chat.messages[message_id] = StoredMessage(data, self._bump(chat))
        return data

    def _service_message(self, chat: ChatState, actor_id: int, content: JSON) -> JSON:
        return self._new_message(chat, actor_id, content)

    def _bot_message(self, chat: ChatState, p: Params, content: JSON) -> JSON:
        """A message from the bot, with its reply, keyboard and force-reply effects applied."""
        markup = self._markup(p)
        reply_to = self._reply_to(chat, p)
        content = dict(content)
        if reply_to is not None:
            content["reply_to_message"] = reply_to
        if markup is not None and "inline_keyboard" in markup:
            content["reply_markup"] = markup
        data = self._new_message(chat, self.bot_id, content)
        if markup is not None and "inline_keyboard" not in markup:
            self._apply_keyboard(chat, data, markup)
        chat.action = None
        return data

    def _apply_keyboard(self, chat: ChatState, message: JSON, markup: JSON) -> None:
        targets: list[int | None] = [None]
        if markup.get("selective") and chat.type != "private":
            targets = []
            replied = message.get("reply_to_message")
            if replied and replied.get("from") and not replied["from"].get("is_bot"):
                targets.append(int(replied["from"]["id"]))
            text = message.get("text") or message.get("caption") or ""
            for user in self.users.values():
                if user.username and f"@{user.username}" in text:
                    targets.append(user.id)
        if "keyboard" in markup:
            for target in targets:
                chat.keyboards[target] = {**markup, "message_id": message["message_id"]}
            if targets == [None]:
                chat.keyboards = {None: chat.keyboards[None]}
        elif markup.get("remove_keyboard"):
            if targets == [None]:
                chat.keyboards.clear()
            for target in targets:
                chat.keyboards.pop(target, None)
        elif markup.get("force_reply"):
            for target in targets:
                chat.force_reply[target] = {
                    "message_id": message["message_id"],
                    "placeholder": markup.get("input_field_placeholder"),
                }
        self._bump(chat)

    def _text_content(self, p: Params, *, what: str = "message") -> JSON:
        text = p.string("text")
        if not text:
            raise _bad("message text is empty")
        text, entities = self._format(text, p.string("parse_mode"), p.obj("entities"), what=what)
        if not text:
            raise _bad("message text is empty")
        if utf16_len(text) > MESSAGE_MAX:
            raise _bad("message is too long")
        content: JSON = {"text": text}
        if entities:
            content["entities"] = entities
        preview = p.obj("link_preview_options", "link preview options")
        if isinstance(preview, dict) and preview:
            content["link_preview_options"] = preview
        return content

    def _caption_content(self, p: Params) -> JSON:
        caption = p.string("caption")
        if not caption:
            return {}
        caption, entities = self._format(
            caption, p.string("parse_mode"), p.obj("caption_entities"), what="caption"
        )
        if utf16_len(caption) > CAPTION_MAX:
            raise _bad("message caption is too long")
        content: JSON = {"caption": caption} if caption else {}
        if entities and caption:
            content["caption_entities"] = entities
        return content

    def _send_message(self, p: Params) -> JSON:
        chat = self._writable_chat(p.chat_id())
        return self._bot_message(chat, p, self._text_content(p))

    def _message_for_edit(self, p: Params) -> tuple[ChatState, StoredMessage]:
        if p.has("inline_message_id"):
            raise _bad("message to edit not found")
        chat = self._writable_chat(p.chat_id())
        message_id = p.integer("message_id", required=True)
        assert message_id is not None
        stored = chat.messages.get(message_id)
        if stored is None or stored.deleted:
            raise _bad("message to edit not found")
        if stored.data.get("from", {}).get("id") != self.bot_id:
            raise _bad("message can't be edited")
        return chat, stored

    def _apply_edit(self, chat: ChatState, stored: StoredMessage, changes: JSON) -> JSON:
        current = stored.data
        if all(current.get(key) == value for key, value in changes.items()):
            raise _bad(NOT_MODIFIED)
        for key, value in changes.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        current["edit_date"] = _now()
        stored.rev = self._bump(chat)
        return current

    def _edit_message_text(self, p: Params) -> JSON:
        chat, stored = self._message_for_edit(p)
        if "text" not in stored.data:
            raise _bad("there is no text in the message to edit")
        content = self._text_content(p)
        markup = self._markup(p, inline_only=True)
        return self._apply_edit(
            chat,
            stored,
            {
                "text": content["text"],
                "entities": content.get("entities"),
                "link_preview_options": content.get("link_preview_options"),
                "reply_markup": markup,
            },
        )

    def _edit_message_caption(self, p: Params) -> JSON:
        chat, stored = self._message_for_edit(p)
        if "text" in stored.data or "poll" in stored.data or "location" in stored.data:
            raise _bad("there is no caption in the message to edit")
        content = self._caption_content(p)
        markup = self._markup(p, inline_only=True)
        return self._apply_edit(
            chat,
            stored,
            {
                "caption": content.get("caption"),
                "caption_entities": content.get("caption_entities"),
                "reply_markup": markup,
            },
        )

    def _edit_message_reply_markup(self, p: Params) -> JSON:
        chat, stored = self._message_for_edit(p)
        markup = self._markup(p, inline_only=True)
        return self._apply_edit(chat, stored, {"reply_markup": markup})

    def _delete_one(self, chat: ChatState, message_id: int) -> bool:
        stored = chat.messages.get(message_id)
        if stored is None or stored.deleted:
            return False
        sender = stored.data.get("from", {}).get("id")
        if (
            chat.type != "private"
            and sender != self.bot_id
            and chat.members.get(self.bot_id) not in ("creator", "administrator")
        ):
            raise _bad("message can't be deleted")
        stored.deleted = True
        stored.rev = self._bump(chat)
        if message_id in chat.pinned:
            chat.pinned.remove(message_id)
        return True

    def _delete_message(self, p: Params) -> bool:
        chat = self._writable_chat(p.chat_id())
        message_id = p.integer("message_id", required=True)
        assert message_id is not None
        if not self._delete_one(chat, message_id):
            raise _bad("message to delete not found")
        return True

    def _delete_messages(self, p: Params) -> bool:
        chat = self._writable_chat(p.chat_id())
        ids = p.obj("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _bad("message_ids is empty")
        for message_id in ids:
            self._delete_one(chat, int(message_id))
        return True

    def _copy_content(self, p: Params) -> tuple[ChatState, JSON]:
        source = self._chat(p.chat_id("from_chat_id"))
        message_id = p.integer("message_id", required=True)
        assert message_id is not None
        stored = source.messages.get(message_id)
        if stored is None or stored.deleted:
            raise _bad("message to copy not found")
        target = self._writable_chat(p.chat_id())
        keep = ("text", "entities", "photo", "caption", "caption_entities", "location", "document")
        return target, {key: stored.data[key] for key in keep if key in stored.data}

    def _forward_message(self, p: Params) -> JSON:
        target, content = self._copy_content(p)
        source = self._chat(p.chat_id("from_chat_id"))
        message_id = p.integer("message_id")
        original = source.messages[message_id or 0].data
        content["forward_origin"] = {
            "type": "user",
            "date": original["date"],
            "sender_user": original["from"],
        }
        return self._new_message(target, self.bot_id, content)

    def _copy_message(self, p: Params) -> JSON:
        target, content = self._copy_content(p)
        if p.has("caption"):
            content.update(self._caption_content(p))
        data = self._bot_message(target, p, content)
        return {"message_id": data["message_id"]}

    def _answer_callback_query(self, p: Params) -> bool:
        query_id = p.string("callback_query_id", required=True)
        pending = self._callbacks.get(query_id or "")
        if pending is None or pending.get("answer") is not None:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = p.string("text") or ""
        if utf16_len(text) > CALLBACK_ANSWER_MAX:
            raise _bad("MESSAGE_TOO_LONG")
        answer: JSON = {"text": text, "show_alert": p.flag("show_alert"), "url": p.string("url")}
        pending["answer"] = answer
        if text:
            self._toasts.setdefault(int(pending["user_id"]), []).append(
                {**answer, "query_id": query_id, "at": time.time()}
            )
        return True

    # --- files and media ---------------------------------------------------------------------

    def store_file(self, data: bytes, *, mime: str, file_name: str | None = None) -> StoredFile:
        digest = hashlib.sha256(data).hexdigest()
        for existing in self.files.values():
            if existing.file_unique_id == "AQAD" + digest[:16]:
                return existing
        sniffed = _image_size(data)
        width = height = 0
        if sniffed is not None:
            mime, width, height = sniffed
        kind = "photos" if mime.startswith("image/") else "documents"
        extension = {
            "image/png": "png",
            "image/gif": "gif",
            "image/webp": "webp",
            "image/jpeg": "jpg",
        }.get(mime, "bin")
        stored = StoredFile(
            file_id="AgAC" + secrets.token_urlsafe(24),
            file_unique_id="AQAD" + digest[:16],
            data=data,
            mime=mime,
            file_path=f"{kind}/file_{len(self.files)}.{extension}",
            file_name=file_name,
            width=width,
            height=height,
        )
        self.files[stored.file_id] = stored
        return stored

    @staticmethod
    def _photo_sizes(stored: StoredFile) -> list[JSON]:
        return [
            {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "file_size": len(stored.data),
                "width": stored.width,
                "height": stored.height,
            }
        ]

    def _input_file(self, p: Params, name: str, value: Any) -> StoredFile:
        upload: StoredUpload | None = None
        if isinstance(value, str) and value.startswith("attach://"):
            upload = p.files.get(value.removeprefix("attach://"))
            if upload is None:
                raise _bad(f'can\'t find attached file "{value}"')
        elif value is None or value == "":
            upload = p.files.get(name)
            if upload is None:
                raise _bad(f"there is no {name} in the request")
        if upload is not None:
            if not upload.data:
                raise _bad("file must be non-empty")
            return self.store_file(upload.data, mime=upload.content_type, file_name=upload.filename)
        text = str(value)
        if text in self.files:
            return self.files[text]
        if text.startswith(("http://", "https://")):
            # No internet here: a URL stands in as a file without content.
            return self.store_file(text.encode(), mime="text/uri-list", file_name=text)
        raise _bad("wrong file identifier/HTTP URL specified")

    def _send_photo(self, p: Params) -> JSON:
        chat = self._writable_chat(p.chat_id())
        stored = self._input_file(p, "photo", p.raw.get("photo"))
        content: JSON = {"photo": self._photo_sizes(stored), **self._caption_content(p)}
        if p.flag("has_spoiler"):
            content["has_media_spoiler"] = True
        return self._bot_message(chat, p, content)

    def _send_document(self, p: Params) -> JSON:
        chat = self._writable_chat(p.chat_id())
        stored = self._input_file(p, "document", p.raw.get("document"))
        document: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "mime_type": stored.mime,
        }
        if stored.file_name:
            document["file_name"] = stored.file_name
        return self._bot_message(chat, p, {"document": document, **self._caption_content(p)})

    def _send_media_group(self, p: Params) -> list[JSON]:
        chat = self._writable_chat(p.chat_id())
        media = p.obj("media", "media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad("wrong number of media specified")
        group_id = str(secrets.randbits(60))
        messages: list[JSON] = []
        prepared: list[JSON] = []
        for item in media:
            if not isinstance(item, dict) or item.get("type") != "photo":
                raise _bad("the sandbox sends photo albums only")
            stored = self._input_file(p, "media", item.get("media"))
            content: JSON = {"photo": self._photo_sizes(stored), "media_group_id": group_id}
            caption = item.get("caption")
            if caption:
                sub = Params(
                    {
                        "caption": caption,
                        "parse_mode": item.get("parse_mode"),
                        "caption_entities": item.get("caption_entities"),
                    },
                    {},
                )
                content.update(self._caption_content(sub))
            prepared.append(content)
        reply_to = self._reply_to(chat, p)
        for content in prepared:
            if reply_to is not None:
                content["reply_to_message"] = reply_to
            messages.append(self._new_message(chat, self.bot_id, content))
        return messages

    def _send_location(self, p: Params) -> JSON:
        chat = self._writable_chat(p.chat_id())
        latitude = p.number("latitude", required=True)
        longitude = p.number("longitude", required=True)
        assert latitude is not None and longitude is not None
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise _bad("wrong latitude or longitude specified")
        return self._bot_message(
            chat, p, {"location": {"latitude": latitude, "longitude": longitude}}
        )

    def _send_chat_action(self, p: Params) -> bool:
        chat = self._writable_chat(p.chat_id())
        action = p.string("action", required=True)
        if action not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        chat.action = (action, time.time() + 5)  # shown by every view while it lasts
        return True

    def _get_file(self, p: Params) -> JSON:
        file_id = p.string("file_id", required=True) or ""
        stored = self.files.get(file_id)
        if stored is None:
            raise _bad("invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

    # --- pins ----------------------------------------------------------------------------------

    def _may_pin(self, chat: ChatState) -> None:
        if chat.type != "private" and chat.members.get(self.bot_id) not in (
            "creator",
            "administrator",
        ):
            raise _bad("not enough rights to manage pinned messages in the chat")

    def _pin_chat_message(self, p: Params) -> bool:
        chat = self._writable_chat(p.chat_id())
        self._may_pin(chat)
        message_id = p.integer("message_id", required=True)
        assert message_id is not None
        stored = chat.messages.get(message_id)
        if stored is None or stored.deleted:
            raise _bad("message to pin not found")
        if message_id in chat.pinned:
            chat.pinned.remove(message_id)
        chat.pinned.append(message_id)
        if chat.type != "private":
            pinned = dict(stored.data)
            pinned.pop("reply_to_message", None)
            self._service_message(chat, self.bot_id, {"pinned_message": pinned})
        self._bump(chat)
        return True

    def _unpin_chat_message(self, p: Params) -> bool:
        chat = self._writable_chat(p.chat_id())
        self._may_pin(chat)
        message_id = p.integer("message_id")
        if message_id is None:
            if not chat.pinned:
                raise _bad("message to unpin not found")
            chat.pinned.pop()
        elif message_id in chat.pinned:
            chat.pinned.remove(message_id)
        else:
            raise _bad("message to unpin not found")
        self._bump(chat)
        return True

    def _unpin_all_chat_messages(self, p: Params) -> bool:
        chat = self._writable_chat(p.chat_id())
        self._may_pin(chat)
        chat.pinned.clear()
        self._bump(chat)
        return True

    # --- polls ---------------------------------------------------------------------------------

    def _send_poll(self, p: Params) -> JSON:
        chat = self._writable_chat(p.chat_id())
        question = (p.string("question") or "").strip()
        if not question:
            raise _bad("poll question must be non-empty")
        if utf16_len(question) > POLL_QUESTION_MAX:
            raise _bad(f"poll question length must not exceed {POLL_QUESTION_MAX}")
        raw_options = p.obj("options", "poll options")
        if not isinstance(raw_options, list):
            raise _bad("can't parse poll options JSON object")
        if len(raw_options) < POLL_OPTIONS_MIN:
            raise _bad(f"poll must have at least {POLL_OPTIONS_MIN} option")
        if len(raw_options) > POLL_OPTIONS_MAX:
            raise _bad(f"poll can't have more than {POLL_OPTIONS_MAX} options")
        options: list[JSON] = []
        for index, option in enumerate(raw_options):
            text = option.get("text") if isinstance(option, dict) else option
            text = str(text or "").strip()
            if not text:
                raise _bad("poll options must be non-empty")
            if utf16_len(text) > POLL_OPTION_MAX:
                raise _bad(f"poll options length must not exceed {POLL_OPTION_MAX}")
            options.append({"persistent_id": str(index), "text": text})
        if len({option["text"] for option in options}) != len(options):
            raise _bad("poll options must be unique")
        kind = p.string("type") or "regular"
        if kind not in ("regular", "quiz"):
            raise _bad("wrong poll type specified")
        is_anonymous = p.flag("is_anonymous", default=True)
        if is_anonymous is False and chat.type == "channel":  # pragma: no cover - no channels
            raise _bad("non-anonymous polls can't be sent to channel chats")
        correct: list[int] | None = None
        if kind == "quiz":
            ids = p.obj("correct_option_ids")
            if ids is None and p.has("correct_option_id"):
                ids = [p.integer("correct_option_id")]
            if not isinstance(ids, list) or not ids:
                raise _bad("correct option ids must be specified for quiz polls")
            correct = [int(i) for i in ids]
            if any(not 0 <= i < len(options) for i in correct):
                raise _bad("wrong correct option id specified")
        open_period = p.integer("open_period")
        close_date = p.integer("close_date")
        if open_period is not None and close_date is not None:
            raise _bad("can't use open_period and close_date together")
        if open_period is not None:
            if not 5 <= open_period <= 2628000:
                raise _bad("wrong open period specified")
            close_date = _now() + open_period
        elif close_date is not None and not 5 <= close_date - _now() <= 2628000:
            raise _bad("wrong close date specified")
        self._poll_seq += 1
        poll = PollState(
            id=f"{5000000000000000000 + self._poll_seq}",
            chat_id=chat.id,
            message_id=0,
            question=question,
            options=options,
            is_anonymous=is_anonymous,
            type=kind,
            allows_multiple_answers=p.flag("allows_multiple_answers") and kind == "regular",
            allows_revoting=p.flag("allows_revoting", default=kind == "regular"),
            is_closed=p.flag("is_closed"),
            close_date=close_date,
            open_period=open_period,
            correct_option_ids=correct,
            explanation=p.string("explanation"),
        )
        data = self._bot_message(chat, p, {"poll": poll.as_poll()})
        poll.message_id = data["message_id"]
        self.polls[poll.id] = poll
        return data

    def _refresh_poll_message(self, poll: PollState) -> None:
        chat = self.chats[poll.chat_id]
        stored = chat.messages.get(poll.message_id)
        if stored is not None:
            stored.data["poll"] = poll.as_poll()
            stored.rev = self._bump(chat)

    def _stop_poll(self, p: Params) -> JSON:
        chat = self._writable_chat(p.chat_id())
        message_id = p.integer("message_id", required=True)
        poll = next(
            (
                candidate
                for candidate in self.polls.values()
                if candidate.chat_id == chat.id and candidate.message_id == message_id
            ),
            None,
        )
        stored = chat.messages.get(message_id or 0)
        if poll is None or stored is None or stored.deleted:
            raise _bad("message with poll to stop not found")
        if poll.is_closed:
            raise _bad("poll has already been closed")
        markup = self._markup(p, inline_only=True)
        poll.is_closed = True
        if markup is not None:
            stored.data["reply_markup"] = markup
        else:
            stored.data.pop("reply_markup", None)
        self._refresh_poll_message(poll)
        self._later({"poll": poll.as_poll()})
        return poll.as_poll()

    def _close_expired_polls(self) -> None:
        now = _now()
        for poll in self.polls.values():
            if not poll.is_closed and poll.close_date is not None and poll.close_date <= now:
                poll.is_closed = True
                self._refresh_poll_message(poll)
                self._later({"poll": poll.as_poll()})

    # --- delivering updates --------------------------------------------------------------------

    def _wants(self, update: JSON) -> bool:
        kind = next(key for key in update if key != "update_id")
        allowed = self.webhook.get("allowed_updates")
        if allowed:
            return kind in allowed
        return kind not in DEFAULT_EXCLUDED_UPDATES

    async def _deliver_update(self, payload: JSON) -> int:
        """Number the update and hand it to the bot; the bot's HTTP status (0: queued)."""
        async with self._lock:
            self._update_id += 1
            update = {"update_id": self._update_id, **payload}
            kind = next(iter(payload))
            if not self._wants(update):
                self._log("update", kind, "not in allowed_updates", 0)
                return 0
            self.delivered.append(update)
            if self._deliver is None:
                self._pending_updates.append(update)
                self._updates_ready.set()
                self._log("update", kind, "queued for getUpdates", 0)
                return 0
            try:
                answered = await self._deliver(update)
            except Exception as error:  # the sandbox must survive a broken bot
                log.exception("sandbox: delivering update %s failed", update["update_id"])
                answer = WebhookAnswer(599)
                self.delivery_errors.append(
                    {"at": time.time(), "update_id": update["update_id"], "error": repr(error)}
                )
            else:
                answer = WebhookAnswer(answered) if isinstance(answered, int) else answered
                if answer.status != 200:
                    self.delivery_errors.append(
                        {
                            "at": time.time(),
                            "update_id": update["update_id"],
                            "error": f"the webhook answered HTTP {answer.status}",
                        }
                    )
            self._log("update", kind, f"update {update['update_id']}", answer.status)
            if answer.status == 200 and answer.body:
                await self._run_webhook_reply(update["update_id"], answer)
            return answer.status

    async def _run_webhook_reply(self, update_id: int, answer: WebhookAnswer) -> None:
        """Run the method named in the webhook's answer as the bot's call, after its 200, as
        Telegram does. Telegram reports neither its result nor its refusal: the refusal is
        logged here and shown with the delivery errors."""
        try:
            raw, uploads = _parse_body(answer.body, answer.content_type)
        except BotAPIError:
            return  # not parameters: an answer Telegram ignores
        method = raw.pop("method", None)
        if not isinstance(method, str) or not method:
            return
        try:
            await self.call(method, raw, uploads)
        except Exception as error:  # a refusal, or the emulator's own bug: the sandbox goes on
            if isinstance(error, BotAPIError):
                code, description = error.code, error.description
            else:
                log.exception("sandbox: the webhook reply %s failed", method)
                code, description = 500, repr(error)
            self._log("api", method, f"webhook reply: {description}", code)
            self.delivery_errors.append(
                {
                    "at": time.time(),
                    "update_id": update_id,
                    "error": f"the webhook reply {method} was refused: {description}",
                }
            )
            return
        self._log("api", method, f"webhook reply: {_summary(raw)}", 200)

    def _later(self, payload: JSON) -> None:
        """Deliver from a task: for updates caused by the bot's own call (it holds the lock)."""
        task = asyncio.get_running_loop().create_task(self._deliver_update(payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until updates scheduled by the bot's own calls are delivered (for tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _bot_receives(self, chat: ChatState, message: JSON) -> bool:
        if chat.type == "private":
            return True
        status = chat.members.get(self.bot_id, "left")
        if status not in MEMBER_STATUSES:
            return False
        if status in ("creator", "administrator") or not self.privacy_mode:
            return True
        text = message.get("text") or ""
        if text.startswith("/"):
            command = text.split()[0]
            addressee = command.partition("@")[2]
            return not addressee or addressee.lower() == self.bot_username.lower()
        replied = message.get("reply_to_message")
        if replied and replied.get("from", {}).get("id") == self.bot_id:
            return True
        service = ("new_chat_members", "left_chat_member", "pinned_message", "new_chat_title")
        return any(key in message for key in service)

    # --- what a person does in the web chat ----------------------------------------------------

    def _user(self, user_id: int) -> UserState:
        user = self.users.get(user_id)
        if user is None:
            raise SandboxError("unknown persona")
        return user

    def _user_chat(self, user_id: int, chat_id: int) -> ChatState:
        self._user(user_id)
        chat = self.chats.get(chat_id)
        if chat is None:
            raise SandboxError("unknown chat")
        if chat.type == "private":
            if chat.id != user_id:
                raise SandboxError("that is someone else's private chat")
        elif chat.members.get(user_id) not in MEMBER_STATUSES:
            raise SandboxError("this persona is not in that group")
        return chat

    async def _user_message(
        self,
        user_id: int,
        chat_id: int,
        content: JSON,
        reply_to: int | None = None,
        *,
        answer_force_reply: bool = True,
    ) -> tuple[JSON, int]:
        chat = self._user_chat(user_id, chat_id)
        user = self.users[user_id]
        if chat.type == "private":
            if user.blocked:
                raise SandboxError("unblock the bot first")
            user.started = True
        content = dict(content)
        target = chat.force_reply.pop(user_id, None) or chat.force_reply.pop(None, None)
        if reply_to is None and target is not None and answer_force_reply:
            # The client opens a reply to a ForceReply message; the person may dismiss it.
            reply_to = int(target["message_id"])
        if reply_to is not None:
            stored = chat.messages.get(reply_to)
            if stored is not None and not stored.deleted:
                replied = dict(stored.data)
                replied.pop("reply_to_message", None)
                content["reply_to_message"] = replied
        message = self._new_message(chat, user_id, content)
        if not self._bot_receives(chat, message):
            return message, 0
        status = await self._deliver_update({"message": message})
        return message, status

    @staticmethod
    def _user_entities(text: str) -> list[JSON]:
        return sort_entities(detect_entities(text))

    async def user_send_text(
        self,
        user_id: int,
        chat_id: int,
        text: str,
        *,
        reply_to: int | None = None,
        answer_force_reply: bool = True,
    ) -> JSON:
        """A person types a message (a leading /command gets its bot_command entity)."""
        text = text.strip()
        if not text:
            raise SandboxError("empty message")
        if utf16_len(text) > MESSAGE_MAX:
            raise SandboxError("message is too long")
        content: JSON = {"text": text}
        entities = self._user_entities(text)
        if entities:
            content["entities"] = entities
        message, status = await self._user_message(
            user_id, chat_id, content, reply_to, answer_force_reply=answer_force_reply
        )
        return {"message": message, "status": status}

    async def user_send_location(
        self, user_id: int, chat_id: int, latitude: float, longitude: float
    ) -> JSON:
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise SandboxError("latitude must be -90..90 and longitude -180..180")
        content = {"location": {"latitude": latitude, "longitude": longitude}}
        message, status = await self._user_message(user_id, chat_id, content)
        return {"message": message, "status": status}

    async def user_send_photo(
        self,
        user_id: int,
        chat_id: int,
        data: bytes,
        *,
        caption: str = "",
        file_name: str | None = None,
    ) -> JSON:
        if not data:
            raise SandboxError("empty file")
        if len(data) > PHOTO_MAX_BYTES:
            raise SandboxError("photos are limited to 10 MB")
        if _image_size(data) is None:
            raise SandboxError("not a PNG, JPEG, GIF or WebP image")
        if sum(len(stored.data) for stored in self.files.values()) + len(data) > FILES_MAX_BYTES:
            raise SandboxError("the sandbox holds 200 MB of files at most; restart it to clear")
        stored = self.store_file(data, mime="image/jpeg", file_name=file_name)
        content: JSON = {"photo": self._photo_sizes(stored)}
        caption = caption.strip()
        if caption:
            if utf16_len(caption) > CAPTION_MAX:
                raise SandboxError("caption is too long")
            content["caption"] = caption
            entities = self._user_entities(caption)
            if entities:
                content["caption_entities"] = entities
        message, status = await self._user_message(user_id, chat_id, content)
        return {"message": message, "status": status}

    async def user_start(self, user_id: int, payload: str | None = None) -> JSON:
        """The START button, or a t.me/<bot>?start=PAYLOAD link: "/start PAYLOAD" in private."""
        text = f"/start {payload}" if payload else "/start"
        return await self.user_send_text(user_id, user_id, text)

    async def user_open_link(self, user_id: int, url: str) -> JSON:
        """A link pressed in the web chat: deep links to the bot start it, others open outside."""
        self._user(user_id)
        is_bot_link, payload = deep_link_payload(url, self.bot_username)
        if not is_bot_link:
            return {"kind": "url", "url": url}
        result = await self.user_start(user_id, payload)
        return {"kind": "deeplink", "chat_id": user_id, "status": result["status"]}

    async def user_press_button(
        self, user_id: int, chat_id: int, message_id: int, row: int, column: int
    ) -> PressResult:
        """An inline button pressed: a callback query, a link, or a deep link into the bot."""
        chat = self._user_chat(user_id, chat_id)
        stored = chat.messages.get(message_id)
        if stored is None or stored.deleted:
            raise SandboxError("that message is gone")
        keyboard = (stored.data.get("reply_markup") or {}).get("inline_keyboard") or []
        try:
            button = keyboard[row][column]
        except (IndexError, TypeError):
            raise SandboxError("that button is gone") from None
        if "url" in button:
            result = await self.user_open_link(user_id, str(button["url"]))
            if result["kind"] == "deeplink":
                return PressResult("deeplink", chat_id=user_id, status=result.get("status"))
            return PressResult("url", url=str(button["url"]))
        if "copy_text" in button:
            return PressResult("copy", answer={"text": str(button["copy_text"].get("text", ""))})
        if "callback_data" not in button:
            return PressResult(
                "unsupported", answer={"text": "该按钮类型沙盒不支持 / not in the sandbox"}
            )
        if chat.type == "private" and self.users[user_id].blocked:
            raise SandboxError("unblock the bot first")
        self._callback_seq += 1
        query_id = str(4000000000000000000 + self._callback_seq * 7919 + user_id)
        self._callbacks[query_id] = {"user_id": user_id, "answer": None}
        if len(self._callbacks) > 1000:
            for old in list(self._callbacks)[:500]:
                self._callbacks.pop(old, None)
        query = {
            "id": query_id,
            "from": self._user_json(user_id),
            "message": stored.data,
            "chat_instance": str(abs(hash((chat.id, self.bot_id))) % 10**18),
            "data": str(button["callback_data"]),
        }
        status = await self._deliver_update({"callback_query": query})
        answer = self._callbacks[query_id]["answer"]
        if answer is not None:
            # Shown by this response: drop it from the toasts still to show.
            toasts = self._toasts.get(user_id, [])
            self._toasts[user_id] = [t for t in toasts if t.get("query_id") != query_id]
        return PressResult("callback", answer=answer, status=status)

    async def user_press_keyboard_button(
        self, user_id: int, chat_id: int, row: int, column: int
    ) -> JSON:
        """A reply-keyboard button: sends its text, or shares a location / contact."""
        chat = self._user_chat(user_id, chat_id)
        keyboard = chat.keyboards.get(user_id) or chat.keyboards.get(None)
        if keyboard is None:
            raise SandboxError("there is no keyboard")
        try:
            button = keyboard["keyboard"][row][column]
        except (IndexError, KeyError, TypeError):
            raise SandboxError("that button is gone") from None
        if keyboard.get("one_time_keyboard"):
            chat.keyboards.pop(user_id, None)
            chat.keyboards.pop(None, None)
            self._bump(chat)
        if button.get("request_location"):
            latitude, longitude = demo.DEMO_LOCATION
            return await self.user_send_location(user_id, chat_id, latitude, longitude)
        if button.get("request_contact"):
            user = self.users[user_id]
            contact = {
                "phone_number": f"+86138{user_id:08d}"[-14:],
                "first_name": user.first_name,
                "user_id": user_id,
            }
            message, status = await self._user_message(user_id, chat_id, {"contact": contact})
            return {"message": message, "status": status}
        return await self.user_send_text(user_id, chat_id, str(button["text"]))

    async def user_vote(
        self, user_id: int, chat_id: int, message_id: int, option_ids: list[int]
    ) -> JSON:
        """A vote (or, with no options, a retracted vote) in a poll.

        As the Bot API has it: `poll_answer` (with the voter) only for a non-anonymous poll
        the bot sent, and `poll` (counts, never voters) for polls the bot sent or stopped.
        Only the bot sends polls here, so every vote brings the new counts."""
        chat = self._user_chat(user_id, chat_id)
        self._close_expired_polls()
        poll = next(
            (
                candidate
                for candidate in self.polls.values()
                if candidate.chat_id == chat.id and candidate.message_id == message_id
            ),
            None,
        )
        if poll is None:
            raise SandboxError("that poll is gone")
        if poll.is_closed:
            raise SandboxError("投票已结束 / the poll is closed")
        chosen = sorted(set(option_ids))
        if any(not 0 <= index < len(poll.options) for index in chosen):
            raise SandboxError("no such option")
        if len(chosen) > 1 and not poll.allows_multiple_answers:
            raise SandboxError("one option only")
        if poll.votes.get(user_id) and not poll.allows_revoting:
            raise SandboxError("votes in this poll can't be changed")
        if not chosen and not poll.votes.get(user_id):
            raise SandboxError("nothing to retract")
        poll.votes[user_id] = chosen
        if not chosen:
            poll.votes.pop(user_id, None)
        self._refresh_poll_message(poll)
        status = 0
        if not poll.is_anonymous:
            status = await self._deliver_update(
                {
                    "poll_answer": {
                        "poll_id": poll.id,
                        "user": self._user_json(user_id),
                        "option_ids": chosen,
                        "option_persistent_ids": [
                            poll.options[index]["persistent_id"] for index in chosen
                        ],
                    }
                }
            )
        await self._deliver_update({"poll": poll.as_poll()})
        return {"status": status, "poll": poll.as_poll()}

    async def user_add_bot(self, user_id: int, chat_id: int) -> JSON:
        """Add the bot to a group: my_chat_member (left → member), then the service message."""
        chat = self._user_chat(user_id, chat_id)
        if chat.type == "private":
            raise SandboxError("a private chat has the bot already")
        old = chat.members.get(self.bot_id, "left")
        if old in MEMBER_STATUSES:
            raise SandboxError("the bot is in this group already")
        chat.members[self.bot_id] = "member"
        chat.bot_ever_member = True
        # The service message comes first in the chat, as in Telegram; its update comes second.
        message = self._service_message(chat, user_id, {"new_chat_members": [self.bot_user]})
        update = self._member_update(chat, user_id, self.bot_id, old, "member")
        status = await self._deliver_update({"my_chat_member": update})
        if self._bot_receives(chat, message):
            await self._deliver_update({"message": message})
        return {"status": status}

    async def user_promote_bot(self, user_id: int, chat_id: int) -> JSON:
        chat = self._user_chat(user_id, chat_id)
        if chat.members.get(user_id) not in ("creator", "administrator"):
            raise SandboxError("only a group admin can do that")
        old = chat.members.get(self.bot_id, "left")
        if old != "member":
            raise SandboxError("the bot must be a plain member of the group")
        chat.members[self.bot_id] = "administrator"
        self._bump(chat)
        update = self._member_update(chat, user_id, self.bot_id, old, "administrator")
        return {"status": await self._deliver_update({"my_chat_member": update})}

    async def user_remove_bot(self, user_id: int, chat_id: int) -> JSON:
        chat = self._user_chat(user_id, chat_id)
        if chat.members.get(user_id) not in ("creator", "administrator"):
            raise SandboxError("only a group admin can do that")
        old = chat.members.get(self.bot_id, "left")
        if old not in MEMBER_STATUSES:
            raise SandboxError("the bot is not in this group")
        chat.members[self.bot_id] = "left"
        chat.keyboards.clear()
        chat.force_reply.clear()
        self._service_message(chat, user_id, {"left_chat_member": self.bot_user})
        update = self._member_update(chat, user_id, self.bot_id, old, "left")
        return {"status": await self._deliver_update({"my_chat_member": update})}

    async def user_set_blocked(self, user_id: int, blocked: bool) -> JSON:
        """Block or unblock the bot: my_chat_member in the private chat (member ↔ kicked)."""
        user = self._user(user_id)
        if user.blocked == blocked:
            return {"status": 0}
        user.blocked = blocked
        chat = self.chats[user_id]
        chat.keyboards.clear()
        self._bump(chat)
        old, new = ("member", "kicked") if blocked else ("kicked", "member")
        if not user.started:
            return {"status": 0}  # the bot never met them: Telegram tells it nothing
        update = self._member_update(chat, user_id, self.bot_id, old, new)
        return {"status": await self._deliver_update({"my_chat_member": update})}

    # --- what the web chat shows ---------------------------------------------------------------

    def personas(self) -> list[JSON]:
        return [
            {
                "id": user.id,
                "name": user.name,
                "first_name": user.first_name,
                "username": user.username,
                "language_code": user.language_code,
                "role_zh": user.role_zh,
                "role_en": user.role_en,
                "group": user.group,
                "blocked": user.blocked,
                "started": user.started,
            }
            for user in self.users.values()
        ]

    def chats_for(self, user_id: int) -> list[JSON]:
        user = self._user(user_id)
        result: list[JSON] = []
        private = self.chats[user_id]
        result.append(self._chat_summary(private, user))
        for chat in self.chats.values():
            if chat.type != "private" and chat.members.get(user_id) in MEMBER_STATUSES:
                result.append(self._chat_summary(chat, user))
        return result

    def _chat_summary(self, chat: ChatState, viewer: UserState) -> JSON:
        last = next(
            (stored for stored in reversed(chat.messages.values()) if not stored.deleted), None
        )
        preview = ""
        if last is not None:
            preview = _preview(last.data)
        summary: JSON = {
            "id": chat.id,
            "type": chat.type,
            "title": chat.title if chat.type != "private" else self.bot_first_name,
            "about_zh": chat.about_zh,
            "about_en": chat.about_en,
            "rev": chat.rev,
            "preview": preview,
            "my_status": chat.members.get(viewer.id, "left"),
            "bot_status": chat.members.get(self.bot_id, "left"),
            "members": sum(1 for s in chat.members.values() if s in MEMBER_STATUSES),
        }
        if chat.type == "private":
            summary["blocked"] = viewer.blocked
            summary["started"] = viewer.started
            summary["bot_status"] = "kicked" if viewer.blocked else "member"
        return summary

    def view(self, user_id: int, chat_id: int, since: int = 0) -> JSON:
        """What this persona sees of a chat, changed since `since` (a rev the last view gave)."""
        chat = self._user_chat(user_id, chat_id)
        user = self.users[user_id]
        self._close_expired_polls()
        messages = [
            self._ui_message(stored, user)
            for stored in chat.messages.values()
            if stored.rev > since
        ]
        keyboard = chat.keyboards.get(user_id) or chat.keyboards.get(None)
        force = chat.force_reply.get(user_id) or chat.force_reply.get(None)
        pinned = None
        for message_id in reversed(chat.pinned):
            stored = chat.messages.get(message_id)
            if stored is not None and not stored.deleted:
                pinned = {"message_id": message_id, "preview": _preview(stored.data)}
                break
        action = None
        if chat.action is not None and chat.action[1] > time.time():
            action = chat.action[0]
        toasts = self._toasts.pop(user_id, [])
        return {
            "rev": self._rev,
            "chat": self._chat_summary(chat, user),
            "messages": messages,
            "keyboard": _keyboard_view(keyboard),
            "force_reply": force,
            "pinned": pinned,
            "commands": self.commands_for(user_id, chat_id),
            "action": action,
            "toasts": toasts,
            "errors": [error for error in self.delivery_errors if error["at"] > time.time() - 30],
        }

    def _ui_message(self, stored: StoredMessage, viewer: UserState) -> JSON:
        data = stored.data
        message_id = data["message_id"]
        if stored.deleted:
            return {"id": message_id, "rev": stored.rev, "deleted": True}
        sender = data.get("from") or {}
        ui: JSON = {
            "id": message_id,
            "rev": stored.rev,
            "deleted": False,
            "date": data["date"],
            "edited": "edit_date" in data,
            "from": {
                "id": sender.get("id"),
                "name": " ".join(
                    part for part in (sender.get("first_name"), sender.get("last_name")) if part
                ),
                "is_bot": bool(sender.get("is_bot")),
                "is_self": sender.get("id") == viewer.id,
            },
        }
        if "text" in data:
            ui["html"] = render_html(data["text"], data.get("entities"))
        if "caption" in data:
            ui["html"] = render_html(data["caption"], data.get("caption_entities"))
        if "photo" in data:
            ui["photo"] = {"file_id": data["photo"][-1]["file_id"]}
        if "document" in data:
            ui["document"] = {
                "file_id": data["document"]["file_id"],
                "name": data["document"].get("file_name") or "file",
            }
        if "location" in data:
            ui["location"] = data["location"]
        if "contact" in data:
            ui["contact"] = {"phone_number": data["contact"]["phone_number"]}
        if "poll" in data:
            ui["poll"] = self._poll_view(data["poll"]["id"], viewer)
        replied = data.get("reply_to_message")
        if replied:
            ui["reply_to"] = {
                "id": replied["message_id"],
                "name": (replied.get("from") or {}).get("first_name", ""),
                "preview": _preview(replied),
            }
        keyboard = (data.get("reply_markup") or {}).get("inline_keyboard")
        if keyboard:
            ui["inline_keyboard"] = [
                [self._button_view(button) for button in row] for row in keyboard
            ]
        service = _service_text(data, self.bot_first_name)
        if service:
            ui["service"] = service
        return ui

    def _button_view(self, button: JSON) -> JSON:
        view: JSON = {"text": str(button.get("text", ""))}
        if "callback_data" in button:
            view["kind"] = "callback"
        elif "url" in button:
            is_bot_link, _ = deep_link_payload(str(button["url"]), self.bot_username)
            view["kind"] = "deeplink" if is_bot_link else "url"
            view["url"] = str(button["url"])
        elif "copy_text" in button:
            view["kind"] = "copy"
        else:
            view["kind"] = "other"
        return view

    def _poll_view(self, poll_id: str, viewer: UserState) -> JSON:
        poll = self.polls.get(poll_id)
        if poll is None:
            return {}
        data = poll.as_poll()
        mine = poll.votes.get(viewer.id, [])
        return {
            "question": data["question"],
            "options": [
                {"text": option["text"], "count": option["voter_count"]}
                for option in data["options"]
            ],
            "total": data["total_voter_count"],
            "closed": poll.is_closed,
            "anonymous": poll.is_anonymous,
            "multiple": poll.allows_multiple_answers,
            "revoting": poll.allows_revoting,
            "mine": mine,
            "close_date": poll.close_date,
        }

    def file(self, file_id: str) -> StoredFile | None:
        return self.files.get(file_id)


def _keyboard_view(keyboard: JSON | None) -> JSON | None:
    if keyboard is None:
        return None
    return {
        "rows": [
            [
                {
                    "text": str(button.get("text", "")),
                    "location": bool(button.get("request_location")),
                    "contact": bool(button.get("request_contact")),
                }
                for button in row
            ]
            for row in keyboard.get("keyboard", [])
        ],
        "resize": bool(keyboard.get("resize_keyboard")),
        "one_time": bool(keyboard.get("one_time_keyboard")),
        "placeholder": keyboard.get("input_field_placeholder"),
    }


def _preview(data: JSON) -> str:
    if data.get("text"):
        return str(data["text"])[:80]
    if data.get("caption"):
        return "🖼 " + str(data["caption"])[:78]
    if "photo" in data:
        return "🖼 照片 / Photo"
    if "location" in data:
        return "📍 位置 / Location"
    if "poll" in data:
        return "📊 " + str(data["poll"].get("question", ""))[:78]
    if "document" in data:
        return "📄 " + str(data["document"].get("file_name", "file"))
    if "contact" in data:
        return "👤 联系方式 / Contact"
    return _service_text(data, "") or ""


def _service_text(data: JSON, bot_name: str) -> str | None:
    actor = (data.get("from") or {}).get("first_name", "")
    if "new_chat_members" in data:
        names = "、".join(member.get("first_name", "") for member in data["new_chat_members"])
        return f"{actor} 邀请了 {names} 入群 / {actor} added {names}"
    if "left_chat_member" in data:
        name = data["left_chat_member"].get("first_name", "")
        if (data.get("from") or {}).get("id") == data["left_chat_member"].get("id"):
            return f"{name} 退出了群聊 / {name} left the group"
        return f"{actor} 将 {name} 移出了群聊 / {actor} removed {name}"
    if "pinned_message" in data:
        preview = _preview(data["pinned_message"])[:30]
        return f"{actor} 置顶了「{preview}」 / {actor} pinned “{preview}”"
    return None


def _summary(raw: dict[str, Any]) -> str:
    shown = {
        key: raw[key]
        for key in ("chat_id", "text", "message_id", "callback_query_id")
        if key in raw
    }
    text = json.dumps(shown, ensure_ascii=False, default=str)
    return text if len(text) <= 160 else text[:157] + "…"
