"""The server under test, one uvicorn worker as `minsheng serve` runs it.

`--mode full` serves the real app (`webhook.app.create_app`); `--mode baseline` serves the
same Telegram route under the same uvicorn settings, feeding a Dispatcher with no middleware
and one no-op handler per update type: the floor the framework sets.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from aiogram import Dispatcher, Router
from aiogram.types import CallbackQuery, Message
from fastapi import FastAPI
from pydantic import SecretStr

from bot.factory import create_bot
from storage.db import create_engine, create_sessionmaker
from storage.settings import Settings
from webhook.runtime import Runtime
from webhook.server import configure_logging
from webhook.telegram import create_telegram_router


def create_baseline_dispatcher() -> Dispatcher:
    router = Router(name="bench-noop")

    @router.message()
    async def noop_message(message: Message) -> None:
        return None

    @router.callback_query()
    async def noop_callback(query: CallbackQuery) -> None:
        return None

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    return dispatcher


def create_baseline_app(settings: Settings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The engine is never used by the no-op path; the route's dead-letter branch needs one.
        engine = create_engine(settings.database_url)
        assert settings.bot_token is not None
        bot = create_bot(settings.bot_token.get_secret_value(), settings.telegram_api_base)
        app.state.runtime = Runtime(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            bot=bot,
            dispatcher=create_baseline_dispatcher(),
            webhook_secret=settings.effective_webhook_secret,
        )
        try:
            yield
        finally:
            await bot.session.close()
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(create_telegram_router())
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("full", "baseline"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--api-base", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--max-suggestions-per-day", type=int, default=1000)
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args()

    settings = Settings(
        bot_token=SecretStr(args.token),
        telegram_api_base=args.api_base,
        webhook_secret=SecretStr(args.secret),
        public_url=None,
        database_url=args.database_url,
        redis_url=args.redis_url or None,
        max_suggestions_per_day=args.max_suggestions_per_day,
    )
    # As webhook.server.serve: its logging, uvicorn at "info" (access log included).
    configure_logging()
    if args.mode == "full":
        from webhook.app import create_app

        app = create_app(settings, listen=(args.host, args.port))
    else:
        app = create_baseline_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        proxy_headers=True,
        access_log=not args.no_access_log,
    )


if __name__ == "__main__":
    main()
