"""/suggest in a council's group: the message it posts names the community, so its button must
open that community's form."""

from __future__ import annotations

from aiogram.methods import EditMessageText
from conftest import OrgTree
from dialog_helpers import STAFF, Sessions, grant
from telegram_fakes import (
    DISTRICT,
    STREET,
    SUGGEST_BUTTON,
    Group,
    Harness,
    Person,
    last_text,
    sent,
)

from bot.callbacks import BindCb, OrgLevel
from storage.rules import Role, ScopeLevel
from storage.services.access import Scope

pytest_plugins = ["telegram_fakes"]

COUNCIL_GROUP = Group(-100_777, "新沙社区居民议事会")
MEMBER = Person(4001, "赵委员")


async def test_the_suggest_button_posted_in_a_council_group_opens_its_communitys_form(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    h = bot_harness
    await grant(
        sessionmaker, STAFF, Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    )
    await h.say(STAFF, "/bind council", COUNCIL_GROUP)
    await h.press(STAFF, "新沙社区", COUNCIL_GROUP, exact=True)

    calls = await h.say(MEMBER, "/suggest", COUNCIL_GROUP)
    message = sent(calls)[-1]
    assert "为新沙社区提建议" in (message.text or "")  # the message names the community
    [button] = message.buttons()
    assert button.text == SUGGEST_BUTTON and button.url is not None
    calls = await h.say(MEMBER, "/start " + button.url.split("?start=")[1])
    text = last_text(calls)
    assert "这个群目前没有绑定社区" not in text, text
    assert "我们一起来填写您为<b>新沙社区</b>提的建议" in text, text


async def test_a_council_groups_old_buttons_following_a_change_are_announced(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    h = bot_harness
    h.session.member_status[(COUNCIL_GROUP.id, STAFF.id)] = "administrator"
    await grant(
        sessionmaker, STAFF, Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    )
    await h.say(STAFF, "/bind council", COUNCIL_GROUP)
    await h.press(STAFF, "新沙社区", COUNCIL_GROUP, exact=True)
    posted = sent(await h.say(MEMBER, "/suggest", COUNCIL_GROUP))[-1]
    assert "为新沙社区提建议" in (posted.text or "")
    [old_button] = posted.buttons()
    assert old_button.text == SUGGEST_BUTTON and old_button.url is not None

    # An admin makes it the residents' group of 天安社区.
    await h.say(STAFF, "/bind", COUNCIL_GROUP)
    message, _button = h.find_button(COUNCIL_GROUP.id, "🔄", exact=False)
    await h.press_data(
        STAFF, BindCb(level=OrgLevel.DISTRICTS).pack(), message.message_id, COUNCIL_GROUP
    )
    await h.press(STAFF, DISTRICT, COUNCIL_GROUP, exact=True)
    await h.press(STAFF, STREET, COUNCIL_GROUP, exact=True)
    calls = await h.press(STAFF, "天安社区", COUNCIL_GROUP, exact=True)
    settled = " ".join(c.text or "" for c in calls if isinstance(c.method, EditMessageText))
    assert "本群已绑定" in settled and "天安社区" in settled, settled

    # The old button, which says 新沙社区, now opens 天安社区's form ...
    calls = await h.say(MEMBER, "/start " + old_button.url.split("?start=")[1])
    assert "天安社区" in last_text(calls)
    # ... and the group was told, as a residents' group is after a change.
    assert "之前发出的“我要提建议”按钮，现在点击将为天安社区提建议" in settled, (
        f"the council group's old Suggest buttons silently follow to another community: {settled}"
    )


async def test_a_council_group_says_what_it_is_on_help_and_when_the_bot_comes_back(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    """A council's group is told it is the council's (not a residents' group an admin
    rebinds with /bind), on /help and when the bot is added back; no Suggest message is
    pinned there."""
    h = bot_harness
    await grant(
        sessionmaker, STAFF, Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    )
    await h.say(STAFF, "/bind council", COUNCIL_GROUP)
    await h.press(STAFF, "新沙社区", COUNCIL_GROUP, exact=True)
    help_text = last_text(await h.say(MEMBER, "/help", COUNCIL_GROUP))
    assert "本群是福田区 › 沙头街道 › 新沙社区的居民议事会群" in help_text, help_text
    assert "/bind council" in help_text
    await h.feed(h.updates.my_chat_member(STAFF, COUNCIL_GROUP, "member", "left"))
    calls = await h.feed(h.updates.my_chat_member(STAFF, COUNCIL_GROUP, "left", "member"))
    assert [m.text for m in sent(calls)] == [
        "大家好，我又回来了！本群是福田区 › 沙头街道 › 新沙社区的居民议事会群。"
    ]
