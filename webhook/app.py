"""The FastAPI app factory and its lifespan, which builds the bot, dispatcher and scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import FastAPI

from bot.commands_menu import set_bot_commands
from bot.factory import create_bot, create_dispatcher, create_redis
from storage.db import create_engine, create_sessionmaker
from storage.settings import Settings
from webhook import assets
from webhook.api.officials import create_officials_router
from webhook.api.public import create_public_api_router
from webhook.board import create_board_router
from webhook.health import create_health_router
from webhook.jobs import create_scheduler, install_senders, stop_senders
from webhook.runtime import Runtime
from webhook.telegram import SECRET_HEADER, create_telegram_router

log = logging.getLogger(__name__)

SANDBOX_BOT_ID = 7000000001
WEBHOOK_PATH = "/telegram/webhook"


def _make_emulator(settings: Settings) -> Any:
    from webhook.sandbox.emulator import Emulator

    return Emulator(
        token=f"{SANDBOX_BOT_ID}:sandbox-{secrets.token_urlsafe(16)}",
        bot_id=SANDBOX_BOT_ID,
        bot_username=settings.sandbox_bot_username,
    )


async def _sandbox_start(runtime: Runtime, app: FastAPI) -> None:
    """Seed the demo and connect the emulator to our own webhook route."""
    from storage.migrate import upgrade
    from webhook.sandbox.demo import seed_demo
    from webhook.sandbox.emulator import WebhookAnswer

    await upgrade(runtime.settings.database_url)
    async with runtime.sessionmaker() as session:
        await seed_demo(session)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox", timeout=60
    )
    runtime.sandbox_client = client

    async def deliver(update: dict[str, Any]) -> WebhookAnswer:
        response = await client.post(
            WEBHOOK_PATH, json=update, headers={SECRET_HEADER: runtime.webhook_secret}
        )
        # The body may carry the webhook reply, which the emulator runs as Telegram would.
        return WebhookAnswer(
            response.status_code, response.content, response.headers.get("content-type", "")
        )

    runtime.emulator.set_deliver(deliver)


async def _after_listening(runtime: Runtime) -> None:
    """Calls to the Bot API that, in sandbox mode, need our own server to be accepting: the
    command menu, and (sandbox only) the demo groups' "Suggest a project" messages."""
    for attempt in range(50):
        try:
            await set_bot_commands(runtime.bot)
            break
        except Exception as error:
            if attempt == 49:
                log.warning("could not set the command menu: %r", error)
                return
            await asyncio.sleep(0.2)
    if runtime.emulator is not None:
        await _post_demo_suggest_messages(runtime)
        await _set_demo_menus(runtime)


async def _post_demo_suggest_messages(runtime: Runtime) -> None:
    """Sandbox mode only: in each demo residents' group that is bound and has the bot in it,
    the bot's "Suggest a project" message, pinned, as the bot posts it after a binding: so the
    group a newcomer opens first has its button. The emulator keeps chats in memory only, so
    every start posts it again; the real bot, through the emulator, in the default
    language."""
    from bot.handlers.groups import post_suggest_message
    from bot.i18n import create_i18n
    from webhook.sandbox.demo import suggest_groups

    locale = runtime.settings.default_locale
    i18n = create_i18n(locale)
    async with runtime.sessionmaker() as session:
        groups = await suggest_groups(session)
    with i18n.context(), i18n.use_locale(locale):
        for chat_id, community in groups:
            try:
                await post_suggest_message(runtime.bot, chat_id, community, pin=True)
            except Exception as error:  # the sandbox starts anyway; the group's /suggest works
                log.warning("could not post the suggest message in %s: %r", chat_id, error)


async def _set_demo_menus(runtime: Runtime) -> None:
    """Sandbox mode only: the command menus of everyone holding a role (/review for staff,
    /votes for the council), which the emulator forgets between starts, owed to the outbox."""
    from webhook.sandbox.demo import owe_role_holders_menus

    async with runtime.sessionmaker() as session:
        await owe_role_holders_menus(session)


