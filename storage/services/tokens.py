"""Bearer tokens of the officials' API: a role in a scope, shown once, kept only as a hash.

A token reads `ms_<prefix>_<secret>`. The prefix names it in listings, on revocation and in
the audit trail of what it did (`ms_<prefix>`, see `public_name`); the secret is 256 random
bits, so a plain SHA-256 of the whole token is the right stored form (a slow password hash
protects guessable secrets, which these are not) and the token is found by its hash, with no
comparison of secrets in Python at all.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ApiToken, utcnow
from storage.rules import Role, RuleViolation
from storage.services.access import Principal, Scope, check_grantable
from storage.services.invites import check_scope_exists

TOKEN_PREFIX = "ms_"
PREFIX_LENGTH = 8
# Council members act in Telegram only (their votes are polls): no API token for them.
TOKEN_ROLES: frozenset[Role] = frozenset(
    {Role.COMMUNITY_STAFF, Role.STREET_OFFICIAL, Role.DISTRICT_ADMIN, Role.CITY_ADMIN}
)
# last_used_at is for spotting dead tokens, not an access log: one write a minute at most.
LAST_USED_RESOLUTION = timedelta(minutes=1)
LABEL_MAX = 255

_TOKEN_RE = re.compile(r"^ms_([0-9a-f]{8})_([A-Za-z0-9_-]{20,128})$")


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def public_name(prefix: str) -> str:
    """How a token is named where its holder's actions are recorded: `ms_1a2b3c4d`, its
    public prefix only (the secret is never kept, and the hash is never shown)."""
    return f"{TOKEN_PREFIX}{_normalise_prefix(prefix)}"


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A presented token that is valid: the principal it stands for, and its public name."""

    principal: Principal
    token: str  # `ms_<prefix>`, for the audit trail


def _normalise_prefix(prefix: str) -> str:
    """`ab12cd34`, `ms_ab12cd34` or a whole token: the eight hex characters."""
    text = prefix.strip().removeprefix(TOKEN_PREFIX)
    return text.split("_", 1)[0].lower()


async def create_token(
    session: AsyncSession, role: Role, scope: Scope, label: str | None = None
) -> tuple[ApiToken, str]:
    """A new token for `role` in `scope`, and its plaintext (to be shown once). Commits."""
    if role not in TOKEN_ROLES:
        raise RuleViolation(
            "token_role_not_allowed",
            f"{role.value} cannot hold an API token; roles: "
            + ", ".join(sorted(r.value for r in TOKEN_ROLES)),
        )
    check_grantable(role, scope)
    await check_scope_exists(session, scope)
    label = (label or "").strip() or None
    if label is not None and len(label) > LABEL_MAX:
        raise RuleViolation("label_length", f"a label is at most {LABEL_MAX} characters")
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    while await find_token(session, prefix) is not None:  # a clash is one in four billion
        prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    plaintext = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        prefix=prefix,
        token_hash=hash_token(plaintext),
        role=role,
        scope_level=scope.level,
        scope_id=scope.id,
        label=label,
    )
    session.add(token)
    await session.commit()
    return token, plaintext


async def find_token(session: AsyncSession, prefix: str) -> ApiToken | None:
    return (
        await session.scalars(select(ApiToken).where(ApiToken.prefix == _normalise_prefix(prefix)))
    ).first()


async def revoke(session: AsyncSession, prefix: str, *, now: datetime | None = None) -> bool:
    """Revoke the token with this prefix (idempotent). False when there is none. Commits."""
    token = await find_token(session, prefix)
    if token is None:
        return False
    if token.revoked_at is None:
        token.revoked_at = now or utcnow()
        await session.commit()
    return True


async def list_tokens(session: AsyncSession) -> list[ApiToken]:
    return list(
        (await session.scalars(select(ApiToken).order_by(ApiToken.created_at, ApiToken.id))).all()
    )


async def authenticate(
    session: AsyncSession, plaintext: str, *, now: datetime | None = None
) -> Principal | None:
    """The principal a presented token stands for, or None (malformed, unknown, revoked)."""
    found = await authenticate_token(session, plaintext, now=now)
    return None if found is None else found.principal


async def authenticate_token(
    session: AsyncSession, plaintext: str, *, now: datetime | None = None
) -> Authenticated | None:
    """The principal a presented token stands for and the token's public name, or None
    (malformed, unknown, revoked).

    Records when it was last used, at most once a minute, in its own small commit (the
    caller's request has not written anything yet when it authenticates)."""
    if not _TOKEN_RE.match(plaintext):
        return None
    token = (
        await session.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext)))
    ).first()
    if token is None or token.revoked_at is not None:
        return None
    now = now or utcnow()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        # Conditional, so replicas serving the same token at once write it once.
        await session.execute(
            update(ApiToken)
            .where(
                ApiToken.id == token.id,
                or_(
                    ApiToken.last_used_at.is_(None),
                    ApiToken.last_used_at <= now - LAST_USED_RESOLUTION,
                ),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    return Authenticated(
        Principal(token.role, Scope(token.scope_level, token.scope_id)), public_name(token.prefix)
    )


__all__ = [
    "TOKEN_ROLES",
    "Authenticated",
    "authenticate",
    "authenticate_token",
    "create_token",
    "find_token",
    "hash_token",
    "list_tokens",
    "public_name",
    "revoke",
]
