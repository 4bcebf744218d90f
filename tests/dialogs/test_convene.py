"""Convening a council vote through the bot (/convene): candidates chosen with toggles, a
deadline by button or typed, the summary, the vote stored and its polls handed to the poll
sender; bad and past deadlines asked again; candidates that changed meanwhile; an empty
council; people who are not staff. Through the real Dispatcher on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest
from conftest import OrgTree
from dialog_helpers import STAFF, Sessions, fsm, fsm_key, grant
from sqlalchemy import select
from telegram_fakes import (
    CALLBACK_DATA_MAX,
    Harness,
    Person,
    alerts,
    button_texts,
    last_text,
    parse_html,
    sent,
    texts,
    utf16_length,
)

from bot.callbacks import ConveneAction, ConveneCb
from dialogs.convene import ConveneForm
from storage.models import ChatPurpose, Community, CouncilVote, Suggestion, utcnow
from storage.rules import MAX_VOTE_CANDIDATES, Category, Kind, Role, ScopeLevel, State
from storage.services import chats, council, screening
from storage.services.access import Principal, Scope
from storage.services.org import OrgRow, import_rows
from storage.services.people import TelegramIdentity
from storage.services.suggestions import Draft, submit

pytest_plugins = ["telegram_fakes", "dialog_helpers"]

RESIDENT = Person(1001, "小明")
MEMBERS = (Person(4001, "赵委员"), Person(4002, "钱委员"))
COUNCIL_GROUP = -100_777
MESSAGE_MAX = 4096  # Telegram's limit, in UTF-16 units of the text once parsed
SELECT_ALL, SELECT_NONE, NEXT_STEP, CANCEL = "全选", "取消全选", "下一步：截止时间 ›", "✖️ 取消"
DEADLINES = ["1 小时", "24 小时", "3 天", "7 天"]
BACK = "‹ 返回"
CONFIRM = "✅ 确认发起表决"
TZ_NOTE = "（北京时间）"


class PollSender:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def __call__(self, vote_id: int) -> None:
        self.sent.append(vote_id)


@pytest.fixture
def h(bot_harness: Harness) -> Harness:
    bot_harness.dispatcher["council_poll_sender"] = PollSender()
    return bot_harness


def sender(h: Harness) -> PollSender:
    found = h.dispatcher["council_poll_sender"]
    assert isinstance(found, PollSender)
    return found


async def candidate(
    sessionmaker: Sessions, staff: Principal, community_id: int, title: str, proposer: int = 1
) -> Suggestion:
    async with sessionmaker() as session:
        item = await submit(
            session,
            TelegramIdentity(10_000 + proposer, f"居民{proposer}"),
            Draft(community_id, Category.ENVIRONMENT, title, "说明", kind=Kind.SERVICE),
            tz=UTC,
            daily_limit=100,
        )
    async with sessionmaker() as session:
        return await screening.accept(session, staff, item.id)


async def bind_council_group(sessionmaker: Sessions, community_id: int) -> None:
    async with sessionmaker() as session:
        community = await session.get(Community, community_id)
        assert community is not None
        await chats.bind_chat(
            session,
            COUNCIL_GROUP,
            community,
            title="新沙社区居民议事会",
            chat_type="supergroup",
            bound_by_person_id=None,
            purpose=ChatPurpose.COUNCIL,
        )


async def to_deadline(h: Harness, *items: Suggestion) -> None:
    """STAFF's /convene with `items` chosen, at the deadline step."""
    await h.say(STAFF, "/convene")
    for item in items:
        await h.press(STAFF, f"☐ {item.number}")
    await h.press(STAFF, NEXT_STEP, exact=True)


async def votes(sessionmaker: Sessions) -> list[CouncilVote]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(CouncilVote).order_by(CouncilVote.id))).all())


async def status(sessionmaker: Sessions, suggestion_id: int) -> State:
    async with sessionmaker() as session:
        found = await session.get(Suggestion, suggestion_id)
        assert found is not None
        return found.status


