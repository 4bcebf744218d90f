"""How a role reaches a person: an invite deep link they open in a private chat with the bot,
or an official of a wider scope granting it to them directly.

An invite's code is the whole deep-link payload (`i_` and 22 random URL-safe characters), so
the bot hands `/start`'s payload to `redeem` as is. Every grant leaves a non-public audit
event on the person.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import operation, take_write_lock
from storage.models import (
    Community,
    District,
    Invite,
    InviteRedemption,
    NotificationKind,
    Person,
    RoleGrant,
    Street,
    utcnow,
)
from storage.rules import ROLE_SCOPE, Role, RuleViolation, ScopeLevel
from storage.services import access, notifications
from storage.services.access import Principal, Scope
from storage.services.audit import Actor, record
from storage.services.people import TelegramIdentity, ensure_person, find_person

INVITE_PREFIX = "i_"
# Telegram's deep-link payloads: 1-64 characters of A-Z a-z 0-9 _ -.
INVITE_CODE_RE = re.compile(r"^i_[A-Za-z0-9_-]{1,62}$")
MAX_USES = 10_000
MAX_EXPIRES_DAYS = 3650

# Narrowest last: a scope covers those after it.
_LEVEL_RANK = {
    ScopeLevel.CITY: 0,
    ScopeLevel.DISTRICT: 1,
    ScopeLevel.STREET: 2,
    ScopeLevel.COMMUNITY: 3,
}
# Who may hand roles out directly: officials of a street or wider (a community's staff
# invites its council through the street, or by an invite an official made).
GRANTING_ROLES: frozenset[Role] = frozenset(
    {Role.STREET_OFFICIAL, Role.DISTRICT_ADMIN, Role.CITY_ADMIN}
)


def is_invite_payload(payload: str | None) -> bool:
    """Whether a /start payload is an invite's (the bot dispatches on this)."""
    return bool(payload) and INVITE_CODE_RE.match(payload or "") is not None


def deep_link(bot_username: str, code: str) -> str:
    return f"https://t.me/{bot_username.removeprefix('@')}?start={code}"


async def check_scope_exists(session: AsyncSession, scope: Scope) -> None:
    """RuleViolation `unknown_scope` unless the scope's community, street or district exists."""
    if scope.level is ScopeLevel.CITY:
        if scope.id is not None:
            raise RuleViolation("scope_not_expected", "the city scope has no id")
        return
    model = {
        ScopeLevel.COMMUNITY: Community,
        ScopeLevel.STREET: Street,
        ScopeLevel.DISTRICT: District,
    }[scope.level]
    if scope.id is None or await session.get(model, scope.id) is None:
        raise RuleViolation("unknown_scope", f"no {scope.level.value} with id {scope.id}")


async def scope_name(session: AsyncSession, scope: Scope, *, full: bool = False) -> str | None:
    """The scope's name (新沙社区), or with `full` its path (福田区 › 沙头街道 › 新沙社区);
    None for the city, and for a scope that no longer exists."""
    if scope.level is ScopeLevel.CITY or scope.id is None:
        return None
    if scope.level is ScopeLevel.DISTRICT:
        district = await session.get(District, scope.id)
        return district.name if district is not None else None
    query: Select[Any]
    if scope.level is ScopeLevel.STREET:
        query = (
            select(District.name, Street.name)
            .join(Street, Street.district_id == District.id)
            .where(Street.id == scope.id)
        )
    else:
        query = (
            select(District.name, Street.name, Community.name)
            .join(Street, Street.district_id == District.id)
            .join(Community, Community.street_id == Street.id)
            .where(Community.id == scope.id)
        )
    row = (await session.execute(query)).first()
    if row is None:
        return None
    return " › ".join(row) if full else str(row[-1])


_PATH_SPLIT = re.compile(r"\s*[/›>]\s*")
_DEPTH = {ScopeLevel.DISTRICT: 1, ScopeLevel.STREET: 2, ScopeLevel.COMMUNITY: 3}


