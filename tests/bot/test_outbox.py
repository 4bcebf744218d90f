"""The outbox's texts (bot.notify_texts) in Chinese and English, and its sender
(bot.outbox.OutboxSender) against a recording Telegram: sent, 429, 403, 400, long results in
parts, a group's pace, and exactly once with two senders claiming on one PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramEntityTooLarge,
    TelegramMigrateToChat,
    TelegramNetworkError,
)
from aiogram.methods import SendMessage, SendPhoto, TelegramMethod
from aiogram.utils.i18n import I18n
from sending_fakes import (
    ErrorFactory,
    JumpClock,
    TelegramDouble,
    bad_request,
    forbidden,
    max_in_window,
    min_gap,
    retry_after,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import make_bot, parse_html

from bot.notify_texts import (
    CAPTION_MAX,
    MESSAGE_MAX,
    RENDERERS,
    NotificationRenderer,
    Rendered,
    RenderError,
    plan_parts,
    split_text,
    visible_length,
)
from bot.outbox import OutboxSender
from bot.ratelimit import Limits, MemorySendLimiter, SendLimiter
from bot.sender import install_request_middlewares
from storage.db import create_engine, create_sessionmaker
from storage.models import Community, Notification, NotificationKind, NotificationStatus, Person
from storage.services import chats, notifications
from storage.services.people import TelegramIdentity, ensure_person

pytest_plugins = ["telegram_fakes", "sending_fakes"]

Sessions = async_sessionmaker[AsyncSession]
TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
ZH_PERSON, EN_PERSON, GROUP = 501, 502, -100_222
NASTY = '<b>路灯</b> & "灯" <script>'


@pytest.fixture
def renderer(pending_i18n: I18n) -> NotificationRenderer:
    return NotificationRenderer(pending_i18n, TZ)


def status_params(**extra: Any) -> dict[str, Any]:
    return {
        "suggestion_id": 1,
        "number": "新沙-2026-0001",
        "title": NASTY,
        "status": "council_vote",
        "vote_id": 3,
        "closes_at": "2026-05-04T02:00:00+00:00",
    } | extra


def result_params(n: int = 3, title: str = "修路灯", **extra: Any) -> dict[str, Any]:
    outcomes = ["resolved", "not_passed", "no_quorum"]
    return {
        "vote_id": 3,
        "community_id": 1,
        "community": "新沙社区",
        "closes_at": "2026-05-04T02:00:00+00:00",
        "closed_at": "2026-05-04T02:00:05+00:00",
        "council_size": 9,
        "quorum_pct": 50,
        "threshold_pct": 50,
        "items": [
            {
                "item_id": 10 + i,
                "position": i + 1,
                "suggestion_id": 100 + i,
                "number": f"新沙-2026-{i + 1:04d}",
                "title": f"{title}{i + 1}",
                "agree": (7 - i) % 8,
                "against": i % 3,
                "abstain": 1,
                "voters": 0,
                "outcome": outcomes[i % 3],
            }
            for i in range(n)
        ],
        "audience": "community",
    } | extra


def shown(rendered: Rendered) -> str:
    return parse_html(rendered.text)


# --- rendering ---------------------------------------------------------------------------


def test_status_in_chinese_and_english(renderer: NotificationRenderer) -> None:
    zh = renderer.render("suggestion_status", status_params(), "zh")
    en = renderer.render("suggestion_status", status_params(), "en")
    assert "最新状态" in shown(zh) and "议事会表决中" in shown(zh)
    assert "2026-05-04 10:00" in shown(zh)  # the deadline in the programme's time zone
    assert "is now: Council voting" in shown(en) and "2026-05-04 10:00" in shown(en)
    for rendered in (zh, en):
        assert NASTY in shown(rendered)  # shown exactly as typed…
        assert "<script>" not in rendered.text  # …because it was escaped
        assert rendered.image is None


def test_status_after_the_vote(renderer: NotificationRenderer) -> None:
    params = status_params(status="candidate", outcome="no_quorum", agree=1, against=0, abstain=0)
    zh = shown(renderer.render("suggestion_status", params, "zh"))
    en = shown(renderer.render("suggestion_status", params, "en"))
    # Without quorum nothing was decided: it waits for the council again, and is no 社区备选项目.
    assert "同意 1 票" in zh and "未达法定人数" in zh and "待议事会讨论" in zh
    assert "社区备选项目" not in zh
    assert "1 agree, 0 against, 0 abstain (No quorum)" in en
    assert "is now: Awaiting the council" in en and "put to the council again" in en


def test_status_after_the_council_passed_it(renderer: NotificationRenderer) -> None:
    """What the council's vote passes is what the programme calls 社区备选项目 (seed 四（一）)."""
    params = status_params(
        status="resolved_candidate", outcome="resolved", agree=5, against=1, abstain=0
    )
    zh = shown(renderer.render("suggestion_status", params, "zh"))
    en = shown(renderer.render("suggestion_status", params, "en"))
    assert "最新状态：社区备选项目" in zh and "同意 5 票" in zh and "决议通过" in zh
    assert "is now: Community candidate project" in en and "(Passed)" in en