@pytest.fixture
async def council_of_two(sessionmaker: Sessions, org: OrgTree) -> None:
    for member in MEMBERS:
        await grant(
            sessionmaker, member, Role.COUNCIL_MEMBER, Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
        )


# --- who may convene ----------------------------------------------------------------------------


async def test_not_staff(h: Harness, org: OrgTree) -> None:
    assert last_text(await h.say(RESIDENT, "/convene")).startswith("/convene 供社区工作人员")


async def test_no_candidates(h: Harness, staff: Principal, council_of_two: None) -> None:
    text = last_text(await h.say(STAFF, "/convene"))
    assert text == "目前没有等待议事会表决的建议项目。请先用 /review 采纳建议。"


async def test_an_empty_council_is_told_how_to_invite(
    h: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal
) -> None:
    await candidate(sessionmaker, staff, org.xinsha_id, "修路灯")
    text = last_text(await h.say(STAFF, "/convene"))
    assert text.startswith("新沙社区的居民议事会还没有成员")
    assert (
        "<code>minsheng invite create --role council_member --scope 新沙社区 --uses 30</code>"
        in text
    )
    assert await fsm(h, STAFF) == (None, {})


# --- the whole flow -------------------------------------------------------------------------


async def test_convene_to_the_council_group(
    h: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal, council_of_two: None
) -> None:
    first = await candidate(sessionmaker, staff, org.xinsha_id, "修路灯", proposer=1)
    second = await candidate(sessionmaker, staff, org.xinsha_id, "加装扶手", proposer=2)
    await bind_council_group(sessionmaker, org.xinsha_id)
    calls = await h.say(STAFF, "/convene")
    text = last_text(calls)
    assert "<b>议事会表决 · 新沙社区</b>" in text and "（已选 0/2 个）" in text
    assert button_texts(sent(calls)[-1].markup) == [
        f"☐ {first.number} 修路灯",
        f"☐ {second.number} 加装扶手",
        SELECT_ALL,
        NEXT_STEP,
        CANCEL,
    ]
    for button in sent(calls)[-1].buttons():
        assert button.callback_data and len(button.callback_data.encode()) <= CALLBACK_DATA_MAX

    calls = await h.press(STAFF, NEXT_STEP, exact=True)
    assert alerts(calls) == ["请至少选择一个建议项目。"]

    calls = await h.press(STAFF, f"☐ {first.number}")
    assert "（已选 1/2 个）" in last_text(calls)
    assert f"☑ {first.number} 修路灯" in button_texts(
        h.session.messages[(STAFF.id, h.find_button(STAFF.id, SELECT_ALL)[0].message_id)].markup
    )
    await h.press(STAFF, SELECT_ALL, exact=True)
    message, _ = h.find_button(STAFF.id, SELECT_NONE, exact=True)
    assert "（已选 2/2 个）" in message.text
    assert button_texts(message.markup)[:2] == [
        f"☑ {first.number} 修路灯",
        f"☑ {second.number} 加装扶手",
    ]

    calls = await h.press(STAFF, NEXT_STEP, exact=True)
    text = last_text(calls)
    assert (
        "表决到什么时候截止？" in text
        and "按 YYYY-MM-DD HH:MM 格式输入日期和时间（北京时间），最晚为 30 天后" in text
    )
    assert button_texts(sent(calls)[-1].markup) == [*DEADLINES, BACK]

    before = utcnow()
    calls = await h.press(STAFF, "3 天", exact=True)
    summary = last_text(calls)
    for expected in (
        "<b>请核对议事会表决</b>",
        "社区：新沙社区",
        "建议项目（2 个）：",
        f"· <b>{first.number}</b> 修路灯",
        f"· <b>{second.number}</b> 加装扶手",
        "截止时间：",
        "议事会成员：2 人",
        "议事规则：超过 50% 的成员投票方为有效，同意票超过所投票数的 50% 即为通过。",
        "投票将发到议事会群“新沙社区居民议事会”。",
    ):
        assert expected in summary, expected
    assert button_texts(sent(calls)[-1].markup) == [CONFIRM, "✏️ 建议项目", "✏️ 截止时间", CANCEL]
    assert await votes(sessionmaker) == [], "nothing yet"

    calls = await h.press(STAFF, CONFIRM, exact=True)
    assert alerts(calls) == ["已发起表决。"]
    text = last_text(calls)
    assert text.startswith("✅ 议事会表决已发起：共 2 个建议项目，截止 ")
    assert "投票正在发往议事会群“新沙社区居民议事会”。" in text
    assert "/votes" in text
    (vote,) = await votes(sessionmaker)
    assert sender(h).sent == [vote.id]
    assert vote.council_chat_id == COUNCIL_GROUP and vote.council_size == 2
    assert before + timedelta(days=3) <= vote.closes_at <= utcnow() + timedelta(days=3)
    assert await status(sessionmaker, first.id) is State.COUNCIL_VOTE
    assert await status(sessionmaker, second.id) is State.COUNCIL_VOTE
    assert await fsm(h, STAFF) == (None, {})