async def resolve_scope_name(session: AsyncSession, role: Role, name: str | None) -> Scope:
    """The scope a role is held in, by name: `新沙社区`, or where names repeat a path such as
    `沙头街道/新沙社区` or `福田区/沙头街道/新沙社区` (`/` or `›` between the parts).

    RuleViolation codes: role_not_grantable, scope_not_expected, scope_required,
    unknown_scope, and ambiguous_scope, whose message lists the paths."""
    level = ROLE_SCOPE.get(role)
    if level is None:
        raise RuleViolation("role_not_grantable", f"{role.value} is not granted")
    name = (name or "").strip()
    if level is ScopeLevel.CITY:
        if name:
            raise RuleViolation("scope_not_expected", f"{role.value} takes no scope")
        return Scope.city()
    if not name:
        raise RuleViolation("scope_required", f"{role.value} needs a {level.value} name")
    parts = [part for part in _PATH_SPLIT.split(name) if part]
    depth = _DEPTH[level]
    if not parts or len(parts) > depth:
        raise RuleViolation(
            "unknown_scope", f"a {level.value} path has at most {depth} parts: {name!r}"
        )
    names = (District.name, Street.name, Community.name)[:depth]
    ids = (District.id, Street.id, Community.id)[depth - 1]
    query = select(ids, *names).select_from(District)
    if depth >= 2:
        query = query.join(Street, Street.district_id == District.id)
    if depth == 3:
        query = query.join(Community, Community.street_id == Street.id)
    for column, part in zip(names[depth - len(parts) :], parts, strict=True):
        query = query.where(column == part)
    rows = (await session.execute(query.order_by(*names))).all()
    if not rows:
        raise RuleViolation("unknown_scope", f"no {level.value} named {name!r}")
    if len(rows) > 1:
        paths = ", ".join("/".join(row[1:]) for row in rows)
        raise RuleViolation(
            "ambiguous_scope",
            f"{len(rows)} {level.value} scopes match {name!r}: {paths}; "
            f"name one by its path, e.g. {'/'.join(rows[0][1:])!r}",
        )
    return Scope(level, int(rows[0][0]))


async def strictly_covers(session: AsyncSession, outer: Scope, inner: Scope) -> bool:
    """Whether `inner` lies inside `outer` and is narrower (a street inside its district)."""
    if _LEVEL_RANK[outer.level] >= _LEVEL_RANK[inner.level]:
        return False
    if outer.level is ScopeLevel.CITY:
        return True
    if inner.level is ScopeLevel.COMMUNITY:
        assert inner.id is not None
        place = await access.place_of(session, inner.id)
        return place is not None and access.covers(outer, place)
    if inner.level is ScopeLevel.STREET:  # so outer is a district
        street = await session.get(Street, inner.id)
        return street is not None and street.district_id == outer.id
    return False


async def _grant(
    session: AsyncSession,
    actor: Actor,
    person_id: int,
    role: Role,
    scope: Scope,
    via: str,
    **extra: int | None,
) -> RoleGrant:
    """Grant the role, as given by the actor's person, with the non-public audit event every
    grant leaves on the person. Flushes; the caller commits."""
    grant = await access.grant_role(session, person_id, role, scope, granted_by_id=actor.person_id)
    record(
        session,
        actor=actor,
        entity_type="person",
        entity_id=person_id,
        community_id=scope.id if scope.level is ScopeLevel.COMMUNITY else None,
        action="role_granted",
        public=False,
        details={
            "role": role.value,
            "scope_level": scope.level.value,
            "scope_id": scope.id,
            "via": via,
            **extra,
        },
    )
    return grant


