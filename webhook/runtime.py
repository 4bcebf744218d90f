"""Everything one process holds, built once by the lifespan and handed to routes and jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiogram import Bot, Dispatcher
from aiogram.utils.i18n import I18n
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.i18n import create_i18n
from bot.ratelimit import SendLimiter, create_limiter
from storage.services.council import CloseResult
from storage.settings import Settings

if TYPE_CHECKING:
    import httpx
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.outbox import OutboxSender


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    bot: Bot
    dispatcher: Dispatcher
    redis: Redis | None = None
    scheduler: AsyncIOScheduler | None = None
    webhook_secret: str = ""
    # Sandbox mode only: the built-in Bot API emulator (webhook.sandbox.emulator.Emulator),
    # and the client by which it delivers updates to our own route.
    emulator: Any = None
    sandbox_client: httpx.AsyncClient | None = None
    # What sends on its own, installed with the scheduler (webhook.jobs.install_senders):
    # handlers reach the poll sender and the early closer through the dispatcher's workflow
    # data (webhook.app), the officials' API through this. None in a process without them.
    outbox: OutboxSender | None = None
    poll_sender: Callable[[int], Awaitable[None]] | None = None
    vote_closer: Callable[[int], Awaitable[CloseResult | None]] | None = None
    # Work started in the background (bot.polls.spawn), waited for or cancelled at shutdown.
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    # Telegram's send rate, shared through Redis when the process has it (so replicas share
    # one budget), and the catalogues for what is sent on no one's update: made from the
    # fields above, so that no call order can leave a replica with a limiter of its own.
    limiter: SendLimiter = field(init=False)
    i18n: I18n = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = create_limiter(self.redis)
        self.i18n = create_i18n(self.settings.default_locale)
