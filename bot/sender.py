"""What every Bot API call goes through on the way out (`install_request_middlewares`).

- A 429 is waited out (briefly) and retried. Telegram answers 429 with `retry_after` when a
  chat (~1 msg/s, 20/min in a group) or the bot (~30 msg/s) goes too fast. A reply to a person
  is worth a short wait; a long one is not held inside a webhook request, so the error
  propagates and the route answers 503 (Telegram retries the update later). Within
  `self_paced()` a sender with its own pacing (the outbox) gets the 429 at once and
  reschedules the message itself.
- Answering a button press too late is not an error of the press. Telegram refuses an
  answerCallbackQuery after ~15 s (or a second one) with 400; after an outage it redelivers
  presses much older than that. The press still counts, so the update goes on as if answered
  instead of failing (and being dead-lettered with everything the person chose).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, cast

from aiogram.client.session.base import BaseSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from aiogram.methods import AnswerCallbackQuery
from aiogram.methods.base import TelegramType

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods import Response, TelegramMethod

log = logging.getLogger(__name__)

# Set by senders that pace themselves and handle a 429 their own way (the outbox): within
# their calls RetryAfterMiddleware passes the 429 straight on instead of waiting it out.
SELF_PACED: ContextVar[bool] = ContextVar("minsheng_self_paced", default=False)


@contextmanager
def self_paced() -> Iterator[None]:
    token = SELF_PACED.set(True)
    try:
        yield
    finally:
        SELF_PACED.reset(token)


# Telegram's descriptions for a callback query that can no longer be answered.
STALE_QUERY = ("query is too old", "query id is invalid")


def install_request_middlewares(session: BaseSession) -> None:
    session.middleware(StaleCallbackMiddleware())
    session.middleware(RetryAfterMiddleware())


class StaleCallbackMiddleware(BaseRequestMiddleware):
    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        try:
            return await make_request(bot, method)
        except TelegramBadRequest as error:
            description = error.message.lower()
            if not isinstance(method, AnswerCallbackQuery) or not any(
                stale in description for stale in STALE_QUERY
            ):
                raise
            log.info("button press %s answered too late: %s", method.callback_query_id, error)
            # What answerCallbackQuery returns; the middleware chain passes results through.
            return cast("Response[TelegramType]", True)


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
        if SELF_PACED.get():
            return await make_request(bot, method)
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                if attempt == self.max_attempts or error.retry_after > self.max_wait:
                    raise
                log.info("429 on %s: waiting %ss", type(method).__name__, error.retry_after)
                await asyncio.sleep(error.retry_after)
        raise AssertionError("unreachable")
