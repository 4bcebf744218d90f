"""`minsheng serve` (uvicorn) and `minsheng polling` (development without a public URL)."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from storage.settings import Settings
from webhook.app import create_app, open_runtime, running_jobs

log = logging.getLogger(__name__)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # aiogram logs a line per update at INFO; the access log already says as much.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    configure_logging()
    if settings.sandbox:
        print(
            f"Sandbox mode (no BOT_TOKEN): open http://{host}:{port}/sandbox "
            f"and the board at http://{host}:{port}/board"
        )
    app = create_app(settings, listen=(host, port))
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=True)


async def _polling(settings: Settings) -> None:
    async with open_runtime(settings) as runtime, running_jobs(runtime):
        from bot.commands_menu import set_bot_commands

        await runtime.bot.delete_webhook(drop_pending_updates=False)
        await set_bot_commands(runtime.bot)
        await runtime.dispatcher.start_polling(
            runtime.bot,
            allowed_updates=runtime.dispatcher.resolve_used_update_types(),
            handle_signals=True,
        )


def polling(settings: Settings) -> None:
    configure_logging()
    if settings.sandbox:
        raise SystemExit(
            "polling needs BOT_TOKEN; without one, `minsheng serve` runs the sandbox instead"
        )
    asyncio.run(_polling(settings))
