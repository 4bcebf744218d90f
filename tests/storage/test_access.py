"""Access (storage.services.access): roles held per scope, and which scope covers which
community, for people with grants and for principals built from API tokens."""

from __future__ import annotations

import pytest
from conftest import OrgTree
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Person
from storage.rules import ROLE_SCOPE, Role, RuleViolation, ScopeLevel
from storage.services import access, invites
from storage.services.access import Place, Principal, Scope
from storage.services.org import OrgRow, import_rows
from storage.services.people import TelegramIdentity, ensure_person

Sessions = async_sessionmaker[AsyncSession]
STAFF_ROLES = frozenset(
    {Role.COMMUNITY_STAFF, Role.STREET_OFFICIAL, Role.DISTRICT_ADMIN, Role.CITY_ADMIN}
)

# Two districts, so that "another district" exists.
MORE_ROWS = (
    OrgRow(2, "福田区", "沙头街道", "新沙社区"),
    OrgRow(3, "福田区", "沙头街道", "天安社区"),
    OrgRow(4, "福田区", "香蜜湖街道", "竹林社区"),
    OrgRow(5, "南山区", "粤海街道", "科技园社区"),
    OrgRow(6, "南山区", "粤海街道", "新沙社区"),  # the same name in another district
)


async def person(session: AsyncSession, telegram_id: int) -> Person:
    return await ensure_person(session, TelegramIdentity(telegram_id, f"p{telegram_id}"))


# --- covers (pure) --------------------------------------------------------------------------

PLACE = Place(community_id=10, street_id=20, district_id=30)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (Scope.city(), True),
        (Scope(ScopeLevel.DISTRICT, 30), True),
        (Scope(ScopeLevel.DISTRICT, 31), False),
        (Scope(ScopeLevel.STREET, 20), True),
        (Scope(ScopeLevel.STREET, 21), False),
        (Scope(ScopeLevel.COMMUNITY, 10), True),
        (Scope(ScopeLevel.COMMUNITY, 11), False),
        # Ids are per level: a street id equal to the community's id covers nothing.
        (Scope(ScopeLevel.STREET, 10), False),
        (Scope(ScopeLevel.DISTRICT, None), False),
    ],
)
def test_covers(scope: Scope, expected: bool) -> None:
    assert access.covers(scope, PLACE) is expected


@given(
    st.sampled_from(ScopeLevel),
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(1, 5),
)
def test_covers_is_by_level(level: ScopeLevel, scope_id: int, c: int, s: int, d: int) -> None:
    place = Place(c, s, d)
    scope = Scope(level, None if level is ScopeLevel.CITY else scope_id)
    expected = {
        ScopeLevel.CITY: True,
        ScopeLevel.DISTRICT: scope_id == d,
        ScopeLevel.STREET: scope_id == s,
        ScopeLevel.COMMUNITY: scope_id == c,
    }[level]
    assert access.covers(scope, place) is expected


# --- require --------------------------------------------------------------------------------


async def test_require_by_role_and_scope(session: AsyncSession, org: OrgTree) -> None:
    place = await access.require(
        session,
        Principal(Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, org.xinsha_id)),
        org.xinsha_id,
        STAFF_ROLES,
    )
    assert place == Place(org.xinsha_id, org.street_id, org.district_id)
    # A street official in every community of the street; the city admin everywhere.
    for principal in (
        Principal(Role.STREET_OFFICIAL, Scope(ScopeLevel.STREET, org.street_id)),
        Principal(Role.DISTRICT_ADMIN, Scope(ScopeLevel.DISTRICT, org.district_id)),
        Principal(Role.CITY_ADMIN, Scope.city()),
    ):
        for community in (org.xinsha_id, org.tianan_id):
            await access.require(session, principal, community, STAFF_ROLES)


