"""Group onboarding: the bot added to a group asks an admin to bind it to a community; only
admins' presses count; a bound group gets the "我要提建议" deep-link message."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import (
    AnswerCallbackQuery,
    EditMessageText,
    GetChatMember,
    PinChatMessage,
    SendMessage,
)
from aiogram.types import ReplyParameters
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import (
    BOT_USERNAME,
    COMMUNITY,
    DISTRICT,
    STREET,
    SUGGEST_BUTTON,
    Group,
    Harness,
    Person,
    alerts,
    all_text,
    button_texts,
    last_text,
    sent,
)

from bot.callbacks import BindCb, OrgLevel
from storage.models import AuditEvent, Chat, ChatPurpose
from storage.models import Person as PersonRow
from storage.services.org import OrgRow, import_rows

pytest_plugins = ["telegram_fakes"]

GROUP = Group(-1001234567890)
ADMIN = Person(501, "王主任")
MEMBER = Person(502, "李阿姨")
STALE = "这个按钮已过期，请使用最新消息中的按钮。"


@pytest.fixture
def h(bot_harness: Harness) -> Harness:
    bot_harness.session.member_status[(GROUP.id, ADMIN.id)] = "administrator"
    return bot_harness


async def chat_row(sessionmaker: async_sessionmaker[AsyncSession], chat_id: int) -> Chat | None:
    async with sessionmaker() as session:
        return await session.get(Chat, chat_id)


async def add_bot(h: Harness, by: Person = ADMIN, chat: Group = GROUP) -> list[Any]:
    return await h.feed(h.updates.my_chat_member(by, chat, "left", "member"))


async def bind(h: Harness, community: str = COMMUNITY, *, by: Person = ADMIN) -> list[Any]:
    """`by` binds GROUP to `community` through the picker's three levels."""
    await h.press(by, DISTRICT, GROUP, exact=True)
    await h.press(by, STREET, GROUP, exact=True)
    return await h.press(by, community, GROUP, exact=True)


async def test_added_to_a_group_asks_an_admin_to_bind(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    calls = await add_bot(h)
    text = last_text(calls)
    assert "请群管理员为本群绑定所属社区" in text and "请选择区" in text
    assert button_texts(sent(calls)[-1].markup) == [DISTRICT]
    chat = await chat_row(sessionmaker, GROUP.id)
    assert chat is not None and chat.bot_is_member and chat.community_id is None
    assert chat.title == GROUP.title and chat.type == "supergroup"


async def test_an_admin_binds_district_street_community(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_bot(h)
    calls = await h.press(ADMIN, DISTRICT, GROUP, exact=True)
    assert "请选择福田区的街道" in last_text(calls)
    assert any(isinstance(c.method, GetChatMember) for c in calls), "the press is checked"
    calls = await h.press(ADMIN, STREET, GROUP, exact=True)
    assert button_texts(calls[-1].markup) == ["天安社区", "新沙社区", "‹ 返回"]
    calls = await h.press(ADMIN, COMMUNITY, GROUP, exact=True)
    assert alerts(calls) == ["绑定成功。"]
    edits = [c for c in calls if isinstance(c.method, EditMessageText)]
    assert "✅ 本群已绑定福田区 › 沙头街道 › 新沙社区" in edits[-1].text
    assert edits[-1].markup is None
    suggest = sent(calls)[-1]
    assert "为新沙社区提建议" in suggest.text
    # Telegram let the bot pin it (the fake accepts pinChatMessage): no hint to admins.
    assert "置顶" not in suggest.text
    [pin] = [c.method for c in calls if isinstance(c.method, PinChatMessage)]
    assert pin.message_id == suggest.result.message_id and pin.disable_notification
    [button] = suggest.buttons()
    assert button.text == SUGGEST_BUTTON
    assert button.url == f"https://t.me/{BOT_USERNAME}?start=g_{GROUP.id}"

    chat = await chat_row(sessionmaker, GROUP.id)
    assert chat is not None and chat.community_id == org.xinsha_id
    async with sessionmaker() as session:
        admin = (
            await session.scalars(select(PersonRow).where(PersonRow.telegram_id == ADMIN.id))
        ).one()
        assert chat.bound_by_id == admin.id
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "bind_chat"))
        ).all()
        assert len(events) == 1 and not events[0].public


