"""/bind in a group already bound: the bot says which community the group is linked to now and
asks an admin to confirm a change (only admins' presses count). "Keep" leaves everything as it
is; "change" starts the picker, and the new binding comes with a new "Suggest a project"
message. The buttons posted before the change carry the group, not the community, so they
open the new community's form, and the bot says so."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import EditMessageText, GetChat, PinChatMessage, SendMessage
from aiogram.types import InlineKeyboardButton
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import (
    BOT_USERNAME,
    CALLBACK_DATA_MAX,
    COMMUNITY,
    DISTRICT,
    STREET,
    SUGGEST_BUTTON,
    Call,
    Harness,
    Person,
    SentMessage,
    alerts,
    button_texts,
    inline_buttons,
    last_text,
    sent,
)
from test_group_binding import ADMIN, GROUP, MEMBER, STALE, add_bot, bind

from bot import callbacks
from bot.callbacks import BindCb, KeepBindingCb, OrgLevel
from storage.models import AuditEvent, Chat, ChatPurpose, Community
from storage.services.chats import bind_chat

pytest_plugins = ["telegram_fakes"]

ANN = Person(504, "Ann", language_code="en")  # an admin with an English client
LINKED = "本群已绑定福田区 › 沙头街道 › 新沙社区"
GREETING = "请群管理员为本群绑定所属社区"
NOT_ADMIN = "只有群管理员才能选择社区，谢谢理解！"
CHANGE = BindCb(level=OrgLevel.DISTRICTS).pack()
KEEP = KeepBindingCb().pack()


@pytest.fixture
def h(bot_harness: Harness) -> Harness:
    for admin in (ADMIN, ANN):
        bot_harness.session.member_status[(GROUP.id, admin.id)] = "administrator"
    return bot_harness


async def bound_group(h: Harness, community: str = COMMUNITY) -> None:
    """The bot added to GROUP and an admin's binding of it to `community`."""
    await add_bot(h)
    await bind(h, community)


def newest_with(h: Harness, data: str) -> tuple[SentMessage, InlineKeyboardButton]:
    """The newest message in GROUP with a button carrying `data`."""
    for message in sorted(
        (m for m in h.session.messages.values() if m.chat_id == GROUP.id),
        key=lambda m: m.message_id,
        reverse=True,
    ):
        for button in inline_buttons(message.markup):
            if button.callback_data == data:
                return message, button
    raise AssertionError(f"no button {data!r} in the group")


async def press(h: Harness, person: Person, data: str) -> list[Call]:
    message, _button = newest_with(h, data)
    return await h.press_data(person, data, message.message_id, GROUP)


async def community_of(sessionmaker: async_sessionmaker[AsyncSession]) -> int | None:
    async with sessionmaker() as session:
        chat = await session.get(Chat, GROUP.id)
        assert chat is not None
        return chat.community_id


def suggest_urls(calls: list[Call]) -> list[str | None]:
    return [
        b.url
        for c in sent(calls)
        for b in c.buttons()
        if b.text in (SUGGEST_BUTTON, "Suggest a project")
    ]


async def test_bind_in_a_bound_group_asks_to_confirm_the_change(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await bound_group(h)
    calls = await h.say(ADMIN, "/bind", chat=GROUP)
    [question] = sent(calls)
    assert question.text is not None
    assert LINKED in question.text, "it says where the group is linked now"
    assert GREETING not in question.text and "大家好" not in question.text
    assert [b.callback_data for b in question.buttons()] == [CHANGE, KEEP]
    assert DISTRICT not in button_texts(question.markup), "no picker before the admin confirms"
    assert await community_of(sessionmaker) == org.xinsha_id
    for button in question.buttons():
        assert button.callback_data is not None
        assert len(button.callback_data.encode()) <= CALLBACK_DATA_MAX


async def test_the_question_says_what_becomes_of_the_old_buttons(h: Harness, org: Any) -> None:
    await bound_group(h)
    calls = await h.say(ANN, "/bind", chat=GROUP)
    text = last_text(calls)
    assert "This group is linked to 福田区 › 沙头街道 › 新沙社区." in text
    assert "Link it to another community instead?" in text
    assert (
        "The “Suggest a project” buttons already posted here follow the link: after a change "
        "they open the form for the new community." in text
    )
    assert [b.text for b in sent(calls)[-1].buttons()] == [
        "🔄 Change the link",
        "✖️ Keep it as it is",
    ]


async def test_only_admins_presses_count(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await bound_group(h)
    await h.say(ADMIN, "/bind", chat=GROUP)
    for data in (CHANGE, KEEP):
        calls = await press(h, MEMBER, data)
        assert alerts(calls) == [NOT_ADMIN]
        assert not [c for c in calls if isinstance(c.method, EditMessageText | SendMessage)]
    # The question is still open for an admin.
    calls = await press(h, ADMIN, CHANGE)
    assert "请选择区" in last_text(calls)
    # A member cannot keep (or pick) from the picker either.
    assert alerts(await press(h, MEMBER, KEEP)) == [NOT_ADMIN]
    assert await community_of(sessionmaker) == org.xinsha_id


async def test_keep_leaves_everything_as_it_is(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await bound_group(h)
    await h.say(ADMIN, "/bind", chat=GROUP)
    question, _button = newest_with(h, KEEP)
    calls = await press(h, ADMIN, KEEP)
    edits = [c for c in calls if isinstance(c.method, EditMessageText)]
    assert len(edits) == 1 and edits[0].method.message_id == question.message_id
    assert edits[0].text is not None and LINKED in edits[0].text
    assert edits[0].markup is None
    assert sent(calls) == [] and not [c for c in calls if isinstance(c.method, PinChatMessage)]
    assert await community_of(sessionmaker) == org.xinsha_id
    async with sessionmaker() as session:
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "bind_chat"))
        ).all()
    assert len(events) == 1, "no new binding"
    # The question is answered: its "change" button is out of date now.
    calls = await h.press_data(ADMIN, CHANGE, question.message_id, GROUP)
    assert alerts(calls) == [STALE]