def test_rejected_with_the_staff_note(renderer: NotificationRenderer) -> None:
    params = {"number": "新沙-2026-0002", "title": NASTY, "reason": "property_management"}
    proposer = params | {"note": "请联系物业 <管理处> & 业委会"}
    zh = shown(renderer.render("suggestion_rejected", proposer, "zh"))
    en = shown(renderer.render("suggestion_rejected", proposer, "en"))
    assert "未被采纳" in zh and "请联系物业 <管理处> & 业委会" in zh and "/suggest" in zh
    assert "was not accepted" in en and "Reason: " in en and "property management" in en
    assert "Thank you" in en
    # Other followers get no note.
    other = shown(renderer.render("suggestion_rejected", params | {"note": None}, "en"))
    assert "Note from the community" not in other


def test_merged_both_sides(renderer: NotificationRenderer) -> None:
    params = {
        "number": "新沙-2026-0003",
        "title": "路灯",
        "into_number": "新沙-2026-0001",
        "into_title": NASTY,
    }
    source = shown(renderer.render("suggestion_merged", params | {"role": "source"}, "zh"))
    target = shown(renderer.render("suggestion_merged", params | {"role": "target"}, "en"))
    assert "已合并" in source and "您现在关注 新沙-2026-0001" in source and NASTY in source
    assert target.startswith("A similar suggestion, 新沙-2026-0003")


def test_accepted(renderer: NotificationRenderer) -> None:
    params = {
        "number": "新沙-2026-0004",
        "title": "长者饭堂",
        "category": "care",
        "kind": "service",
        "note": "<好>",
    }
    zh = shown(renderer.render("suggestion_accepted", params, "zh"))
    en = shown(renderer.render("suggestion_accepted", params, "en"))
    assert "社区已采纳建议 新沙-2026-0004“长者饭堂”，将提交居民议事会讨论" in zh
    assert "居民生活关爱" in zh and "服务项目" in zh and "<好>" in zh
    assert "居民议事会将对它进行讨论和表决" in zh
    assert "the community has accepted suggestion 新沙-2026-0004 “长者饭堂”" in en
    assert "put it to the residents' council" in en and "candidate" not in en


def test_the_proposer_is_not_told_the_staff_made_a_candidate_project(
    renderer: NotificationRenderer,
) -> None:
    """PROGRAMME.md, "The lifecycle", step 1, and seed 四（一）: the community classifies the
    suggestions ("进行分类整理后"), then "组织社区居民议事会充分讨论并筛选社区备选项目". The
    community's acceptance puts a suggestion before the council; only the council's screening
    makes it a 社区备选项目, so the proposer is not told so when the staff accept it. (It used
    to say "已被采纳为社区备选项目".)"""
    params = {"number": "新沙-2026-0001", "title": "楼道灯", "category": "safety"}
    text = shown(renderer.render("suggestion_accepted", params, "zh"))
    assert "社区备选项目" not in text and "居民议事会" in text, text


def test_vote_result_with_its_chart(renderer: NotificationRenderer) -> None:
    zh = renderer.render("vote_result", result_params(), "zh")
    en = renderer.render("vote_result", result_params(audience="council"), "en")
    assert zh.image is not None and zh.image.startswith(b"\x89PNG")
    text = shown(zh)
    assert "居民议事会表决结果" in text and "新沙社区" in text
    assert "1. 新沙-2026-0001 修路灯1" in text
    assert "同意 7 · 反对 0 · 弃权 1：决议通过" in text
    assert "未通过" in text and "未达法定人数" in text
    assert "超过 50%" in text
    assert "Agree 7 · Against 0 · Abstain 1: Passed" in shown(en)
    assert "Thank you to every council member" in shown(en)
    # To the residents: what passed is now a 社区备选项目, for the street office to determine.
    assert "通过的建议项目即成为社区备选项目，报送街道" in text
    assert "未计入" not in text
    counted_apart = shown(renderer.render("vote_result", result_params(not_counted=2), "zh"))
    assert "结果未计入的票（来自非议事会成员，或在截止之后投出）：2 票。" in counted_apart
    # Short enough for one photo with the whole text as its caption.
    parts = plan_parts(zh)
    assert len(parts) == 1 and parts[0].image == zh.image and parts[0].text == zh.text


