"""Two replicas' outbox senders bring one person's command menu in line at once: the one that
read the roles first must not have the last word."""

from __future__ import annotations

import asyncio
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram import Bot
from aiogram.methods import DeleteMyCommands, SetMyCommands, TelegramMethod
from aiogram.utils.i18n import I18n
from sending_fakes import JumpClock, TelegramDouble
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import make_bot

from bot.commands_menu import RESIDENT_COMMANDS
from bot.notify_texts import NotificationRenderer
from bot.outbox import OutboxSender
from bot.ratelimit import MemorySendLimiter
from storage.rules import Role, ScopeLevel
from storage.services import access
from storage.services.access import Scope
from storage.services.people import (
    TelegramIdentity,
    ensure_person,
    find_person,
    mark_blocked,
    mark_reachable,
)

pytest_plugins = ["telegram_fakes", "sending_fakes"]

Sessions = async_sessionmaker[AsyncSession]
LI = TelegramIdentity(601, "小李", language_code="zh-hans")


class HeldDouble(TelegramDouble):
    """Telegram, where the first setMyCommands is slow (answered only once released); keeps
    the menus as Telegram would, in the order the calls took effect."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = True
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.menus: dict[tuple[int, str | None], list[str]] = {}

    async def make_request(
        self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None
    ) -> Any:
        if isinstance(method, SetMyCommands) and self.hold:
            self.hold = False
            self.reached.set()
            await self.release.wait()
        result = await super().make_request(bot, method, timeout)
        if isinstance(method, SetMyCommands | DeleteMyCommands):
            key = (int(method.scope.chat_id), method.language_code)  # type: ignore[union-attr]
            if isinstance(method, SetMyCommands):
                self.menus[key] = [c.command for c in method.commands]
            else:
                self.menus.pop(key, None)
        return result


async def test_a_revocation_while_another_replica_sets_the_grants_menu(
    sessionmaker: Sessions, org: Any, pending_i18n: I18n
) -> None:
    double = HeldDouble()
    # Telegram's pace of a call a second per chat, on a clock that jumps through the waits.
    clock = JumpClock()
    # Shared, as the Redis limiter is between replicas.
    limiter = MemorySendLimiter(clock=clock, sleep=clock.sleep)
    renderer = NotificationRenderer(pending_i18n, ZoneInfo("Asia/Shanghai"))
    replica_a, replica_b = (
        OutboxSender(
            make_bot(double), sessionmaker, limiter, renderer, monotonic=clock, sleep=clock.sleep
        )
        for _ in "ab"
    )

    async with sessionmaker() as session:
        person = await ensure_person(session, LI)
        grant = await access.grant_role(
            session, person.id, Role.COUNCIL_MEMBER, Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
        )
        await session.commit()
        grant_id = grant.id

    # Replica A takes the grant's menu, reads the roles ({council member}) and calls Telegram.
    a = asyncio.create_task(replica_a.run_once())
    await asyncio.wait_for(double.reached.wait(), 5)
    # Meanwhile an official revokes the role; replica B takes that menu and sets it.
    async with sessionmaker() as session:
        await access.revoke_role(session, grant_id)
        await session.commit()
    assert await replica_b.run_once() == 1
    double.release.set()
    assert await a == 1

    # The person holds no role: their menu must be the residents' (no list of their own).
    own = {lang: cmds for (chat, lang), cmds in double.menus.items() if chat == LI.telegram_id}
    resident = [name for name, _text in RESIDENT_COMMANDS]
    assert all(cmds == resident for cmds in own.values()), (
        f"a person without a role is left with the menu {own}"
    )


LI_BLOCKED = TelegramIdentity(7601, "小李", language_code="zh-hans")


# Two writers at once, one of them holding an older read: PostgreSQL's (SQLite serialises
# writers and refuses a stale reader's write).
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_grant_racing_an_unblock_still_sets_the_menu(
    sessionmaker: Sessions, org: Any, pending_i18n: I18n
) -> None:
    """An official's grant reads the person (still marked blocked) just before they unblock
    the bot on another replica, whose menu is set from the roles then committed (none); the
    grant, committing after, must still owe the menu that holds /votes."""
    async with sessionmaker() as session:
        await ensure_person(session, LI_BLOCKED)
        await session.commit()
        await mark_blocked(session, LI_BLOCKED.telegram_id)
    double = TelegramDouble()
    clock = JumpClock()
    sender = OutboxSender(
        make_bot(double),
        sessionmaker,
        MemorySendLimiter(clock=clock, sleep=clock.sleep),
        NotificationRenderer(pending_i18n, ZoneInfo("Asia/Shanghai")),
        monotonic=clock,
        sleep=clock.sleep,
    )

    official = sessionmaker()
    try:
        # Replica 1: an official's grant has read the person (still marked blocked) ...
        person = await find_person(official, LI_BLOCKED.telegram_id)
        assert person is not None and person.blocked_bot_at is not None
        # ... replica 2: they unblock the bot, and the outbox sets the menu their roles call for.
        async with sessionmaker() as other:
            assert await mark_reachable(other, LI_BLOCKED.telegram_id)
        await sender.run_once()
        # Replica 1's grant commits.
        await access.grant_role(
            official, person.id, Role.COUNCIL_MEMBER, Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
        )
        await official.commit()
    finally:
        await official.close()
    await sender.run_once()
    sets = [
        [c.command for c in r.method.commands]
        for r in double.delivered()
        if isinstance(r.method, SetMyCommands)
    ]
    assert any("votes" in s for s in sets), (
        f"a council member reachable again is left without /votes (menus set: {sets})"
    )
