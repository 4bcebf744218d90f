"""`minsheng serve` with a real token: setWebhook only when PUBLIC_URL is set, with the secret
and the update types the dispatcher uses. Telegram is played by the sandbox's emulator, served
on its own as a self-hosted Bot API server would be (TELEGRAM_API_BASE)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from fastapi import FastAPI

from storage.settings import Settings
from webhook.app import create_app
from webhook.sandbox.emulator import Emulator

TOKEN = "7000000042:a-real-looking-token"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def telegram() -> AsyncIterator[tuple[Emulator, str]]:
    emulator = Emulator(token=TOKEN, bot_id=7000000042, bot_username="minsheng_city_bot")
    app = FastAPI()
    app.include_router(emulator.telegram_router())
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started
    try:
        yield emulator, f"http://127.0.0.1:{port}/sandbox/telegram"
    finally:
        server.should_exit = True
        await task


async def run_lifespan(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0)


async def test_public_url_sets_the_webhook_with_secret(
    telegram: tuple[Emulator, str], sqlite_url: str
) -> None:
    emulator, api_base = telegram
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        bot_token=TOKEN,  # type: ignore[arg-type]
        telegram_api_base=api_base,
        database_url=sqlite_url,
        public_url="https://minsheng.example.org",
        webhook_secret="city_secret-1",  # type: ignore[arg-type]
    )
    await run_lifespan(settings)
    assert emulator.webhook["url"] == "https://minsheng.example.org/telegram/webhook"
    assert emulator.webhook["secret_token"] == "city_secret-1"
    allowed = set(emulator.webhook["allowed_updates"])
    assert {"message", "callback_query", "my_chat_member", "poll_answer"} <= allowed


async def test_without_public_url_no_webhook_is_set(
    telegram: tuple[Emulator, str], sqlite_url: str
) -> None:
    emulator, api_base = telegram
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        bot_token=TOKEN,  # type: ignore[arg-type]
        telegram_api_base=api_base,
        database_url=sqlite_url,
    )
    await run_lifespan(settings)
    assert not emulator.webhook.get("url")