def test_long_results_go_as_photo_then_text(renderer: NotificationRenderer) -> None:
    rendered = renderer.render("vote_result", result_params(50, "修" * 60), "zh")
    assert visible_length(rendered.text) > CAPTION_MAX
    parts = plan_parts(rendered)
    assert parts[0].image is not None and visible_length(parts[0].text) <= CAPTION_MAX
    assert "下一条消息" in parse_html(parts[0].text)
    texts = [p.text for p in parts[1:]]
    assert texts and all(p.image is None for p in parts[1:])
    assert all(visible_length(t) <= MESSAGE_MAX for t in texts)
    for text in texts:
        parse_html(text)  # every piece is valid HTML on its own
    joined = "\n".join(parse_html(t) for t in texts)
    assert all(f"{i}. 新沙-2026-{i:04d}" in joined for i in range(1, 51))


def test_poll_send_failed(renderer: NotificationRenderer) -> None:
    params = {
        "vote_id": 3,
        "item_id": 10,
        "number": "新沙-2026-0001",
        "title": NASTY,
        "chat_id": -100_111,
        "error": "Bad Request: can't parse <entities>",
    }
    zh = shown(renderer.render("poll_send_failed", params, "zh"))
    en = shown(renderer.render("poll_send_failed", params | {"chat_id": 30_001}, "en"))
    assert "拒绝" in zh and "议事会群" in zh and "can't parse <entities>" in zh and NASTY in zh
    assert "It was for the private chat of council member 30001." in en
    named = params | {"chat_id": 30_001, "member": "赵磊"}
    assert "该投票发往议事会成员 赵磊 的私聊。" in shown(
        renderer.render("poll_send_failed", named, "zh")
    )


def test_a_poll_a_members_closed_chat_refused_names_them_with_one_cause_and_remedy(
    renderer: NotificationRenderer,
) -> None:
    """The convener used to read "这位议事会成员还没有和机器人开始私聊" and then "对方可能已屏蔽
    机器人", of nobody in particular. Now: who, why (one cause), and what to ask of them."""
    params = {
        "vote_id": 7,
        "item_id": 10,
        "number": "新沙-2026-0026",
        "title": "公园长椅维修01",
        "chat_id": 30_001,
        "member": "赵磊 @zhaolei",
        "error": "Forbidden: bot can't initiate conversation with a user",
    }
    zh = shown(renderer.render("poll_send_failed", params, "zh"))
    assert zh.splitlines() == [
        "⚠️ 新沙-2026-0026“公园长椅维修01”的议事会投票没能发给议事会成员 赵磊 @zhaolei："
        "对方还没有和机器人开始私聊，或已屏蔽机器人，Telegram 不允许机器人给这样的用户发消息。",
        "请让 赵磊 @zhaolei 打开与机器人的私聊并发送 /votes，机器人随后会把这次表决中对方还没收到"
        "的投票发过去。",
        "Telegram 返回：Forbidden: bot can't initiate conversation with a user",
    ]
    blocked = params | {"error": "Forbidden: bot was blocked by the user"}
    en = shown(renderer.render("poll_send_failed", blocked, "en"))
    assert "could not be delivered to council member 赵磊 @zhaolei" in en
    assert "Please ask 赵磊 @zhaolei to open a private chat with the bot and send /votes" in en
    assert "may have blocked" not in en and "has blocked the bot, or left" not in en
    # A notice enqueued before members were named: their Telegram id, rather than nobody.
    older = {k: v for k, v in params.items() if k != "member"}
    assert "议事会成员 30001：" in shown(renderer.render("poll_send_failed", older, "zh"))


def test_results_of_a_council_of_one_in_english(renderer: NotificationRenderer) -> None:
    en = shown(renderer.render("vote_result", result_params(1, council_size=1), "en"))
    assert "1 members" not in en
    assert "Council members: 1. A suggestion passes when more than 50% of them vote" in en
    zh = shown(renderer.render("vote_result", result_params(1, council_size=1), "zh"))
    assert "议事会共有 1 名成员。" in zh


@pytest.mark.parametrize(
    ("kind", "error", "zh_reason", "en_reason"),
    [
        (
            "poll_send_failed",
            "Forbidden: bot was kicked from the supergroup chat",
            "机器人已不在该群（或对话）中。",
            "The bot is no longer in that chat.",
        ),
        (
            "poll_send_failed",
            "Bad Request: not enough rights to send polls to the chat",
            "请群管理员开启",
            "a group admin can allow it",
        ),
        (
            "poll_send_uncertain",
            "HTTP Client says - Request timeout error",
            "Telegram 没有及时回应。",
            "Telegram did not answer in time.",
        ),
        (
            "poll_send_uncertain",
            "the bot stopped while sending this poll, before Telegram's answer came",
            "机器人在发送这条投票时中断了",
            "The bot stopped while it was sending this poll",
        ),
    ],
)
def test_telegrams_english_errors_are_explained(
    renderer: NotificationRenderer, kind: str, error: str, zh_reason: str, en_reason: str
) -> None:
    params = {"vote_id": 3, "item_id": 10, "number": "新沙-2026-0001", "title": "路灯"}
    params |= {"chat_id": -100_111, "error": error}
    zh = shown(renderer.render(kind, params, "zh")).splitlines()
    en = shown(renderer.render(kind, params, "en")).splitlines()
    # The reason in the reader's language, then Telegram's own words, kept for support.
    [at] = [i for i, line in enumerate(zh) if zh_reason in line]
    assert error in zh[at + 1]
    [at] = [i for i, line in enumerate(en) if en_reason in line]
    assert error in en[at + 1]