async def _set_webhook(runtime: Runtime) -> None:
    settings = runtime.settings
    assert settings.public_url is not None
    await runtime.bot.set_webhook(
        url=f"{settings.public_url}{WEBHOOK_PATH}",
        secret_token=runtime.webhook_secret,
        allowed_updates=runtime.dispatcher.resolve_used_update_types(),
        drop_pending_updates=False,
    )
    log.info("webhook set to %s%s", settings.public_url, WEBHOOK_PATH)


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, *, api_base: str | None = None, emulator: Any = None
) -> AsyncIterator[Runtime]:
    """Engine, Redis, bot and dispatcher for one process; closed in reverse on exit."""
    engine = create_engine(settings.database_url)
    redis = create_redis(settings.redis_url) if settings.redis_url else None
    sessionmaker = create_sessionmaker(engine)
    if emulator is not None:
        token: str = emulator.token
    else:
        assert settings.bot_token is not None
        token = settings.bot_token.get_secret_value()
    bot = create_bot(token, api_base or settings.telegram_api_base)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        bot=bot,
        dispatcher=create_dispatcher(settings, sessionmaker, redis),
        redis=redis,
        webhook_secret=settings.effective_webhook_secret,
        emulator=emulator,
    )
    # Handlers reach process-wide services (sending polls, closing a vote early) through the
    # dispatcher's workflow data; what they delegate to is installed by `running_jobs`.
    for name, attribute in (("council_poll_sender", "poll_sender"), ("vote_closer", "vote_closer")):
        runtime.dispatcher[name] = _delegate(runtime, attribute)
    try:
        yield runtime
    finally:
        await bot.session.close()
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


def _delegate(runtime: Runtime, attribute: str) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        installed = getattr(runtime, attribute)
        if installed is None:
            raise RuntimeError(f"no {attribute} in this process (webhook.jobs.install_senders)")
        return installed(*args)

    return call


@contextlib.asynccontextmanager
async def running_jobs(runtime: Runtime) -> AsyncIterator[None]:
    """The scheduler and what sends on its own, for `serve` and `polling` alike."""
    # The rate limiter, outbox sender, council poll sender and vote closer (webhook.jobs).
    install_senders(runtime)
    runtime.scheduler = create_scheduler(runtime)
    runtime.scheduler.start()
    try:
        yield
    finally:
        runtime.scheduler.shutdown(wait=False)
        await stop_senders(runtime)


def with_own_site(settings: Settings, listen: tuple[str, int]) -> Settings:
    """The sandbox's board is this process: unless SITE_URL says otherwise, the bot's links to
    the board point where it listens (on every interface: at this machine)."""
    if settings.site_url is not None:
        return settings
    host, port = listen
    try:
        unspecified = not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a name
        unspecified = False
    shown = "127.0.0.1" if unspecified else _authority(host)
    return settings.model_copy(update={"site_url": f"http://{shown}:{port}"})


def _authority(host: str) -> str:
    """`host` as it stands before ":port" in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def create_app(settings: Settings, *, listen: tuple[str, int] = ("127.0.0.1", 8000)) -> FastAPI:
    """The whole service. `listen` is where this process serves, which the sandbox's bot
    needs in order to reach the built-in Bot API emulator."""
    emulator = _make_emulator(settings) if settings.sandbox else None
    host, port = listen
    api_base = None
    if emulator is not None:
        api_base = f"http://{_authority(host)}:{port}/sandbox/telegram"
        settings = with_own_site(settings, listen)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, api_base=api_base, emulator=emulator) as runtime:
            app.state.runtime = runtime
            if emulator is not None:
                await _sandbox_start(runtime, app)
            elif settings.public_url:
                await _set_webhook(runtime)
            background = asyncio.create_task(_after_listening(runtime))
            # What start-up built lives as long as the process: move it out of the collector's
            # sight, so that full collections stay short (they set the tail latency).
            gc.collect()
            gc.freeze()
            try:
                async with running_jobs(runtime):
                    yield
            finally:
                background.cancel()
                client = runtime.sandbox_client
                if client is not None:
                    await client.aclose()

    app = FastAPI(
        title="Minsheng 民生微实事",
        description="Livelihood micro-projects: Telegram webhook, officials' API, public board.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(create_telegram_router())
    app.include_router(create_health_router())
    app.include_router(create_board_router())
    app.include_router(create_public_api_router())
    app.include_router(create_officials_router())
    app.mount(assets.PREFIX, assets.static_files(), name="assets")
    if emulator is not None:
        from webhook.sandbox.page import create_sandbox_router

        app.include_router(emulator.telegram_router())
        app.include_router(create_sandbox_router(emulator))
    return app
