"""`minsheng serve` with a real token: setWebhook only when PUBLIC_URL is set, with the secret
and the update types the dispatcher uses. Telegram is played by the sandbox's emulator, served
on its own as a self-hosted Bot API server would be (TELEGRAM_API_BASE)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from servers import serve

from storage.settings import Settings
from webhook.app import create_app
from webhook.sandbox.emulator import Emulator

TOKEN = "7000000042:a-real-looking-token"


@pytest.fixture
async def telegram() -> AsyncIterator[tuple[Emulator, str]]:
    emulator = Emulator(token=TOKEN, bot_id=7000000042, bot_username="minsheng_city_bot")
    app = FastAPI()
    app.include_router(emulator.telegram_router())
    async with serve(app, lifespan="off", timeout=10.0) as base:
        yield emulator, f"{base}/sandbox/telegram"


async def run_lifespan(api_base: str, database_url: str, **settings: Any) -> None:
    """Start and stop the service with a real-looking token, its Bot API server at `api_base`."""
    app = create_app(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            bot_token=TOKEN,
            telegram_api_base=api_base,
            database_url=database_url,
            **settings,
        )
    )
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0)


async def test_public_url_sets_the_webhook_with_secret(
    telegram: tuple[Emulator, str], sqlite_url: str
) -> None:
    emulator, api_base = telegram
    await run_lifespan(
        api_base,
        sqlite_url,
        public_url="https://minsheng.example.org",
        webhook_secret="city_secret-1",
    )
    assert emulator.webhook["url"] == "https://minsheng.example.org/telegram/webhook"
    assert emulator.webhook["secret_token"] == "city_secret-1"
    allowed = set(emulator.webhook["allowed_updates"])
    assert {"message", "callback_query", "my_chat_member", "poll_answer"} <= allowed


async def test_without_public_url_no_webhook_is_set(
    telegram: tuple[Emulator, str], sqlite_url: str
) -> None:
    emulator, api_base = telegram
    await run_lifespan(api_base, sqlite_url)
    assert not emulator.webhook.get("url")