@pytest.mark.parametrize(
    ("principal", "code"),
    [
        (Principal(Role.COUNCIL_MEMBER, Scope(ScopeLevel.COMMUNITY, 1)), "role_not_allowed"),
        (Principal(Role.SYSTEM, Scope.city()), "role_not_allowed"),
        (Principal(Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, 2)), "out_of_scope"),
        (Principal(Role.STREET_OFFICIAL, Scope(ScopeLevel.STREET, 999)), "out_of_scope"),
        (Principal(Role.DISTRICT_ADMIN, Scope(ScopeLevel.DISTRICT, 999)), "out_of_scope"),
        # A role held at a level it is never granted at (grant_role and tokens refuse these):
        # community staff "of the city" must not act everywhere.
        (Principal(Role.COMMUNITY_STAFF, Scope.city()), "scope_mismatch"),
        (Principal(Role.COMMUNITY_STAFF, Scope(ScopeLevel.STREET, 1)), "scope_mismatch"),
    ],
)
async def test_require_refuses(
    session: AsyncSession, org: OrgTree, principal: Principal, code: str
) -> None:
    assert org.xinsha_id == 1 and org.tianan_id == 2 and org.street_id == 1
    with pytest.raises(RuleViolation) as raised:
        await access.require(session, principal, org.xinsha_id, STAFF_ROLES)
    assert raised.value.code == code


async def test_require_unknown_community(session: AsyncSession, org: OrgTree) -> None:
    with pytest.raises(RuleViolation) as raised:
        await access.require(session, Principal(Role.CITY_ADMIN, Scope.city()), 999, STAFF_ROLES)
    assert raised.value.code == "unknown_community"