async def create_invite(
    session: AsyncSession,
    role: Role,
    scope: Scope,
    *,
    uses: int = 1,
    expires_days: int | None = None,
    created_by_id: int | None = None,
    now: datetime | None = None,
) -> Invite:
    """A new invite granting `role` in `scope` to up to `uses` people. Commits."""
    access.check_grantable(role, scope)
    if not 1 <= uses <= MAX_USES:
        raise RuleViolation("invite_uses_invalid", f"uses must be 1-{MAX_USES}")
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRES_DAYS:
        raise RuleViolation("invite_expiry_invalid", f"expiry must be 1-{MAX_EXPIRES_DAYS} days")
    await check_scope_exists(session, scope)
    now = now or utcnow()
    invite = Invite(
        code=INVITE_PREFIX + secrets.token_urlsafe(16),
        role=role,
        scope_level=scope.level,
        scope_id=scope.id,
        max_uses=uses,
        used_count=0,
        expires_at=now + timedelta(days=expires_days) if expires_days is not None else None,
        created_by_id=created_by_id,
        created_at=now,
    )
    session.add(invite)
    await session.commit()
    return invite


async def find_invite(session: AsyncSession, code: str) -> Invite | None:
    if not is_invite_payload(code):
        return None
    return (await session.scalars(select(Invite).where(Invite.code == code))).first()


async def list_invites(session: AsyncSession) -> list[Invite]:
    return list(
        (await session.scalars(select(Invite).order_by(Invite.created_at, Invite.id))).all()
    )


async def revoke_invite(session: AsyncSession, code: str, *, now: datetime | None = None) -> bool:
    """No one else may redeem it (roles already granted stay). False when unknown. Commits."""
    invite = await find_invite(session, code)
    if invite is None:
        return False
    if invite.revoked_at is None:
        invite.revoked_at = now or utcnow()
        await session.commit()
    return True


def _check_usable(invite: Invite, now: datetime) -> None:
    if invite.expires_at is not None and now >= invite.expires_at:
        raise RuleViolation("invite_expired", "this invite has expired")
    if invite.used_count >= invite.max_uses:
        raise RuleViolation("invite_used_up", "this invite has been used up")


@operation
async def redeem(
    session: AsyncSession, code: str, who: TelegramIdentity, *, now: datetime | None = None
) -> RoleGrant:
    """Grant the invite's role to whoever opened it. Commits.

    RuleViolation codes: invite_unknown, invite_revoked, invite_expired, invite_used_up, and
    invite_already_redeemed when this person redeemed it before but the role has since been
    revoked (the link does not restore it). Opening it again while holding the role returns
    the same grant and takes no further use; so does opening it while holding the role from
    elsewhere."""
    try:
        return await _redeem(session, code, who, now or utcnow())
    except IntegrityError:
        # The same person's two taps raced to the redemption row (or to their Person row):
        # everything of this attempt is rolled back, and the second try finds the first's.
        await session.rollback()
        return await _redeem(session, code, who, now or utcnow())


async def _redeem(
    session: AsyncSession, code: str, who: TelegramIdentity, now: datetime
) -> RoleGrant:
    invite = await find_invite(session, code)
    if invite is None:
        raise RuleViolation("invite_unknown", "no such invite")
    if invite.revoked_at is not None:
        raise RuleViolation("invite_revoked", "this invite has been revoked")
    scope = Scope(invite.scope_level, invite.scope_id)
    person = await find_person(session, who.telegram_id)
    held = await _redeemed_before(session, invite, person, scope)
    if held is not None:
        return held
    _check_usable(invite, now)
    if person is not None:
        # Held some other way (by an official, by another invite): the invite has nothing to
        # give, so it takes no use and the audit trail records no grant that did not happen.
        held = await access.active_grant(session, person.id, invite.role, scope)
        if held is not None:
            return held
    # One statement both checks and takes a use, so concurrent redemptions of the last use
    # cannot both succeed (PostgreSQL re-checks the WHERE on the locked row).
    taken = await session.execute(
        update(Invite)
        .where(
            Invite.id == invite.id,
            Invite.used_count < Invite.max_uses,
            Invite.revoked_at.is_(None),
        )
        .values(used_count=Invite.used_count + 1)
        .execution_options(synchronize_session=False)
    )
    if getattr(taken, "rowcount", 0) != 1:
        # Someone else took the last use meanwhile, or (a double tap) this same person did.
        await session.refresh(invite)
        # Looked up again: a double tap's other half may have made the person meanwhile.
        again = await find_person(session, who.telegram_id)
        held = await _redeemed_before(session, invite, again, scope)
        if held is not None:
            return held
        if invite.revoked_at is not None:
            raise RuleViolation("invite_revoked", "this invite has been revoked")
        raise RuleViolation("invite_used_up", "this invite has been used up")
    person = await ensure_person(session, who)
    session.add(InviteRedemption(invite_id=invite.id, person_id=person.id, redeemed_at=now))
    await session.flush()
    actor = Actor(Role.SYSTEM, invite.created_by_id)
    grant = await _grant(
        session, actor, person.id, invite.role, scope, "invite", invite_id=invite.id
    )
    await session.commit()
    return grant


