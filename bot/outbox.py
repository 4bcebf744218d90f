"""The sender of the outbox: claims due notifications in the store, renders each in its
recipient's language, sends it within Telegram's limits and marks what became of it.

Claims are leases (storage.services.notifications.claim_due), so however many replicas run
this, a message is sent by one of them. Chats are served side by side, each in order; a chat
that must wait (a group's 20 a minute, a 429's retry_after) is put back for later rather than
waited on past the lease, so it never holds up the others nor outlives its claim.

A group upgraded to a supergroup has a new chat id: Telegram refuses the old one with
TelegramMigrateToChat, naming the new. The sender then moves the chat (its binding and what is
owed to it, storage.services.chats.migrate_chat) and sends to the new id.

What a failed send means is bot.telegram_errors' reading. A refusal fails the message for
good; what did not reach Telegram, or may have (its answer was lost), is sent again later:
so a notice may arrive twice, at least once being what matters for it (a council poll may
not, and bot.polls records such a send as uncertain instead).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, assert_never

from aiogram import Bot
from aiogram.types import BufferedInputFile
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.commands_menu import private_menu_calls
from bot.notify_texts import NotificationRenderer, Part, RenderError, plan_parts
from bot.ratelimit import SendLimiter
from bot.sender import self_paced
from bot.telegram_errors import REQUEST_ERRORS, FailureKind, classify
from storage.models import COMMAND_MENU, Notification, utcnow
from storage.rules import Role
from storage.services import access, chats, notifications
from storage.services.notifications import NO_PARTS, Parts
from storage.services.people import find_person

log = logging.getLogger(__name__)

LEASE_SECONDS = 60
# What a claim may spend waiting on the limiter: the rest of the lease is for the sending.
WAIT_BUDGET = 20.0
MAX_CONCURRENT_CHATS = 16
# Retry of a network error or a 5xx: 5 s, 10 s, 20 s … at most 5 minutes.
BACKOFF_BASE, BACKOFF_MAX = 5.0, 300.0


def backoff(attempts: int) -> float:
    return float(min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, attempts - 1)))


@dataclass
class _Outcome:
    """What happened to one notification, for the tally and the tests."""

    status: str  # sent | retry | failed | blocked | deferred | taken
    detail: str = ""


class _ChatHalted(Exception):
    """Stop sending to this chat in this run (the rest of its messages are put back, or,
    when the chat blocked the bot, were marked so by the store already)."""

    def __init__(self, retry_after: float, reason: str, *, blocked: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.reason = reason
        self.blocked = blocked


class OutboxSender:
    def __init__(
        self,
        bot: Bot,
        sessionmaker: async_sessionmaker[AsyncSession],
        limiter: SendLimiter,
        renderer: NotificationRenderer,
        *,
        default_locale: str = "zh",
        lease_seconds: int = LEASE_SECONDS,
        wait_budget: float = WAIT_BUDGET,
        max_concurrent_chats: int = MAX_CONCURRENT_CHATS,
        now: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if wait_budget >= lease_seconds:
            raise ValueError("the wait budget must leave part of the lease for sending")
        self.bot = bot
        self.sessionmaker = sessionmaker
        self.limiter = limiter
        self.renderer = renderer
        self.default_locale = default_locale
        self.lease_seconds = lease_seconds
        self.wait_budget = wait_budget
        self.max_concurrent_chats = max_concurrent_chats
        # A send begins under a freshly renewed lease (_renew) and must end inside it.
        self.request_timeout = max(1, int(lease_seconds // 2))
        self._now = now
        self._monotonic = monotonic
        self._sleep = sleep
        self.outcomes: dict[int, _Outcome] = {}  # notification id → the last run's outcome

    async def run_once(self, limit: int = 50) -> int:
        """Send what is due, up to `limit` notifications; returns how many were sent.
        Raises only if the store cannot be reached to claim (the caller logs and retries)."""
        async with self.sessionmaker() as session:
            claimed = await notifications.claim_due(
                session, limit=limit, now=self._now(), lease_seconds=self.lease_seconds
            )
            # Detached copies: each chat's worker reads them from its own task.
            rows = [_Claimed.of(n) for n in claimed]
        if not rows:
            return 0
        deadline = self._monotonic() + self.wait_budget
        by_chat: dict[int, list[_Claimed]] = {}
        for row in rows:
            by_chat.setdefault(row.chat_id, []).append(row)
        gate = asyncio.Semaphore(self.max_concurrent_chats)

        async def serve(chat_rows: list[_Claimed]) -> int:
            async with gate:
                return await self._serve_chat(chat_rows, deadline)

        with self_paced():  # a 429 pauses the chat here rather than being waited out inline
            results = await asyncio.gather(
                *(serve(chat_rows) for chat_rows in by_chat.values()), return_exceptions=True
            )
        sent = 0
        for result in results:
            if isinstance(result, BaseException):
                # A store outage midway: what was not marked comes due again with its lease.
                log.error("outbox: a chat's sending stopped: %r", result)
            else:
                sent += result
        return sent

    async def _serve_chat(self, rows: list[_Claimed], deadline: float) -> int:
        sent = 0
        locale: str | None = None
        halted: _ChatHalted | None = None
        chat_id = rows[0].chat_id if rows else 0
        for row in rows:
            row.chat_id = chat_id  # the new id, once a send found the group upgraded
            if halted is not None and halted.blocked:
                # notifications.mark_blocked marked every pending message of the chat.
                self.outcomes[row.id] = _Outcome("blocked", halted.reason)
                continue
            if halted is not None:
                await self._mark(
                    row, "deferred", halted.reason, retry=halted.retry_after, keep_progress=True
                )
                continue
            if locale is None:
                locale = await self._locale(row)
            try:
                if await self._send(row, locale, deadline):
                    sent += 1
            except _ChatHalted as halt:
                halted = halt
            chat_id = row.chat_id
        return sent

    async def _locale(self, row: _Claimed) -> str:
        async with self.sessionmaker() as session:
            reader = await chats.reader_of(session, row.chat_id, self.default_locale)
        return reader.locale

    async def _send(self, row: _Claimed, locale: str, deadline: float) -> bool:
        """Send one notification; True if it is now sent. Raises _ChatHalted when the rest of
        this chat's messages must wait for a later run."""
        try:
            steps = self._steps(row, locale, deadline)
        except RenderError as error:
            await self._mark(row, "failed", str(error))
            return False
        row.parts = len(steps)
        index = _parts_done(row.progress, len(steps))
        migrated = False
        while index < len(steps):
            await self._take_turn(row, deadline, done=index)
            if not await self._renew(row):
                return False
            try:
                await steps[index]()
            except REQUEST_ERRORS as error:
                failure = classify(error)
                match failure.kind:
                    case FailureKind.RATE_LIMITED:
                        wait = failure.retry_after
                        await self.limiter.pause(row.chat_id, wait)
                        await self._mark(row, "retry", failure.description, retry=wait, done=index)
                        raise _ChatHalted(wait, "429 earlier in this run") from error
                    case FailureKind.CHAT_GONE:
                        await self._mark(row, "blocked", failure.description)
                        raise _ChatHalted(0, "blocked", blocked=True) from error
                    case FailureKind.MIGRATED if (
                        not migrated and failure.new_chat_id != row.chat_id
                    ):
                        await self._follow_migration(row, failure.new_chat_id)
                        migrated = True
                        continue  # the same part, to the new id
                    case FailureKind.MIGRATED | FailureKind.REFUSED:
                        # Refused, or moved once already for this message: not a group upgraded.
                        await self._mark(row, "failed", failure.description, done=index)
                        return False
                    case FailureKind.UNAUTHORIZED:
                        # The token is wrong: nothing will go anywhere; keep everything for later.
                        await self._mark(
                            row, "retry", failure.description, retry=BACKOFF_MAX, done=index
                        )
                        raise
                    case FailureKind.NEVER_SENT | FailureKind.UNCERTAIN:
                        # Sent again later, although Telegram may have delivered it: a notice
                        # arriving twice is a lesser harm than one never arriving.
                        delay = backoff(row.attempts)
                        await self._mark(row, "retry", failure.description, retry=delay, done=index)
                        raise _ChatHalted(delay, "a network error earlier in this run") from error
                    case _:
                        assert_never(failure.kind)
            index += 1
        await self._mark(row, "sent")
        return True

    async def _renew(self, row: _Claimed) -> bool:
        """Renew the claim on `row` for a send about to be made; False (and nothing sent)
        when its lease ran out and another replica has taken it over."""
        async with self.sessionmaker() as session:
            until = await notifications.renew_claim(
                session,
                row.id,
                row.held_until,
                now=self._now(),
                lease_seconds=self.lease_seconds,
            )
        if until is None:
            log.info("outbox: notification %s was taken over by another sender", row.id)
            self.outcomes[row.id] = _Outcome("taken", "its lease ran out; claimed elsewhere")
            return False
        row.held_until = until
        return True

    async def _follow_migration(self, row: _Claimed, new_chat_id: int) -> None:
        """The group of `row` is now the supergroup `new_chat_id`: move the chat in the store
        (its binding, and every message still owed to the old id, this one included) and send
        there from now on."""
        async with self.sessionmaker() as session:
            moved = await chats.migrate_chat(session, row.chat_id, new_chat_id)
        log.info("outbox: group %s is now supergroup %s: %s", row.chat_id, new_chat_id, moved)
        row.chat_id = new_chat_id

    async def _take_turn(self, row: _Claimed, deadline: float, done: int = 0) -> None:
        """Wait for the limiter's turn to call Telegram for `row`; past the claim's budget,
        put `row` back for when it comes (`done` parts sent) and halt the chat's run."""
        wait = await self._wait_turn(row.chat_id, deadline)
        if wait is not None:
            reason = "waiting for the rate limit"
            await self._mark(row, "deferred", reason, retry=wait, done=done)
            raise _ChatHalted(wait, reason)

    async def _wait_turn(self, chat_id: int, deadline: float) -> float | None:
        """Wait for the limiter while the claim's budget lasts; None once it is our turn,
        else the seconds still to wait (the message goes back to the queue for that long)."""
        while True:
            wait = await self.limiter.try_acquire(chat_id)
            if wait <= 0:
                return None
            if self._monotonic() + wait > deadline:
                return wait
            await self._sleep(wait + 0.001)

    def _steps(
        self, row: _Claimed, locale: str, deadline: float
    ) -> list[Callable[[], Awaitable[None]]]:
        """The calls that deliver `row`, one per part of its message (each reads the chat id
        when it runs: a part may find the group upgraded); one for a command menu."""
        if row.kind == COMMAND_MENU:
            return [functools.partial(self._sync_menu, row, deadline)]
        parts = plan_parts(self.renderer.render(row.kind, row.params, locale))
        return [
            functools.partial(self._deliver, row, part, index) for index, part in enumerate(parts)
        ]

    async def _deliver(self, row: _Claimed, part: Part, index: int) -> None:
        if part.image is not None:
            await self.bot.send_photo(
                row.chat_id,
                BufferedInputFile(part.image, filename=f"result-{row.id}.png"),
                caption=part.text or None,
                request_timeout=self.request_timeout,
            )
        else:
            # Later parts of one notification arrive without a second buzz.
            await self.bot.send_message(
                row.chat_id,
                part.text,
                disable_notification=index > 0 or None,
                request_timeout=self.request_timeout,
            )

    async def _sync_menu(self, row: _Claimed, deadline: float) -> None:
        """The private menu of the person whose chat `row` is, as their roles and chosen
        language are now (not as they were when it was owed: several changes need one).

        Each call takes its turn with the limiter (the caller took the first's). Another
        replica may be setting the same person's menu from an older or newer change, and
        the calls finishing last win: so the roles and language are read again once the calls
        are made, and the menu set again if they changed meanwhile. The read that ends this
        comes after every call made here; a change committed later owes a menu of its own."""
        basis = await self._menu_basis(row.chat_id)
        first = True
        while basis is not None:
            for call in private_menu_calls(self.renderer.i18n, row.chat_id, *basis):
                if not first:  # deferred, the menu is set again from the start: idempotent
                    await self._take_turn(row, deadline)
                first = False
                await self.bot(call, request_timeout=self.request_timeout)
            now = await self._menu_basis(row.chat_id)
            basis = None if now == basis else now

    async def _menu_basis(
        self, telegram_id: int
    ) -> tuple[frozenset[Role], str | None, str | None] | None:
        """What a person's menu follows: their roles, chosen language and client language."""
        async with self.sessionmaker() as session:
            person = await find_person(session, telegram_id)
            if person is None:
                return None
            principals = await access.principals_of(session, person.id)
        roles = frozenset(principal.role for principal in principals)
        return roles, person.locale, person.language_code

    async def _mark(
        self,
        row: _Claimed,
        status: str,
        detail: str = "",
        *,
        retry: float = 0.0,
        done: int = 0,
        keep_progress: bool = False,
    ) -> None:
        self.outcomes[row.id] = _Outcome(status, detail)
        # How far this attempt got: `done` parts of the message, which the retry skips.
        progress = Parts(done, row.parts) if done else NO_PARTS
        async with self.sessionmaker() as session:
            if status == "sent":
                await notifications.mark_sent(session, row.id, self._now())
            elif status in ("retry", "deferred"):
                await notifications.mark_retry(
                    session,
                    row.id,
                    retry,
                    now=self._now(),
                    error=detail,
                    attempted=status == "retry",  # "deferred": held back by our own pacing
                    held_until=row.held_until,
                    parts=None if keep_progress else progress,
                )
            elif status == "blocked":
                await notifications.mark_blocked(session, row.id)
            else:
                await notifications.mark_failed(session, row.id, detail or "failed", parts=progress)
        if status not in ("sent", "deferred"):
            log.info("outbox: notification %s to %s %s: %s", row.id, row.chat_id, status, detail)


def _parts_done(progress: Parts, total: int) -> int:
    """How many parts an earlier, interrupted attempt already sent (0 if none or if the
    message has since been rendered into a different number of parts)."""
    done = progress.sent
    return done if progress.total == total and 0 < done < total else 0


@dataclass
class _Claimed:
    """A claimed notification, read once (the ORM object belongs to the claim's session)."""

    id: int
    chat_id: int
    kind: str
    params: dict[str, Any]
    attempts: int
    progress: Parts  # how far an earlier attempt got, as claimed
    held_until: datetime  # the end of this claimer's lease on it
    parts: int = 0  # what it renders into in this run

    @classmethod
    def of(cls, n: Notification) -> _Claimed:
        params = n.params if isinstance(n.params, dict) else {}
        progress = Parts(n.parts_sent, n.parts_total)
        return cls(n.id, n.chat_id, n.kind, params, n.attempts, progress, n.not_before)


__all__ = ["LEASE_SECONDS", "OutboxSender", "backoff"]
