"""Everything one process holds, built once by the lifespan and handed to routes and jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiogram import Bot, Dispatcher
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.settings import Settings

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler


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
    # Sandbox mode only: the built-in Bot API emulator (webhook.sandbox.emulator.Emulator).
    emulator: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
