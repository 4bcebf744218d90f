"""429 handling on the way out: short waits are waited out, long ones are not held."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.methods.base import TelegramType

from bot.factory import create_bot
from bot.sender import RetryAfterMiddleware, StaleCallbackMiddleware


class FlakySession(BaseSession):
    """Answers 429 (with `retry_after`) a given number of times, then succeeds."""

    def __init__(self, failures: int, retry_after: int) -> None:
        super().__init__()
        self.failures = failures
        self.retry_after = retry_after
        self.calls = 0

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None
    ) -> TelegramType:
        self.calls += 1
        if self.calls <= self.failures:
            raise TelegramRetryAfter(
                method=method, message="Too Many Requests", retry_after=self.retry_after
            )
        result: Any = {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 1, "type": "private"},
            "text": "ok",
        }
        return method.__returning__.model_validate(result, context={"bot": bot})  # type: ignore[no-any-return,union-attr]

    async def close(self) -> None:
        return None

    async def stream_content(self, *args: Any, **kwargs: Any) -> AsyncGenerator[bytes, None]:
        yield b""


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("bot.sender.asyncio.sleep", fake_sleep)
    return slept


async def test_short_retry_after_is_waited_out(no_sleep: list[float]) -> None:
    session = FlakySession(failures=2, retry_after=1)
    session.middleware(RetryAfterMiddleware(max_wait=5, max_attempts=3))
    bot = Bot("42:TEST", session=session)
    message = await bot(SendMessage(chat_id=1, text="hi"))
    assert message.text == "ok"
    assert session.calls == 3
    assert no_sleep == [1, 1]


async def test_long_retry_after_is_not_held(no_sleep: list[float]) -> None:
    session = FlakySession(failures=1, retry_after=30)
    session.middleware(RetryAfterMiddleware(max_wait=5))
    bot = Bot("42:TEST", session=session)
    with pytest.raises(TelegramRetryAfter):
        await bot(SendMessage(chat_id=1, text="hi"))
    assert session.calls == 1
    assert no_sleep == []


async def test_gives_up_after_max_attempts(no_sleep: list[float]) -> None:
    session = FlakySession(failures=10, retry_after=1)
    session.middleware(RetryAfterMiddleware(max_wait=5, max_attempts=3))
    bot = Bot("42:TEST", session=session)
    with pytest.raises(TelegramRetryAfter):
        await bot(SendMessage(chat_id=1, text="hi"))
    assert session.calls == 3


def test_the_service_bot_goes_through_both_middlewares() -> None:
    bot = create_bot("42:TEST")
    kinds = [type(m) for m in bot.session.middleware]
    assert StaleCallbackMiddleware in kinds and RetryAfterMiddleware in kinds
