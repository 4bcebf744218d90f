"""Withdrawing a suggestion (撤回): buttons under /my for what the community has not begun to
look at, a confirmation, and polite refusals once it has, or for a button that is not theirs."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import EditMessageText, SendMessage
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import Driver, Harness, Person, alerts, button_texts, last_text, sent

from bot.callbacks import WithdrawCb, WithdrawStep
from storage.models import AuditEvent, Suggestion
from storage.rules import Category, Role, ScopeLevel, State
from storage.services import access, screening
from storage.services.people import TelegramIdentity, ensure_person
from storage.services.suggestions import Draft, submit

pytest_plugins = ["telegram_fakes"]

RESIDENT = Person(1001, "小明")
NEIGHBOUR = Person(1002, "小红")
STALE = "这个按钮已过期，请使用最新消息中的按钮。"
Sessions = async_sessionmaker[AsyncSession]


async def only_suggestion(sessionmaker: Sessions) -> Suggestion:
    async with sessionmaker() as session:
        return (await session.scalars(select(Suggestion))).one()


async def my_buttons(h: Harness, person: Person) -> list[str]:
    [listing] = [c for c in await h.say(person, "/my") if isinstance(c.method, SendMessage)]
    return button_texts(listing.method.reply_markup)


async def test_withdraw_from_my_list(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: Sessions
) -> None:
    await dialog_driver.submitted(RESIDENT)
    number = (await only_suggestion(sessionmaker)).number
    assert await my_buttons(bot_harness, RESIDENT) == [f"撤回 {number}"]
    calls = await bot_harness.press(RESIDENT, f"撤回 {number}", exact=True)
    question = last_text(calls)
    assert question.startswith(f"确定撤回建议 <b>{number}</b>“修复3栋楼梯间照明灯”吗？")
    assert button_texts(sent(calls)[-1].method.reply_markup) == ["确认撤回", "不撤回"]
    calls = await bot_harness.press(RESIDENT, "确认撤回", exact=True)
    assert alerts(calls) == ["已撤回。"]
    assert last_text(calls).startswith(f"建议 <b>{number}</b>“修复3栋楼梯间照明灯”已撤回。")
    stored = await only_suggestion(sessionmaker)
    assert stored.status is State.WITHDRAWN
    async with sessionmaker() as session:
        trail = (await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all()
        assert [(e.action, e.public) for e in trail] == [("submit", True), ("withdraw", True)]
    # Listed as withdrawn, with nothing left to withdraw.
    calls = await bot_harness.say(RESIDENT, "/my")
    assert f"<b>{number}</b> · 已撤回" in last_text(calls)
    assert sent(calls)[-1].method.reply_markup is None


async def test_keeping_it_changes_nothing(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: Sessions
) -> None:
    await dialog_driver.submitted(RESIDENT)
    number = (await only_suggestion(sessionmaker)).number
    await bot_harness.say(RESIDENT, "/my")
    await bot_harness.press(RESIDENT, f"撤回 {number}", exact=True)
    calls = await bot_harness.press(RESIDENT, "不撤回", exact=True)
    assert last_text(calls) == "好的，建议保留，没有任何改动。"
    assert (await only_suggestion(sessionmaker)).status is State.SUBMITTED
    assert await my_buttons(bot_harness, RESIDENT) == [f"撤回 {number}"]


async def review_begins(sessionmaker: Sessions, org: Any, suggestion_id: int) -> None:
    async with sessionmaker() as session:
        person = await ensure_person(session, TelegramIdentity(5001, "社工"))
        scope = access.Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
        await access.grant_role(session, person.id, Role.COMMUNITY_STAFF, scope)
        await session.commit()
        principal = access.Principal(Role.COMMUNITY_STAFF, scope, person.id)
        await screening.begin_review(session, principal, suggestion_id)


async def test_once_the_community_has_begun_it_cannot_be_withdrawn(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: Sessions, org: Any
) -> None:
    await dialog_driver.submitted(RESIDENT)
    stored = await only_suggestion(sessionmaker)
    await bot_harness.say(RESIDENT, "/my")  # a list whose button will be out of date
    await review_begins(sessionmaker, org, stored.id)
    calls = await bot_harness.press(RESIDENT, f"撤回 {stored.number}", exact=True)
    assert alerts(calls) == [
        f"建议 {stored.number} 已不能撤回：社区已开始处理（当前状态：审核中）。"
        "如需终止，请联系社区工作人员。"
    ]
    assert not sent(calls)
    assert await my_buttons(bot_harness, RESIDENT) == []


async def test_confirming_after_review_began_says_why(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: Sessions, org: Any
) -> None:
    await dialog_driver.submitted(RESIDENT)
    stored = await only_suggestion(sessionmaker)
    await bot_harness.say(RESIDENT, "/my")
    await bot_harness.press(RESIDENT, f"撤回 {stored.number}", exact=True)
    await review_begins(sessionmaker, org, stored.id)
    calls = await bot_harness.press(RESIDENT, "确认撤回", exact=True)
    assert last_text(calls).startswith(f"建议 {stored.number} 已不能撤回")
    assert (await only_suggestion(sessionmaker)).status is State.UNDER_REVIEW


async def test_pressed_again_once_withdrawn_it_says_so(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: Sessions
) -> None:
    """The list's button and the confirmation pressed again after the withdrawal (a double
    tap, an old list) say it is withdrawn, never that the community has begun with it."""
    await dialog_driver.submitted(RESIDENT)
    stored = await only_suggestion(sessionmaker)
    await bot_harness.say(RESIDENT, "/my")
    listing, _ = bot_harness.find_button(RESIDENT.id, f"撤回 {stored.number}", exact=True)
    await bot_harness.press(RESIDENT, f"撤回 {stored.number}", exact=True)
    confirmation, _ = bot_harness.find_button(RESIDENT.id, "确认撤回", exact=True)
    await bot_harness.press(RESIDENT, "确认撤回", exact=True)
    yes = WithdrawCb(step=WithdrawStep.YES, id=stored.id).pack()
    calls = await bot_harness.press_data(RESIDENT, yes, confirmation.message_id)
    assert alerts(calls) == ["已撤回。"]
    assert last_text(calls).startswith(f"建议 <b>{stored.number}</b>“修复3栋楼梯间照明灯”已撤回。")
    ask = WithdrawCb(step=WithdrawStep.ASK, id=stored.id).pack()
    calls = await bot_harness.press_data(RESIDENT, ask, listing.message_id)
    assert alerts(calls) == [f"建议 {stored.number} 已撤回。"]
    assert not sent(calls)


async def test_a_confirmation_delivered_again_after_a_failure_says_it_is_done(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: Sessions
) -> None:
    """The withdrawal commits, then editing the confirmation fails for now: the route answers
    503 and Telegram delivers the press again, which tells what was done."""
    await dialog_driver.submitted(RESIDENT)
    stored = await only_suggestion(sessionmaker)
    await bot_harness.say(RESIDENT, "/my")
    await bot_harness.press(RESIDENT, f"撤回 {stored.number}", exact=True)
    press = bot_harness.button_update(RESIDENT, "确认撤回", exact=True)
    timeout = TelegramNetworkError(method=EditMessageText(text="x"), message="timeout")
    bot_harness.session.fail_next(EditMessageText, timeout)
    with pytest.raises(TelegramNetworkError):
        await bot_harness.feed(press)
    assert (await only_suggestion(sessionmaker)).status is State.WITHDRAWN
    calls = await bot_harness.feed(press)
    assert "已撤回。欢迎随时用 /suggest" in last_text(calls)


async def test_a_suggestion_others_were_merged_into_stays(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: Sessions
) -> None:
    """Merging begins the target's review; a target merged into while still submitted (as
    before that rule) keeps the residents' duplicates standing in it all the same."""
    await dialog_driver.submitted(RESIDENT)
    stored = await only_suggestion(sessionmaker)
    async with sessionmaker() as session:
        duplicate = Suggestion(
            number="新沙-2026-0999",
            community_id=stored.community_id,
            year=2026,
            seq=999,
            category=stored.category,
            title="同一件事",
            description="…",
            status=State.MERGED,
            merged_into_id=stored.id,
        )
        session.add(duplicate)
        await session.commit()
    await bot_harness.say(RESIDENT, "/my")
    await bot_harness.press(RESIDENT, f"撤回 {stored.number}", exact=True)
    calls = await bot_harness.press(RESIDENT, "确认撤回", exact=True)
    assert f"建议 {stored.number} 已不能撤回" in last_text(calls)
    async with sessionmaker() as session:
        assert (await session.get_one(Suggestion, stored.id)).status is State.SUBMITTED