def test_an_unknown_error_is_shown_as_it_came(renderer: NotificationRenderer) -> None:
    params = {"vote_id": 3, "item_id": 10, "number": "新沙-2026-0001", "title": "路灯"}
    params |= {"chat_id": -100_111, "error": "Bad Request: POLL_OPTION_INVALID"}
    zh = shown(renderer.render("poll_send_failed", params, "zh")).splitlines()
    assert zh[1] == "Telegram 返回：Bad Request: POLL_OPTION_INVALID"


def test_unknown_kind_and_odd_params(renderer: NotificationRenderer) -> None:
    with pytest.raises(RenderError, match="no renderer"):
        renderer.render("carrier_pigeon", {}, "zh")
    # Params from an older release, or missing pieces: rendered, not lost.
    assert "?" in shown(renderer.render("suggestion_status", {}, "en"))
    odd = renderer.render("vote_result", {"items": "not a list", "community": None}, "en")
    assert odd.image is None and "results" in shown(odd)
    strange = renderer.render("suggestion_status", status_params(status="teleported"), "en")
    assert "teleported" in shown(strange)


def test_split_text() -> None:
    lines = [f"<b>{i}</b> " + "字" * 50 for i in range(300)]
    text = "\n".join(lines)
    pieces = split_text(text, 1000)
    assert all(visible_length(p) <= 1000 for p in pieces)
    assert "\n".join(pieces) == text
    one_line = "词 " * 3000 + "&amp;" * 10
    pieces = split_text(one_line, 500)
    assert all(0 < visible_length(p) <= 500 for p in pieces)
    words = "".join(parse_html(p) for p in pieces).replace(" ", "")
    assert words == parse_html(one_line).replace(" ", "")


# --- sending -------------------------------------------------------------------------------


class Clock:
    """The store's 'now' (UTC) and the limiter's clock, moved together."""

    def __init__(self) -> None:
        self.jump = JumpClock()
        self.start = self.jump.now

    def utc(self) -> datetime:
        return NOW + timedelta(seconds=self.jump.now - self.start)

    def advance(self, seconds: float) -> None:
        self.jump.now += seconds