async def test_other_district_refused(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        await import_rows(session, MORE_ROWS)
        futian = await invites.resolve_scope_name(session, Role.DISTRICT_ADMIN, "福田区")
        nanshan_street = await invites.resolve_scope_name(session, Role.STREET_OFFICIAL, "粤海街道")
        keji = await invites.resolve_scope_name(session, Role.COUNCIL_MEMBER, "科技园社区")
        assert keji.id is not None and nanshan_street.id is not None
        admin = Principal(Role.DISTRICT_ADMIN, futian)
        with pytest.raises(RuleViolation) as raised:
            await access.require(session, admin, keji.id, STAFF_ROLES)
        assert raised.value.code == "out_of_scope"
        official = Principal(Role.STREET_OFFICIAL, nanshan_street)
        await access.require(session, official, keji.id, STAFF_ROLES)


# --- Grants ---------------------------------------------------------------------------------


async def test_grant_is_idempotent_and_revocable(session: AsyncSession, org: OrgTree) -> None:
    someone = await person(session, 1)
    scope = Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    first = await access.grant_role(session, someone.id, Role.COMMUNITY_STAFF, scope)
    again = await access.grant_role(session, someone.id, Role.COMMUNITY_STAFF, scope)
    assert first.id == again.id
    await access.grant_role(session, someone.id, Role.CITY_ADMIN, Scope.city())
    assert set(await access.principals_of(session, someone.id)) == {
        Principal(Role.COMMUNITY_STAFF, scope, someone.id),
        Principal(Role.CITY_ADMIN, Scope.city(), someone.id),
    }
    await access.revoke_role(session, first.id)
    await access.revoke_role(session, first.id)  # twice is harmless
    assert await access.principals_of(session, someone.id) == [
        Principal(Role.CITY_ADMIN, Scope.city(), someone.id)
    ]
    # After a revocation the role can be granted afresh.
    renewed = await access.grant_role(session, someone.id, Role.COMMUNITY_STAFF, scope)
    assert renewed.id != first.id
    staff = [
        p.scope
        for p in await access.principals_of(session, someone.id)
        if p.role is Role.COMMUNITY_STAFF
    ]
    assert staff == [scope]


@pytest.mark.parametrize("role", sorted(ROLE_SCOPE))
async def test_grant_only_at_the_roles_level(
    session: AsyncSession, org: OrgTree, role: Role
) -> None:
    someone = await person(session, 2)
    for level in ScopeLevel:
        scope = Scope(level, None if level is ScopeLevel.CITY else 1)
        if level is ROLE_SCOPE[role]:
            await access.grant_role(session, someone.id, role, scope)
        else:
            with pytest.raises(RuleViolation) as raised:
                await access.grant_role(session, someone.id, role, scope)
            assert raised.value.code == "scope_mismatch"


@pytest.mark.parametrize("role", sorted(set(Role) - set(ROLE_SCOPE)))
async def test_a_role_that_is_not_granted_is_refused_as_such(
    session: AsyncSession, org: OrgTree, role: Role
) -> None:
    """The same code as an invite or an official's grant gives for it: one check for all."""
    someone = await person(session, 2)
    with pytest.raises(RuleViolation) as raised:
        await access.grant_role(session, someone.id, role, Scope(ScopeLevel.COMMUNITY, 1))
    assert raised.value.code == "role_not_grantable"


async def test_principal_for_prefers_the_narrowest(session: AsyncSession, org: OrgTree) -> None:
    someone = await person(session, 3)
    street = Scope(ScopeLevel.STREET, org.street_id)
    community = Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    await access.grant_role(session, someone.id, Role.STREET_OFFICIAL, street)
    await access.grant_role(session, someone.id, Role.COMMUNITY_STAFF, community)
    await access.grant_role(session, someone.id, Role.COUNCIL_MEMBER, community)
    found = await access.principal_for(session, 3, org.xinsha_id, STAFF_ROLES)
    assert found == Principal(Role.COMMUNITY_STAFF, community, someone.id)
    # In the other community of the street only the street grant covers.
    found = await access.principal_for(session, 3, org.tianan_id, STAFF_ROLES)
    assert found == Principal(Role.STREET_OFFICIAL, street, someone.id)
    # Roles outside those asked for never answer.
    only_council = frozenset({Role.COUNCIL_MEMBER})
    assert await access.principal_for(session, 3, org.tianan_id, only_council) is None
    assert await access.principal_for(session, 404, org.xinsha_id, STAFF_ROLES) is None
    assert await access.principal_for(session, 3, 999, STAFF_ROLES) is None


async def test_resolve_scope(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        await import_rows(session, MORE_ROWS)
        assert await invites.resolve_scope_name(session, Role.CITY_ADMIN, None) == Scope.city()
        street = await invites.resolve_scope_name(session, Role.STREET_OFFICIAL, "沙头街道")
        assert street.level is ScopeLevel.STREET and street.id is not None
        cases = [
            (Role.CITY_ADMIN, "福田区", "scope_not_expected"),
            (Role.PROPOSER, "新沙社区", "role_not_grantable"),
            (Role.SYSTEM, None, "role_not_grantable"),
            (Role.COMMUNITY_STAFF, None, "scope_required"),
            (Role.COMMUNITY_STAFF, "", "scope_required"),
            (Role.COMMUNITY_STAFF, "沙头街道", "unknown_scope"),  # a street, not a community
            (Role.COMMUNITY_STAFF, "新沙社区", "ambiguous_scope"),
        ]
        for role, name, code in cases:
            with pytest.raises(RuleViolation) as raised:
                await invites.resolve_scope_name(session, role, name)
            assert raised.value.code == code, (role, name)


async def test_council_members(session: AsyncSession, org: OrgTree) -> None:
    people = [await person(session, 100 + n) for n in range(4)]
    xinsha = Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    tianan = Scope(ScopeLevel.COMMUNITY, org.tianan_id)
    for someone in reversed(people[:3]):
        await access.grant_role(session, someone.id, Role.COUNCIL_MEMBER, xinsha)
    await access.grant_role(session, people[0].id, Role.COUNCIL_MEMBER, tianan)
    await access.grant_role(session, people[0].id, Role.COMMUNITY_STAFF, xinsha)
    await access.grant_role(session, people[3].id, Role.COMMUNITY_STAFF, xinsha)
    revoked = await access.grant_role(session, people[3].id, Role.COUNCIL_MEMBER, xinsha)
    await access.revoke_role(session, revoked.id)
    members = await access.council_members(session, org.xinsha_id)
    assert [m.id for m in members] == sorted(p.id for p in people[:3])
    assert [m.id for m in await access.council_members(session, org.tianan_id)] == [people[0].id]
    assert await access.council_members(session, 999) == []


async def test_principals_of_a_telegram_user(session: AsyncSession, org: OrgTree) -> None:
    someone, other = await person(session, 1), await person(session, 2)
    xinsha = Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    await access.grant_role(session, someone.id, Role.COMMUNITY_STAFF, xinsha)
    await access.grant_role(session, someone.id, Role.CITY_ADMIN, Scope.city())
    revoked = await access.grant_role(session, someone.id, Role.COUNCIL_MEMBER, xinsha)
    await access.revoke_role(session, revoked.id)
    await access.grant_role(session, other.id, Role.COUNCIL_MEMBER, xinsha)
    held = await access.principals_of_telegram_user(session, someone.telegram_id)
    assert set(held) == set(await access.principals_of(session, someone.id))
    assert set(held) == {
        Principal(Role.COMMUNITY_STAFF, xinsha, someone.id),
        Principal(Role.CITY_ADMIN, Scope.city(), someone.id),
    }
    assert await access.principals_of_telegram_user(session, 999) == []
