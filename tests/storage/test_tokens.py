"""API bearer tokens: shown once, stored as a hash, revocable, last use recorded sparingly."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import OrgTree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import ApiToken
from storage.rules import Role, RuleViolation, ScopeLevel
from storage.services import tokens
from storage.services.access import Principal, Scope

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def staff_token(session: AsyncSession, community_id: int) -> tuple[ApiToken, str]:
    """A token for the staff of a community, and its plaintext. Commits."""
    scope = Scope(ScopeLevel.COMMUNITY, community_id)
    return await tokens.create_token(session, Role.COMMUNITY_STAFF, scope)


async def test_created_token_is_shown_once_and_stored_as_hash(
    sessionmaker: async_sessionmaker[AsyncSession], org: OrgTree
) -> None:
    async with sessionmaker() as session:
        scope = Scope(ScopeLevel.STREET, org.street_id)
        token, plaintext = await tokens.create_token(
            session, Role.STREET_OFFICIAL, scope, label=" street office "
        )
    assert re.fullmatch(r"ms_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", plaintext)
    assert plaintext.split("_")[1] == token.prefix
    async with sessionmaker() as session:
        stored = (await session.scalars(select(ApiToken))).one()
        columns = [str(getattr(stored, c.key)) for c in ApiToken.__table__.columns]
        assert not any(plaintext in value or plaintext[12:] in value for value in columns)
        assert stored.token_hash == tokens.hash_token(plaintext)
        assert stored.label == "street office"
        principal = await tokens.authenticate(session, plaintext)
    assert principal == Principal(Role.STREET_OFFICIAL, scope)


async def test_two_tokens_differ(session: AsyncSession, org: OrgTree) -> None:
    first = await staff_token(session, org.xinsha_id)
    second = await staff_token(session, org.xinsha_id)
    assert first[1] != second[1] and first[0].prefix != second[0].prefix


@pytest.mark.parametrize(
    ("role", "level", "code"),
    [
        (Role.COUNCIL_MEMBER, ScopeLevel.COMMUNITY, "token_role_not_allowed"),
        (Role.PROPOSER, ScopeLevel.COMMUNITY, "token_role_not_allowed"),
        (Role.SYSTEM, ScopeLevel.CITY, "token_role_not_allowed"),
        (Role.STREET_OFFICIAL, ScopeLevel.COMMUNITY, "scope_mismatch"),
        (Role.CITY_ADMIN, ScopeLevel.DISTRICT, "scope_mismatch"),
    ],
)
async def test_roles_and_scopes_a_token_cannot_have(
    session: AsyncSession, org: OrgTree, role: Role, level: ScopeLevel, code: str
) -> None:
    scope_id = {
        ScopeLevel.COMMUNITY: org.xinsha_id,
        ScopeLevel.DISTRICT: org.district_id,
        ScopeLevel.CITY: None,
    }[level]
    with pytest.raises(RuleViolation) as caught:
        await tokens.create_token(session, role, Scope(level, scope_id))
    assert caught.value.code == code
    assert (await session.scalars(select(ApiToken))).first() is None


async def test_unknown_scope_is_refused(session: AsyncSession, org: OrgTree) -> None:
    with pytest.raises(RuleViolation) as caught:
        await tokens.create_token(session, Role.DISTRICT_ADMIN, Scope(ScopeLevel.DISTRICT, 999))
    assert caught.value.code == "unknown_scope"


async def test_city_admin_token(session: AsyncSession) -> None:
    _, plaintext = await tokens.create_token(session, Role.CITY_ADMIN, Scope.city())
    assert await tokens.authenticate(session, plaintext) == Principal(Role.CITY_ADMIN, Scope.city())


async def test_revoked_token_no_longer_authenticates(
    sessionmaker: async_sessionmaker[AsyncSession], org: OrgTree
) -> None:
    async with sessionmaker() as session:
        token, plaintext = await staff_token(session, org.xinsha_id)
        other, other_plain = await staff_token(session, org.tianan_id)
    async with sessionmaker() as session:
        assert await tokens.revoke(session, f"ms_{token.prefix}") is True
        assert await tokens.revoke(session, token.prefix.upper()) is True  # idempotent
        assert await tokens.revoke(session, "00000000") is False
    async with sessionmaker() as session:
        assert await tokens.authenticate(session, plaintext) is None
        assert await tokens.authenticate(session, other_plain) is not None
        listed = {t.prefix: t.revoked_at for t in await tokens.list_tokens(session)}
    assert listed[token.prefix] is not None and listed[other.prefix] is None


@pytest.mark.parametrize(
    "presented",
    ["", "Bearer x", "ms_", "ms_0000000_abc", "ms_zzzzzzzz_" + "a" * 43, "x" * 5000],
)
async def test_malformed_tokens_do_not_authenticate(session: AsyncSession, presented: str) -> None:
    assert await tokens.authenticate(session, presented) is None


async def test_a_changed_character_does_not_authenticate(
    session: AsyncSession, org: OrgTree
) -> None:
    _, plaintext = await staff_token(session, org.xinsha_id)
    last = "A" if plaintext[-1] != "A" else "B"
    assert await tokens.authenticate(session, plaintext[:-1] + last) is None


async def test_last_used_is_written_at_most_once_a_minute(
    sessionmaker: async_sessionmaker[AsyncSession], org: OrgTree
) -> None:
    async with sessionmaker() as session:
        token, plaintext = await staff_token(session, org.xinsha_id)
    assert token.last_used_at is None

    async def last_used(at: datetime) -> datetime | None:
        async with sessionmaker() as session:
            assert await tokens.authenticate(session, plaintext, now=at) is not None
        async with sessionmaker() as session:
            stored = await session.get(ApiToken, token.id)
            assert stored is not None
            return stored.last_used_at

    assert await last_used(T0) == T0
    assert await last_used(T0 + timedelta(seconds=30)) == T0
    assert await last_used(T0 + timedelta(seconds=59)) == T0
    assert await last_used(T0 + timedelta(seconds=61)) == T0 + timedelta(seconds=61)
