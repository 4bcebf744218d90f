"""Who may do what where: roles held per scope, and whether a scope covers a community.

A community's staff acts in its community, a street official in the street's communities, a
district admin in the district's, a city admin everywhere. The same check serves the bot
(people with granted roles) and the officials' API (bearer tokens with a role and a scope).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import take_write_lock
from storage.models import Community, Person, RoleGrant, Street, utcnow
from storage.rules import ROLE_SCOPE, Role, RuleViolation, ScopeLevel
from storage.services.people import owe_menu


@dataclass(frozen=True, slots=True)
class Scope:
    level: ScopeLevel
    id: int | None = None  # None for the city

    @classmethod
    def city(cls) -> Scope:
        return cls(ScopeLevel.CITY)


@dataclass(frozen=True, slots=True)
class Place:
    """A community with the street and district it lies in."""

    community_id: int
    street_id: int
    district_id: int


@dataclass(frozen=True, slots=True)
class Principal:
    """Someone acting: a role in a scope, and the person behind it when known."""

    role: Role
    scope: Scope
    person_id: int | None = None


def covers(scope: Scope, place: Place) -> bool:
    match scope.level:
        case ScopeLevel.CITY:
            return True
        case ScopeLevel.DISTRICT:
            return scope.id == place.district_id
        case ScopeLevel.STREET:
            return scope.id == place.street_id
        case ScopeLevel.COMMUNITY:
            return scope.id == place.community_id
    return False


async def place_of(session: AsyncSession, community_id: int) -> Place | None:
    row = (
        await session.execute(
            select(Community.id, Street.id, Street.district_id)
            .join(Street, Street.id == Community.street_id)
            .where(Community.id == community_id)
        )
    ).first()
    return Place(*row) if row is not None else None


async def active_grant(
    session: AsyncSession, person_id: int, role: Role, scope: Scope
) -> RoleGrant | None:
    """The person's unrevoked grant of `role` in exactly `scope`, if any."""
    return (
        await session.scalars(
            select(RoleGrant).where(
                RoleGrant.person_id == person_id,
                RoleGrant.role == role,
                RoleGrant.scope_level == scope.level,
                RoleGrant.scope_id.is_(None)
                if scope.id is None
                else RoleGrant.scope_id == scope.id,
                RoleGrant.revoked_at.is_(None),
            )
        )
    ).first()


def check_grantable(role: Role, scope: Scope) -> None:
    """RuleViolation unless `role` is one that is granted (`role_not_grantable`) and `scope` is
    of the level it is held at (`scope_mismatch`)."""
    if role not in ROLE_SCOPE:
        raise RuleViolation("role_not_grantable", f"{role.value} is not granted")
    if ROLE_SCOPE[role] is not scope.level:
        raise RuleViolation("scope_mismatch", f"{role.value} is held at another level")


async def lock_person(session: AsyncSession, person_id: int) -> None:
    """Hold the person's row until this transaction ends: of two grants of one role at once,
    the second waits, then finds the first's grant instead of making another, which a
    revocation would leave behind. SQLite: the writer lock first (storage.db)."""
    await take_write_lock(session, Person.telegram_id, Person.id == person_id)
    await session.execute(select(Person.id).where(Person.id == person_id).with_for_update())


async def grant_role(
    session: AsyncSession,
    person_id: int,
    role: Role,
    scope: Scope,
    *,
    granted_by_id: int | None = None,
) -> RoleGrant:
    """Grant (idempotently) a role in a scope. Flushes; the caller's operation commits."""
    check_grantable(role, scope)
    await lock_person(session, person_id)
    existing = await active_grant(session, person_id, role, scope)
    if existing is not None:
        return existing
    grant = RoleGrant(
        person_id=person_id,
        role=role,
        scope_level=scope.level,
        scope_id=scope.id,
        granted_by_id=granted_by_id,
    )
    session.add(grant)
    await session.flush()
    await _owe_menu(session, grant)
    return grant