async def test_change_starts_the_picker_and_moves_the_group(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await bound_group(h)
    await h.say(ADMIN, "/bind", chat=GROUP)
    question, _button = newest_with(h, CHANGE)
    calls = await press(h, ADMIN, CHANGE)
    [edit] = [c for c in calls if isinstance(c.method, EditMessageText)]
    assert edit.method.message_id == question.message_id, "the question becomes the picker"
    assert edit.text is not None and LINKED in edit.text and "请选择区" in edit.text
    assert GREETING not in edit.text
    assert button_texts(edit.markup)[0] == DISTRICT
    assert edit.buttons()[-1].callback_data == KEEP, "the admin may still keep it"
    calls = await h.press(ADMIN, DISTRICT, GROUP, exact=True)
    assert "请选择福田区的街道" in last_text(calls)
    assert last_text(calls).startswith(LINKED)
    assert [c for c in calls if c.markup is not None][-1].buttons()[-1].callback_data == KEEP
    await h.press(ADMIN, STREET, GROUP, exact=True)
    assert await community_of(sessionmaker) == org.xinsha_id, "not moved before the pick"
    pinned = h.session.pinned[GROUP.id]  # the "Suggest" message of the first binding
    calls = await h.press(ADMIN, "天安社区", GROUP, exact=True)
    assert alerts(calls) == ["绑定成功。"]
    assert await community_of(sessionmaker) == org.tianan_id
    settled, renamed = [c for c in calls if isinstance(c.method, EditMessageText)]
    assert settled.text is not None and "本群已绑定福田区 › 沙头街道 › 天安社区" in settled.text
    # The pinned "Suggest a project" message now names the new community; no second one.
    assert renamed.method.message_id == pinned
    assert renamed.text is not None and "为天安社区提建议" in renamed.text
    assert [b.url for b in renamed.buttons()] == [f"https://t.me/{BOT_USERNAME}?start=g_{GROUP.id}"]
    assert sent(calls) == [] and not [c for c in calls if isinstance(c.method, PinChatMessage)]
    async with sessionmaker() as session:
        events = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "bind_chat").order_by(AuditEvent.id)
            )
        ).all()
    assert events[-1].details["previous_community_id"] == org.xinsha_id


async def test_after_a_change_the_old_buttons_open_the_new_communitys_form(
    h: Harness, org: Any
) -> None:
    await bound_group(h)
    _message, old_button = h.find_button(GROUP.id, SUGGEST_BUTTON, exact=True)
    await h.say(ANN, "/bind", chat=GROUP)
    await press(h, ANN, CHANGE)
    await h.press(ANN, DISTRICT, GROUP, exact=True)
    await h.press(ANN, STREET, GROUP, exact=True)
    calls = await h.press(ANN, "天安社区", GROUP, exact=True)
    settled = next(c.text for c in calls if isinstance(c.method, EditMessageText))
    assert settled is not None
    assert "This group is now linked to 福田区 › 沙头街道 › 天安社区." in settled
    assert (
        "The “Suggest a project” buttons posted here earlier now open the form for 天安社区."
        in settled
    )
    # A resident presses a button posted for 新沙社区 before the change.
    assert old_button.url is not None
    calls = await h.say(MEMBER, "/start " + old_button.url.split("?start=")[1])
    assert "天安社区" in last_text(calls) and "新沙社区" not in last_text(calls)


