"""Keeping to Telegram's limits on the way out: a 429 is waited out (briefly) and retried.

Telegram answers 429 with `retry_after` when a chat (~1 msg/s, 20/min in a group) or the bot
(~30 msg/s) goes too fast. A reply to a person is worth a short wait; a long one is not held
inside a webhook request, so the error propagates and the route answers 503 (Telegram retries
the update later).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods.base import TelegramType

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods import Response, TelegramMethod

log = logging.getLogger(__name__)


class RetryAfterMiddleware(BaseRequestMiddleware):
    def __init__(self, max_wait: float = 5.0, max_attempts: int = 3) -> None:
        self.max_wait = max_wait
        self.max_attempts = max_attempts

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                if attempt == self.max_attempts or error.retry_after > self.max_wait:
                    raise
                log.info("429 on %s: waiting %ss", type(method).__name__, error.retry_after)
                await asyncio.sleep(error.retry_after)
        raise AssertionError("unreachable")