async def revoke_role(
    session: AsyncSession, grant_id: int, *, now: datetime | None = None
) -> RoleGrant | None:
    """Revoke a grant (idempotently: a revoked one keeps its time). Flushes; None if there is
    no such grant."""
    grant = await session.get(RoleGrant, grant_id)
    if grant is not None and grant.revoked_at is None:
        grant.revoked_at = now or utcnow()
        await session.flush()
        await _owe_menu(session, grant)
    return grant


async def _owe_menu(session: AsyncSession, grant: RoleGrant) -> None:
    """The person's command menu follows their roles (people.owe_menu)."""
    person = await session.get(Person, grant.person_id)
    if person is not None:
        owe_menu(session, person)


# Scope levels from the narrowest: a person's grant over a community is taken in this order.
NARROWEST_FIRST = (ScopeLevel.COMMUNITY, ScopeLevel.STREET, ScopeLevel.DISTRICT, ScopeLevel.CITY)


def _principal(grant: RoleGrant) -> Principal:
    return Principal(grant.role, Scope(grant.scope_level, grant.scope_id), grant.person_id)


async def principals_of(session: AsyncSession, person_id: int) -> list[Principal]:
    grants = await session.scalars(
        select(RoleGrant).where(RoleGrant.person_id == person_id, RoleGrant.revoked_at.is_(None))
    )
    return [_principal(g) for g in grants]


async def principals_of_telegram_user(session: AsyncSession, telegram_id: int) -> list[Principal]:
    """The roles a Telegram user holds (as `principals_of`), in one query; [] for someone not
    known yet."""
    query = (
        select(RoleGrant)
        .join(Person, Person.id == RoleGrant.person_id)
        .where(Person.telegram_id == telegram_id, RoleGrant.revoked_at.is_(None))
    )
    return [_principal(g) for g in await session.scalars(query)]


async def principal_for(
    session: AsyncSession, telegram_id: int, community_id: int, roles: frozenset[Role]
) -> Principal | None:
    """The person's grant among `roles` whose scope covers the community (narrowest first)."""
    place = await place_of(session, community_id)
    if place is None:
        return None
    candidates = [
        p
        for p in await principals_of_telegram_user(session, telegram_id)
        if p.role in roles and covers(p.scope, place)
    ]
    candidates.sort(key=lambda p: NARROWEST_FIRST.index(p.scope.level))
    return candidates[0] if candidates else None


async def require(
    session: AsyncSession, principal: Principal, community_id: int, roles: frozenset[Role]
) -> Place:
    """The community's place if `principal` holds one of `roles` over it; else RuleViolation."""
    if principal.role not in roles:
        raise RuleViolation("role_not_allowed", f"{principal.role.value} may not do this")
    # A granted role only ever holds at its own level (grant_role and tokens enforce it); a
    # principal built otherwise must not stretch it (community staff "of the city").
    expected = ROLE_SCOPE.get(principal.role)
    if expected is not None and expected is not principal.scope.level:
        raise RuleViolation("scope_mismatch", f"{principal.role.value} is held at another level")
    place = await place_of(session, community_id)
    if place is None:
        raise RuleViolation("unknown_community", "no such community")
    if not covers(principal.scope, place):
        raise RuleViolation("out_of_scope", "this community is outside your scope")
    return place


async def council_members(session: AsyncSession, community_id: int) -> list[Person]:
    query = (
        select(Person)
        .join(RoleGrant, RoleGrant.person_id == Person.id)
        .where(
            RoleGrant.role == Role.COUNCIL_MEMBER,
            RoleGrant.scope_level == ScopeLevel.COMMUNITY,
            RoleGrant.scope_id == community_id,
            RoleGrant.revoked_at.is_(None),
        )
        .order_by(Person.id)
        .distinct()
    )
    return list((await session.scalars(query)).all())
