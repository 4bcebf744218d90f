"""Helpers for the tests of what the bot sends on its own (the outbox, council polls, the
scheduler's jobs): a stricter recording Telegram, virtual clocks, a council to vote, and the
bot's catalogues with the translations still pending a merge.

`TelegramDouble` extends telegram_fakes.RecordingSession with what these senders use:
sendPoll, sendPhoto and stopPoll answered as Telegram answers them and refused where
Telegram would refuse (a question over 300 UTF-16 units, a caption over 1,024, a close_date
out of range, stopping a poll twice), failures scripted per chat or per request, and the
instant of every request on an injectable clock.

Load the fixtures with `pytest_plugins = ["telegram_fakes", "sending_fakes"]`.
PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.methods import SendMessage, SendPhoto, SendPoll, StopPoll, TelegramMethod
from aiogram.types import InputPollOption, Message
from aiogram.utils.i18n import I18n
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import (
    RecordingSession,
    _chat_json,
    make_bot,
    make_settings,
    parse_html,
    utf16_length,
)

from bot.i18n import LOCALES_DIR, create_i18n
from bot.polls import SendReport, send_vote_polls
from bot.ratelimit import MemorySendLimiter, SendLimiter
from storage.models import ChatPurpose, Community, CouncilVote
from storage.rules import Category, Kind, Role, ScopeLevel
from storage.services import access, chats, council, screening
from storage.services.access import Principal, Scope
from storage.services.council import ConveneRequest
from storage.services.people import TelegramIdentity, ensure_person
from storage.services.suggestions import Draft, submit
from storage.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PENDING = ROOT / ".i18n_pending_outbox.json"

Sessions = async_sessionmaker[AsyncSession]
ErrorFactory = Callable[[TelegramMethod[Any]], Exception]


# --- Telegram's refusals, as factories (the error needs the method it answers) --------------


def bad_request(message: str) -> ErrorFactory:
    return lambda method: TelegramBadRequest(method=method, message=f"Bad Request: {message}")


def retry_after(seconds: int) -> ErrorFactory:
    return lambda method: TelegramRetryAfter(
        method=method, message="Too Many Requests", retry_after=seconds
    )


def forbidden(message: str = "bot was blocked by the user") -> ErrorFactory:
    return lambda method: TelegramForbiddenError(method=method, message=f"Forbidden: {message}")


@dataclass
class Request:
    """One request as the double saw it: where, what, when, and whether it was refused."""

    chat_id: int | None
    name: str
    at: float
    method: TelegramMethod[Any]
    refused: str | None = None


@dataclass
class _Rule:
    matches: Callable[[TelegramMethod[Any]], bool]
    error: ErrorFactory
    times: int | None  # None: every time


class TelegramDouble(RecordingSession):
    CAPTION_MAX = 1024
    QUESTION_MAX = 300
    OPTION_MAX = 100

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock
        self.requests: list[Request] = []
        self.rules: list[_Rule] = []
        self.polls: dict[tuple[int, int], dict[str, Any]] = {}  # (chat, message) → poll
        self._poll_ids = itertools.count(1)

    # --- scripting ---------------------------------------------------------------------------

    def fail_when(
        self,
        matches: Callable[[TelegramMethod[Any]], bool],
        error: ErrorFactory,
        times: int | None = 1,
    ) -> None:
        self.rules.append(_Rule(matches, error, times))

    def fail_in_chat(
        self,
        chat_id: int,
        error: ErrorFactory,
        method: type[TelegramMethod[Any]] | None = None,
        times: int | None = 1,
    ) -> None:
        def matches(m: TelegramMethod[Any]) -> bool:
            return _chat_of(m) == chat_id and (method is None or isinstance(m, method))

        self.fail_when(matches, error, times)

    # --- what was sent -----------------------------------------------------------------------

    def delivered(self, chat_id: int | None = None, name: str | None = None) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.refused is None
            and (chat_id is None or r.chat_id == chat_id)
            and (name is None or r.name == name)
        ]

    def texts_in(self, chat_id: int) -> list[str]:
        """Texts and captions that reached a chat, as shown (tags removed)."""
        found = []
        for r in self.delivered(chat_id):
            text = getattr(r.method, "text", None) or getattr(r.method, "caption", None)
            if text:
                found.append(parse_html(text))
        return found

    # --- the session -------------------------------------------------------------------------

    async def make_request(
        self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None
    ) -> Any:
        request = Request(_chat_of(method), type(method).__name__, self.clock(), method)
        self.requests.append(request)
        for rule in self.rules:
            if rule.times != 0 and rule.matches(method):
                if rule.times is not None:
                    rule.times -= 1
                error = rule.error(method)
                request.refused = str(error)
                raise error
        try:
            return await super().make_request(bot, method, timeout)
        except Exception as error:
            request.refused = str(error)
            raise

    def _check(self, bot: Bot, method: TelegramMethod[Any]) -> None:
        super()._check(bot, method)
        if isinstance(method, SendPhoto) and method.caption:
            mode = self.prepare_value(method.parse_mode, bot=bot, files={})
            plain = method.caption
            if mode == "HTML":
                try:
                    plain = parse_html(method.caption)
                except ValueError as exc:
                    raise self._bad(method, f"can't parse entities: {exc}") from exc
            if utf16_length(plain) > self.CAPTION_MAX:
                raise self._bad(method, "message caption is too long")
        if isinstance(method, SendPoll):
            self._check_poll(bot, method)
        if isinstance(method, StopPoll):
            poll = self.polls.get((int(method.chat_id), method.message_id))
            if poll is None:
                raise self._bad(method, "message with poll to stop not found")
            if poll["is_closed"]:
                raise self._bad(method, "poll has already been closed")

    def _check_poll(self, bot: Bot, method: SendPoll) -> None:
        mode = self.prepare_value(method.question_parse_mode, bot=bot, files={})
        question = method.question
        if mode == "HTML":
            try:
                question = parse_html(question)
            except ValueError as exc:
                raise self._bad(method, f"can't parse question entities: {exc}") from exc
        if not question.strip() or utf16_length(question) > self.QUESTION_MAX:
            raise self._bad(method, "POLL_QUESTION_INVALID")
        if not 2 <= len(method.options) <= 12:
            raise self._bad(method, "POLL_ANSWERS_INVALID")
        for option in method.options:
            text = option.text if isinstance(option, InputPollOption) else option
            if not text.strip() or utf16_length(text) > self.OPTION_MAX:
                raise self._bad(method, "POLL_ANSWER_INVALID")
        if method.close_date is not None:
            close = method.close_date
            moment = close.timestamp() if isinstance(close, datetime) else float(str(close))
            if not 5 <= moment - self.clock() <= 2_628_000:
                raise self._bad(method, "wrong close date specified")

    def _answer(self, bot: Bot, method: TelegramMethod[Any]) -> Any:
        if isinstance(method, SendPhoto):
            chat_id = int(method.chat_id)
            message_id = next(self._message_ids)
            return Message.model_validate(
                {
                    "message_id": message_id,
                    "date": int(time.time()),
                    "chat": _chat_json(chat_id),
                    "from": self.me.model_dump(exclude_none=True),
                    "photo": [
                        {
                            "file_id": f"photo-{message_id}",
                            "file_unique_id": f"p{message_id}",
                            "width": 1280,
                            "height": 600,
                        },
                    ],
                    "caption": parse_html(method.caption) if method.caption else None,
                },
                context={"bot": bot},
            )
        if isinstance(method, SendPoll):
            chat_id = int(method.chat_id)
            message_id = next(self._message_ids)
            poll = {
                "id": f"poll-{next(self._poll_ids)}",
                "question": method.question,
                "options": [
                    {
                        "persistent_id": str(i),
                        "text": o.text if isinstance(o, InputPollOption) else o,
                        "voter_count": 0,
                    }
                    for i, o in enumerate(method.options)
                ],
                "total_voter_count": 0,
                "is_closed": False,
                "is_anonymous": bool(method.is_anonymous),
                "type": "regular",
                "allows_multiple_answers": bool(method.allows_multiple_answers),
                "allows_revoting": True,
                "members_only": False,
            }
            self.polls[(chat_id, message_id)] = poll
            return Message.model_validate(
                {
                    "message_id": message_id,
                    "date": int(time.time()),
                    "chat": _chat_json(chat_id),
                    "from": self.me.model_dump(exclude_none=True),
                    "poll": poll,
                },
                context={"bot": bot},
            )
        if isinstance(method, StopPoll):
            from aiogram.types import Poll

            poll = self.polls[(int(method.chat_id), method.message_id)]
            poll["is_closed"] = True
            return Poll.model_validate(poll, context={"bot": bot})
        return super()._answer(bot, method)


def _chat_of(method: TelegramMethod[Any]) -> int | None:
    chat_id = getattr(method, "chat_id", None)
    try:
        return int(chat_id) if chat_id is not None else None
    except (TypeError, ValueError):
        return None


def sent_messages(double: TelegramDouble, chat_id: int | None = None) -> list[Request]:
    return [
        r
        for r in double.delivered(chat_id)
        if isinstance(r.method, SendMessage | SendPhoto | SendPoll)
    ]


# --- clocks --------------------------------------------------------------------------------


class VirtualClock:
    """Time that moves only when every task `run` watches is asleep, straight to the
    earliest wake-up: a minute of pacing takes no real time, and instants are exact."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._seq), future))
        await future

    async def run(self, *work: Coroutine[Any, Any, Any]) -> list[Any]:
        tasks = [asyncio.ensure_future(w) for w in work]
        while True:
            running = [t for t in tasks if not t.done()]
            if not running:
                return [t.result() for t in tasks]
            if len(self._sleepers) < len(running):
                await asyncio.sleep(0.0005)  # real I/O (a database, Redis) or scheduling
                continue
            wake, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            future.set_result(None)
            await asyncio.sleep(0)