async def test_private_delivery_and_a_typed_deadline(
    h: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal, council_of_two: None
) -> None:
    item = await candidate(sessionmaker, staff, org.xinsha_id, "修路灯")
    await to_deadline(h, item)
    local = (
        (datetime.now(UTC) + timedelta(days=2))
        .astimezone(h_tz())
        .replace(hour=18, minute=30, second=0, microsecond=0)
    )
    calls = await h.say(STAFF, local.strftime("%Y-%m-%d %H:%M"))
    summary = last_text(calls)
    assert f"截止时间：{local.strftime('%Y-%m-%d')} 18:30{TZ_NOTE}" in summary
    assert "投票将发到每位成员与我的私聊（尚未绑定议事会群）。" in summary
    calls = await h.press(STAFF, CONFIRM, exact=True)
    assert "投票正在通过私聊发给 2 位议事会成员。" in last_text(calls)
    (vote,) = await votes(sessionmaker)
    assert vote.closes_at == local.astimezone(UTC)
    assert vote.council_chat_id is None


def h_tz() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("明天下午", "抱歉，我看不懂这个日期时间。"),
        ("2026-13-40 10:00", "抱歉，我看不懂这个日期时间。"),
        ("2020-01-01 10:00", "这个时间已经过去了，请选择将来的时间。"),
        ("far", "一次表决最长 30 天，请选择更早的时间。"),
    ],
)
async def test_bad_deadlines_are_asked_again(
    h: Harness,
    org: OrgTree,
    sessionmaker: Sessions,
    staff: Principal,
    council_of_two: None,
    typed: str,
    expected: str,
) -> None:
    item = await candidate(sessionmaker, staff, org.xinsha_id, "修路灯")
    await to_deadline(h, item)
    if typed == "far":
        typed = (datetime.now(h_tz()) + timedelta(days=31)).strftime("%Y-%m-%d %H:%M")
    calls = await h.say(STAFF, typed)
    text = last_text(calls)
    assert text.startswith(expected)
    assert "表决到什么时候截止？" in text, "the same question again"
    assert button_texts(sent(calls)[-1].markup) == [*DEADLINES, BACK]
    assert (await fsm(h, STAFF))[0] == ConveneForm.deadline.state
    assert await votes(sessionmaker) == []


async def test_a_deadline_that_passed_before_confirming(
    h: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal, council_of_two: None
) -> None:
    item = await candidate(sessionmaker, staff, org.xinsha_id, "修路灯")
    await to_deadline(h, item)
    await h.press(STAFF, "1 小时", exact=True)
    # The summary waited too long: the chosen time is now in the past.
    past = (utcnow() - timedelta(minutes=5)).isoformat()
    await h.dispatcher.storage.update_data(fsm_key(STAFF), {"closes_at": past})
    calls = await h.press(STAFF, CONFIRM, exact=True)
    assert last_text(calls).startswith("这个时间已经过去了，请选择将来的时间。")
    assert (await fsm(h, STAFF))[0] == ConveneForm.deadline.state
    assert await status(sessionmaker, item.id) is State.CANDIDATE
    assert sender(h).sent == []