async def _redeemed_before(
    session: AsyncSession, invite: Invite, person: Person | None, scope: Scope
) -> RoleGrant | None:
    """The grant this invite gave this person before, if it did; None if it never did."""
    if person is None or await session.get(InviteRedemption, (invite.id, person.id)) is None:
        return None
    held = await access.active_grant(session, person.id, invite.role, scope)
    if held is None:
        raise RuleViolation(
            "invite_already_redeemed", "you used this invite before; the role has been revoked"
        )
    return held


class Granted(NamedTuple):
    """What an official's grant came to: the grant, and whether it was made now (else the
    person held the role already, and nothing changed)."""

    grant: RoleGrant
    created: bool


@operation
async def grant_by_official(
    session: AsyncSession,
    principal: Principal,
    role: Role,
    scope: Scope,
    *,
    telegram_id: int | None = None,
    person_id: int | None = None,
) -> Granted:
    """An official grants a role in a scope strictly inside their own (a street official makes
    community staff and council members in the street's communities, a district admin street
    officials in the district; a city admin grants anything). Idempotent: a role the person
    holds already is that grant, not created. Commits.

    The person is named by Telegram id or person id and must have talked to the bot already
    (`unknown_person` otherwise: an invite link is the way to reach someone new)."""
    if (telegram_id is None) == (person_id is None):
        raise ValueError("name the person by exactly one of telegram_id and person_id")
    _check_granting(principal)
    access.check_grantable(role, scope)
    await check_scope_exists(session, scope)
    if principal.role is not Role.CITY_ADMIN and not await strictly_covers(
        session, principal.scope, scope
    ):
        raise RuleViolation("out_of_scope", "you may grant roles only inside your own scope")
    if person_id is not None:
        person = await session.get(Person, person_id)
    else:
        assert telegram_id is not None
        person = await find_person(session, telegram_id)
    if person is None:
        raise RuleViolation(
            "unknown_person", "this person has not talked to the bot yet; send an invite"
        )
    await access.lock_person(session, person.id)  # a second official at once waits here
    existing = await access.active_grant(session, person.id, role, scope)
    if existing is not None:
        return Granted(existing, created=False)
    actor = Actor(principal.role, principal.person_id)
    grant = await _grant(session, actor, person.id, role, scope, "official")
    await _tell_holder(session, person, grant, NotificationKind.ROLE_GRANTED)
    await session.commit()
    return Granted(grant, created=True)


async def _tell_holder(
    session: AsyncSession, person: Person, grant: RoleGrant, kind: NotificationKind
) -> None:
    """Tell the person an official gave them a role (`role_granted`) or took it back
    (`role_revoked`): unlike an invite, nothing else would."""
    place = await scope_name(session, Scope(grant.scope_level, grant.scope_id), full=True)
    await notifications.enqueue(
        session,
        chat_id=person.telegram_id,
        person_id=person.id,
        kind=kind,
        params={"role": grant.role.value, "place": place},
        dedupe_key=f"{kind}:{grant.id}",
    )


