"""Factories for the Bot and the Dispatcher: fresh objects every call, nothing at import time."""

from __future__ import annotations

from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import RedisStorage
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.gate import Gate, LocalGate, RedisGate, UpdateGateMiddleware
from bot.i18n import create_i18n
from bot.middlewares import PersonLocaleMiddleware, UpdateSessionMiddleware
from bot.performance import keep_response_types, run_cheap_filters_inline
from bot.sender import install_request_middlewares
from bot.session import JsonAiohttpSession
from storage.settings import TELEGRAM_PUBLIC_API, Settings

# Conversation state outlives a restart, but not forever: an abandoned draft expires.
FSM_STATE_TTL = 7 * 24 * 3600
# A Redis that stops answering (a partition, a frozen host) must fail a call in seconds, as
# the database does (storage.db), so the webhook answers 503 and the senders fall back;
# without these a call waits for the kernel to give up on the connection, minutes.
REDIS_SOCKET_TIMEOUT = 5.0
REDIS_CONNECT_TIMEOUT = 3.0
REDIS_HEALTH_CHECK_INTERVAL = 30  # seconds idle before a connection is pinged on reuse


def bot_defaults() -> DefaultBotProperties:
    """What every call the bot makes leaves unsaid: HTML text, and replies that fall back to a
    plain message when the message replied to is gone.

    In groups the bot answers a command with `message.reply(...)`; many groups run anti-spam
    bots (or admins) that delete commands at once, and Telegram refuses a reply to a deleted
    message (400 "message to be replied not found") unless `allow_sending_without_reply` is
    set. aiogram fills it in from here: `Message.reply` builds its `ReplyParameters` with
    `Default("allow_sending_without_reply")`, resolved against these defaults when sent.
    """
    return DefaultBotProperties(parse_mode=ParseMode.HTML, allow_sending_without_reply=True)


def create_bot(token: str, api_base: str | None = None) -> Bot:
    """Calls go as JSON (multipart only for uploads), through bot.sender's middlewares, with
    `bot_defaults()`."""
    session: AiohttpSession
    if api_base and api_base.rstrip("/") != TELEGRAM_PUBLIC_API:
        session = JsonAiohttpSession(api=TelegramAPIServer.from_base(api_base.rstrip("/")))
    else:
        session = JsonAiohttpSession()
    install_request_middlewares(session)
    return Bot(token, session=session, default=bot_defaults())


def create_redis(url: str) -> Redis:
    """The process's Redis client: one pool, every call bounded in time."""
    client: Redis = Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        health_check_interval=REDIS_HEALTH_CHECK_INTERVAL,
    )
    return client


def create_storage(redis: Redis | None) -> BaseStorage:
    if redis is None:
        return MemoryStorage()
    return RedisStorage(
        redis,
        key_builder=DefaultKeyBuilder(prefix="minsheng:fsm"),
        state_ttl=FSM_STATE_TTL,
        data_ttl=FSM_STATE_TTL,
    )


def create_gate(storage: BaseStorage) -> Gate:
    return RedisGate(storage) if isinstance(storage, RedisStorage) else LocalGate(storage)


def create_base_dispatcher(
    sessionmaker: async_sessionmaker[AsyncSession], redis: Redis | None = None, **kwargs: Any
) -> Dispatcher:
    """A dispatcher with what every update goes through before any router: the gate
    (de-duplication, the conversation's lock and state) and the store's session."""
    storage = create_storage(redis)
    # The gate takes the place of aiogram's FSM middleware (see bot.gate).
    dispatcher = Dispatcher(storage=storage, disable_fsm=True, sessionmaker=sessionmaker, **kwargs)
    gate = create_gate(storage)
    dispatcher.update.outer_middleware(UpdateGateMiddleware(storage, gate))
    dispatcher.update.outer_middleware(
        UpdateSessionMiddleware(
            sessionmaker,
            claim_updates=not gate.claims_updates,
            serialize=sessionmaker.kw["bind"].dialect.name == "sqlite",
        )
    )
    return dispatcher


def create_dispatcher(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis | None = None,
) -> Dispatcher:
    from bot.handlers import create_root_router

    dispatcher = create_base_dispatcher(sessionmaker, redis, settings=settings)
    PersonLocaleMiddleware(create_i18n(settings.default_locale), settings.default_locale).setup(
        dispatcher
    )
    dispatcher.include_router(create_root_router())
    run_cheap_filters_inline(dispatcher)
    keep_response_types()
    return dispatcher
