"""The suggestion dialog end to end, through the real Dispatcher, on both database backends
and both FSM storages (memory, and Redis, where the draft survives a restart)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest
from aiogram.methods import EditMessageReplyMarkup, SendMessage
from aiogram.types import ReplyKeyboardMarkup, Update
from dialog_helpers import fsm
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import (
    CANCEL,
    CATEGORY,
    COMMUNITY,
    DISTRICT,
    DONE,
    EDIT,
    PHYSICAL,
    SERVICE,
    SKIP,
    STREET,
    SUBMIT,
    Call,
    Driver,
    Harness,
    Person,
    alerts,
    all_text,
    button_texts,
    last_text,
    make_harness,
    make_settings,
    removes_reply_keyboard,
    sent,
    texts,
)

from dialogs.suggestion import SuggestionForm
from storage.models import Community, Follower, Suggestion
from storage.models import Person as PersonRow
from storage.rules import Category, Kind, SourceType, State
from storage.services.chats import bind_chat
from storage.settings import Settings

pytest_plugins = ["telegram_fakes"]

RESIDENT = Person(1001, "小明")
GROUP_ID = -1001000000088  # a residents' group of 天安社区, whose "Suggest" button is pressed
KEEP = "✅ 保留原照片"


def inaccessible(h: Harness, press: Update) -> Update:
    """`press` as Telegram sends it under a message older than 48 hours, which the bot may no
    longer see: an inaccessible message, its chat and id only (date 0)."""
    data = press.model_dump(exclude_none=True, by_alias=True, mode="json")
    message = data["callback_query"]["message"]
    data["callback_query"]["message"] = {
        "chat": message["chat"],
        "message_id": message["message_id"],
        "date": 0,
    }
    return Update.model_validate(data, context={"bot": h.bot})


def edited_markup(calls: list[Call]) -> Any:
    """The buttons the update's last edit of a message's buttons left."""
    [*_, edit] = [c for c in calls if isinstance(c.method, EditMessageReplyMarkup)]
    return edit.markup


async def suggestions(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Suggestion]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(Suggestion).order_by(Suggestion.id))).all())


async def walk_whole_flow(h: Harness, org: Any) -> None:
    """Every step with its ordinary answer, asserting what the resident sees."""
    p = RESIDENT
    calls = await h.say(p, "/suggest")
    assert "您要为哪个社区提建议？" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [DISTRICT]
    calls = await h.press(p, DISTRICT, exact=True)
    assert "请选择福田区的街道" in last_text(calls)
    calls = await h.press(p, STREET, exact=True)
    assert "请选择福田区 › 沙头街道的社区" in last_text(calls)
    calls = await h.press(p, COMMUNITY, exact=True)
    assert "社区：福田区 › 沙头街道 › 新沙社区" in all_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [
        "消除安全隐患",
        "社区环境整治",
        "文化体育娱乐",
        "居民生活关爱",
    ]
    calls = await h.press(p, CATEGORY, exact=True)
    assert "请给建议起个简短的标题" in last_text(calls)
    calls = await h.say(p, "修复3栋楼梯间照明灯")
    assert "请具体描述一下" in last_text(calls)
    assert "内容将在公示栏公开，请不要写姓名、电话、门牌号" in last_text(calls)
    calls = await h.say(p, "楼梯间太黑，老人晚上容易摔倒。")
    location_prompt = sent(calls)[-1]
    assert isinstance(location_prompt.markup, ReplyKeyboardMarkup)
    share = location_prompt.markup.keyboard[0][0]
    assert share.text == "📍 发送位置" and share.request_location
    assert location_prompt.markup.keyboard[1][0].text == "⌨️ 改为输入文字地址"
    calls = await h.say(p, "新沙小区3栋")
    assert removes_reply_keyboard(calls)
    assert button_texts(sent(calls)[-1].markup) == [SKIP]
    calls = await h.feed(h.updates.photo(p, "photo-a"))
    assert "已收到第 1 张照片" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [DONE]
    await h.feed(h.updates.photo(p, "photo-b"))
    calls = await h.press(p, DONE, exact=True)
    assert button_texts(sent(calls)[-1].markup) == [SERVICE, PHYSICAL, SKIP]
    calls = await h.press(p, PHYSICAL, exact=True)
    assert "大概需要多少钱" in last_text(calls)
    calls = await h.say(p, "1.5万")
    summary = last_text(calls)
    for expected in (
        "请核对您的建议",
        "社区：福田区 › 沙头街道 › 新沙社区",
        "类别：社区环境整治",
        "标题：修复3栋楼梯间照明灯",
        "描述：楼梯间太黑，老人晚上容易摔倒。",
        "地点：新沙小区3栋",
        "照片：2 张",
        "项目类型和估算费用：实物项目 · 约 ¥15,000",
        "标题、描述和地点将在公示栏公开，不会显示您的姓名。",
    ):
        assert expected in summary
    assert button_texts(sent(calls)[-1].markup) == [SUBMIT, EDIT, "✖️ 取消"]
    calls = await h.press(p, SUBMIT, exact=True)
    assert alerts(calls) == ["提交成功，谢谢您！"]
    assert "编号 <b>新沙-" in last_text(calls)
    assert "<a href" not in last_text(calls), "no public address, no link to the board"


async def assert_stored(sessionmaker: async_sessionmaker[AsyncSession], org: Any) -> None:
    [stored] = await suggestions(sessionmaker)
    assert stored.community_id == org.xinsha_id
    assert stored.category is Category.ENVIRONMENT
    assert stored.title == "修复3栋楼梯间照明灯"
    assert stored.description == "楼梯间太黑，老人晚上容易摔倒。"
    assert stored.location_text == "新沙小区3栋"
    assert stored.photo_file_ids == ["photo-a", "photo-b"]  # the largest size of each
    assert stored.kind is Kind.PHYSICAL
    assert stored.estimated_cost_fen == 1_500_000
    assert stored.status is State.SUBMITTED
    assert stored.number.startswith("新沙-") and stored.number.endswith("-0001")
    async with sessionmaker() as session:
        person = (
            await session.scalars(select(PersonRow).where(PersonRow.telegram_id == RESIDENT.id))
        ).one()
        assert stored.proposer_id == person.id
        follower = await session.get(Follower, (stored.id, person.id))
        assert follower is not None, "the proposer follows their suggestion"


async def test_whole_flow_in_memory(
    bot_harness: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await walk_whole_flow(bot_harness, org)
    await assert_stored(sessionmaker, org)
    assert await fsm(bot_harness, RESIDENT) == (None, {})
    calls = await bot_harness.say(RESIDENT, "/my")
    assert "新沙-" in last_text(calls) and "已提交" in last_text(calls)


@pytest.mark.redis
async def test_whole_flow_on_redis(
    bot_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    org: Any,
    fsm_redis: Redis,
) -> None:
    harness = make_harness(bot_settings, sessionmaker, fsm_redis)
    await walk_whole_flow(harness, org)
    await assert_stored(sessionmaker, org)


@pytest.mark.redis
async def test_draft_survives_a_restart_with_redis(
    bot_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    org: Any,
    redis_url: str,
) -> None:
    first_redis = Redis.from_url(redis_url)
    first = make_harness(bot_settings, sessionmaker, first_redis)
    await Driver(first).location(RESIDENT)
    # A photo at the location step is refused and changes nothing.
    await first.feed(first.updates.photo(RESIDENT, "photo-x"))
    await first_redis.aclose()

    # A new process: a new dispatcher and a new Redis connection; Telegram's side (the chat
    # history) is the same.
    second_redis = Redis.from_url(redis_url)
    try:
        second = make_harness(bot_settings, sessionmaker, second_redis, first.session)
        state, data = await fsm(second, RESIDENT)
        assert state == SuggestionForm.location.state
        assert data["title"] == "修复3栋楼梯间照明灯"
        calls = await second.say(RESIDENT, "新沙小区3栋")
        assert removes_reply_keyboard(calls)
        await second.press(RESIDENT, SKIP, exact=True)
        await second.press(RESIDENT, SKIP, exact=True)
        calls = await second.press(RESIDENT, SUBMIT, exact=True)
        assert "编号" in last_text(calls)
    finally:
        await second_redis.aclose()
    [stored] = await suggestions(sessionmaker)
    assert stored.title == "修复3栋楼梯间照明灯" and stored.kind is None


async def test_deep_link_skips_the_community_step(
    bot_harness: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    calls = await bot_harness.say(RESIDENT, f"/start s_{org.tianan_id}")
    text = last_text(calls)
    assert "我们一起来填写您为<b>天安社区</b>提的建议" in text
    assert "您的建议属于哪一类" in text
    state, data = await fsm(bot_harness, RESIDENT)
    assert state == SuggestionForm.category.state
    assert data["community_id"] == org.tianan_id
    await bot_harness.press(RESIDENT, "消除安全隐患", exact=True)
    await bot_harness.say(RESIDENT, "路口护栏松动")
    await bot_harness.say(RESIDENT, "天安路口护栏松动，有安全隐患")
    await bot_harness.say(RESIDENT, "天安路口")
    await bot_harness.press(RESIDENT, SKIP, exact=True)
    calls = await bot_harness.press(RESIDENT, SKIP, exact=True)
    summary = last_text(calls)
    assert "社区：福田区 › 沙头街道 › 天安社区" in summary
    assert "照片：无" in summary and "0 张" not in summary
    assert "项目类型和估算费用：未填写" in summary
    await bot_harness.press(RESIDENT, SUBMIT, exact=True)
    [stored] = await suggestions(sessionmaker)
    assert stored.community_id == org.tianan_id
    assert stored.category is Category.SAFETY
    assert stored.number.startswith("天安-")


async def test_a_link_answers_the_community_question_still_open(
    bot_harness: Harness, org: Any
) -> None:
    """/suggest asks for the community; a community's link pressed then (in a group, say)
    answers it, and the dialog goes on to the category instead of asking it again."""
    await bot_harness.say(RESIDENT, "/suggest")
    calls = await bot_harness.say(RESIDENT, f"/start s_{org.tianan_id}")
    assert "您有一条建议还没填完" not in all_text(calls)
    text = last_text(calls)
    assert "我们一起来填写您为<b>天安社区</b>提的建议" in text
    assert "您的建议属于哪一类" in text
    state, data = await fsm(bot_harness, RESIDENT)
    assert state == SuggestionForm.category.state
    assert data["community_id"] == org.tianan_id
    assert data["community_label"] == "福田区 › 沙头街道 › 天安社区"


async def test_a_groups_link_answers_it_midway_through_the_picker(
    bot_harness: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        community = await session.get(Community, org.tianan_id)
        assert community is not None
        await bind_chat(
            session, GROUP_ID, community, title="", chat_type="supergroup", bound_by_person_id=None
        )
        await session.commit()
    h = bot_harness
    await h.say(RESIDENT, "/suggest")
    await h.press(RESIDENT, DISTRICT, exact=True)
    calls = await h.say(RESIDENT, f"/start g_{GROUP_ID}")
    assert "您的建议属于哪一类" in last_text(calls)
    state, data = await fsm(h, RESIDENT)
    assert state == SuggestionForm.category.state
    assert data["community_id"] == org.tianan_id
    # The picker's buttons asked a question now answered.
    calls = await h.press(RESIDENT, STREET, exact=True)
    assert alerts(calls) == ["这个按钮已过期，请使用最新消息中的按钮。"]
    assert (await fsm(h, RESIDENT))[0] == SuggestionForm.category.state
    await h.press(RESIDENT, CATEGORY, exact=True)
    await h.say(RESIDENT, "修复路灯")
    await h.say(RESIDENT, "天安路的路灯不亮")
    await h.say(RESIDENT, "天安路")
    await h.press(RESIDENT, SKIP, exact=True)
    calls = await h.press(RESIDENT, SKIP, exact=True)
    assert "社区：福田区 › 沙头街道 › 天安社区" in last_text(calls)


async def test_a_link_in_a_draft_with_a_community_continues_it(
    dialog_driver: Driver, bot_harness: Harness, org: Any
) -> None:
    """The community already chosen (新沙社区) is not changed by another community's link:
    the person goes on where they left off."""
    await dialog_driver.description(RESIDENT)
    before = await fsm(bot_harness, RESIDENT)
    calls = await bot_harness.say(RESIDENT, f"/start s_{org.tianan_id}")
    assert "您有一条建议还没填完" in all_text(calls)
    assert "请具体描述一下" in last_text(calls)
    assert await fsm(bot_harness, RESIDENT) == before
    assert before[1]["community_id"] == org.xinsha_id


async def test_edit_a_field_returns_to_the_summary(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    h = bot_harness
    await dialog_driver.summary(RESIDENT)
    calls = await h.press(RESIDENT, EDIT, exact=True)
    assert button_texts(edited_markup(calls)) == [
        "社区",
        "类别",
        "标题",
        "描述",
        "地点",
        "照片",
        "项目类型和估算费用",
        "建议人身份",
        "‹ 返回确认页",
    ]
    calls = await h.press(RESIDENT, "标题", exact=True)
    assert "请给建议起个简短的标题" in last_text(calls)
    calls = await h.say(RESIDENT, "更换3栋楼道灯")
    assert "标题：更换3栋楼道灯" in last_text(calls), "straight back to the summary"
    assert "描述：楼梯间太黑" in last_text(calls), "nothing else was lost"

    # Editing the kind goes through the cost too, then back.
    await h.press(RESIDENT, EDIT, exact=True)
    await h.press(RESIDENT, "项目类型和估算费用", exact=True)
    calls = await h.press(RESIDENT, SERVICE, exact=True)
    assert "大概需要多少钱" in last_text(calls)
    calls = await h.say(RESIDENT, "30万")
    assert "服务项目原则上不超过 ¥200,000" in last_text(calls)
    assert "项目类型和估算费用：服务项目 · 约 ¥300,000" in last_text(calls)

    # New photos replace the earlier ones; the community is chosen again.
    await h.press(RESIDENT, EDIT, exact=True)
    calls = await h.press(RESIDENT, "照片", exact=True)
    await h.feed(h.updates.photo(RESIDENT, "new-photo"))
    calls = await h.press(RESIDENT, DONE, exact=True)
    assert "照片：1 张" in last_text(calls)
    await h.press(RESIDENT, EDIT, exact=True)
    await h.press(RESIDENT, "社区", exact=True)
    await h.press(RESIDENT, DISTRICT, exact=True)
    await h.press(RESIDENT, STREET, exact=True)
    calls = await h.press(RESIDENT, "天安社区", exact=True)
    assert "社区：福田区 › 沙头街道 › 天安社区" in last_text(calls)

    # "Back to the summary" from the field menu changes nothing.
    await h.press(RESIDENT, EDIT, exact=True)
    calls = await h.press(RESIDENT, "‹ 返回确认页", exact=True)
    assert button_texts(edited_markup(calls)) == [SUBMIT, EDIT, "✖️ 取消"]

    await h.press(RESIDENT, SUBMIT, exact=True)
    [stored] = await suggestions(sessionmaker)
    assert stored.title == "更换3栋楼道灯"
    assert stored.kind is Kind.SERVICE and stored.estimated_cost_fen == 30_000_000
    assert stored.photo_file_ids == ["new-photo"]
    assert stored.number.startswith("天安-")


@pytest.mark.parametrize(
    ("label", "source"),
    [
        ("驻社区单位", SourceType.UNIT),
        ("社会组织", SourceType.SOCIAL_ORGANISATION),
        ("两代表一委员", SourceType.REPRESENTATIVE),
    ],
)
async def test_a_unit_an_organisation_or_a_representative_suggests_as_such(
    dialog_driver: Driver,
    bot_harness: Harness,
    sessionmaker: async_sessionmaker[AsyncSession],
    label: str,
    source: SourceType,
) -> None:
    """The programme takes suggestions from residents, units in the community, social
    organisations and the representatives (两代表一委员), recorded as the source type. A
    resident is the default, so nobody else is asked; the summary says it, and its edit menu
    changes it."""
    h = bot_harness
    calls = await dialog_driver.summary(RESIDENT)
    assert "建议人身份：社区居民" in last_text(calls)
    await h.press(RESIDENT, EDIT, exact=True)
    calls = await h.press(RESIDENT, "建议人身份", exact=True)
    assert "这条建议以什么身份提出" in last_text(calls)
    assert button_texts(sent(calls)[-1].method.reply_markup) == [
        "社区居民",
        "驻社区单位",
        "社会组织",
        "两代表一委员",
    ]
    # Typing instead of choosing is answered, and the choice asked again.
    calls = await h.say(RESIDENT, "我是学校")
    assert last_text(calls).startswith("请点击按钮进行选择。\n\n这条建议以什么身份提出")
    calls = await h.press(RESIDENT, label, exact=True)
    assert f"建议人身份：{label}" in last_text(calls), "straight back to the summary"
    assert "标题：修复3栋楼梯间照明灯" in last_text(calls), "nothing else was lost"
    await h.press(RESIDENT, SUBMIT, exact=True)
    [stored] = await suggestions(sessionmaker)
    assert stored.source_type is source


async def test_editing_the_photos_keeps_them_unless_new_ones_are_sent(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """修改 › 照片 from the summary: the question says that new photos replace the ones sent,
    and offers to keep them; until a new photo arrives, none is lost."""
    h = bot_harness
    await dialog_driver.photos(RESIDENT)
    for file_id in ("photo-a", "photo-b", "photo-c"):
        await h.feed(h.updates.photo(RESIDENT, file_id))
    await h.press(RESIDENT, DONE, exact=True)
    await h.press(RESIDENT, SERVICE, exact=True)
    calls = await h.say(RESIDENT, "12000")
    assert "照片：3 张" in last_text(calls)

    await h.press(RESIDENT, EDIT, exact=True)
    calls = await h.press(RESIDENT, "照片", exact=True)
    assert "之前已发送的照片：3 张。现在发送新照片将替换它们" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [KEEP]
    calls = await h.say(RESIDENT, "照片不用换")  # not a photo: asked again, nothing lost
    assert "之前已发送的照片：3 张" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [KEEP]
    calls = await h.press(RESIDENT, KEEP, exact=True)
    assert "照片：3 张" in last_text(calls)
    _state, data = await fsm(h, RESIDENT)
    assert data["photos"] == ["photo-a", "photo-b", "photo-c"]

    # A new photo replaces them all (it is not a fourth, refused), and more may follow it.
    await h.press(RESIDENT, EDIT, exact=True)
    await h.press(RESIDENT, "照片", exact=True)
    calls = await h.feed(h.updates.photo(RESIDENT, "photo-d"))
    assert "已收到第 1 张照片" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [DONE]
    calls = await h.feed(h.updates.photo(RESIDENT, "photo-e"))
    assert "已收到第 2 张照片" in last_text(calls)
    # The keep button above them is out of date: the photos it would keep are replaced.
    calls = await h.press(RESIDENT, KEEP, exact=True)
    assert alerts(calls) == ["这个按钮已过期，请使用最新消息中的按钮。"]
    calls = await h.press(RESIDENT, DONE, exact=True)
    assert "照片：2 张" in last_text(calls)
    await h.press(RESIDENT, SUBMIT, exact=True)
    [stored] = await suggestions(sessionmaker)
    assert stored.photo_file_ids == ["photo-d", "photo-e"]


async def test_editing_no_photos_offers_to_skip(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    await dialog_driver.summary(RESIDENT)
    await bot_harness.press(RESIDENT, EDIT, exact=True)
    calls = await bot_harness.press(RESIDENT, "照片", exact=True)
    assert "照片能帮助社区更好地了解情况" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == [SKIP]
    calls = await bot_harness.press(RESIDENT, SKIP, exact=True)
    assert "照片：无" in last_text(calls)


async def test_cancel_from_the_summary_saves_nothing(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await dialog_driver.summary(RESIDENT)
    calls = await bot_harness.press(RESIDENT, "✖️ 取消", exact=True)
    assert "已取消" in last_text(calls)
    assert await suggestions(sessionmaker) == []
    assert await fsm(bot_harness, RESIDENT) == (None, {})


async def test_cancel_under_a_summary_too_old_to_see_still_says_so(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A draft's summary left for more than 48 hours: the press comes with an inaccessible
    message, and the cancellation is said in the chat all the same."""
    await dialog_driver.summary(RESIDENT)
    press = inaccessible(bot_harness, bot_harness.button_update(RESIDENT, CANCEL, exact=True))
    calls = await bot_harness.feed(press)
    [said] = sent(calls)
    assert isinstance(said.method, SendMessage) and said.method.chat_id == RESIDENT.id
    assert "已取消，刚才填写的内容没有保存" in last_text(calls)
    assert await suggestions(sessionmaker) == []
    assert await fsm(bot_harness, RESIDENT) == (None, {})