async def test_candidates_that_changed_meanwhile(
    h: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal, council_of_two: None
) -> None:
    first = await candidate(sessionmaker, staff, org.xinsha_id, "修路灯", proposer=1)
    second = await candidate(sessionmaker, staff, org.xinsha_id, "加装扶手", proposer=2)
    await h.say(STAFF, "/convene")
    await h.press(STAFF, SELECT_ALL, exact=True)
    await h.press(STAFF, NEXT_STEP, exact=True)
    await h.press(STAFF, "24 小时", exact=True)
    # A colleague puts the first to a vote of its own meanwhile.
    async with sessionmaker() as session:
        await council.convene(
            session,
            staff,
            council.ConveneRequest(org.xinsha_id, [first.id], utcnow() + timedelta(days=1)),
        )
    calls = await h.press(STAFF, CONFIRM, exact=True)
    text = last_text(calls)
    assert text.startswith("部分建议项目的状态刚刚发生了变化")
    assert "（已选 1/1 个）" in text
    assert button_texts(sent(calls)[-1].markup)[0] == f"☑ {second.number} 加装扶手"
    await h.press(STAFF, NEXT_STEP, exact=True)
    await h.press(STAFF, "24 小时", exact=True)
    await h.press(STAFF, CONFIRM, exact=True)
    assert len(await votes(sessionmaker)) == 2
    assert await status(sessionmaker, second.id) is State.COUNCIL_VOTE


async def test_pages_of_eight(
    h: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal, council_of_two: None
) -> None:
    items = [
        await candidate(sessionmaker, staff, org.xinsha_id, f"项目{i}", proposer=i)
        for i in range(1, 11)
    ]
    calls = await h.say(STAFF, "/convene")
    labels = button_texts(sent(calls)[-1].markup)
    assert labels[:8] == [f"☐ {i.number} 项目{n}" for n, i in enumerate(items[:8], start=1)]
    assert labels[8:] == ["下一页 »", SELECT_ALL, NEXT_STEP, CANCEL]
    assert "第 1/2 页" in last_text(calls)
    await h.press(STAFF, "下一页 »", exact=True)
    message, _ = h.find_button(STAFF.id, "« 上一页", exact=True)
    assert button_texts(message.markup)[:2] == [
        f"☐ {items[8].number} 项目9",
        f"☐ {items[9].number} 项目10",
    ]
    await h.press(STAFF, f"☐ {items[9].number}")
    await h.press(STAFF, NEXT_STEP, exact=True)
    calls = await h.press(STAFF, "7 天", exact=True)
    assert "建议项目（1 个）：" in last_text(calls) and items[9].number in last_text(calls)


async def test_back_and_edit_from_the_summary(
    h: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal, council_of_two: None
) -> None:
    first = await candidate(sessionmaker, staff, org.xinsha_id, "修路灯", proposer=1)
    second = await candidate(sessionmaker, staff, org.xinsha_id, "加装扶手", proposer=2)
    await to_deadline(h, first)
    calls = await h.press(STAFF, BACK, exact=True)
    assert "（已选 1/2 个）" in last_text(calls), "the choice is kept"
    await h.press(STAFF, f"☐ {second.number}")
    await h.press(STAFF, NEXT_STEP, exact=True)
    await h.press(STAFF, "1 小时", exact=True)
    calls = await h.press(STAFF, "✏️ 截止时间", exact=True)
    assert "表决到什么时候截止？" in last_text(calls)
    calls = await h.press(STAFF, "7 天", exact=True)
    assert "建议项目（2 个）：" in last_text(calls)


async def test_cancel(
    h: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal, council_of_two: None
) -> None:
    item = await candidate(sessionmaker, staff, org.xinsha_id, "修路灯")
    await h.say(STAFF, "/convene")
    await h.press(STAFF, f"☐ {item.number}")
    calls = await h.press(STAFF, CANCEL, exact=True)
    assert last_text(calls) == "已取消，没有发起表决。发送 /convene 可重新开始。"
    assert await fsm(h, STAFF) == (None, {})
    # The old message's buttons are gone; a forged press on them is stale.
    toggle = ConveneCb(action=ConveneAction.TOGGLE, id=item.id).pack()
    calls = await h.press_data(
        STAFF, toggle, sent(await h.say(STAFF, "/help"))[-1].result.message_id
    )
    assert alerts(calls) == ["这个按钮已过期，请使用最新消息中的按钮。"]
    assert await votes(sessionmaker) == []


