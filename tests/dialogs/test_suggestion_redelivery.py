"""Confirming a draft stores it once, whatever Telegram redelivers.

`submit` commits before the press is answered and its keyboard closed. If one of those calls
fails on the network, the webhook answers 503 and Telegram delivers the same update again; a
resident may also press "confirm" again on a summary whose keyboard was not closed. Either
way the draft's key (Suggestion.draft_key) finds the suggestion it already made."""

from __future__ import annotations

import pytest
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import EditMessageReplyMarkup
from aiogram.types import Update
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import SUBMIT, Driver, Harness, Person, all_text, make_harness, make_settings

from storage.models import AuditEvent, Follower, Suggestion
from webhook.telegram import is_transient

pytest_plugins = ["telegram_fakes"]

RESIDENT = Person(1001, "小明")


async def numbers(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(Suggestion.number))).all())


async def rows(sessionmaker: async_sessionmaker[AsyncSession], model: type) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def confirm_failing_on_the_network(h: Harness) -> Update:
    """The resident confirms; closing the summary's keyboard then fails on the network, after
    the suggestion was committed. The error is one the webhook answers 503 to. Returns the
    update, for Telegram to deliver again."""
    await Driver(h).summary(RESIDENT)
    update = h.button_update(RESIDENT, SUBMIT, exact=True)
    h.session.fail_next(
        EditMessageReplyMarkup,
        TelegramNetworkError(method=EditMessageReplyMarkup(), message="Request timeout error"),
    )
    with pytest.raises(TelegramNetworkError) as raised:
        await h.dispatcher.feed_update(h.bot, update)
    assert is_transient(raised.value)
    return update


async def test_redelivered_confirm_answers_with_the_stored_number(
    sessionmaker: async_sessionmaker[AsyncSession], org: object, fsm_redis: Redis
) -> None:
    """With Redis the failed update left its conversation at the summary and its update id
    unclaimed: the redelivery runs the confirm again and gets the number already given."""
    h = make_harness(make_settings(), sessionmaker, fsm_redis)
    update = await confirm_failing_on_the_network(h)
    [number] = await numbers(sessionmaker)

    calls = await h.feed(update)

    assert await numbers(sessionmaker) == [number]
    assert number in all_text(calls)
    assert await rows(sessionmaker, Follower) == 1
    assert await rows(sessionmaker, AuditEvent) == 1


async def test_second_press_on_an_open_summary_gets_the_same_number(
    bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession], org: object
) -> None:
    """In-process, the update's de-duplication mark committed with the suggestion, so the
    redelivery is dropped; the summary's keyboard stayed open, and pressing it again answers
    with the number the draft already has."""
    await confirm_failing_on_the_network(bot_harness)
    [number] = await numbers(sessionmaker)

    calls = await bot_harness.press(RESIDENT, SUBMIT, exact=True)

    assert await numbers(sessionmaker) == [number]
    assert number in all_text(calls)
    assert await rows(sessionmaker, Follower) == 1


async def test_a_new_draft_after_a_submission_is_a_new_suggestion(
    dialog_driver: Driver, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    for _ in range(2):
        await dialog_driver.summary(RESIDENT)
        await dialog_driver.h.press(RESIDENT, SUBMIT, exact=True)
    assert len(set(await numbers(sessionmaker))) == 2