async def test_without_its_pinned_message_the_group_gets_a_new_one(h: Harness, org: Any) -> None:
    """An admin pinned something else since, or Telegram will not say: a new "Suggest a
    project" message for the new community, pinned."""
    await bound_group(h)
    h.session.pinned[GROUP.id] = 1  # someone else's message
    for attempt in range(2):
        if attempt:
            h.session.fail_next(
                GetChat,
                TelegramBadRequest(
                    method=GetChat(chat_id=GROUP.id), message="Bad Request: chat not found"
                ),
            )
        await h.say(ADMIN, "/bind", chat=GROUP)
        await press(h, ADMIN, CHANGE)
        await h.press(ADMIN, DISTRICT, GROUP, exact=True)
        await h.press(ADMIN, STREET, GROUP, exact=True)
        target = ("天安社区", "新沙社区")[attempt]
        calls = await h.press(ADMIN, target, GROUP, exact=True)
        assert suggest_urls(calls) == [f"https://t.me/{BOT_USERNAME}?start=g_{GROUP.id}"]
        assert f"为{target}提建议" in (sent(calls)[-1].text or "")
        [pin] = [c.method for c in calls if isinstance(c.method, PinChatMessage)]
        assert pin.message_id == sent(calls)[-1].result.message_id
        h.session.pinned[GROUP.id] = 1


async def test_no_such_note_when_the_community_stays_the_same(h: Harness, org: Any) -> None:
    await bound_group(h)
    await h.say(ANN, "/bind", chat=GROUP)
    await press(h, ANN, CHANGE)
    await h.press(ANN, DISTRICT, GROUP, exact=True)
    await h.press(ANN, STREET, GROUP, exact=True)
    calls = await h.press(ANN, COMMUNITY, GROUP, exact=True)
    settled = [c.text for c in calls if isinstance(c.method, EditMessageText)][-1]
    assert settled is not None and "earlier" not in settled


async def test_keep_from_the_picker(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await bound_group(h)
    await h.say(ADMIN, "/bind", chat=GROUP)
    await press(h, ADMIN, CHANGE)
    await h.press(ADMIN, DISTRICT, GROUP, exact=True)
    await h.press(ADMIN, STREET, GROUP, exact=True)
    picker, _button = newest_with(h, KEEP)
    calls = await press(h, ADMIN, KEEP)
    assert [c.text for c in calls if isinstance(c.method, EditMessageText)][-1].startswith(LINKED)
    assert await community_of(sessionmaker) == org.xinsha_id
    # The picker's community buttons are out of date now.
    data = BindCb(level=OrgLevel.PICK, id=org.tianan_id).pack()
    assert alerts(await h.press_data(ADMIN, data, picker.message_id, GROUP)) == [STALE]
    assert await community_of(sessionmaker) == org.xinsha_id


async def test_an_older_question_is_stale_after_a_newer_bind(h: Harness, org: Any) -> None:
    await bound_group(h)
    await h.say(ADMIN, "/bind", chat=GROUP)
    old, _button = newest_with(h, KEEP)
    await h.say(ADMIN, "/bind", chat=GROUP)
    calls = await h.press_data(ADMIN, CHANGE, old.message_id, GROUP)
    assert alerts(calls) == [STALE]


async def test_bind_in_a_bound_group_is_still_for_admins_only(h: Harness, org: Any) -> None:
    await bound_group(h)
    calls = await h.say(MEMBER, "/bind", chat=GROUP)
    assert last_text(calls) == "只有群管理员才能为本群绑定社区，谢谢理解！"
    assert not [b for c in sent(calls) for b in c.buttons()]


async def test_in_a_council_group_the_question_names_the_council(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        xinsha = await session.get(Community, org.xinsha_id)
        assert xinsha is not None
        await bind_chat(
            session,
            GROUP.id,
            xinsha,
            title=GROUP.title,
            chat_type="supergroup",
            bound_by_person_id=None,
            purpose=ChatPurpose.COUNCIL,
        )
    calls = await h.say(ANN, "/bind", chat=GROUP)
    text = last_text(calls)
    assert "This group is the residents' council group of 福田区 › 沙头街道 › 新沙社区." in text
    assert "Make it a community's residents' group instead?" in text
    assert [b.callback_data for b in sent(calls)[-1].buttons()] == [CHANGE, KEEP]
    assert "buttons already posted here follow the link" in text  # /suggest posts them
    calls = await press(h, ANN, KEEP)
    async with sessionmaker() as session:
        chat = await session.get(Chat, GROUP.id)
    assert chat is not None and chat.purpose is ChatPurpose.COUNCIL
    assert chat.community_id == org.xinsha_id


async def test_an_unbound_group_still_gets_the_picker_at_once(h: Harness, org: Any) -> None:
    await h.feed(h.updates.my_chat_member(ADMIN, GROUP, "left", "member"))
    calls = await h.say(ADMIN, "/bind", chat=GROUP)
    assert GREETING in last_text(calls) and "请选择区" in last_text(calls)
    assert KEEP not in [b.callback_data for b in sent(calls)[-1].buttons()]


def test_keep_data_fits_and_has_a_prefix_of_its_own() -> None:
    assert KeepBindingCb.unpack(KEEP) == KeepBindingCb()
    assert len(KEEP.encode()) <= CALLBACK_DATA_MAX
    prefixes = [
        value.__prefix__
        for value in vars(callbacks).values()
        if isinstance(value, type) and issubclass(value, CallbackData) and value is not CallbackData
    ]
    assert len(prefixes) == len(set(prefixes)) and KeepBindingCb.__prefix__ in prefixes
