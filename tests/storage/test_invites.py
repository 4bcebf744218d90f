"""Invites (deep links granting a role) and grants by an official of a wider scope."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import (
    AuditEvent,
    Community,
    Invite,
    InviteRedemption,
    Notification,
    RoleGrant,
    Street,
)
from storage.rules import Role, RuleViolation, ScopeLevel
from storage.services import access, invites
from storage.services.access import Principal, Scope
from storage.services.org import OrgRow, import_rows
from storage.services.people import TelegramIdentity, ensure_person

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ALICE = TelegramIdentity(1001, "Alice", "alice", "zh")
BOB = TelegramIdentity(1002, "Bob")
CAROL = TelegramIdentity(1003, "Carol")
DAVE = TelegramIdentity(1004, "Dave")


@dataclass(frozen=True)
class World:
    """Two districts; in the first, two streets; 新沙 and 天安 in 沙头, 香蜜 in 香蜜湖."""

    futian: int
    nanshan: int
    shatou: int
    xiangmihu: int
    yuehai: int
    xinsha: int
    tianan: int
    xiangmi: int
    keji: int

    def scope(self, level: ScopeLevel, name: str | None = None) -> Scope:
        return Scope(level, getattr(self, name) if name else None)


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    rows = [
        OrgRow(2, "福田区", "沙头街道", "新沙社区"),
        OrgRow(3, "福田区", "沙头街道", "天安社区"),
        OrgRow(4, "福田区", "香蜜湖街道", "香蜜社区"),
        OrgRow(5, "南山区", "粤海街道", "科技园社区"),
    ]
    async with sessionmaker() as session:
        await import_rows(session, rows)
        communities = {c.name: c for c in (await session.scalars(select(Community))).all()}
        streets = {s.name: s for s in (await session.scalars(select(Street))).all()}
    return World(
        futian=streets["沙头街道"].district_id,
        nanshan=streets["粤海街道"].district_id,
        shatou=streets["沙头街道"].id,
        xiangmihu=streets["香蜜湖街道"].id,
        yuehai=streets["粤海街道"].id,
        xinsha=communities["新沙社区"].id,
        tianan=communities["天安社区"].id,
        xiangmi=communities["香蜜社区"].id,
        keji=communities["科技园社区"].id,
    )


def council_of(world: World) -> Scope:
    return Scope(ScopeLevel.COMMUNITY, world.xinsha)


async def make_invite(
    sessionmaker: async_sessionmaker[AsyncSession],
    world: World,
    role: Role = Role.COUNCIL_MEMBER,
    *,
    uses: int = 1,
    expires_days: int | None = None,
    now: datetime | None = None,
) -> Invite:
    """An invite to a role in 新沙, made (and committed) in a session of its own."""
    async with sessionmaker() as session:
        return await invites.create_invite(
            session, role, council_of(world), uses=uses, expires_days=expires_days, now=now
        )


async def refusal(
    sessionmaker: async_sessionmaker[AsyncSession],
    code: str,
    who: TelegramIdentity,
    now: datetime | None = None,
) -> str:
    """The code of the RuleViolation with which redeeming `code` is refused."""
    async with sessionmaker() as session:
        with pytest.raises(RuleViolation) as caught:
            await invites.redeem(session, code, who, now=now)
    return caught.value.code


async def uses_taken(sessionmaker: async_sessionmaker[AsyncSession], invite: Invite) -> int:
    async with sessionmaker() as session:
        stored = await session.get(Invite, invite.id)
        assert stored is not None
        return stored.used_count


async def test_invite_code_is_a_deep_link_payload(session: AsyncSession, world: World) -> None:
    invite = await invites.create_invite(session, Role.COUNCIL_MEMBER, council_of(world))
    assert re.fullmatch(r"i_[A-Za-z0-9_-]{22}", invite.code)
    assert invites.is_invite_payload(invite.code)
    assert not invites.is_invite_payload("s_12")
    assert not invites.is_invite_payload(None)
    assert invites.deep_link("@minsheng_bot", invite.code) == (
        f"https://t.me/minsheng_bot?start={invite.code}"
    )
    assert (invite.max_uses, invite.used_count, invite.expires_at) == (1, 0, None)


async def test_redeem_grants_the_role_and_records_it_privately(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    invite = await make_invite(sessionmaker, world, expires_days=7, now=T0)
    assert invite.expires_at == T0 + timedelta(days=7)
    async with sessionmaker() as session:
        grant = await invites.redeem(session, invite.code, ALICE, now=T0 + timedelta(days=6))
    assert (grant.role, grant.scope_level, grant.scope_id) == (
        Role.COUNCIL_MEMBER,
        ScopeLevel.COMMUNITY,
        world.xinsha,
    )
    async with sessionmaker() as session:
        members = await access.council_members(session, world.xinsha)
        assert [m.telegram_id for m in members] == [ALICE.telegram_id]
        event = (await session.scalars(select(AuditEvent))).one()
    assert await uses_taken(sessionmaker, invite) == 1
    assert (event.entity_type, event.entity_id, event.action, event.public) == (
        "person",
        members[0].id,
        "role_granted",
        False,
    )
    assert event.community_id == world.xinsha
    assert event.details["via"] == "invite" and event.details["role"] == "council_member"


async def test_the_same_person_twice_takes_one_use(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    invite = await make_invite(sessionmaker, world, Role.COMMUNITY_STAFF, expires_days=1, now=T0)
    async with sessionmaker() as session:
        first = await invites.redeem(session, invite.code, ALICE, now=T0)
    # Even after it is used up and has expired, opening it again just says so.
    async with sessionmaker() as session:
        again = await invites.redeem(session, invite.code, ALICE, now=T0 + timedelta(days=3))
    assert again.id == first.id
    assert await refusal(sessionmaker, invite.code, BOB, now=T0) == "invite_used_up"
    assert await uses_taken(sessionmaker, invite) == 1
    async with sessionmaker() as session:
        assert len((await session.scalars(select(RoleGrant))).all()) == 1


async def test_a_role_held_already_takes_no_use_and_records_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    async with sessionmaker() as session:
        alice = await ensure_person(session, ALICE)
        given = await access.grant_role(session, alice.id, Role.COUNCIL_MEMBER, council_of(world))
        await session.commit()
    invite = await make_invite(sessionmaker, world)
    async with sessionmaker() as session:
        held = await invites.redeem(session, invite.code, ALICE)
    assert held.id == given.id
    assert await uses_taken(sessionmaker, invite) == 0
    async with sessionmaker() as session:
        assert (await session.scalars(select(AuditEvent))).all() == []
        assert (await session.scalars(select(InviteRedemption))).all() == []
    # Its one use is still there for someone new.
    async with sessionmaker() as session:
        await invites.redeem(session, invite.code, BOB)
    assert await uses_taken(sessionmaker, invite) == 1


async def test_n_uses(sessionmaker: async_sessionmaker[AsyncSession], world: World) -> None:
    invite = await make_invite(sessionmaker, world, uses=3)
    for who in (ALICE, BOB, CAROL):
        async with sessionmaker() as session:
            await invites.redeem(session, invite.code, who)
    assert await refusal(sessionmaker, invite.code, DAVE) == "invite_used_up"
    async with sessionmaker() as session:
        assert len(await access.council_members(session, world.xinsha)) == 3


async def test_expired_revoked_and_unknown(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    expiring = await make_invite(sessionmaker, world, expires_days=2, now=T0)
    revoked = await make_invite(sessionmaker, world)
    async with sessionmaker() as session:
        assert await invites.revoke_invite(session, revoked.code) is True
        assert await invites.revoke_invite(session, "i_nothing") is False
    cases = [
        (expiring.code, T0 + timedelta(days=2), "invite_expired"),
        (revoked.code, T0, "invite_revoked"),
        ("i_doesnotexist", T0, "invite_unknown"),
        ("s_12", T0, "invite_unknown"),
        ("i_" + "x" * 80, T0, "invite_unknown"),
        ("", T0, "invite_unknown"),
    ]
    for code, now, expected in cases:
        assert await refusal(sessionmaker, code, ALICE, now) == expected, code
    async with sessionmaker() as session:
        assert (await session.scalars(select(RoleGrant))).first() is None
        assert (await session.scalars(select(InviteRedemption))).first() is None


async def test_a_revoked_role_is_not_restored_by_the_same_link(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    invite = await make_invite(sessionmaker, world, uses=5)
    async with sessionmaker() as session:
        grant = await invites.redeem(session, invite.code, ALICE)
        await access.revoke_role(session, grant.id)
        await session.commit()
    assert await refusal(sessionmaker, invite.code, ALICE) == "invite_already_redeemed"


@pytest.mark.parametrize(
    ("role", "level", "name", "uses", "days", "code"),
    [
        (Role.COUNCIL_MEMBER, ScopeLevel.STREET, "shatou", 1, None, "scope_mismatch"),
        (Role.CITY_ADMIN, ScopeLevel.CITY, "futian", 1, None, "scope_not_expected"),
        (Role.STREET_OFFICIAL, ScopeLevel.STREET, None, 1, None, "unknown_scope"),
        (Role.PROPOSER, ScopeLevel.COMMUNITY, "xinsha", 1, None, "role_not_grantable"),
        (Role.COUNCIL_MEMBER, ScopeLevel.COMMUNITY, "xinsha", 0, None, "invite_uses_invalid"),
        (Role.COUNCIL_MEMBER, ScopeLevel.COMMUNITY, "xinsha", 1, 0, "invite_expiry_invalid"),
    ],
)
async def test_invites_that_cannot_be_made(
    session: AsyncSession,
    world: World,
    role: Role,
    level: ScopeLevel,
    name: str | None,
    uses: int,
    days: int | None,
    code: str,
) -> None:
    with pytest.raises(RuleViolation) as caught:
        await invites.create_invite(
            session, role, world.scope(level, name), uses=uses, expires_days=days
        )
    assert caught.value.code == code


async def test_only_one_of_two_racing_people_gets_the_last_use(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    invite = await make_invite(sessionmaker, world)

    async def attempt(who: TelegramIdentity) -> str:
        async with sessionmaker() as session:
            try:
                await invites.redeem(session, invite.code, who)
            except RuleViolation as exc:
                return exc.code
            return "granted"

    results = await asyncio.gather(*(attempt(w) for w in (ALICE, BOB, CAROL, DAVE)))
    assert sorted(results) == ["granted", "invite_used_up", "invite_used_up", "invite_used_up"]
    assert await uses_taken(sessionmaker, invite) == 1


async def test_a_double_tap_takes_one_use(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    invite = await make_invite(sessionmaker, world, uses=2)

    async def tap() -> int:
        async with sessionmaker() as session:
            return (await invites.redeem(session, invite.code, ALICE)).id

    first, second = await asyncio.gather(tap(), tap())
    assert first == second
    assert await uses_taken(sessionmaker, invite) == 1


async def test_scope_names(session: AsyncSession, world: World) -> None:
    assert await invites.scope_name(session, world.scope(ScopeLevel.COMMUNITY, "xinsha")) == (
        "新沙社区"
    )
    assert (
        await invites.scope_name(session, world.scope(ScopeLevel.COMMUNITY, "xinsha"), full=True)
        == "福田区 › 沙头街道 › 新沙社区"
    )
    assert (
        await invites.scope_name(session, world.scope(ScopeLevel.STREET, "yuehai"), full=True)
        == "南山区 › 粤海街道"
    )
    assert await invites.scope_name(session, world.scope(ScopeLevel.DISTRICT, "nanshan")) == (
        "南山区"
    )
    assert await invites.scope_name(session, Scope.city()) is None


# --- Grants by an official ------------------------------------------------------------------

C, S, D, CITY = ScopeLevel.COMMUNITY, ScopeLevel.STREET, ScopeLevel.DISTRICT, ScopeLevel.CITY
GRANT_CASES = [
    # (granting role, its scope, role granted, target scope, expected: None = granted)
    (Role.STREET_OFFICIAL, (S, "shatou"), Role.COMMUNITY_STAFF, (C, "xinsha"), None),
    (Role.STREET_OFFICIAL, (S, "shatou"), Role.COUNCIL_MEMBER, (C, "tianan"), None),
    (Role.STREET_OFFICIAL, (S, "shatou"), Role.COUNCIL_MEMBER, (C, "xiangmi"), "out_of_scope"),
    (Role.STREET_OFFICIAL, (S, "shatou"), Role.STREET_OFFICIAL, (S, "shatou"), "out_of_scope"),
    (Role.STREET_OFFICIAL, (S, "shatou"), Role.DISTRICT_ADMIN, (D, "futian"), "out_of_scope"),
    (Role.DISTRICT_ADMIN, (D, "futian"), Role.STREET_OFFICIAL, (S, "xiangmihu"), None),
    (Role.DISTRICT_ADMIN, (D, "futian"), Role.COMMUNITY_STAFF, (C, "xiangmi"), None),
    (Role.DISTRICT_ADMIN, (D, "futian"), Role.STREET_OFFICIAL, (S, "yuehai"), "out_of_scope"),
    (Role.DISTRICT_ADMIN, (D, "futian"), Role.COUNCIL_MEMBER, (C, "keji"), "out_of_scope"),
    (Role.DISTRICT_ADMIN, (D, "futian"), Role.DISTRICT_ADMIN, (D, "futian"), "out_of_scope"),
    (Role.CITY_ADMIN, (CITY, None), Role.DISTRICT_ADMIN, (D, "nanshan"), None),
    (Role.CITY_ADMIN, (CITY, None), Role.CITY_ADMIN, (CITY, None), None),
    (Role.COMMUNITY_STAFF, (C, "xinsha"), Role.COUNCIL_MEMBER, (C, "xinsha"), "role_not_allowed"),
    (Role.COUNCIL_MEMBER, (C, "xinsha"), Role.COUNCIL_MEMBER, (C, "xinsha"), "role_not_allowed"),
    (Role.CITY_ADMIN, (CITY, None), Role.STREET_OFFICIAL, (C, "xinsha"), "scope_mismatch"),
    (Role.CITY_ADMIN, (CITY, None), Role.PROPOSER, (C, "xinsha"), "role_not_grantable"),
]


@pytest.mark.parametrize(("by", "by_scope", "role", "target", "expected"), GRANT_CASES)
async def test_grant_by_official(
    sessionmaker: async_sessionmaker[AsyncSession],
    world: World,
    by: Role,
    by_scope: tuple[ScopeLevel, str | None],
    role: Role,
    target: tuple[ScopeLevel, str | None],
    expected: str | None,
) -> None:
    principal = Principal(by, world.scope(*by_scope))
    async with sessionmaker() as session:
        person = await ensure_person(session, ALICE)
        await session.commit()
    async with sessionmaker() as session:
        if expected is not None:
            with pytest.raises(RuleViolation) as caught:
                await invites.grant_by_official(
                    session, principal, role, world.scope(*target), telegram_id=ALICE.telegram_id
                )
            assert caught.value.code == expected
            assert (await session.scalars(select(RoleGrant))).first() is None
            return
        grant, created = await invites.grant_by_official(
            session, principal, role, world.scope(*target), telegram_id=ALICE.telegram_id
        )
    assert (grant.person_id, grant.role, grant.scope_level) == (person.id, role, target[0])
    assert created
    async with sessionmaker() as session:
        again = await invites.grant_by_official(
            session, principal, role, world.scope(*target), person_id=person.id
        )
        assert again.grant.id == grant.id and not again.created
        event = (await session.scalars(select(AuditEvent))).one()
    assert (event.entity_type, event.entity_id, event.public) == ("person", person.id, False)
    assert event.actor_role is by and event.details["via"] == "official"


async def test_grant_to_someone_the_bot_has_never_met(session: AsyncSession, world: World) -> None:
    principal = Principal(Role.STREET_OFFICIAL, world.scope(S, "shatou"))
    with pytest.raises(RuleViolation) as caught:
        await invites.grant_by_official(
            session, principal, Role.COUNCIL_MEMBER, world.scope(C, "xinsha"), telegram_id=42
        )
    assert caught.value.code == "unknown_person"


async def test_two_officials_granting_one_role_at_once_make_one_grant(
    sessionmaker: async_sessionmaker[AsyncSession], world: World
) -> None:
    """The second waits for the first's transaction, then finds its grant: a revocation
    would otherwise leave the other grant, and the role, in place."""
    async with sessionmaker() as session:
        person = await ensure_person(session, ALICE)
        await session.commit()
    scope = world.scope(C, "xinsha")
    official = Principal(Role.STREET_OFFICIAL, world.scope(S, "shatou"))
    first = sessionmaker()
    try:
        made = await access.grant_role(first, person.id, Role.COUNCIL_MEMBER, scope)

        async def second() -> invites.Granted:
            async with sessionmaker() as session:
                return await invites.grant_by_official(
                    session, official, Role.COUNCIL_MEMBER, scope, person_id=person.id
                )

        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the second grant waits for the first's transaction"
        await first.commit()
        found, created = await asyncio.wait_for(waiting, 10)
        assert found.id == made.id and not created
    finally:
        await first.close()
    async with sessionmaker() as session:
        active = (
            await session.scalars(select(RoleGrant).where(RoleGrant.revoked_at.is_(None)))
        ).all()
        told = await session.scalar(select(func.count()).where(Notification.kind == "role_granted"))
    assert [g.id for g in active] == [made.id]
    assert told == 0, "nobody is told of a grant that was not made"