class Rig:
    def __init__(
        self,
        sessionmaker: Sessions,
        renderer: NotificationRenderer,
        limiter: SendLimiter | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or Clock()
        self.double = TelegramDouble(clock=lambda: self.clock.utc().timestamp())
        self.sessionmaker = sessionmaker
        self.limiter = limiter or MemorySendLimiter(
            clock=self.clock.jump, sleep=self.clock.jump.sleep
        )
        self.sender = OutboxSender(
            make_bot(self.double),
            sessionmaker,
            self.limiter,
            renderer,
            default_locale="zh",
            now=self.clock.utc,
            monotonic=self.clock.jump,
            sleep=self.clock.jump.sleep,
        )

    async def rows(self) -> list[Notification]:
        async with self.sessionmaker() as session:
            found = await session.scalars(select(Notification).order_by(Notification.id))
            return list(found.all())


@pytest.fixture
def rig(sessionmaker: Sessions, renderer: NotificationRenderer) -> Rig:
    return Rig(sessionmaker, renderer)


async def people(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        await ensure_person(session, TelegramIdentity(ZH_PERSON, "小明", language_code="zh-hans"))
        await session.commit()
        # The choice of English, as /lang stores it (without the menu it owes).
        person = await ensure_person(
            session, TelegramIdentity(EN_PERSON, "Ming", language_code="zh")
        )
        person.locale = "en"
        await session.commit()


async def enqueue(sessionmaker: Sessions, chat_id: int, kind: str, params: dict[str, Any]) -> None:
    async with sessionmaker() as session:
        person = await session.scalar(select(Person.id).where(Person.telegram_id == chat_id))
        await notifications.enqueue(
            session,
            chat_id=chat_id,
            kind=kind,
            params=params,
            person_id=person,
            not_before=NOW - timedelta(seconds=1),
        )
        await session.commit()


async def test_sends_each_in_its_language(rig: Rig) -> None:
    await people(rig.sessionmaker)
    await enqueue(rig.sessionmaker, ZH_PERSON, "suggestion_status", status_params())
    await enqueue(rig.sessionmaker, EN_PERSON, "suggestion_status", status_params())
    await enqueue(rig.sessionmaker, GROUP, "vote_result", result_params())
    assert await rig.sender.run_once() == 3
    assert [r.status for r in await rig.rows()] == [NotificationStatus.SENT] * 3
    assert all(r.sent_at is not None and r.error is None for r in await rig.rows())
    assert "最新状态" in rig.double.texts_in(ZH_PERSON)[0]
    assert "is now: Council voting" in rig.double.texts_in(EN_PERSON)[0]
    (photo,) = rig.double.delivered(GROUP)
    assert isinstance(photo.method, SendPhoto)
    assert "居民议事会表决结果" in (photo.method.caption or "")
    # Nothing twice: a second round finds nothing due.
    assert await rig.sender.run_once() == 0
    assert len(rig.double.requests) == 3


async def test_a_group_whose_admins_chose_english_gets_english(rig: Rig) -> None:
    async with rig.sessionmaker() as session:
        await chats.set_chat_locale(
            session, GROUP, "en", title="新沙", chat_type="supergroup", chosen_by_person_id=None
        )
        await session.commit()
    await enqueue(rig.sessionmaker, GROUP, "vote_result", result_params())
    assert await rig.sender.run_once() == 1
    (photo,) = rig.double.delivered(GROUP)
    assert isinstance(photo.method, SendPhoto)
    assert "Residents' council vote: results" in (photo.method.caption or "")


async def test_429_waits_for_that_chat_only(rig: Rig) -> None:
    await people(rig.sessionmaker)
    for _ in range(2):
        await enqueue(rig.sessionmaker, ZH_PERSON, "suggestion_status", status_params())
    await enqueue(rig.sessionmaker, EN_PERSON, "suggestion_status", status_params())
    rig.double.fail_in_chat(ZH_PERSON, retry_after(30), SendMessage)
    assert await rig.sender.run_once() == 1
    first, second, other = await rig.rows()
    assert other.status is NotificationStatus.SENT  # not held up by the other chat's 429
    for row in (first, second):
        assert row.status is NotificationStatus.PENDING
        assert row.not_before >= rig.clock.utc() + timedelta(seconds=29)
    assert "Too Many Requests" in (first.error or "")
    assert len(rig.double.requests) == 2  # the second message to that chat was not tried
    # Before retry_after nothing goes; after it, both do, in order.
    assert await rig.sender.run_once() == 0
    rig.clock.advance(31)
    assert await rig.sender.run_once() == 2
    assert [r.status for r in await rig.rows()] == [NotificationStatus.SENT] * 3
    times = [r.at for r in rig.double.delivered(ZH_PERSON)]
    assert len(times) == 2 and min_gap(times) >= 1


async def test_a_short_429_is_the_outbox_s_to_handle_not_waited_out_inline(rig: Rig) -> None:
    """With the service's request middlewares (which wait out a short 429 for replies to a
    person), the outbox still gets its 429 at once: it pauses that chat and goes on."""
    install_request_middlewares(rig.double)
    await people(rig.sessionmaker)
    await enqueue(rig.sessionmaker, ZH_PERSON, "suggestion_status", status_params())
    await enqueue(rig.sessionmaker, EN_PERSON, "suggestion_status", status_params())
    rig.double.fail_in_chat(ZH_PERSON, retry_after(3), SendMessage)
    assert await rig.sender.run_once() == 1
    held, other = await rig.rows()
    assert other.status is NotificationStatus.SENT
    assert held.status is NotificationStatus.PENDING
    assert held.not_before >= rig.clock.utc() + timedelta(seconds=2)
    assert [r.name for r in rig.double.requests].count("SendMessage") == 2  # one try each


async def test_403_blocked_person_is_marked(rig: Rig) -> None:
    await people(rig.sessionmaker)
    for _ in range(3):
        await enqueue(rig.sessionmaker, ZH_PERSON, "suggestion_status", status_params())
    await enqueue(rig.sessionmaker, EN_PERSON, "suggestion_status", status_params())
    rig.double.fail_in_chat(ZH_PERSON, forbidden(), times=None)
    assert await rig.sender.run_once() == 1
    statuses = [r.status for r in await rig.rows()]
    assert statuses == [NotificationStatus.BLOCKED] * 3 + [NotificationStatus.SENT]
    assert len(rig.double.requests) == 2  # one try in the blocked chat, then it was left
    async with rig.sessionmaker() as session:
        person = await session.scalar(select(Person).where(Person.telegram_id == ZH_PERSON))
        assert person is not None and person.blocked_bot_at is not None


async def test_400_fails_for_good(rig: Rig) -> None:
    await enqueue(rig.sessionmaker, GROUP, "suggestion_status", status_params())
    await enqueue(rig.sessionmaker, GROUP, "suggestion_status", status_params())
    rig.double.fail_in_chat(GROUP, bad_request("chat not found"))
    assert await rig.sender.run_once() == 1
    failed, sent = await rig.rows()
    assert failed.status is NotificationStatus.FAILED
    assert failed.error == "Telegram server says - Bad Request: chat not found" or (
        "chat not found" in (failed.error or "")
    )
    assert sent.status is NotificationStatus.SENT
    rig.clock.advance(3600)
    assert await rig.sender.run_once() == 0  # never retried


async def test_a_chart_refused_as_too_large_fails_for_good_and_the_chat_goes_on(rig: Rig) -> None:
    """A 413 is Telegram refusing, although aiogram files it under its network errors: the
    message fails at once and the chat's next one goes. It used to be retried as a network
    error, holding the chat's other messages back each time, eight times over."""
    await enqueue(rig.sessionmaker, GROUP, "vote_result", result_params())
    await enqueue(rig.sessionmaker, GROUP, "suggestion_status", status_params())
    rig.double.fail_when(
        lambda m: isinstance(m, SendPhoto),
        lambda m: TelegramEntityTooLarge(method=m, message="Request Entity Too Large"),
    )
    assert await rig.sender.run_once() == 1
    failed, sent = await rig.rows()
    assert failed.status is NotificationStatus.FAILED and failed.error == "Request Entity Too Large"
    assert sent.status is NotificationStatus.SENT


async def test_an_unreadable_answer_is_sent_again_later(rig: Rig) -> None:
    """An answer that cannot be read (a proxy's error page) may hide a message delivered: like
    a lost answer, it is sent again after the backoff, what happened kept on the row, and the
    chat's other messages wait their turn. It used to end the chat's run, leaving its
    messages to their lease without a word of why."""
    await enqueue(rig.sessionmaker, GROUP, "suggestion_status", status_params())
    await enqueue(rig.sessionmaker, GROUP, "suggestion_status", status_params())
    rig.double.fail_in_chat(
        GROUP, lambda m: ClientDecodeError("Failed to decode object", ValueError("html"), "<html>")
    )
    assert await rig.sender.run_once() == 0
    first, second = await rig.rows()
    assert (first.status, first.attempts, first.error) == (
        NotificationStatus.PENDING,
        1,
        "Failed to decode object",
    )
    assert first.not_before == rig.clock.utc() + timedelta(seconds=5)
    assert second.status is NotificationStatus.PENDING and second.attempts == 0  # held back
    rig.clock.advance(6)
    assert await rig.sender.run_once() == 2


async def test_unknown_kind_fails_and_the_loop_goes_on(rig: Rig) -> None:
    await enqueue(rig.sessionmaker, GROUP, "carrier_pigeon", {"x": 1})
    await enqueue(rig.sessionmaker, GROUP, "suggestion_status", status_params())
    assert await rig.sender.run_once() == 1
    unknown, sent = await rig.rows()
    assert unknown.status is NotificationStatus.FAILED
    assert "carrier_pigeon" in (unknown.error or "")
    assert sent.status is NotificationStatus.SENT


async def test_network_error_is_retried_with_backoff(rig: Rig) -> None:
    await enqueue(rig.sessionmaker, GROUP, "suggestion_status", status_params())
    rig.double.fail_in_chat(
        GROUP, lambda m: TelegramNetworkError(method=m, message="Request timeout error")
    )
    assert await rig.sender.run_once() == 0
    (row,) = await rig.rows()
    assert row.status is NotificationStatus.PENDING and row.attempts == 1
    assert row.not_before == rig.clock.utc() + timedelta(seconds=5)
    assert "timeout" in (row.error or "")
    rig.clock.advance(6)
    assert await rig.sender.run_once() == 1


async def test_out_of_attempts_fails(rig: Rig) -> None:
    await enqueue(rig.sessionmaker, GROUP, "suggestion_status", status_params())
    rig.double.fail_in_chat(
        GROUP, lambda m: TelegramNetworkError(method=m, message="Bad Gateway"), times=None
    )
    for _ in range(notifications.MAX_ATTEMPTS + 1):
        await rig.sender.run_once()
        rig.clock.advance(400)
    (row,) = await rig.rows()
    assert row.status is NotificationStatus.FAILED
    assert len(rig.double.requests) == notifications.MAX_ATTEMPTS


async def test_long_results_in_parts_and_a_retry_sends_only_the_rest(rig: Rig) -> None:
    await enqueue(rig.sessionmaker, GROUP, "vote_result", result_params(50, "修" * 60))
    # The photo goes; the first text part meets a 429.
    rig.double.fail_when(
        lambda m: isinstance(m, SendMessage) and int(m.chat_id) == GROUP, retry_after(3)
    )
    assert await rig.sender.run_once() == 0
    (row,) = await rig.rows()
    assert row.status is NotificationStatus.PENDING and row.parts_sent == 1
    assert row.parts_total >= 3 and "Too Many Requests" in (row.error or "")
    rig.clock.advance(4)
    assert await rig.sender.run_once() == 1
    delivered = rig.double.delivered(GROUP)
    assert [r.name for r in delivered].count("SendPhoto") == 1
    assert len(delivered) >= 3  # the photo, then the text in two messages or more
    texts = "\n".join(rig.double.texts_in(GROUP))
    assert all(f"{i}. 新沙-2026-{i:04d}" in texts for i in range(1, 51))
    assert min_gap([r.at for r in delivered]) >= 1


async def test_a_group_gets_twenty_a_minute_and_the_rest_waits(rig: Rig) -> None:
    for _ in range(25):
        await enqueue(rig.sessionmaker, GROUP, "suggestion_status", status_params())
    await enqueue(rig.sessionmaker, ZH_PERSON, "suggestion_status", status_params())
    assert await rig.sender.run_once() == 21  # 20 to the group, and the private message
    rows = await rig.rows()
    assert sum(r.status is NotificationStatus.PENDING for r in rows) == 5
    # The claim's lease is never outlived: what must wait is back in the queue.
    waiting = [r for r in rows if r.status is NotificationStatus.PENDING]
    assert all(r.not_before > rig.clock.utc() for r in waiting)
    # Held back by the pace, not failed: the wait costs none of their attempts.
    assert all(r.attempts == 0 for r in waiting)
    for _ in range(5):
        rig.clock.advance(60)
        await rig.sender.run_once()
    assert all(r.status is NotificationStatus.SENT for r in await rig.rows())
    times = [r.at for r in rig.double.delivered(GROUP)]
    assert len(times) == 25 and max_in_window(times, 60) <= 20 and min_gap(times) >= 1


async def test_two_senders_on_postgres_send_each_once(
    postgres_url: str, renderer: NotificationRenderer
) -> None:
    """Two replicas claiming at the same moments: every message reaches its chat once."""
    engines = [create_engine(postgres_url) for _ in range(2)]
    try:
        makers = [create_sessionmaker(e) for e in engines]
        async with makers[0]() as session:
            for chat_id in range(1, 161):
                await notifications.enqueue(
                    session,
                    chat_id=chat_id,
                    kind="suggestion_status",
                    params=status_params(),
                    not_before=NOW - timedelta(seconds=1),
                )
            await session.commit()
        fast = Limits(global_per_window=100_000)
        clock = Clock()
        rigs = [
            Rig(maker, renderer, MemorySendLimiter(fast, clock=clock.jump), clock)
            for maker in makers
        ]
        total = 0
        for _ in range(20):
            sent = await asyncio.gather(*(r.sender.run_once(25) for r in rigs))
            total += sum(sent)
            if sum(sent) == 0:
                break
        per_chat = Counter(
            req.chat_id for r in rigs for req in r.double.delivered() if req.name == "SendMessage"
        )
        assert total == 160
        assert set(per_chat) == set(range(1, 161)) and set(per_chat.values()) == {1}
        assert all(r.double.delivered() for r in rigs)  # both replicas did part of the work
        rows = await rigs[0].rows()
        assert all(r.status is NotificationStatus.SENT for r in rows)
    finally:
        for engine in engines:
            await engine.dispose()


# --- a group upgraded to a supergroup -------------------------------------------------------

BASIC_GROUP, SUPERGROUP = -4_012_345, -1_009_876_543_210


def migrated(to: int) -> ErrorFactory:
    def error(method: TelegramMethod[Any]) -> Exception:
        return TelegramMigrateToChat(
            method=method,
            message="Bad Request: group chat was upgraded to a supergroup chat",
            migrate_to_chat_id=to,
        )

    return error


async def bind_basic_group(sessionmaker: Sessions, community_id: int) -> None:
    async with sessionmaker() as session:
        community = await session.get(Community, community_id)
        assert community is not None
        await chats.bind_chat(
            session,
            BASIC_GROUP,
            community,
            title="新沙居民群",
            chat_type="group",
            bound_by_person_id=None,
        )


async def test_a_group_upgraded_to_a_supergroup_gets_its_messages_there(rig: Rig, org: Any) -> None:
    """Telegram refuses the old id and names the new one: the chat is moved (binding and
    queue) and every message goes to the supergroup, none failed."""
    await bind_basic_group(rig.sessionmaker, org.xinsha_id)
    await enqueue(rig.sessionmaker, BASIC_GROUP, "suggestion_status", status_params())
    await enqueue(rig.sessionmaker, BASIC_GROUP, "vote_result", result_params())
    rig.double.fail_in_chat(BASIC_GROUP, migrated(SUPERGROUP), times=None)
    assert await rig.sender.run_once() == 2
    rows = await rig.rows()
    assert [(r.status, r.chat_id) for r in rows] == [(NotificationStatus.SENT, SUPERGROUP)] * 2
    assert len([r for r in rig.double.requests if r.chat_id == BASIC_GROUP]) == 1  # once
    assert [r.name for r in rig.double.delivered(SUPERGROUP)] == ["SendMessage", "SendPhoto"]
    async with rig.sessionmaker() as session:
        bound = await chats.bound_chats(session, org.xinsha_id)
        assert [c.id for c in bound] == [SUPERGROUP]
    # What is owed to the community's group from now on goes to the supergroup directly.
    await enqueue(rig.sessionmaker, SUPERGROUP, "suggestion_status", status_params())
    assert await rig.sender.run_once() == 1
    assert len([r for r in rig.double.requests if r.chat_id == BASIC_GROUP]) == 1


async def test_a_migration_is_followed_once_per_message(rig: Rig, org: Any) -> None:
    await bind_basic_group(rig.sessionmaker, org.xinsha_id)
    await enqueue(rig.sessionmaker, BASIC_GROUP, "suggestion_status", status_params())
    rig.double.fail_in_chat(BASIC_GROUP, migrated(SUPERGROUP), times=None)
    rig.double.fail_in_chat(SUPERGROUP, migrated(-1_009_999_999_999), times=None)
    assert await rig.sender.run_once() == 0
    (row,) = await rig.rows()
    assert row.status is NotificationStatus.FAILED and "supergroup" in (row.error or "")
    assert len(rig.double.requests) == 2


class HeldLimiter(MemorySendLimiter):
    """A limiter whose first turn is held until `release` is set: a slow run, its claim's
    lease running out while it waits."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock.jump, sleep=clock.jump.sleep)
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def try_acquire(self, chat_id: int) -> float:
        if not self.release.is_set():
            self.waiting.set()
            await self.release.wait()
        return await super().try_acquire(chat_id)


async def test_a_run_whose_lease_ran_out_sends_nothing_another_took_over(
    sessionmaker: Sessions, renderer: NotificationRenderer
) -> None:
    """Replica A claims three messages and stalls before sending; its lease runs out, B
    claims them and sends them. When A goes on, each of its sends first renews its claim,
    finds the message taken over, and leaves it: every message reaches the chat once."""
    async with sessionmaker() as session:
        for n in range(3):
            await notifications.enqueue(
                session,
                chat_id=ZH_PERSON,
                kind="suggestion_status",
                params=status_params(suggestion_id=n),
                dedupe_key=f"status:{n}",
                not_before=NOW - timedelta(seconds=1),
            )
        await session.commit()
    clock = Clock()
    held = HeldLimiter(clock)
    slow, quick = Rig(sessionmaker, renderer, held, clock), Rig(sessionmaker, renderer, None, clock)
    stalled = asyncio.create_task(slow.sender.run_once(50))
    await held.waiting.wait()
    clock.advance(slow.sender.lease_seconds + 1)  # A's lease is over
    sent_by_quick = 0
    for _ in range(3):
        sent_by_quick += await quick.sender.run_once(50)
        clock.advance(1.0)  # the chat's pace: one a second
    held.release.set()
    assert await stalled == 0
    assert sent_by_quick == 3 and slow.double.delivered() == []
    rows = await quick.rows()
    assert all(row.status is NotificationStatus.SENT for row in rows)
    # Nor did A reschedule (or give back the claim of) what B had claimed.
    assert [row.attempts for row in rows] == [2, 2, 2]


async def test_a_claim_is_renewed_only_by_its_holder(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        await notifications.enqueue(
            session,
            chat_id=ZH_PERSON,
            kind="suggestion_status",
            params=status_params(),
            not_before=NOW,
        )
        await session.commit()
        (claimed,) = await notifications.claim_due(
            session, limit=5, now=NOW + timedelta(minutes=1), lease_seconds=60
        )
        held = claimed.not_before
        later = NOW + timedelta(minutes=1, seconds=30)
        renewed = await notifications.renew_claim(
            session, claimed.id, held, now=later, lease_seconds=60
        )
        assert renewed == later + timedelta(seconds=60)
        # The old end of the lease no longer names the holder.
        assert (
            await notifications.renew_claim(session, claimed.id, held, now=later, lease_seconds=60)
            is None
        )
        # Another claimer, once the lease is over, takes it; the first cannot renew it then.
        (again,) = await notifications.claim_due(
            session, limit=5, now=renewed + timedelta(seconds=1), lease_seconds=60
        )
        assert again.id == claimed.id
        assert (
            await notifications.renew_claim(
                session, claimed.id, renewed, now=renewed, lease_seconds=60
            )
            is None
        )


def test_every_kind_of_message_has_its_renderer() -> None:
    """A kind the store may enqueue and the bot cannot render would fail in the outbox, and a
    renderer of no kind is dead code: the two lists are one."""
    assert set(RENDERERS) == set(NotificationKind) - {NotificationKind.COMMAND_MENU}
