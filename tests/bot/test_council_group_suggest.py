"""/suggest in a council's group: the message it posts names the community, so its button must
open that community's form."""

from __future__ import annotations

from conftest import OrgTree
from dialog_helpers import STAFF, Sessions, grant
from telegram_fakes import SUGGEST_BUTTON, Group, Harness, Person, last_text, sent

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
    assert "我们来一起填写您给<b>新沙社区</b>的建议" in text, text