class JumpClock:
    """Time that jumps ahead by whatever anyone sleeps: for code that starts tasks of its
    own, where VirtualClock cannot see who is asleep. The limits are still checked against
    this clock, so they hold; only the instants are not exact."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def max_in_window(times: list[float], window: float) -> int:
    """The most instants in any half-open window [t, t + window)."""
    ordered = sorted(times)
    return max(
        (
            sum(1 for t in ordered[i:] if t < start + window - 1e-9)
            for i, start in enumerate(ordered)
        ),
        default=0,
    )


def min_gap(times: list[float]) -> float:
    ordered = sorted(times)
    return min((b - a for a, b in itertools.pairwise(ordered)), default=float("inf"))


# --- the catalogues, with what is pending ------------------------------------------------------


def catalogues_with_pending(root: Path) -> I18n:
    """The bot's catalogues compiled into `root`, plus the entries of
    .i18n_pending_outbox.json that the .po files do not have yet (once merged, the file goes
    and this is just the catalogues)."""
    pending = json.loads(PENDING.read_text("utf-8")) if PENDING.exists() else []
    for locale in ("zh", "en"):
        with (LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as po:
            catalog = read_po(po, locale=locale)
        for entry in pending:
            if catalog.get(entry["msgid"]) is None:
                catalog.add(entry["msgid"], entry[locale])
        target = root / locale / "LC_MESSAGES"
        target.mkdir(parents=True, exist_ok=True)
        with (target / "messages.mo").open("wb") as mo:
            write_mo(mo, catalog)
    return I18n(path=root, default_locale="zh", domain="messages")


@pytest.fixture(scope="session")
def pending_i18n(tmp_path_factory: pytest.TempPathFactory) -> I18n:
    return catalogues_with_pending(tmp_path_factory.mktemp("locales"))


# --- a council to vote -----------------------------------------------------------------------

T0 = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)


class PollRig:
    """A vote's polls sent as the process sends them (bot.polls.send_vote_polls): the bot on
    `double_type` (a recording Telegram), paced by a limiter on a virtual clock from T0."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        i18n: I18n,
        double_type: type[TelegramDouble] = TelegramDouble,
    ) -> None:
        self.clock = VirtualClock()
        self.start = self.clock.now
        self.double = double_type(clock=lambda: self.now().timestamp())
        self.bot = make_bot(self.double)
        self.limiter = MemorySendLimiter(clock=self.clock, sleep=self.clock.sleep)
        self.sessionmaker = sessionmaker
        self.i18n = i18n

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.clock.now - self.start)

    async def send(self, vote_id: int) -> SendReport:
        (report,) = await self.clock.run(
            send_vote_polls(
                self.bot,
                self.sessionmaker,
                vote_id,
                self.limiter,
                i18n=self.i18n,
                tz=make_settings().tz,
                default_locale="zh",
                now=self.now,
                sleep=self.clock.sleep,
            )
        )
        return report


