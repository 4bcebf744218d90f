"""A failed update comes again and is handled (CONTRACT.md: 503, nothing half-written, so
Telegram redelivers), also when a service committed part of its work before the failure:

- without Redis, the update's de-duplication mark rides on such a commit (submitting a
  suggestion, binding a group); the failure releases it, so the redelivery is not taken for
  a duplicate;
- a group's binding step outlives a refused "Suggest a project" message, so the redelivered
  press posts it.

The bot's calls go to the recording session with the production request middlewares, behind
the real route and dispatcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram.exceptions import TelegramRetryAfter
from aiogram.fsm.storage.base import StorageKey
from aiogram.methods import AnswerCallbackQuery, SendMessage, TelegramMethod
from aiogram.types import Update
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import (
    BOT_ID,
    COMMUNITY,
    DISTRICT,
    STREET,
    SUBMIT,
    SUGGEST_BUTTON,
    Driver,
    Group,
    Harness,
    Person,
    make_harness,
)
from webhook_fakes import harness_runtime, post_update, route_client

from bot.sender import install_request_middlewares
from storage.models import Chat, DeadLetter, ProcessedUpdate, Suggestion
from storage.settings import Settings

pytest_plugins = ["telegram_fakes"]

SECRET = "redelivery-secret"
RESIDENT = Person(8201, "李娜")
GROUP = Group(-1001234567801)
ADMIN = Person(8301, "王主任")
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture(params=["memory", "redis"])
async def harness(
    request: pytest.FixtureRequest, bot_settings: Settings, sessionmaker: Sessions
) -> AsyncIterator[Harness]:
    """The bot without Redis (de-duplication in the store) and with it (the gate's claim)."""
    redis = None
    if request.param == "redis":
        redis = Redis.from_url(request.getfixturevalue("redis_url"))
    h = make_harness(bot_settings, sessionmaker, redis)
    install_request_middlewares(h.session)
    yield h
    if redis is not None:
        await redis.aclose()


def too_many(method: TelegramMethod[Any]) -> TelegramRetryAfter:
    return TelegramRetryAfter(method=method, message="Too Many Requests", retry_after=30)


async def twice(
    h: Harness, update: Update, database_url: str, sessionmaker: Sessions
) -> tuple[int, dict[str, Any]]:
    """Deliver `update`, which fails with a 503, then again: where the second delivery's calls
    start in the session's record, and its webhook reply (the call Telegram would make)."""
    body = update.model_dump_json(exclude_none=True, by_alias=True)
    async with route_client(harness_runtime(h, database_url, sessionmaker, SECRET)) as client:
        assert (await post_update(client, body, SECRET)).status_code == 503
        first = len(h.session.calls)
        again = await post_update(client, body, SECRET)
    assert again.status_code == 200
    return first, (again.json() if again.content else {})


async def test_a_submission_that_failed_after_its_commit_is_finished_on_redelivery(
    harness: Harness, database_url: str, sessionmaker: Sessions, org: Any
) -> None:
    await Driver(harness).summary(RESIDENT)
    press = harness.button_update(RESIDENT, SUBMIT, exact=True)
    # The suggestion commits; then Telegram refuses the answer to the press for 30 s.
    harness.session.fail_next(
        AnswerCallbackQuery, too_many(AnswerCallbackQuery(callback_query_id="x"))
    )
    first, reply = await twice(harness, press, database_url, sessionmaker)
    again = harness.session.calls[first:]
    assert any(isinstance(c.method, AnswerCallbackQuery) for c in again)
    assert reply["method"] == "sendMessage" and "已提交" in reply["text"], reply
    key = StorageKey(bot_id=BOT_ID, chat_id=RESIDENT.id, user_id=RESIDENT.id)
    assert await harness.dispatcher.storage.get_state(key) is None, "the draft is done"
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Suggestion)) == 1
        assert await session.scalar(select(func.count()).select_from(DeadLetter)) == 0
        if harness.dispatcher.storage.__class__.__name__ != "RedisStorage":
            # Without Redis, the mark of the handled redelivery is in the store.
            assert await session.get(ProcessedUpdate, press.update_id) is not None


async def test_a_failed_update_leaves_no_mark_in_the_store(
    bot_harness: Harness, database_url: str, sessionmaker: Sessions, org: Any
) -> None:
    install_request_middlewares(bot_harness.session)
    await Driver(bot_harness).summary(RESIDENT)
    press = bot_harness.button_update(RESIDENT, SUBMIT, exact=True)
    bot_harness.session.fail_next(
        AnswerCallbackQuery, too_many(AnswerCallbackQuery(callback_query_id="x"))
    )
    body = press.model_dump_json(exclude_none=True, by_alias=True)
    async with route_client(
        harness_runtime(bot_harness, database_url, sessionmaker, SECRET)
    ) as client:
        assert (await post_update(client, body, SECRET)).status_code == 503
    async with sessionmaker() as session:
        assert await session.get(ProcessedUpdate, press.update_id) is None
        # What the service committed stays: the redelivery finds it by the draft's key.
        assert await session.scalar(select(func.count()).select_from(Suggestion)) == 1


async def test_a_group_bound_while_its_suggest_message_was_refused_gets_it_on_redelivery(
    harness: Harness, database_url: str, sessionmaker: Sessions, org: Any
) -> None:
    harness.session.member_status[(GROUP.id, ADMIN.id)] = "administrator"
    await harness.feed(harness.updates.my_chat_member(ADMIN, GROUP, "left", "member"))
    await harness.press(ADMIN, DISTRICT, GROUP, exact=True)
    await harness.press(ADMIN, STREET, GROUP, exact=True)
    press = harness.button_update(ADMIN, COMMUNITY, GROUP, exact=True)
    # The group is at its 20 messages a minute: the Suggest message is refused for now.
    harness.session.fail_next(SendMessage, too_many(SendMessage(chat_id=GROUP.id, text="x")))
    first, _reply = await twice(harness, press, database_url, sessionmaker)
    async with sessionmaker() as session:
        chat = await session.get(Chat, GROUP.id)
        assert chat is not None and chat.community_id == org.xinsha_id
    posted = [
        c
        for c in harness.session.calls[first:]
        if isinstance(c.method, SendMessage) and any(SUGGEST_BUTTON in b.text for b in c.buttons())
    ]
    assert len(posted) == 1
