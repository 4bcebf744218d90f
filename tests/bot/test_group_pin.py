"""The group's "Suggest a project" message is pinned by the bot itself where Telegram lets it,
silently and without the "Admins: pin this message" line; where Telegram refuses the pin, the
message keeps (gains) that line. No getChatMember is spent to find out first."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.methods import EditMessageText, GetChatMember, PinChatMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import (
    BOT_ID,
    BOT_USERNAME,
    COMMUNITY,
    DISTRICT,
    STREET,
    SUGGEST_BUTTON,
    Call,
    Harness,
    Person,
    all_text,
    button_texts,
    sent,
)
from test_group_binding import ADMIN, GROUP, MEMBER, add_bot, bind

from storage.models import Chat, ChatPurpose, Community
from storage.services import chats

pytest_plugins = ["telegram_fakes"]

HINT_ZH = "请群管理员置顶这条消息"
HINT_EN = "Admins: pin this message so that everyone can find the button."
NOT_ENOUGH_RIGHTS = "Bad Request: not enough rights to manage pinned messages in the chat"


@pytest.fixture
def h(bot_harness: Harness) -> Harness:
    bot_harness.session.member_status[(GROUP.id, ADMIN.id)] = "administrator"
    return bot_harness


def pins(calls: list[Call]) -> list[PinChatMessage]:
    return [c.method for c in calls if isinstance(c.method, PinChatMessage)]


def suggest_message(h: Harness) -> Any:
    """The newest message in the group with the "Suggest a project" button, as it stands now
    (after any edit)."""
    message, _button = h.find_button(GROUP.id, SUGGEST_BUTTON, exact=True)
    return message


async def test_after_binding_the_bot_pins_its_message_silently(h: Harness, org: Any) -> None:
    await add_bot(h)
    calls = await bind(h)
    suggest = sent(calls)[-1]
    [pin] = pins(calls)
    assert int(pin.chat_id) == GROUP.id
    assert pin.message_id == suggest.result.message_id
    assert pin.disable_notification is True
    assert HINT_ZH not in suggest.text and HINT_ZH not in suggest_message(h).text
    # Trying the pin is enough: nobody asks Telegram about the bot's own rights.
    asked = [c.method.user_id for c in calls if isinstance(c.method, GetChatMember)]
    assert BOT_ID not in asked
    assert not [c for c in calls if isinstance(c.method, EditMessageText) and HINT_ZH in c.text]


@pytest.mark.parametrize(
    "refusal",
    [
        TelegramBadRequest(
            method=PinChatMessage(chat_id=GROUP.id, message_id=1), message=NOT_ENOUGH_RIGHTS
        ),
        TelegramForbiddenError(
            method=PinChatMessage(chat_id=GROUP.id, message_id=1),
            message="Forbidden: not enough rights to pin a message",
        ),
    ],
    ids=["bad-request", "forbidden"],
)
async def test_where_the_bot_may_not_pin_the_message_asks_an_admin_to(
    h: Harness, org: Any, refusal: Exception
) -> None:
    await add_bot(h)
    h.session.fail_next(PinChatMessage, refusal)
    calls = await bind(h)
    suggest = sent(calls)[-1]
    assert "为新沙社区提建议" in suggest.text
    assert len(pins(calls)) == 1  # tried once
    # The same message gains the hint, keeping its button.
    [edit] = [c for c in calls if isinstance(c.method, EditMessageText)][-1:]
    assert edit.method.message_id == suggest.result.message_id
    assert edit.text is not None and HINT_ZH in edit.text
    [button] = edit.buttons()
    assert button.text == SUGGEST_BUTTON
    assert button.url == f"https://t.me/{BOT_USERNAME}?start=g_{GROUP.id}"
    now = suggest_message(h)
    assert now.message_id == suggest.result.message_id and HINT_ZH in now.text
    # Only one "Suggest a project" message: the hint is not a second post.
    posted = [c for c in sent(calls) if c.buttons() and c.buttons()[0].text == SUGGEST_BUTTON]
    assert len(posted) == 1


async def test_the_hint_is_in_the_admins_language(h: Harness, org: Any) -> None:
    admin = Person(504, "Ann", language_code="en")
    h.session.member_status[(GROUP.id, admin.id)] = "administrator"
    await add_bot(h, by=admin)
    h.session.fail_next(
        PinChatMessage,
        TelegramBadRequest(
            method=PinChatMessage(chat_id=GROUP.id, message_id=1), message=NOT_ENOUGH_RIGHTS
        ),
    )
    calls = await bind(h, by=admin)
    edits = [c for c in calls if isinstance(c.method, EditMessageText)]
    assert edits[-1].text is not None and edits[-1].text.endswith(HINT_EN)


async def test_added_again_to_a_bound_group_pins_the_message(h: Harness, org: Any) -> None:
    await add_bot(h)
    await bind(h)
    await h.feed(h.updates.my_chat_member(ADMIN, GROUP, "member", "left"))
    calls = await add_bot(h)
    suggest = sent(calls)[-1]
    assert suggest.buttons()[0].text == SUGGEST_BUTTON
    [pin] = pins(calls)
    assert pin.message_id == suggest.result.message_id and pin.disable_notification
    assert HINT_ZH not in suggest_message(h).text


async def test_a_council_group_added_again_gets_no_suggest_button(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A council's group votes; residents suggest in their community's group."""
    async with sessionmaker() as session:
        community = await session.get(Community, org.xinsha_id)
        assert community is not None
        await chats.bind_chat(
            session, GROUP.id, community, title=GROUP.title, chat_type="supergroup",
            bound_by_person_id=None, purpose=ChatPurpose.COUNCIL,
        )  # fmt: skip
    calls = await add_bot(h)
    assert "新沙社区" in all_text(calls)
    assert pins(calls) == [] and all(
        SUGGEST_BUTTON not in button_texts(c.markup) for c in sent(calls)
    )


async def test_suggest_by_a_member_is_not_pinned(h: Harness, org: Any) -> None:
    """/suggest answers whoever asked; pinning it every time would shuffle the group's pins."""
    await add_bot(h)
    await bind(h)
    calls = await h.say(MEMBER, "/suggest", chat=GROUP)
    assert sent(calls)[-1].buttons()[0].text == SUGGEST_BUTTON
    assert pins(calls) == []
    assert HINT_ZH not in sent(calls)[-1].text


async def test_a_pin_refused_and_the_edit_refused_too_are_let_be(
    h: Harness, org: Any, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_bot(h)
    await h.press(ADMIN, DISTRICT, GROUP, exact=True)
    await h.press(ADMIN, STREET, GROUP, exact=True)
    h.session.fail_next(
        PinChatMessage,
        TelegramBadRequest(
            method=PinChatMessage(chat_id=GROUP.id, message_id=1), message=NOT_ENOUGH_RIGHTS
        ),
    )
    for _ in range(2):  # the binding message's "✅ linked", then the hint
        h.session.fail_next(
            EditMessageText,
            TelegramBadRequest(
                method=EditMessageText(text="x"), message="Bad Request: message can't be edited"
            ),
        )
    calls = await h.press(ADMIN, COMMUNITY, GROUP, exact=True)  # no exception
    assert len([c for c in calls if isinstance(c.method, EditMessageText)]) == 2
    assert sent(calls)[-1].buttons()[0].text == SUGGEST_BUTTON
    async with sessionmaker() as session:
        chat = await session.get(Chat, GROUP.id)
    assert chat is not None and chat.community_id == org.xinsha_id