def _grants_inside(scope: Scope) -> ColumnElement[bool]:
    """Grants whose scope an official holding `scope` may grant and revoke: strictly inside
    it (see strictly_covers); everything for the city."""
    community_level = RoleGrant.scope_level == ScopeLevel.COMMUNITY
    if scope.level is ScopeLevel.CITY:
        return true()
    if scope.level is ScopeLevel.STREET:
        communities = select(Community.id).where(Community.street_id == scope.id)
        return and_(community_level, RoleGrant.scope_id.in_(communities))
    if scope.level is ScopeLevel.DISTRICT:
        streets = select(Street.id).where(Street.district_id == scope.id)
        communities = select(Community.id).where(Community.street_id.in_(streets))
        return or_(
            and_(RoleGrant.scope_level == ScopeLevel.STREET, RoleGrant.scope_id.in_(streets)),
            and_(community_level, RoleGrant.scope_id.in_(communities)),
        )
    return false()


def _check_granting(principal: Principal) -> None:
    if principal.role not in GRANTING_ROLES:
        raise RuleViolation("role_not_allowed", f"{principal.role.value} may not grant roles")


class GrantHolder(NamedTuple):
    """An active grant an official may revoke, with whom it names (for officials' eyes)."""

    grant: RoleGrant
    telegram_id: int | None
    first_name: str
    username: str | None


async def list_grants(
    session: AsyncSession,
    principal: Principal,
    *,
    role: Role | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[GrantHolder], int]:
    """One page of the active grants the official may revoke, newest first, and the total."""
    _check_granting(principal)
    conditions = [RoleGrant.revoked_at.is_(None), _grants_inside(principal.scope)]
    if role is not None:
        conditions.append(RoleGrant.role == role)
    total = await session.scalar(select(func.count(RoleGrant.id)).where(*conditions))
    query = (
        select(RoleGrant, Person.telegram_id, Person.first_name, Person.username)
        .join(Person, Person.id == RoleGrant.person_id)
        .where(*conditions)
        .order_by(RoleGrant.granted_at.desc(), RoleGrant.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [GrantHolder(*row) for row in await session.execute(query)], int(total or 0)


@operation
async def revoke_by_official(
    session: AsyncSession, principal: Principal, grant_id: int, *, now: datetime | None = None
) -> RoleGrant:
    """An official revokes a grant they could have made (see grant_by_official): a council
    member who has left, staff who moved on. Votes already convened keep their member list;
    the next one does not count them. Idempotent. Commits."""
    _check_granting(principal)
    # Locked: of two officials revoking it at once, one revokes and the other finds it done.
    await take_write_lock(session, RoleGrant.revoked_at, RoleGrant.id == grant_id)
    grant = await session.get(RoleGrant, grant_id, with_for_update=True, populate_existing=True)
    if grant is None:
        raise RuleViolation("unknown_grant", "no such role grant")
    scope = Scope(grant.scope_level, grant.scope_id)
    if principal.role is not Role.CITY_ADMIN and not await strictly_covers(
        session, principal.scope, scope
    ):
        raise RuleViolation("out_of_scope", "you may revoke roles only inside your own scope")
    if grant.revoked_at is not None:
        return grant
    await access.revoke_role(session, grant.id, now=now)
    person = await session.get(Person, grant.person_id)
    if person is not None:
        await _tell_holder(session, person, grant, NotificationKind.ROLE_REVOKED)
    record(
        session,
        actor=Actor(principal.role, principal.person_id),
        entity_type="person",
        entity_id=grant.person_id,
        community_id=scope.id if scope.level is ScopeLevel.COMMUNITY else None,
        action="role_revoked",
        public=False,
        details={"role": grant.role.value, "scope_level": scope.level.value, "scope_id": scope.id},
    )
    await session.commit()
    return grant


__all__ = [
    "GRANTING_ROLES",
    "INVITE_PREFIX",
    "GrantHolder",
    "Granted",
    "check_scope_exists",
    "create_invite",
    "deep_link",
    "find_invite",
    "grant_by_official",
    "is_invite_payload",
    "list_grants",
    "list_invites",
    "redeem",
    "resolve_scope_name",
    "revoke_by_official",
    "revoke_invite",
    "scope_name",
    "strictly_covers",
]
