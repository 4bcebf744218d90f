"""Screening through the bot (/review): one suggestion at a time, accept (with or without
correcting category and kind), reject with an exclusion reason and a note, merge, skip; an
empty queue, stale buttons, a colleague acting first, and people who are not staff. Through
the real Dispatcher on both database backends."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from aiogram.filters.callback_data import CallbackData
from conftest import OrgTree
from dialog_helpers import STAFF, Sessions, fsm, grant
from sqlalchemy import event, select
from telegram_fakes import (
    CALLBACK_DATA_MAX,
    Harness,
    Person,
    alerts,
    all_text,
    button_texts,
    last_text,
    sent,
    texts,
)

from bot.callbacks import (
    KindChoice,
    ReviewAction,
    ReviewCategoryCb,
    ReviewCb,
    ReviewKindCb,
    ReviewMergeCb,
    ReviewReasonCb,
)
from dialogs.review import ReviewForm
from storage.models import Follower, Notification, Suggestion
from storage.rules import Category, ExclusionReason, Kind, Role, ScopeLevel, State
from storage.services import screening
from storage.services.access import Principal, Scope
from storage.services.people import TelegramIdentity, find_person
from storage.services.suggestions import Draft, submit, withdraw

pytest_plugins = ["telegram_fakes", "dialog_helpers"]

COLLEAGUE = Person(2002, "李社工")
RESIDENT = Person(1001, "小明")
STALE = "这个按钮已过期，请使用最新消息中的按钮。"

ACCEPT, CORRECT, REJECT, MERGE, NEXT = (
    "✅ 采纳，交议事会讨论",
    "✏️ 修改类别或类型后采纳",
    "❌ 不予采纳",
    "🔗 合并",
    "⏭ 下一条",
)
CARD_BUTTONS = [ACCEPT, CORRECT, REJECT, MERGE, NEXT]
BACK = "‹ 返回"
REASONS = [
    "属于物业等其他主体职责范围",
    "与政府投资项目重复",
    "不属于民生微实事四类实施内容",
    "其他原因",
]
CONFIRM_REJECT, CONFIRM_MERGE = "✅ 确认不予采纳", "✅ 确认合并"
EMPTY = "🎉 目前没有待审核的建议。辛苦了！"


async def suggest(
    sessionmaker: Sessions,
    community_id: int,
    title: str = "3栋楼下路灯不亮",
    proposer: int = 1,
    category: Category = Category.SAFETY,
    kind: Kind | None = Kind.SERVICE,
    cost_fen: int | None = None,
) -> Suggestion:
    async with sessionmaker() as session:
        return await submit(
            session,
            TelegramIdentity(10_000 + proposer, f"居民{proposer}", language_code="zh"),
            Draft(
                community_id,
                category,
                title,
                "晚上很黑，老人下楼容易摔倒。",
                location_text="新沙小区3栋",
                kind=kind,
                estimated_cost_fen=cost_fen if kind else None,  # a cost needs its kind
            ),
            tz=UTC,
            daily_limit=100,
        )


async def reload(sessionmaker: Sessions, suggestion_id: int) -> Suggestion:
    async with sessionmaker() as session:
        found = await session.get(Suggestion, suggestion_id)
        assert found is not None
        return found


async def outbox(sessionmaker: Sessions, kind: str) -> list[Notification]:
    async with sessionmaker() as session:
        query = select(Notification).where(Notification.kind == kind).order_by(Notification.id)
        return list((await session.scalars(query)).all())


# --- who may review -----------------------------------------------------------------------


async def test_not_staff_is_told_politely(bot_harness: Harness, org: OrgTree) -> None:
    text = last_text(await bot_harness.say(RESIDENT, "/review"))
    assert text.startswith("/review 供社区工作人员")
    assert "/suggest" in text


async def test_a_council_member_is_not_staff(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    await grant(
        sessionmaker, RESIDENT, Role.COUNCIL_MEMBER, Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    )
    assert last_text(await bot_harness.say(RESIDENT, "/review")).startswith(
        "/review 供社区工作人员"
    )


async def test_empty_queue(bot_harness: Harness, staff: Principal) -> None:
    assert last_text(await bot_harness.say(STAFF, "/review")) == EMPTY
    assert await fsm(bot_harness, STAFF) == (None, {})


async def test_only_the_staffs_own_community(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    await suggest(sessionmaker, org.tianan_id, "天安社区的建议")
    assert last_text(await bot_harness.say(STAFF, "/review")) == EMPTY


async def test_a_street_official_sees_the_streets_communities(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    await grant(sessionmaker, STAFF, Role.STREET_OFFICIAL, Scope(ScopeLevel.STREET, org.street_id))
    first = await suggest(sessionmaker, org.tianan_id, "天安社区的建议")
    await suggest(sessionmaker, org.xinsha_id, "新沙社区的建议")
    text = last_text(await bot_harness.say(STAFF, "/review"))
    assert first.number in text and "（共 2 条）" in text
    assert "社区：福田区 › 沙头街道 › 天安社区" in text


# --- the card ------------------------------------------------------------------------------


async def test_the_card(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    item = await suggest(sessionmaker, org.xinsha_id, kind=Kind.PHYSICAL, cost_fen=1_200_000)
    calls = await bot_harness.say(STAFF, "/review")
    text = last_text(calls)
    for expected in (
        "<b>待审核建议（共 1 条）</b>",
        f"<b>{item.number}</b> · 已提交",
        "社区：福田区 › 沙头街道 › 新沙社区",
        "建议人身份：社区居民",
        "类别：消除安全隐患",
        "项目类型：实物项目",
        "标题：3栋楼下路灯不亮",
        "描述：晚上很黑，老人下楼容易摔倒。",
        "地点：新沙小区3栋",
        "估算费用：约 ¥12,000",
        "提交日期：",
        "照片：无",
    ):
        assert expected in text, expected
    assert button_texts(sent(calls)[-1].markup) == CARD_BUTTONS
    for button in sent(calls)[-1].buttons():
        assert button.callback_data and len(button.callback_data.encode()) <= CALLBACK_DATA_MAX
    assert await fsm(bot_harness, STAFF) == (
        ReviewForm.card.state,
        {"id": item.id, "skipped": [], "waiting": 1},
    )
    # Back from a step, the card keeps its count.
    await bot_harness.press(STAFF, CORRECT, exact=True)
    calls = await bot_harness.press(STAFF, BACK, exact=True)
    assert last_text(calls).startswith("<b>待审核建议（共 1 条）</b>")


async def test_an_estimate_over_the_cap_is_flagged(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    """¥300,000 for a service project (cap ¥200,000): staff see it on the card, before they
    make it a candidate; the same sum for a physical project (cap ¥500,000) is not flagged."""
    await suggest(sessionmaker, org.xinsha_id, kind=Kind.SERVICE, cost_fen=30_000_000)
    await suggest(
        sessionmaker, org.xinsha_id, "健身路径", 2, kind=Kind.PHYSICAL, cost_fen=30_000_000
    )
    calls = await bot_harness.say(STAFF, "/review")
    assert "估算费用：约 ¥300,000\n⚠️ 超过该类项目的上限（¥200,000）" in last_text(calls)
    calls = await bot_harness.press(STAFF, NEXT, exact=True)
    assert "健身路径" in last_text(calls) and "估算费用：约 ¥300,000" in last_text(calls)
    assert "⚠️" not in last_text(calls)


async def test_a_shared_location_links_to_a_map(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    async with sessionmaker() as session:
        await submit(
            session,
            TelegramIdentity(10_001, "居民1", language_code="zh"),
            Draft(
                org.xinsha_id,
                Category.SAFETY,
                "井盖松动",
                "踩上去会翘起。",
                latitude=22.5204,
                longitude=114.0262,
            ),
            tz=UTC,
            daily_limit=100,
        )
    calls = await bot_harness.say(STAFF, "/review")
    assert (
        '地点：<a href="https://uri.amap.com/marker?position=114.026200,22.520400&amp;'
        'coordinate=wgs84">已发送定位（22.52040, 114.02620）</a>'
    ) in last_text(calls)


async def test_what_a_resident_typed_is_escaped(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    await suggest(sessionmaker, org.xinsha_id, "<b>粗体</b> & <script>")
    text = last_text(await bot_harness.say(STAFF, "/review"))  # the fake refuses bad HTML
    assert "&lt;b&gt;粗体&lt;/b&gt; &amp; &lt;script&gt;" in text


async def test_text_where_buttons_are_expected(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    item = await suggest(sessionmaker, org.xinsha_id)
    await bot_harness.say(STAFF, "/review")
    calls = await bot_harness.say(STAFF, "好的")
    text = last_text(calls)
    assert text.startswith("请点击按钮进行选择。") and item.number in text
    assert button_texts(sent(calls)[-1].markup) == CARD_BUTTONS


# --- accept --------------------------------------------------------------------------------


async def test_accept(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    item = await suggest(sessionmaker, org.xinsha_id)
    await bot_harness.say(STAFF, "/review")
    calls = await bot_harness.press(STAFF, ACCEPT, exact=True)
    assert alerts(calls) == ["已接受。"]
    assert f"✅ <b>{item.number}</b>“3栋楼下路灯不亮” 已采纳，待议事会讨论" in all_text(calls)
    assert last_text(calls) == EMPTY
    assert (await reload(sessionmaker, item.id)).status is State.CANDIDATE
    told = await outbox(sessionmaker, "suggestion_accepted")
    assert [n.chat_id for n in told] == [10_001]
    assert await fsm(bot_harness, STAFF) == (None, {})


async def test_accepting_without_a_kind_asks_for_it_first(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    item = await suggest(sessionmaker, org.xinsha_id, kind=None)
    await bot_harness.say(STAFF, "/review")
    calls = await bot_harness.press(STAFF, ACCEPT, exact=True)
    assert "请先选择项目类型：服务项目和实物项目的上限不同" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == ["服务项目", "实物项目", BACK]
    assert (await reload(sessionmaker, item.id)).status is State.SUBMITTED
    calls = await bot_harness.press(STAFF, "服务项目", exact=True)
    assert alerts(calls) == ["已接受。"]
    stored = await reload(sessionmaker, item.id)
    assert (stored.status, stored.kind) == (State.CANDIDATE, Kind.SERVICE)


async def test_correct_category_and_kind_then_accept(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    item = await suggest(sessionmaker, org.xinsha_id, kind=None)
    await bot_harness.say(STAFF, "/review")
    calls = await bot_harness.press(STAFF, CORRECT, exact=True)
    assert f"<b>{item.number}</b>“3栋楼下路灯不亮” 应属于哪一类？" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [
        "消除安全隐患 · 当前",
        "社区环境整治",
        "文化体育娱乐",
        "居民生活关爱",
        BACK,
    ]
    calls = await bot_harness.press(STAFF, "文化体育娱乐", exact=True)
    # The choice stays on the message pressed; the next question does not repeat it.
    assert texts(calls) == [
        "类别：文化体育娱乐",
        f"请选择项目类型，选择后即采纳 <b>{item.number}</b>“3栋楼下路灯不亮”，交居民议事会讨论。",
    ]
    # The resident gave no kind: there is none to keep, and a candidate needs one.
    assert button_texts(sent(calls)[-1].markup) == ["服务项目", "实物项目", BACK]
    assert (await reload(sessionmaker, item.id)).status is State.SUBMITTED, "not yet"
    calls = await bot_harness.press(STAFF, "实物项目", exact=True)
    assert alerts(calls) == ["已接受。"]
    assert "（文化体育娱乐 · 实物项目）" in all_text(calls)
    stored = await reload(sessionmaker, item.id)
    assert stored.status is State.CANDIDATE
    assert stored.category is Category.CULTURE_SPORTS and stored.kind is Kind.PHYSICAL


async def test_correct_keeping_the_kind(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    item = await suggest(sessionmaker, org.xinsha_id, kind=Kind.SERVICE)
    await bot_harness.say(STAFF, "/review")
    await bot_harness.press(STAFF, CORRECT, exact=True)
    await bot_harness.press(STAFF, "居民生活关爱", exact=True)
    await bot_harness.press(STAFF, "保持不变：服务项目", exact=True)
    stored = await reload(sessionmaker, item.id)
    assert (stored.status, stored.category, stored.kind) == (
        State.CANDIDATE,
        Category.CARE,
        Kind.SERVICE,
    )


async def test_review_reads_the_roles_once(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal, engine: Any
) -> None:
    await suggest(sessionmaker, org.xinsha_id)
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])  # (conn, cursor, statement, parameters, context, executemany)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        calls = await bot_harness.say(STAFF, "/review")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert button_texts(sent(calls)[-1].markup) == CARD_BUTTONS
    assert len([sql for sql in seen if "FROM role_grant" in sql]) == 1


async def test_back_from_correcting_shows_the_card_again(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    item = await suggest(sessionmaker, org.xinsha_id)
    await bot_harness.say(STAFF, "/review")
    await bot_harness.press(STAFF, CORRECT, exact=True)
    calls = await bot_harness.press(STAFF, BACK, exact=True)
    assert item.number in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == CARD_BUTTONS
    assert (await fsm(bot_harness, STAFF))[0] == ReviewForm.card.state


# --- reject --------------------------------------------------------------------------------


async def test_reject_with_a_reason_and_a_note(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    item = await suggest(sessionmaker, org.xinsha_id)
    await bot_harness.say(STAFF, "/review")
    calls = await bot_harness.press(STAFF, REJECT, exact=True)
    assert "不予采纳的理由是？" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [*REASONS, BACK]
    calls = await bot_harness.press(STAFF, REASONS[0], exact=True)
    assert "原因：属于物业等其他主体职责范围" in all_text(calls)
    assert "可以给建议人补充一句说明（最多 500 个字），或点击“跳过”" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == ["⏭ 跳过", BACK]
    calls = await bot_harness.say(STAFF, "路灯属于物业维修范围，已转物业<处理>。")
    summary = last_text(calls)
    assert (
        "确定对 <b>" in summary and "说明：路灯属于物业维修范围，已转物业&lt;处理&gt;。" in summary
    )
    assert button_texts(sent(calls)[-1].markup) == [CONFIRM_REJECT, BACK]
    assert (await reload(sessionmaker, item.id)).status is State.SUBMITTED, "not yet"
    calls = await bot_harness.press(STAFF, CONFIRM_REJECT, exact=True)
    assert alerts(calls) == ["已完成。"]
    assert "：不予采纳（属于物业等其他主体职责范围）。建议人会收到通知。" in all_text(calls)
    assert last_text(calls) == EMPTY
    stored = await reload(sessionmaker, item.id)
    assert stored.status is State.REJECTED
    assert stored.exclusion_reason is ExclusionReason.PROPERTY_MANAGEMENT
    assert stored.exclusion_note == "路灯属于物业维修范围，已转物业<处理>。"
    (told,) = await outbox(sessionmaker, "suggestion_rejected")
    assert told.chat_id == 10_001 and told.params["note"] == stored.exclusion_note


async def test_reject_without_a_note(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    item = await suggest(sessionmaker, org.xinsha_id)
    await bot_harness.say(STAFF, "/review")
    await bot_harness.press(STAFF, REJECT, exact=True)
    await bot_harness.press(STAFF, REASONS[1], exact=True)
    calls = await bot_harness.press(STAFF, "⏭ 跳过", exact=True)
    assert "说明：—" in last_text(calls)
    await bot_harness.press(STAFF, CONFIRM_REJECT, exact=True)
    stored = await reload(sessionmaker, item.id)
    assert stored.status is State.REJECTED and stored.exclusion_note is None
    assert stored.exclusion_reason is ExclusionReason.GOVERNMENT_INVESTMENT


async def test_other_needs_a_note(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    item = await suggest(sessionmaker, org.xinsha_id)
    await bot_harness.say(STAFF, "/review")
    await bot_harness.press(STAFF, REJECT, exact=True)
    calls = await bot_harness.press(STAFF, "其他原因", exact=True)
    assert "请给建议人写一句说明理由（最多 500 个字）" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [BACK], "no skipping"
    # A forged (or very old) "skip" press is refused all the same.
    forged = ReviewCb(action=ReviewAction.SKIP_NOTE, id=item.id).pack()
    calls = await bot_harness.press_data(STAFF, forged, sent(calls)[-1].result.message_id)
    assert last_text(calls).startswith("选择“其他原因”时，需要写明理由。")
    assert (await fsm(bot_harness, STAFF))[0] == ReviewForm.note.state
    calls = await bot_harness.say(STAFF, "长" * 501)
    assert "这段说明有 501 个字，最多只能 500 个字" in last_text(calls)
    calls = await bot_harness.feed(bot_harness.updates.sticker(STAFF))
    assert last_text(calls).startswith("这一步需要文字，请直接输入。")
    await bot_harness.say(STAFF, "与社区去年的项目重复。")
    await bot_harness.press(STAFF, CONFIRM_REJECT, exact=True)
    stored = await reload(sessionmaker, item.id)
    assert stored.status is State.REJECTED
    assert stored.exclusion_reason is ExclusionReason.OTHER
    assert stored.exclusion_note == "与社区去年的项目重复。"


# --- merge ---------------------------------------------------------------------------------


async def test_merge_by_button(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    duplicate = await suggest(sessionmaker, org.xinsha_id, "3栋路灯坏了", proposer=1)
    original = await suggest(sessionmaker, org.xinsha_id, "修好3栋的路灯", proposer=2)
    await suggest(sessionmaker, org.tianan_id, "天安的路灯", proposer=3)
    await bot_harness.say(STAFF, "/review")
    calls = await bot_harness.press(STAFF, MERGE, exact=True)
    assert "要把 <b>" in last_text(calls) and f"（例如 {original.number}）" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [f"{original.number} · 修好3栋的路灯", BACK]
    calls = await bot_harness.press(STAFF, original.number)
    assert f"确定把 <b>{duplicate.number}</b>“3栋路灯坏了” 合并到 <b>{original.number}</b>" in (
        last_text(calls)
    )
    assert button_texts(sent(calls)[-1].markup) == [CONFIRM_MERGE, BACK]
    calls = await bot_harness.press(STAFF, CONFIRM_MERGE, exact=True)
    assert alerts(calls) == ["已合并。"]
    assert f"已合并到 {original.number}" in all_text(calls)
    # The next card is the one it was merged into, still waiting for review itself.
    assert original.number in last_text(calls)
    stored = await reload(sessionmaker, duplicate.id)
    assert stored.status is State.MERGED and stored.merged_into_id == original.id
    async with sessionmaker() as session:
        followers = set(
            (
                await session.scalars(
                    select(Follower.person_id).where(Follower.suggestion_id == original.id)
                )
            ).all()
        )
        proposer = await find_person(session, 10_001)
    assert proposer is not None and proposer.id in followers
    assert len(await outbox(sessionmaker, "suggestion_merged")) == 2


async def test_merge_by_typed_number(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    duplicate = await suggest(sessionmaker, org.xinsha_id, "3栋路灯坏了", proposer=1)
    original = await suggest(sessionmaker, org.xinsha_id, "修好3栋的路灯", proposer=2)
    other = await suggest(sessionmaker, org.tianan_id, "天安的路灯", proposer=3)
    await bot_harness.say(STAFF, "/review")
    await bot_harness.press(STAFF, MERGE, exact=True)
    calls = await bot_harness.say(STAFF, "新沙-1999-0001")
    assert last_text(calls).startswith("新沙社区没有编号为 新沙-1999-0001 的建议。")
    calls = await bot_harness.say(STAFF, other.number)
    assert "新沙社区没有编号为" in last_text(calls), "another community's is not found"
    calls = await bot_harness.say(STAFF, duplicate.number)
    assert last_text(calls).startswith("建议不能合并到它自己。")
    # A full-width dash and spaces are fine.
    calls = await bot_harness.say(STAFF, " " + original.number.replace("-", " － ", 1))
    assert "确定把" in last_text(calls)
    await bot_harness.press(STAFF, CONFIRM_MERGE, exact=True)
    assert (await reload(sessionmaker, duplicate.id)).merged_into_id == original.id


async def test_merge_by_the_short_form_of_a_number(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    """Staff say their own community's numbers short: "2" or "0002" for 新沙-2026-0002."""
    duplicate = await suggest(sessionmaker, org.xinsha_id, "3栋路灯坏了", proposer=1)
    original = await suggest(sessionmaker, org.xinsha_id, "修好3栋的路灯", proposer=2)
    await suggest(sessionmaker, org.tianan_id, "天安的路灯", proposer=3)  # 天安's 0001
    assert original.number.endswith("-0002")
    await bot_harness.say(STAFF, "/review")
    await bot_harness.press(STAFF, MERGE, exact=True)
    calls = await bot_harness.say(STAFF, "0009")
    assert last_text(calls).startswith("新沙社区没有编号为 0009 的建议。")
    calls = await bot_harness.say(STAFF, "２")
    assert "确定把" in last_text(calls) and original.number in last_text(calls)
    await bot_harness.press(STAFF, CONFIRM_MERGE, exact=True)
    assert (await reload(sessionmaker, duplicate.id)).merged_into_id == original.id


