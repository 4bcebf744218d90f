"""Invitation links in the bot: `/start i_<code>` in a private chat grants the invite's role and
says which, where; used-up, expired, withdrawn and unknown links are refused politely; a
malformed payload is a plain /start. /start and /help then show the role's commands."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import OrgTree
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import Harness, Person, last_text

from storage.models import Invite, utcnow
from storage.rules import Role, ScopeLevel
from storage.services import access, invites
from storage.services.access import Scope
from storage.services.people import find_person

pytest_plugins = ["telegram_fakes"]

Sessions = async_sessionmaker[AsyncSession]
ALICE = Person(3001, "阿丽")
BOB = Person(3002, "小波")
ANN = Person(3003, "Ann", language_code="en")
ASK_AGAIN = "，请向发给您链接的人索取新的链接。"


async def make_invite(
    sessionmaker: Sessions,
    role: Role,
    scope: Scope,
    *,
    uses: int = 1,
    expires_days: int | None = None,
    created_days_ago: int = 0,
) -> Invite:
    async with sessionmaker() as session:
        return await invites.create_invite(
            session,
            role,
            scope,
            uses=uses,
            expires_days=expires_days,
            now=utcnow() - timedelta(days=created_days_ago),
        )


async def roles_of(sessionmaker: Sessions, person: Person) -> set[tuple[Role, Scope]]:
    async with sessionmaker() as session:
        found = await find_person(session, person.id)
        if found is None:
            return set()
        return {(p.role, p.scope) for p in await access.principals_of(session, found.id)}


def xinsha(org: OrgTree) -> Scope:
    return Scope(ScopeLevel.COMMUNITY, org.xinsha_id)


async def test_a_council_invite_grants_the_role_and_says_so(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    invite = await make_invite(sessionmaker, Role.COUNCIL_MEMBER, xinsha(org))
    calls = await bot_harness.say(ALICE, f"/start {invite.code}")
    text = last_text(calls)
    assert text.startswith("✅ 您已成为新沙社区的居民议事会成员。")
    assert "/votes" in text and "/review" not in text
    assert await roles_of(sessionmaker, ALICE) == {(Role.COUNCIL_MEMBER, xinsha(org))}

    # Opening it again takes no further use and says nothing changed.
    calls = await bot_harness.say(ALICE, f"/start {invite.code}")
    assert "您原本就有这个角色" in last_text(calls)
    async with sessionmaker() as session:
        again = await invites.find_invite(session, invite.code)
        assert again is not None and again.used_count == 1


@pytest.mark.parametrize(
    ("role", "level", "expected"),
    [
        (Role.COMMUNITY_STAFF, ScopeLevel.COMMUNITY, "您已成为新沙社区的社区工作人员。"),
        (Role.STREET_OFFICIAL, ScopeLevel.STREET, "您已成为沙头街道的街道工作人员。"),
        (Role.DISTRICT_ADMIN, ScopeLevel.DISTRICT, "您已成为福田区的区级管理员。"),
        (Role.CITY_ADMIN, ScopeLevel.CITY, "您已成为全市管理员。"),
    ],
)
async def test_every_role_is_named_with_its_place(
    bot_harness: Harness,
    org: OrgTree,
    sessionmaker: Sessions,
    role: Role,
    level: ScopeLevel,
    expected: str,
) -> None:
    ids = {
        ScopeLevel.COMMUNITY: org.xinsha_id,
        ScopeLevel.STREET: org.street_id,
        ScopeLevel.DISTRICT: org.district_id,
        ScopeLevel.CITY: None,
    }
    scope = Scope(level, ids[level])
    invite = await make_invite(sessionmaker, role, scope)
    text = last_text(await bot_harness.say(BOB, f"/start {invite.code}"))
    assert expected in text
    assert "/review" in text and "/convene" in text and "/bind council" in text
    assert await roles_of(sessionmaker, BOB) == {(role, scope)}


async def test_in_english(bot_harness: Harness, org: OrgTree, sessionmaker: Sessions) -> None:
    invite = await make_invite(sessionmaker, Role.COUNCIL_MEMBER, xinsha(org))
    text = last_text(await bot_harness.say(ANN, f"/start {invite.code}"))
    assert "You are now a member of the residents' council of 新沙社区." in text


async def test_used_up(bot_harness: Harness, org: OrgTree, sessionmaker: Sessions) -> None:
    invite = await make_invite(sessionmaker, Role.COUNCIL_MEMBER, xinsha(org), uses=1)
    await bot_harness.say(ALICE, f"/start {invite.code}")
    text = last_text(await bot_harness.say(BOB, f"/start {invite.code}"))
    assert text == "这个邀请链接的使用次数已用完" + ASK_AGAIN
    assert await roles_of(sessionmaker, BOB) == set()


async def test_several_uses(bot_harness: Harness, org: OrgTree, sessionmaker: Sessions) -> None:
    invite = await make_invite(sessionmaker, Role.COUNCIL_MEMBER, xinsha(org), uses=2)
    for person in (ALICE, BOB):
        assert "居民议事会成员" in last_text(await bot_harness.say(person, f"/start {invite.code}"))
    text = last_text(await bot_harness.say(ANN, f"/start {invite.code}"))
    assert text.startswith("This invitation link has already been used as often as it allows.")


async def test_expired(bot_harness: Harness, org: OrgTree, sessionmaker: Sessions) -> None:
    invite = await make_invite(
        sessionmaker, Role.COUNCIL_MEMBER, xinsha(org), expires_days=1, created_days_ago=2
    )
    text = last_text(await bot_harness.say(ALICE, f"/start {invite.code}"))
    assert text == "这个邀请链接已过期" + ASK_AGAIN
    assert await roles_of(sessionmaker, ALICE) == set()


async def test_withdrawn(bot_harness: Harness, org: OrgTree, sessionmaker: Sessions) -> None:
    invite = await make_invite(sessionmaker, Role.COUNCIL_MEMBER, xinsha(org))
    async with sessionmaker() as session:
        assert await invites.revoke_invite(session, invite.code)
    text = last_text(await bot_harness.say(ALICE, f"/start {invite.code}"))
    assert text == "这个邀请链接已被撤销" + ASK_AGAIN


async def test_unknown_code(bot_harness: Harness, org: OrgTree) -> None:
    text = last_text(await bot_harness.say(ALICE, "/start i_NoSuchInviteCode123"))
    assert text == "这个邀请链接无效" + ASK_AGAIN


@pytest.mark.parametrize("payload", ["i_", "i_bad!chars", "i_" + "x" * 70, "I_abc"])
async def test_malformed_payload_is_a_plain_start(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions, payload: str
) -> None:
    text = last_text(await bot_harness.say(ALICE, f"/start {payload}"))
    assert text.startswith("阿丽，您好！")
    assert await roles_of(sessionmaker, ALICE) == set()


async def test_start_and_help_show_the_roles_commands(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    for command in ("/start", "/help"):
        text = last_text(await bot_harness.say(ALICE, command))
        assert "/review" not in text and "/votes" not in text, "residents see their own only"
    invite = await make_invite(sessionmaker, Role.COMMUNITY_STAFF, xinsha(org))
    await bot_harness.say(ALICE, f"/start {invite.code}")
    for command in ("/start", "/help"):
        text = last_text(await bot_harness.say(ALICE, command))
        assert "<b>社区及街道、区工作人员使用</b>" in text
        assert "/review" in text and "/convene" in text
        assert "/votes" not in text


async def test_an_invite_during_a_suggestion_keeps_the_draft(
    bot_harness: Harness, org: OrgTree, sessionmaker: Sessions
) -> None:
    await bot_harness.say(ALICE, "/suggest")
    invite = await make_invite(sessionmaker, Role.COUNCIL_MEMBER, xinsha(org))
    calls = await bot_harness.say(ALICE, f"/start {invite.code}")
    texts = [c.text or "" for c in calls if c.text]
    assert any("居民议事会成员" in t for t in texts)
    assert "您有一条建议还没填完" in last_text(calls)