async def test_the_deep_link_opens_the_dialog_for_that_community(h: Harness, org: Any) -> None:
    await add_bot(h)
    calls = await bind(h)
    url = sent(calls)[-1].buttons()[0].url
    assert url is not None
    payload = url.split("?start=")[1]
    calls = await h.say(MEMBER, f"/start {payload}")
    assert "我们一起来填写您为<b>新沙社区</b>提的建议" in last_text(calls)


async def test_a_groups_button_follows_the_group_to_the_council_and_to_no_community(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Made the council's group, the group's old buttons still open its community's form;
    linked to nothing, they start a suggestion at the community question, and say why."""
    await add_bot(h)
    url = sent(await bind(h))[-1].buttons()[0].url
    assert url is not None
    payload = url.split("?start=")[1]
    async with sessionmaker() as session:
        chat = await session.get(Chat, GROUP.id)
        assert chat is not None
        chat.purpose = ChatPurpose.COUNCIL
        await session.commit()
    calls = await h.say(MEMBER, f"/start {payload}")
    assert "我们一起来填写您为<b>新沙社区</b>提的建议" in last_text(calls)
    await h.say(MEMBER, "/cancel")
    async with sessionmaker() as session:
        chat = await session.get(Chat, GROUP.id)
        assert chat is not None
        chat.purpose, chat.community_id = ChatPurpose.COMMUNITY, None
        await session.commit()
    calls = await h.say(MEMBER, f"/start {payload}")
    assert "您是从一个群来的，但这个群目前没有绑定社区，请在这里选择您的社区。" in last_text(calls)
    assert "您要为哪个社区提建议？" in last_text(calls)


@pytest.mark.parametrize(
    "payload", ["g_123", "g_-0", "g_-", "g_-12x", "g_--5", "s_-3", "g_-100999", "s_999"]
)
async def test_a_malformed_or_unknown_link_is_a_plain_start(
    h: Harness, org: Any, payload: str
) -> None:
    calls = await h.say(MEMBER, f"/start {payload}")
    assert last_text(calls).startswith("李阿姨，您好！")


async def test_a_non_admin_press_is_refused_politely(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_bot(h)
    calls = await h.press(MEMBER, DISTRICT, GROUP, exact=True)
    assert alerts(calls) == ["只有群管理员才能选择社区，谢谢理解！"]
    [answer] = [c.method for c in calls if isinstance(c.method, AnswerCallbackQuery)]
    assert answer.show_alert
    assert not [c for c in calls if isinstance(c.method, EditMessageText | SendMessage)]
    # Not even the last step: a member cannot bind by pressing a community button.
    await h.press(ADMIN, DISTRICT, GROUP, exact=True)
    await h.press(ADMIN, STREET, GROUP, exact=True)
    calls = await h.press(MEMBER, COMMUNITY, GROUP, exact=True)
    assert alerts(calls) == ["只有群管理员才能选择社区，谢谢理解！"]
    chat = await chat_row(sessionmaker, GROUP.id)
    assert chat is not None and chat.community_id is None


async def test_the_group_creator_counts_as_admin(h: Harness, org: Any) -> None:
    owner = Person(503, "群主")
    h.session.member_status[(GROUP.id, owner.id)] = "creator"
    await add_bot(h)
    calls = await h.press(owner, DISTRICT, GROUP, exact=True)
    assert "请选择福田区的街道" in last_text(calls)


async def test_back_goes_up_a_level(h: Harness, org: Any) -> None:
    await add_bot(h)
    await h.press(ADMIN, DISTRICT, GROUP, exact=True)
    await h.press(ADMIN, STREET, GROUP, exact=True)
    calls = await h.press(ADMIN, "‹ 返回", GROUP, exact=True)
    assert "请选择福田区的街道" in last_text(calls)
    calls = await h.press(ADMIN, "‹ 返回", GROUP, exact=True)
    assert "请选择区" in last_text(calls)


async def test_long_lists_are_paged(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        await import_rows(
            session, [OrgRow(i, "福田区", "沙头街道", f"第{i:02d}社区") for i in range(2, 12)]
        )
    await add_bot(h)
    await h.press(ADMIN, DISTRICT, GROUP, exact=True)
    calls = await h.press(ADMIN, STREET, GROUP, exact=True)
    first_page = button_texts(calls[-1].markup)
    assert len([b for b in first_page if "社区" in b]) == 8
    assert "下一页 »" in first_page and "« 上一页" not in first_page
    calls = await h.press(ADMIN, "下一页 »", GROUP, exact=True)
    second_page = button_texts(calls[-1].markup)
    assert "« 上一页" in second_page and "下一页 »" not in second_page
    assert len([b for b in second_page if "社区" in b]) == 4  # 12 communities: 8 + 4
    calls = await h.press(ADMIN, "« 上一页", GROUP, exact=True)
    assert button_texts(calls[-1].markup) == first_page
    calls = await h.press(ADMIN, COMMUNITY, GROUP, exact=True)
    assert alerts(calls) == ["绑定成功。"]


async def test_a_button_of_an_old_binding_message_is_stale(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_bot(h)
    old, button = h.find_button(GROUP.id, DISTRICT, exact=True)
    calls = await h.say(ADMIN, "/bind", chat=GROUP)  # a new binding message
    assert "请群管理员为本群绑定所属社区" in last_text(calls)
    assert button.callback_data
    calls = await h.press_data(ADMIN, button.callback_data, old.message_id, GROUP)
    assert alerts(calls) == [STALE]
    # After binding, the binding message's buttons are all stale.
    calls = await bind(h)
    data = BindCb(level=OrgLevel.PICK, id=org.tianan_id).pack()
    message_id = max(k[1] for k in h.session.messages if k[0] == GROUP.id)
    calls = await h.press_data(ADMIN, data, message_id, GROUP)
    assert alerts(calls) == [STALE]
    chat = await chat_row(sessionmaker, GROUP.id)
    assert chat is not None and chat.community_id == org.xinsha_id


async def test_the_same_press_delivered_twice_binds_once(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_bot(h)
    await h.press(ADMIN, DISTRICT, GROUP, exact=True)
    await h.press(ADMIN, STREET, GROUP, exact=True)
    message, button = h.find_button(GROUP.id, COMMUNITY, exact=True)
    assert button.callback_data
    update = h.updates.callback(ADMIN, button.callback_data, message.message_id, GROUP)
    assert alerts(await h.feed(update)) == ["绑定成功。"]
    assert await h.feed(update) == []
    async with sessionmaker() as session:
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "bind_chat"))
        ).all()
    assert len(events) == 1


async def test_bind_is_for_admins(h: Harness, org: Any) -> None:
    calls = await h.say(MEMBER, "/bind", chat=GROUP)
    assert last_text(calls) == "只有群管理员才能为本群绑定社区，谢谢理解！"
    calls = await h.say(ADMIN, f"/bind@{BOT_USERNAME}", chat=GROUP)
    assert "请选择区" in last_text(calls)


async def test_an_anonymous_admin_can_bind(h: Harness, org: Any) -> None:
    anonymous = Person(1087968824, "Group", language_code=None)
    update = h.updates.message(
        anonymous,
        GROUP,
        text="/bind",
        sender_chat=GROUP.json(),
        entities=[{"type": "bot_command", "offset": 0, "length": 5}],
    )
    calls = await h.feed(update)
    assert "请选择区" in last_text(calls)


async def test_suggest_in_a_bound_group_replies_with_the_deep_link(h: Harness, org: Any) -> None:
    await add_bot(h)
    await bind(h)
    calls = await h.say(MEMBER, "/suggest", chat=GROUP)
    message = sent(calls)[-1]
    assert "为新沙社区提建议" in message.text
    assert "置顶" not in message.text
    [button] = message.buttons()
    assert button.text == SUGGEST_BUTTON
    assert button.url == f"https://t.me/{BOT_USERNAME}?start=g_{GROUP.id}"


async def test_suggest_in_an_unbound_group_explains_binding(h: Harness, org: Any) -> None:
    await add_bot(h)
    calls = await h.say(MEMBER, "/suggest", chat=GROUP)
    text = last_text(calls)
    assert "本群还没有绑定社区" in text and "/bind" in text
    [button] = sent(calls)[-1].buttons()
    assert button.url == f"https://t.me/{BOT_USERNAME}"


async def test_help_in_a_group(h: Harness, org: Any) -> None:
    calls = await h.say(MEMBER, "/help", chat=GROUP)
    assert "本群还没有绑定社区" in last_text(calls) and "/suggest" in last_text(calls)
    assert "/bind council" in last_text(calls), "a group not bound yet may be the council's"
    await add_bot(h)
    await bind(h)
    calls = await h.say(MEMBER, "/help", chat=GROUP)
    assert "本群已绑定福田区 › 沙头街道 › 新沙社区" in last_text(calls)
    assert "/bind council" not in last_text(calls), "a residents' group is not the council's"


@pytest.mark.parametrize("command", ["/my", "/cancel"])  # /lang: tests/bot/test_group_language.py
async def test_private_commands_in_a_group_point_to_the_private_chat(
    h: Harness, org: Any, command: str
) -> None:
    calls = await h.say(MEMBER, command, chat=GROUP)
    assert last_text(calls) == "这个功能请在与我的私聊中使用。"


async def test_group_chatter_and_other_bots_commands_are_ignored(h: Harness, org: Any) -> None:
    await add_bot(h)
    for text in ("大家好", "/start@other_bot", "/frobnicate", "/suggest@other_bot", "修路灯吧"):
        calls = await h.say(MEMBER, text, chat=GROUP)
        assert sent(calls) == [], text
    calls = await h.say(MEMBER, f"/frobnicate@{BOT_USERNAME}", chat=GROUP)
    assert "抱歉，我不认识这个命令" in last_text(calls)


@pytest.mark.parametrize(
    "command", ["/help", "/suggest", "/my", "/bind", "/bind council", f"/what@{BOT_USERNAME}"]
)
async def test_a_command_deleted_before_the_answer_still_gets_one(
    h: Harness, org: Any, command: str
) -> None:
    """Many groups run an anti-spam bot that deletes commands at once (or an admin does):
    the bot's reply to a command that is gone goes as a plain message, where Telegram would
    refuse the reply ("message to be replied not found") and the member would get nothing."""
    update = h.updates.text(MEMBER, command, GROUP)
    assert update.message is not None
    gone = update.message.message_id
    h.session.deleted.add((GROUP.id, gone))
    calls = await h.feed(update)
    [answer] = sent(calls)
    assert answer.result is not None and answer.method.chat_id == GROUP.id
    assert isinstance(answer.method, SendMessage) and answer.method.reply_parameters is not None
    assert answer.method.reply_parameters.message_id == gone  # a reply while it can be one
    # What saves it is the bot's default, not the handler: without it the reply is refused.
    refused = answer.method.model_copy(
        update={
            "reply_parameters": ReplyParameters(message_id=gone, allow_sending_without_reply=False)
        }
    )
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await h.bot(refused)


async def test_removed_from_the_group(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_bot(h)
    await bind(h)
    for old, new in (("member", "left"), ("administrator", "kicked")):
        calls = await h.feed(h.updates.my_chat_member(ADMIN, GROUP, old, new))
        assert [c for c in calls if isinstance(c.method, SendMessage)] == []
        chat = await chat_row(sessionmaker, GROUP.id)
        assert chat is not None and chat.bot_is_member is False
        assert chat.community_id == org.xinsha_id, "the binding is kept for when it returns"
        await add_bot(h)


async def test_added_again_to_a_bound_group(h: Harness, org: Any) -> None:
    await add_bot(h)
    await bind(h)
    await h.feed(h.updates.my_chat_member(ADMIN, GROUP, "member", "left"))
    calls = await add_bot(h)
    assert "本群已绑定福田区 › 沙头街道 › 新沙社区" in all_text(calls)
    assert sent(calls)[-1].buttons()[0].text == SUGGEST_BUTTON


async def test_promoted_to_admin_says_nothing_new(h: Harness, org: Any) -> None:
    await add_bot(h)
    calls = await h.feed(h.updates.my_chat_member(ADMIN, GROUP, "member", "administrator"))
    assert calls == []


async def test_added_in_a_private_chat_is_ignored(
    h: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    chat = {"id": MEMBER.id, "type": "private", "first_name": MEMBER.first_name}
    calls = await h.feed(h.updates.my_chat_member(MEMBER, chat, "kicked", "member"))
    assert calls == []
    assert await chat_row(sessionmaker, MEMBER.id) is None


async def test_blocked_in_a_private_chat_is_noted(
    h: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await h.say(MEMBER, "/lang")
    await h.press(MEMBER, "中文", exact=True)  # now the store knows this person
    chat = {"id": MEMBER.id, "type": "private", "first_name": MEMBER.first_name}
    calls = await h.feed(h.updates.my_chat_member(MEMBER, chat, "member", "kicked"))
    assert calls == []
    async with sessionmaker() as session:
        person = (
            await session.scalars(select(PersonRow).where(PersonRow.telegram_id == MEMBER.id))
        ).one()
        assert person.blocked_bot_at is not None
    assert await chat_row(sessionmaker, MEMBER.id) is None


async def test_unblocked_in_a_private_chat_hears_from_the_bot_again(
    h: Harness, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Telegram's update when a person unblocks (or restarts) the bot clears the mark, so
    notifications and council results reach them again."""
    await h.say(MEMBER, "/lang")
    await h.press(MEMBER, "中文", exact=True)
    chat = {"id": MEMBER.id, "type": "private", "first_name": MEMBER.first_name}
    await h.feed(h.updates.my_chat_member(MEMBER, chat, "member", "kicked"))
    calls = await h.feed(h.updates.my_chat_member(MEMBER, chat, "kicked", "member"))
    assert calls == []  # nothing said: their next message is answered as usual
    async with sessionmaker() as session:
        person = (
            await session.scalars(select(PersonRow).where(PersonRow.telegram_id == MEMBER.id))
        ).one()
        assert person.blocked_bot_at is None
        assert person.locale == "zh"  # the rest of the person as it was
    assert await chat_row(sessionmaker, MEMBER.id) is None


# A basic group, and the supergroup Telegram makes of it (a new chat id).
BASIC = Group(-4_012_345, "新沙居民群", "group")
UPGRADED = Group(-1_009_876_543_210, "新沙居民群", "supergroup")


async def bound_basic_group(h: Harness) -> None:
    h.session.member_status[(BASIC.id, ADMIN.id)] = "administrator"
    await add_bot(h, chat=BASIC)
    await h.press(ADMIN, DISTRICT, BASIC, exact=True)
    await h.press(ADMIN, STREET, BASIC, exact=True)
    await h.press(ADMIN, COMMUNITY, BASIC, exact=True)


def migrated_to(h: Harness) -> Any:
    """The service message in the old group: it is now the supergroup UPGRADED."""
    return h.updates.message(ADMIN, BASIC, migrate_to_chat_id=UPGRADED.id)


def migrated_from(h: Harness) -> Any:
    """The service message in the new supergroup: it was the group BASIC."""
    return h.updates.message(ADMIN, UPGRADED, migrate_from_chat_id=BASIC.id)


@pytest.mark.parametrize("first", ["migrate_to", "migrate_from"])
async def test_a_group_upgraded_to_a_supergroup_stays_bound(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession], first: str
) -> None:
    await bound_basic_group(h)
    updates = [migrated_to(h), migrated_from(h)]
    if first == "migrate_from":
        updates.reverse()
    for update in [*updates, updates[0]]:  # both, in either order, and one again
        calls = await h.feed(update)
        assert calls == [], "the upgrade is not worth a message"
        new = await chat_row(sessionmaker, UPGRADED.id)
        assert new is not None and new.community_id == org.xinsha_id and new.bot_is_member
        old = await chat_row(sessionmaker, BASIC.id)
        assert old is not None and old.community_id is None and not old.bot_is_member
    # The supergroup is the community's group now.
    calls = await h.say(MEMBER, "/suggest", chat=UPGRADED)
    assert "为新沙社区提建议" in last_text(calls)
    assert sent(calls)[-1].buttons()[0].text == SUGGEST_BUTTON
    # The button posted in the basic group still opens the community's form.
    calls = await h.say(MEMBER, f"/start g_{BASIC.id}")
    assert "我们一起来填写您为<b>新沙社区</b>提的建议" in last_text(calls)
    async with sessionmaker() as session:
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "migrate_chat"))
        ).all()
        assert len(events) == 1