async def test_editing_under_a_summary_too_old_to_see_sends_it_again(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    """The summary's edit and back buttons change its keyboard in place; a summary older than
    48 hours cannot be edited (it comes as an inaccessible message), so it is sent again with
    the buttons asked for, and editing goes on from there."""
    await dialog_driver.summary(RESIDENT)
    calls = await bot_harness.feed(
        inaccessible(bot_harness, bot_harness.button_update(RESIDENT, EDIT, exact=True))
    )
    [menu] = sent(calls)
    assert "请核对您的建议" in last_text(calls)
    assert "标题" in button_texts(menu.markup)
    calls = await bot_harness.feed(
        inaccessible(bot_harness, bot_harness.button_update(RESIDENT, "‹ 返回确认页", exact=True))
    )
    [summary] = sent(calls)
    assert SUBMIT in button_texts(summary.markup)
    await bot_harness.press(RESIDENT, EDIT, exact=True)
    calls = await bot_harness.press(RESIDENT, "标题", exact=True)
    assert "请给建议起个简短的标题" in last_text(calls)


@pytest.mark.parametrize("step", ["category", "title", "description", "location", "kind"])
async def test_cancel_works_at_every_step(
    dialog_driver: Driver, bot_harness: Harness, step: str
) -> None:
    await getattr(dialog_driver, step)(RESIDENT)
    calls = await bot_harness.say(RESIDENT, "/cancel")
    assert "已取消" in last_text(calls)
    assert removes_reply_keyboard(calls), "the location keyboard must not stay behind"
    assert await fsm(bot_harness, RESIDENT) == (None, {})
    calls = await bot_harness.say(RESIDENT, "随便说点什么")
    assert "/suggest" in last_text(calls), "outside a dialog, a hint"


async def test_shared_location(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await dialog_driver.location(RESIDENT)
    calls = await bot_harness.feed(bot_harness.updates.location(RESIDENT, 22.53, 114.05))
    assert removes_reply_keyboard(calls)
    await bot_harness.press(RESIDENT, SKIP, exact=True)
    calls = await bot_harness.press(RESIDENT, SKIP, exact=True)
    assert "地点：已发送定位（22.53000, 114.05000）" in last_text(calls)
    await bot_harness.press(RESIDENT, SUBMIT, exact=True)
    [stored] = await suggestions(sessionmaker)
    assert (stored.latitude, stored.longitude) == (22.53, 114.05)
    assert stored.location_text is None


async def test_type_the_address_instead(dialog_driver: Driver, bot_harness: Harness) -> None:
    await dialog_driver.location(RESIDENT)
    calls = await bot_harness.say(RESIDENT, "⌨️ 改为输入文字地址")
    assert last_text(calls) == "请输入地址："
    assert removes_reply_keyboard(calls)
    state, data = await fsm(bot_harness, RESIDENT)
    assert state == SuggestionForm.location.state and data["location_text"] is None


async def test_cost_can_be_skipped_and_must_be_an_amount(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await dialog_driver.kind(RESIDENT)
    await bot_harness.press(RESIDENT, SERVICE, exact=True)
    for bad in ("很多钱", "-5", "1.234", "12元5角"):
        calls = await bot_harness.say(RESIDENT, bad)
        assert "抱歉，我没看懂这个金额" in last_text(calls)
        assert "大概需要多少钱" in last_text(calls)
    calls = await bot_harness.press(RESIDENT, SKIP, exact=True)
    assert "项目类型和估算费用：服务项目" in last_text(calls)
    assert "约 ¥" not in last_text(calls)
    await bot_harness.press(RESIDENT, SUBMIT, exact=True)
    [stored] = await suggestions(sessionmaker)
    assert stored.kind is Kind.SERVICE and stored.estimated_cost_fen is None


async def test_a_cost_of_zero_is_asked_again(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await dialog_driver.kind(RESIDENT)
    await bot_harness.press(RESIDENT, SERVICE, exact=True)
    for zero in ("0", "0元", "０.00", "约0块"):
        calls = await bot_harness.say(RESIDENT, zero)
        text = last_text(calls)
        assert "请输入大于 ¥0 的金额。如果不清楚大概需要多少钱，请点击“跳过”。" in text, zero
        assert "大概需要多少钱（元）" in text, "the question again"
        assert button_texts(sent(calls)[-1].markup) == [SKIP]
    state, data = await fsm(bot_harness, RESIDENT)
    assert state == SuggestionForm.cost.state and data["cost_fen"] is None
    # As people say it: about five thousand kuai.
    calls = await bot_harness.say(RESIDENT, "约5千块")
    assert "项目类型和估算费用：服务项目 · 约 ¥5,000" in last_text(calls)
    await bot_harness.press(RESIDENT, SUBMIT, exact=True)
    [stored] = await suggestions(sessionmaker)
    assert stored.estimated_cost_fen == 500_000


async def test_an_estimate_ten_times_the_cap_is_asked_again(
    dialog_driver: Driver, bot_harness: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await dialog_driver.kind(RESIDENT)
    await bot_harness.press(RESIDENT, SERVICE, exact=True)
    # Ten times the service cap (¥200,000) is still an estimate; a yuan more is not.
    for far in ("200万零1", "2000001", "99999999999999999999"):
        calls = await bot_harness.say(RESIDENT, far)
        assert "大概需要多少钱" in last_text(calls), far
    calls = await bot_harness.say(RESIDENT, "2,000,001")
    assert "¥2,000,001 远超民生微实事的规模：服务项目原则上不超过 ¥200,000" in last_text(calls)
    state, data = await fsm(bot_harness, RESIDENT)
    assert state == SuggestionForm.cost.state and data["kind"] == Kind.SERVICE.value
    calls = await bot_harness.say(RESIDENT, "２００万")
    assert "已记录：约 ¥2,000,000" in all_text(calls)
    await bot_harness.press(RESIDENT, SUBMIT, exact=True)
    [stored] = await suggestions(sessionmaker)
    assert stored.estimated_cost_fen == 200_000_000


async def test_the_thanks_link_the_suggestions_page_on_the_board(
    sessionmaker: async_sessionmaker[AsyncSession], org: Any
) -> None:
    settings = make_settings(
        public_url="https://minsheng.example.org/", webhook_secret="s3cret", bot_token="42:TEST"
    )
    h = make_harness(settings, sessionmaker)
    calls = await Driver(h).submitted(RESIDENT)
    [stored] = await suggestions(sessionmaker)
    href = "https://minsheng.example.org/board/suggestions/" + quote(stored.number, safe="")
    assert href.startswith("https://minsheng.example.org/board/suggestions/%E6%96%B0%E6%B2%99-")
    text = last_text(calls)
    assert f"编号 <b>{stored.number}</b>" in text
    assert text.endswith(f'\n\n🔗 <a href="{href}">在公示栏查看</a>')


async def test_daily_limit_is_said_at_the_start(
    dialog_driver: Driver, bot_harness: Harness, bot_settings: Settings, org: Any
) -> None:
    for _ in range(bot_settings.max_suggestions_per_day):
        await dialog_driver.submitted(RESIDENT)
    calls = await bot_harness.say(RESIDENT, "/suggest")
    assert f"您今天已经提了 {bot_settings.max_suggestions_per_day} 条建议" in last_text(calls)
    assert await fsm(bot_harness, RESIDENT) == (None, {})
    calls = await bot_harness.say(RESIDENT, f"/start s_{org.xinsha_id}")
    assert "达到了每人每天的上限" in last_text(calls)
    assert await fsm(bot_harness, RESIDENT) == (None, {})


async def test_daily_limit_reached_while_writing_keeps_the_draft(
    bot_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], org: Any
) -> None:
    # Two devices of the same person: one finishes its suggestions while the other writes.
    writer = make_harness(bot_settings, sessionmaker)
    other = make_harness(bot_settings, sessionmaker)
    await Driver(writer).summary(RESIDENT)
    for _ in range(bot_settings.max_suggestions_per_day):
        await Driver(other).submitted(RESIDENT)
    calls = await writer.press(RESIDENT, SUBMIT, exact=True)
    assert "达到了每人每天的上限" in last_text(calls)
    assert "您填写的内容已保留，明天再点击“确认提交”即可" in last_text(calls)
    state, data = await fsm(writer, RESIDENT)
    assert state == SuggestionForm.summary.state and data["title"]
    assert len(await suggestions(sessionmaker)) == bot_settings.max_suggestions_per_day


async def test_album_photos_handled_concurrently_are_all_counted(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    """An album arrives as one update per photo; in webhook mode they run concurrently."""
    await dialog_driver.photos(RESIDENT)
    updates = [
        bot_harness.updates.photo(RESIDENT, f"album-{i}", media_group_id="album-1")
        for i in range(3)
    ]
    await asyncio.gather(*(bot_harness.feed(update) for update in updates))
    _state, data = await fsm(bot_harness, RESIDENT)
    assert sorted(data["photos"]) == ["album-0", "album-1", "album-2"]


@pytest.mark.redis
async def test_album_photos_concurrently_on_redis(
    bot_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    org: Any,
    fsm_redis: Redis,
) -> None:
    # Two replicas sharing Redis, each taking some of the album's updates.
    one = make_harness(bot_settings, sessionmaker, fsm_redis)
    two = make_harness(bot_settings, sessionmaker, fsm_redis, one.session)
    await Driver(one).photos(RESIDENT)
    updates = [
        one.updates.photo(RESIDENT, f"album-{i}", media_group_id="album-2") for i in range(5)
    ]
    await asyncio.gather(
        *((one if i % 2 else two).feed(update) for i, update in enumerate(updates))
    )
    _state, data = await fsm(one, RESIDENT)
    assert len(data["photos"]) == 3
    refusals = [
        c
        for c in one.session.calls
        if isinstance(c.method, SendMessage) and "不能再多了" in (c.text or "")
    ]
    assert len(refusals) == 1, "one refusal for the whole album"


async def test_a_fourth_photo_is_refused_politely(
    dialog_driver: Driver, bot_harness: Harness
) -> None:
    await dialog_driver.photos(RESIDENT)
    for i in range(3):
        await bot_harness.feed(bot_harness.updates.photo(RESIDENT, f"p{i}"))
    calls = await bot_harness.feed(bot_harness.updates.photo(RESIDENT, "p3"))
    assert "您已经发送了 3 张照片，不能再多了" in last_text(calls)
    _state, data = await fsm(bot_harness, RESIDENT)
    assert data["photos"] == ["p0", "p1", "p2"]
    # The same photo update delivered twice counts once.
    update = bot_harness.updates.photo(RESIDENT, "p-dup")
    await dialog_driver.h.say(RESIDENT, "/cancel")
    await dialog_driver.photos(RESIDENT)
    await bot_harness.feed(update)
    again = update.model_copy(update={"update_id": update.update_id + 10_000_000})
    calls = await bot_harness.feed(again)
    assert "已收到第 1 张照片" in last_text(calls)
    _state, data = await fsm(bot_harness, RESIDENT)
    assert data["photos"] == ["p-dup"]


async def test_texts_of_the_whole_flow_in_english(
    bot_harness: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    p = Person(2002, "Alex", language_code="en")
    h = bot_harness
    calls = await h.say(p, "/suggest")
    assert "Which community is your suggestion for?" in last_text(calls)
    await h.press(p, DISTRICT, exact=True)
    await h.press(p, STREET, exact=True)
    calls = await h.press(p, COMMUNITY, exact=True)
    assert button_texts(sent(calls)[-1].markup) == [
        "Remove safety hazards",
        "Community environment",
        "Culture, sports and recreation",
        "Care for residents",
    ]
    await h.press(p, "Care for residents", exact=True)
    await h.say(p, "Weekend homework club")
    await h.say(p, "Volunteers help children with homework on Saturdays.")
    calls = await h.say(p, "Community centre, room 2")
    assert button_texts(sent(calls)[-1].markup) == ["⏭ Skip"]
    calls = await h.press(p, "⏭ Skip", exact=True)
    assert button_texts(sent(calls)[-1].markup) == ["Service project", "Physical project", "⏭ Skip"]
    await h.press(p, "Service project", exact=True)
    calls = await h.say(p, "8000")
    assert "Service project · about ¥8,000" in last_text(calls)
    assert "Photos: none" in last_text(calls)
    assert button_texts(sent(calls)[-1].markup) == ["✅ Submit", "✏️ Edit", "✖️ Cancel"]
    calls = await h.press(p, "✅ Submit", exact=True)
    assert "Your suggestion has been submitted as number" in last_text(calls)
    assert texts(calls)


async def test_a_shared_venue_keeps_its_name(dialog_driver: Driver, bot_harness: Harness) -> None:
    await dialog_driver.location(RESIDENT)
    update = bot_harness.updates.message(
        RESIDENT,
        location={"latitude": 22.52, "longitude": 114.06},
        venue={
            "location": {"latitude": 22.52, "longitude": 114.06},
            "title": "新沙<公园>",
            "address": "沙头街道新沙路",
        },
    )
    calls = await bot_harness.feed(update)
    assert removes_reply_keyboard(calls)
    _state, data = await fsm(bot_harness, RESIDENT)
    assert data["location_text"] == "新沙<公园> 沙头街道新沙路"
    assert (data["latitude"], data["longitude"]) == (22.52, 114.06)


async def test_no_communities_yet(bot_harness: Harness) -> None:
    calls = await bot_harness.say(RESIDENT, "/suggest")
    assert "目前还没有录入社区信息" in last_text(calls)
    assert await fsm(bot_harness, RESIDENT) == (None, {})
