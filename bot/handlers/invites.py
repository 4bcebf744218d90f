"""Invitation links (`/start i_<code>`): opening one in a private chat grants its role and says
so; and what each role can do here, for the greeting and /help.

The links are made with `minsheng invite create` (one use or N, optionally expiring); the
store checks and counts them (storage.services.invites.redeem).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aiogram.types import Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from sqlalchemy.ext.asyncio import AsyncSession

from bot.texts import quote
from dialogs.common import identity
from storage.rules import Role, RuleViolation
from storage.services import access, invites
from storage.services.access import Principal, Scope

STAFF_ROLES = frozenset(
    {Role.COMMUNITY_STAFF, Role.STREET_OFFICIAL, Role.DISTRICT_ADMIN, Role.CITY_ADMIN}
)


# What each role is, as given (first) and as taken back (second).
_ROLE_CHANGES: dict[Role, tuple[Any, Any]] = {
    Role.COMMUNITY_STAFF: (
        __("You are now one of the staff of {place}."),
        __("You are no longer one of the staff of {place}."),
    ),
    Role.COUNCIL_MEMBER: (
        __("You are now a member of the residents' council of {place}."),
        __("You are no longer a member of the residents' council of {place}."),
    ),
    Role.STREET_OFFICIAL: (
        __("You are now an official of {place}."),
        __("You are no longer an official of {place}."),
    ),
    Role.DISTRICT_ADMIN: (
        __("You are now an administrator of {place}."),
        __("You are no longer an administrator of {place}."),
    ),
    Role.CITY_ADMIN: (
        __("You are now an administrator for the whole city."),
        __("You are no longer an administrator for the whole city."),
    ),
}
_ANY_ROLE = (
    __("You now hold a role for {place}."),
    __("You no longer hold your role for {place}."),
)


def role_text(role: Role, place: str, *, withdrawn: bool = False) -> str:
    """You are now (with `withdrawn`, no longer) … of `place` (escaped here)."""
    given, taken = _ROLE_CHANGES.get(role, _ANY_ROLE)
    return str(taken if withdrawn else given).format(place=quote(place))


def staff_overview() -> str:
    return "\n".join(
        (
            _("/review — screen the residents' suggestions, one at a time"),
            _("/convene — put the suggestions the community accepted to the residents' council"),
            _("/bind council — (in the council's group) make it the council's group"),
        )
    )


def council_overview() -> str:
    return "\n".join(
        (
            _("/votes — the council votes open for you"),
            _(
                "The council's polls come to the council's group (or to this chat); "
                "only council members' answers count."
            ),
        )
    )


def roles_overview(principals: list[Principal]) -> str | None:
    """What the person's roles let them do here, or None for a resident."""
    return overview_of_roles({p.role for p in principals})


def overview_of_roles(roles: Collection[Role]) -> str | None:
    """What holding `roles` lets one do here, or None for a resident."""
    roles = frozenset(roles)
    parts: list[str] = []
    if roles & STAFF_ROLES:
        parts.append("<b>" + _("For community staff and officials") + "</b>\n" + staff_overview())
    if Role.COUNCIL_MEMBER in roles:
        parts.append("<b>" + _("For council members") + "</b>\n" + council_overview())
    return "\n\n".join(parts) if parts else None


async def person_roles(session: AsyncSession, telegram_id: int) -> list[Principal]:
    return await access.principals_of_telegram_user(session, telegram_id)


def refusal_text(code: str) -> str:
    match code:
        case "invite_unknown":
            return _(
                "This invitation link is not valid. Please ask the person who sent it for a "
                "new one."
            )
        case "invite_revoked":
            return _(
                "This invitation link has been withdrawn. Please ask the person who sent it "
                "for a new one."
            )
        case "invite_expired":
            return _(
                "This invitation link has expired. Please ask the person who sent it for a new one."
            )
        case "invite_used_up":
            return _(
                "This invitation link has already been used as often as it allows. Please ask "
                "the person who sent it for a new one."
            )
        case "invite_already_redeemed":
            return _(
                "You used this invitation link before, and the role it gave you has since been "
                "withdrawn. Please ask the person who sent it whether you should have it again."
            )
    return _("Sorry, this invitation link cannot be used ({code}).").format(code=quote(code))


async def redeem_invite(message: Message, code: str, session: AsyncSession) -> None:
    """Grant the invite's role to whoever opened it, and say which role, where."""
    assert message.from_user is not None
    held_before = set(await person_roles(session, message.from_user.id))
    try:
        grant = await invites.redeem(session, code, identity(message.from_user))
    except RuleViolation as exc:
        await message.answer(refusal_text(exc.code))
        return
    scope = Scope(grant.scope_level, grant.scope_id)
    place = await invites.scope_name(session, scope) or "—"
    principal = Principal(grant.role, scope, grant.person_id)
    lines = ["✅ " + role_text(grant.role, place)]
    if principal in held_before:
        lines.append(_("You already held this role; nothing has changed."))
    overview = roles_overview([principal])
    if overview:
        lines += ["", overview]
    lines += ["", _("Send /help to see everything I can do.")]
    await message.answer("\n".join(lines))
