"""What officials read through their API: the suggestions within their scope.

A community's staff sees its community, a street official the street's communities, a
district admin the district's, a city admin all. Changes go through screening and council.
"""

from __future__ import annotations

import unicodedata

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage.models import Community, Street, Suggestion
from storage.rules import Role, RuleViolation
from storage.services import access
from storage.services.public import filter_conditions, number_forms
from storage.services.screening import scope_condition
from storage.services.suggestions import PublicFilter

SEQUENCE_DIGITS_MAX = 6  # a number's sequence, typed alone (新沙-2026-0007 as 7)

# Every official role reads what is in its scope; council members act in Telegram only.
READ_ROLES: frozenset[Role] = frozenset(
    {Role.COMMUNITY_STAFF, Role.STREET_OFFICIAL, Role.DISTRICT_ADMIN, Role.CITY_ADMIN}
)


def _check_role(principal: access.Principal) -> None:
    if principal.role not in READ_ROLES:
        raise RuleViolation("role_not_allowed", f"{principal.role.value} may not read this")


async def list_suggestions(
    session: AsyncSession,
    principal: access.Principal,
    filters: PublicFilter,
    *,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Suggestion], int]:
    """One page of the suggestions in the principal's scope, newest first, and the total.
    A community filter outside the scope is refused (`out_of_scope`), not silently empty."""
    _check_role(principal)
    if filters.community_id is not None:
        await access.require(session, principal, filters.community_id, READ_ROLES)
    conditions = [scope_condition(principal.scope), *filter_conditions(Suggestion, filters)]

    in_scope = (
        select(Suggestion)
        .join(Community, Community.id == Suggestion.community_id)
        .join(Street, Street.id == Community.street_id)
        .where(*conditions)
    )
    ids = in_scope.with_only_columns(Suggestion.id).subquery()
    total = int(await session.scalar(select(func.count()).select_from(ids)) or 0)
    query = (
        in_scope.options(
            selectinload(Suggestion.community)
            .selectinload(Community.street)
            .selectinload(Street.district)
        )
        .order_by(Suggestion.created_at.desc(), Suggestion.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list((await session.scalars(query)).all()), total


async def get_suggestion(
    session: AsyncSession, principal: access.Principal, suggestion_id: int
) -> Suggestion:
    """One suggestion, if it is in the principal's scope (`unknown_suggestion`,
    `out_of_scope` otherwise)."""
    _check_role(principal)
    suggestion = await session.get(
        Suggestion,
        suggestion_id,
        options=[
            selectinload(Suggestion.community)
            .selectinload(Community.street)
            .selectinload(Street.district)
        ],
        populate_existing=True,
    )
    if suggestion is None:
        raise RuleViolation("unknown_suggestion", "no such suggestion")
    await access.require(session, principal, suggestion.community_id, READ_ROLES)
    return suggestion


async def find_by_number(
    session: AsyncSession,
    principal: access.Principal,
    community_id: int,
    typed: str,
    *,
    year: int,
) -> Suggestion | None:
    """The community's suggestion with the number someone typed (full-width characters
    folded), or with its sequence alone ("7", "0007": `year`'s, the programme's current
    one): staff say the short form of their own community's numbers this year."""
    _check_role(principal)
    await access.require(session, principal, community_id, READ_ROLES)
    sequence = unicodedata.normalize("NFKC", typed).strip()
    query = select(Suggestion).where(Suggestion.community_id == community_id)
    if sequence.isascii() and sequence.isdigit() and len(sequence) <= SEQUENCE_DIGITS_MAX:
        query = query.where(Suggestion.number.endswith(f"-{year}-{int(sequence):04d}"))
    else:
        forms = number_forms(typed)
        if not forms:
            return None  # it cannot be a number at all
        query = query.where(Suggestion.number.in_(forms))
    query = query.order_by(Suggestion.created_at.desc(), Suggestion.id.desc()).limit(1)
    return (await session.scalars(query)).first()


__all__ = ["READ_ROLES", "find_by_number", "get_suggestion", "list_suggestions"]