COUNCIL_CHAT = -100_111
COMMUNITY_CHAT = -100_222
STAFF_TID = 20_000


def member_tid(n: int) -> int:
    return 30_000 + n


@dataclass
class Council:
    community_id: int
    staff: Principal
    members: list[int]  # Telegram ids
    sessionmaker: Sessions
    suggestions: list[int] = field(default_factory=list)


async def make_council(
    sessionmaker: Sessions,
    community_id: int,
    size: int = 5,
    *,
    council_chat: bool = True,
    community_chat: bool = True,
    member_language: str | None = "zh-hans",
) -> Council:
    async with sessionmaker() as session:
        staff = await ensure_person(session, TelegramIdentity(STAFF_TID, "社区工作人员"))
        scope = Scope(ScopeLevel.COMMUNITY, community_id)
        await access.grant_role(session, staff.id, Role.COMMUNITY_STAFF, scope)
        for n in range(size):
            member = await ensure_person(
                session, TelegramIdentity(member_tid(n), f"议事{n}", language_code=member_language)
            )
            await access.grant_role(session, member.id, Role.COUNCIL_MEMBER, scope)
        await session.commit()
        community = await session.get(Community, community_id)
        assert community is not None
        if council_chat:
            await chats.bind_chat(
                session,
                COUNCIL_CHAT,
                community,
                title="新沙议事会",
                chat_type="supergroup",
                bound_by_person_id=staff.id,
                purpose=ChatPurpose.COUNCIL,
            )
        if community_chat:
            await chats.bind_chat(
                session,
                COMMUNITY_CHAT,
                community,
                title="新沙居民群",
                chat_type="supergroup",
                bound_by_person_id=staff.id,
            )
        principal = Principal(Role.COMMUNITY_STAFF, scope, staff.id)
    return Council(community_id, principal, [member_tid(n) for n in range(size)], sessionmaker)