async def test_a_street_official_chooses_the_community(
    h: Harness, org: OrgTree, sessionmaker: Sessions, staff: Principal, council_of_two: None
) -> None:
    official = await grant(
        sessionmaker, RESIDENT, Role.STREET_OFFICIAL, Scope(ScopeLevel.STREET, org.street_id)
    )
    await candidate(sessionmaker, official, org.xinsha_id, "新沙的项目", proposer=1)
    await candidate(sessionmaker, official, org.tianan_id, "天安的项目", proposer=2)
    calls = await h.say(RESIDENT, "/convene")
    assert last_text(calls) == "请选择由哪个社区的议事会表决："
    assert button_texts(sent(calls)[-1].markup) == ["天安社区（1）", "新沙社区（1）", CANCEL]
    calls = await h.press(RESIDENT, "天安社区（1）", exact=True)
    assert last_text(calls).startswith("天安社区的居民议事会还没有成员")
    await h.say(RESIDENT, "/convene")
    calls = await h.press(RESIDENT, "新沙社区（1）", exact=True)
    assert "<b>议事会表决 · 新沙社区</b>" in last_text(calls)


async def test_a_suggestion_in_progress_is_continued_first(
    h: Harness, org: OrgTree, staff: Principal
) -> None:
    await h.say(STAFF, "/suggest")
    assert last_text(await h.say(STAFF, "/convene")).startswith("您有一条建议还没填完")


async def test_the_summary_of_a_full_vote_with_long_numbers_fits_one_message(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    """50 candidates (the most a vote takes) with 60-character titles, in a community whose
    name is taken elsewhere and so has long numbers (香蜜湖景田北-2026-0001): the summary
    still lists every one, in one message within Telegram's 4,096 characters, its titles
    cut to fit; whole, it would be refused and the vote could not be convened."""
    async with sessionmaker() as session:
        # 景田北社区 in two streets: the second's numbers are 香蜜湖景田北-2026-….
        await import_rows(
            session,
            [
                OrgRow(4, "福田区", "沙头街道", "景田北社区"),
                OrgRow(5, "福田区", "香蜜湖街道", "景田北社区"),
            ],
        )
        other = (
            await session.scalars(select(Community).where(Community.number_prefix.like("香蜜湖%")))
        ).one()
        community_id, prefix = other.id, other.number_prefix
    assert len(prefix) >= 4, prefix
    scope = Scope(ScopeLevel.COMMUNITY, community_id)
    staff = await grant(sessionmaker, STAFF, Role.COMMUNITY_STAFF, scope)
    await grant(sessionmaker, Person(4001, "赵委员"), Role.COUNCIL_MEMBER, scope)
    for n in range(MAX_VOTE_CANDIDATES):
        title = (f"第{n + 1:02d}号" + "社区长者食堂与儿童之家联合改造提升工程及配套设施完善" * 3)[
            :60
        ]
        async with sessionmaker() as session:
            item = await submit(
                session,
                TelegramIdentity(50_000 + n, "居民"),
                Draft(community_id, Category.CARE, title, "说明", kind=Kind.SERVICE),
                tz=UTC,
                daily_limit=100,
            )
            await screening.accept(session, staff, item.id)
    await bot_harness.say(STAFF, "/convene")
    await bot_harness.press(STAFF, "全选")
    await bot_harness.press(STAFF, "下一步")
    try:
        calls = await bot_harness.press(STAFF, "7")
    except TelegramBadRequest as refused:
        raise AssertionError(f"the summary of a full vote was refused: {refused}") from refused
    shown = texts(calls)
    summary = [t for t in shown if "2026-0050" in t]
    assert summary, f"no summary was sent: {[t[:80] for t in shown]}"
    for text in summary:
        assert utf16_length(parse_html(text)) <= MESSAGE_MAX, utf16_length(parse_html(text))