async def test_merge_into_a_closed_one_is_refused(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    closed = await suggest(sessionmaker, org.xinsha_id, "已经不采纳的建议", proposer=2)
    async with sessionmaker() as session:
        await screening.reject(session, staff, closed.id, ExclusionReason.OUT_OF_SCOPE, None)
    duplicate = await suggest(sessionmaker, org.xinsha_id, "3栋路灯坏了", proposer=1)
    await bot_harness.say(STAFF, "/review")
    calls = await bot_harness.press(STAFF, MERGE, exact=True)
    assert button_texts(sent(calls)[-1].markup) == [BACK], "closed ones are not offered"
    calls = await bot_harness.say(STAFF, closed.number)
    assert f"{closed.number} 的状态是“不予采纳”，只能合并到仍在进行中的建议。" in last_text(calls)
    assert (await reload(sessionmaker, duplicate.id)).status is State.SUBMITTED


# --- skip, stale buttons, colleagues ------------------------------------------------------------


async def test_skip_goes_to_the_next_and_then_ends(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    first = await suggest(sessionmaker, org.xinsha_id, "第一条", proposer=1)
    second = await suggest(sessionmaker, org.xinsha_id, "第二条", proposer=2)
    assert first.number in last_text(await bot_harness.say(STAFF, "/review"))
    calls = await bot_harness.press(STAFF, NEXT, exact=True)
    assert second.number in last_text(calls) and "（共 1 条）" in last_text(calls)
    calls = await bot_harness.press(STAFF, NEXT, exact=True)
    assert last_text(calls) == (
        "没有其他待审核的建议了；您暂时跳过了 2 条。发送 /review 可再次查看。"
    )
    # /review starts over, the skipped ones included; nothing was changed.
    assert first.number in last_text(await bot_harness.say(STAFF, "/review"))
    assert (await reload(sessionmaker, first.id)).status is State.SUBMITTED


async def test_a_button_of_an_earlier_card_is_stale(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    first = await suggest(sessionmaker, org.xinsha_id, "第一条", proposer=1)
    second = await suggest(sessionmaker, org.xinsha_id, "第二条", proposer=2)
    calls = await bot_harness.say(STAFF, "/review")
    first_card = sent(calls)[-1].result.message_id
    await bot_harness.press(STAFF, NEXT, exact=True)
    reject_first = ReviewCb(action=ReviewAction.REJECT, id=first.id).pack()
    calls = await bot_harness.press_data(STAFF, reject_first, first_card)
    assert alerts(calls) == [STALE]
    assert (await fsm(bot_harness, STAFF))[1]["id"] == second.id
    # A double tap: the second "accept" meets the next card, and is stale.
    accept_second = ReviewCb(action=ReviewAction.ACCEPT, id=second.id).pack()
    card = bot_harness.find_button(STAFF.id, ACCEPT, exact=True)[0].message_id
    await bot_harness.press_data(STAFF, accept_second, card)
    calls = await bot_harness.press_data(STAFF, accept_second, card)
    assert alerts(calls) == [STALE]
    assert (await reload(sessionmaker, second.id)).status is State.CANDIDATE


async def test_buttons_after_the_review_are_stale(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    item = await suggest(sessionmaker, org.xinsha_id)
    calls = await bot_harness.say(STAFF, "/review")
    card = sent(calls)[-1].result.message_id
    await bot_harness.say(STAFF, "/cancel")
    for data in (
        ReviewCb(action=ReviewAction.ACCEPT, id=item.id),
        ReviewReasonCb(id=item.id, reason=ExclusionReason.OTHER),
    ):
        calls = await bot_harness.press_data(STAFF, data.pack(), card)
        assert alerts(calls) == [STALE]
    assert (await reload(sessionmaker, item.id)).status is State.SUBMITTED


async def test_cancel_stops_the_review(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    await suggest(sessionmaker, org.xinsha_id)
    await bot_harness.say(STAFF, "/review")
    await bot_harness.press(STAFF, REJECT, exact=True)
    calls = await bot_harness.say(STAFF, "/cancel")
    assert last_text(calls) == "已停止。需要继续时，随时发送 /review 或 /convene。"
    assert await fsm(bot_harness, STAFF) == (None, {})


async def test_a_colleague_was_quicker(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    first = await suggest(sessionmaker, org.xinsha_id, "第一条", proposer=1)
    second = await suggest(sessionmaker, org.xinsha_id, "第二条", proposer=2)
    colleague = await grant(
        sessionmaker, COLLEAGUE, Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    )
    await bot_harness.say(STAFF, "/review")
    await bot_harness.press(STAFF, REJECT, exact=True)
    await bot_harness.press(STAFF, REASONS[2], exact=True)
    await bot_harness.press(STAFF, "⏭ 跳过", exact=True)
    async with sessionmaker() as session:
        await screening.accept(session, colleague, first.id)
    calls = await bot_harness.press(STAFF, CONFIRM_REJECT, exact=True)
    text = all_text(calls)
    assert f"{first.number} 已经处理过了，可能是同事处理的。" in text
    assert second.number in last_text(calls), "on to the next"
    assert (await reload(sessionmaker, first.id)).status is State.CANDIDATE


async def test_a_suggestion_its_proposer_withdrew_meanwhile_is_said_so(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    """Staff have the card open; the resident withdraws it from /my; staff accept: the bot
    says the proposer withdrew it, rather than blaming a colleague."""
    first = await suggest(sessionmaker, org.xinsha_id, "第一条", proposer=1)
    await bot_harness.say(STAFF, "/review")
    async with sessionmaker() as session:
        await withdraw(session, 10_001, first.id)
    text = all_text(await bot_harness.press(STAFF, ACCEPT, exact=True))
    assert f"{first.number} 已由建议人撤回。" in text and "同事" not in text
    assert (await reload(sessionmaker, first.id)).status is State.WITHDRAWN


async def test_a_correction_abandoned_with_back_is_not_applied(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    """Staff start correcting, pick another category, go back to the card and accept it as
    it is; the resident gave no kind, so the bot asks for it first. The category stays the
    resident's: the abandoned correction is neither applied nor published."""
    item = await suggest(sessionmaker, org.xinsha_id, category=Category.CULTURE_SPORTS, kind=None)
    await bot_harness.say(STAFF, "/review")
    await bot_harness.press(STAFF, CORRECT, exact=True)
    await bot_harness.press(STAFF, "消除安全隐患", exact=True)
    await bot_harness.press(STAFF, BACK, exact=True)
    await bot_harness.press(STAFF, ACCEPT, exact=True)
    await bot_harness.press(STAFF, "服务项目", exact=True)
    done = await reload(sessionmaker, item.id)
    assert done.status is State.CANDIDATE and done.kind is Kind.SERVICE
    assert done.category is Category.CULTURE_SPORTS


async def test_a_suggestion_in_progress_is_continued_first(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    await suggest(sessionmaker, org.xinsha_id)
    await bot_harness.say(STAFF, "/suggest")
    calls = await bot_harness.say(STAFF, "/review")
    assert last_text(calls).startswith("您有一条建议还没填完")


async def test_in_english(bot_harness: Harness, org: OrgTree, sessionmaker: Sessions) -> None:
    ann = Person(2009, "Ann", language_code="en")
    await grant(sessionmaker, ann, Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, org.xinsha_id))
    await suggest(sessionmaker, org.xinsha_id)
    calls = await bot_harness.say(ann, "/review")
    assert "<b>Waiting for review (1 waiting)</b>" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [
        "✅ Accept for the council",
        "✏️ Correct category/kind, then accept",
        "❌ Not accepted",
        "🔗 Merge",
        "⏭ Next suggestion",
    ]
    calls = await bot_harness.press(ann, "❌ Not accepted", exact=True)
    assert button_texts(sent(calls)[-1].markup) == [
        "The property management company or another party is responsible",
        "Duplicates a government investment project",
        "Not one of the four kinds of micro-project",
        "Other reason",
        "‹ Back",
    ]


BIGINT = 2**63 - 1


@pytest.mark.parametrize(
    "data",
    [
        *(ReviewCb(action=a, id=BIGINT) for a in ReviewAction),
        *(ReviewCategoryCb(id=BIGINT, category=c) for c in Category),
        *(ReviewKindCb(id=BIGINT, kind=k) for k in KindChoice),
        *(ReviewReasonCb(id=BIGINT, reason=r) for r in ExclusionReason),
        ReviewMergeCb(id=BIGINT, into=BIGINT),
    ],
    ids=lambda d: d.pack(),
)
def test_callback_data_fits(data: CallbackData) -> None:
    assert len(data.pack().encode()) <= CALLBACK_DATA_MAX
    assert type(data).unpack(data.pack()) == data