async def test_a_group_that_forbids_the_bot_to_write(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    from aiogram.exceptions import TelegramForbiddenError

    h.session.fail_next(
        SendMessage,
        TelegramForbiddenError(
            method=SendMessage(chat_id=GROUP.id, text="x"),
            message="Forbidden: bot can't send messages",
        ),
    )
    await add_bot(h)  # no exception: the membership is still noted
    chat = await chat_row(sessionmaker, GROUP.id)
    assert chat is not None and chat.bot_is_member


async def test_english_admin_sees_english(h: Harness, org: Any) -> None:
    admin = Person(504, "Ann", language_code="en")
    h.session.member_status[(GROUP.id, admin.id)] = "administrator"
    calls = await add_bot(h, by=admin)
    assert "Group admins: please link this group to its community." in last_text(calls)
    await h.press(admin, DISTRICT, GROUP, exact=True)
    await h.press(admin, STREET, GROUP, exact=True)
    calls = await h.press(admin, COMMUNITY, GROUP, exact=True)
    assert sent(calls)[-1].buttons()[0].text == "Suggest a project"


def test_the_dispatcher_asks_telegram_for_membership_updates(h: Harness) -> None:
    used = set(h.dispatcher.resolve_used_update_types())
    assert {"message", "callback_query", "my_chat_member"} <= used
