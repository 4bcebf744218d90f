"""The webhook route in process, for tests that post updates to it as Telegram does.

Test modules import these (`from webhook_fakes import ...`; the tests/ root is on sys.path, as
for conftest):

- `route_app(runtime)`: a FastAPI app with only the Telegram webhook route, on `runtime`;
  `route_client(runtime)`: an HTTP client on it, in process (to close).
- `replying_dispatcher(replies, pressed)`: a small dispatcher whose handlers return their Bot
  API methods (the webhook's reply) instead of calling them.
- `message_update(...)`: a private text message as Telegram posts it (JSON); update ids
  increase across the test session (`next_update_id()`).
- `post_update(client, body, secret)`: post a body to the route as Telegram does.
- `harness_runtime(h, database_url, sessionmaker, secret)`: a Runtime on a telegram_fakes
  Harness's bot and dispatcher, for the route.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from aiogram import Dispatcher, F, Router
from aiogram.methods import TelegramMethod
from aiogram.types import CallbackQuery, Message
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram_fakes import Harness, make_settings

from webhook.runtime import Runtime
from webhook.telegram import SECRET_HEADER, create_telegram_router

ROUTE = "/telegram/webhook"
CHAT = 555  # 张伟's private chat, where `message_update` comes from by default

_update_ids = itertools.count(1000)


def route_app(runtime: Runtime) -> FastAPI:
    app = FastAPI()
    app.include_router(create_telegram_router())
    app.state.runtime = runtime
    return app


def route_client(runtime: Runtime) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=route_app(runtime))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def replying_dispatcher(
    replies: Mapping[str, Callable[[Message], TelegramMethod[Any] | None]],
    pressed: Callable[[CallbackQuery], TelegramMethod[Any]],
) -> Dispatcher:
    """Handlers that return what they would send: for a message whose text is a key of
    `replies`, what its function makes of the message; for any button pressed, `pressed`'s.
    Other messages are not handled."""
    router = Router()

    @router.message(F.text.in_(set(replies)))
    async def reply(message: Message) -> Any:
        return replies[message.text or ""](message)

    @router.callback_query()
    async def press(query: CallbackQuery) -> Any:
        return pressed(query)

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    return dispatcher


def next_update_id() -> int:
    return next(_update_ids)


def message_update(
    text: str = "hello", update_id: int | None = None, chat_id: int = CHAT
) -> dict[str, Any]:
    """A private text message from 张伟 (user `chat_id`), with the next update id unless one
    is given."""
    return {
        "update_id": next_update_id() if update_id is None else update_id,
        "message": {
            "message_id": 1,
            "date": 1_780_000_000,
            "chat": {"id": chat_id, "type": "private", "first_name": "张伟"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "张伟"},
            "text": text,
        },
    }


async def post_update(client: httpx.AsyncClient, body: Any, secret: str | None) -> httpx.Response:
    """POST `body` to the route (JSON, or bytes or str as they are), with the secret header
    unless `secret` is None."""
    headers = {} if secret is None else {SECRET_HEADER: secret}
    if isinstance(body, (bytes, str)):
        return await client.post(ROUTE, content=body, headers=headers)
    return await client.post(ROUTE, json=body, headers=headers)


def harness_runtime(
    h: Harness,
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    secret: str,
    engine: AsyncEngine | None = None,
) -> Runtime:
    """The route's runtime on `h`'s bot and dispatcher: the real dispatcher behind the real
    route, the bot's calls recorded by `h`'s session."""
    return Runtime(
        settings=make_settings(database_url=database_url, webhook_secret=secret),
        engine=engine,
        sessionmaker=sessionmaker,
        bot=h.bot,
        dispatcher=h.dispatcher,
        webhook_secret=secret,
    )