async def test_a_button_for_someone_elses_suggestion_is_stale(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: Sessions
) -> None:
    """Callback data can be forged: the proposer is checked, not the button."""
    await dialog_driver.submitted(RESIDENT)
    stored = await only_suggestion(sessionmaker)
    await bot_harness.say(NEIGHBOUR, "/start")
    for step in WithdrawStep:
        if step is WithdrawStep.NO:
            continue
        data = WithdrawCb(step=step, id=stored.id).pack()
        calls = await bot_harness.press_data(NEIGHBOUR, data, message_id=1)
        assert alerts(calls) in (["这个按钮已过期。"], [STALE]), step
        assert not sent(calls)
    assert (await only_suggestion(sessionmaker)).status is State.SUBMITTED


async def test_english(bot_harness: Harness, sessionmaker: Sessions, org: Any) -> None:
    person = Person(1003, "Amy", language_code="en")
    async with sessionmaker() as session:
        draft = Draft(org.xinsha_id, Category.CARE, "Handrails", "For the stairs.")
        who = TelegramIdentity(person.id, "Amy", language_code="en")
        stored = await submit(session, who, draft, tz=UTC, daily_limit=5)
    calls = await bot_harness.say(person, "/my")
    assert "can still be withdrawn" in last_text(calls)
    calls = await bot_harness.press(person, f"Withdraw {stored.number}", exact=True)
    assert last_text(calls).startswith(f"Withdraw suggestion <b>{stored.number}</b> “Handrails”?")
    calls = await bot_harness.press(person, "Yes, withdraw it", exact=True)
    assert "“Handrails” has been withdrawn" in last_text(calls)