async def add_candidates(
    council_: Council, titles: list[str], *, proposer_base: int = 10_000
) -> list[int]:
    ids = []
    for n, title in enumerate(titles):
        async with council_.sessionmaker() as session:
            stored = await submit(
                session,
                TelegramIdentity(proposer_base + n, f"居民{n}"),
                Draft(
                    council_.community_id, Category.ENVIRONMENT, title, "说明", kind=Kind.SERVICE
                ),
                tz=UTC,
                daily_limit=1000,
            )
        ids.append(stored.id)
    async with council_.sessionmaker() as session:
        for suggestion_id in ids:
            await screening.accept(session, council_.staff, suggestion_id)
    council_.suggestions += ids
    return ids


async def convene(
    council_: Council, ids: list[int], *, closes_at: datetime, now: datetime = T0
) -> CouncilVote:
    async with council_.sessionmaker() as session:
        request = ConveneRequest(council_.community_id, ids, closes_at)
        return await council.convene(session, council_.staff, request, now=now)


def in_days(days: float, start: datetime = T0) -> datetime:
    return start + timedelta(days=days)


@dataclass
class FakePollRuntime:
    """What bot.polls and the scheduler's jobs need of webhook.runtime.Runtime, without its
    engine and dispatcher."""

    settings: Settings
    bot: Bot
    sessionmaker: async_sessionmaker[AsyncSession]
    i18n: I18n = field(default_factory=lambda: create_i18n("zh"))
    limiter: SendLimiter = field(default_factory=MemorySendLimiter)
    background: set[asyncio.Task[Any]] = field(default_factory=set)


async def until(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait, on the real clock, until `predicate()` holds (background sending, say); it may
    be a coroutine function (a look at the store)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        held = predicate()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)
