"""The district › street › community picker, shared by group binding and the suggestion
dialog: one message edited in place as the person goes down (and back up) the tree."""

from __future__ import annotations

from dataclasses import dataclass

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import BindCb, OrgLevel, PickCb
from bot.keyboards import org_keyboard
from bot.texts import quote
from storage.models import Community
from storage.services import org, public
from storage.services.public import PublicCommunity

# Ids arrive in deep links and button data: beyond the column's range they name nothing
# (and PostgreSQL would refuse the comparison rather than find no row).
MAX_ID = 2**31 - 1


def plausible_id(value: int) -> bool:
    return 1 <= value <= MAX_ID


async def get_community(session: AsyncSession, community_id: int) -> Community | None:
    if not plausible_id(community_id):
        return None
    return await org.get_community(session, community_id)


async def get_community_names(session: AsyncSession, community_id: int) -> PublicCommunity | None:
    """The community with its street's and district's names (one query), for a deep link or a
    pick: enough to say which community it is and to label it, without loading the rows."""
    if not plausible_id(community_id):
        return None
    return await public.get_community(session, community_id)


@dataclass(frozen=True, slots=True)
class PickerView:
    text: str
    markup: InlineKeyboardMarkup | None
    empty: bool = False


def community_path(district: str, street: str, community: str | None = None) -> str:
    """District › street (› community), escaped for an HTML message."""
    parts = [district, street] + ([community] if community else [])
    return " › ".join(quote(part) for part in parts)


async def community_names(session: AsyncSession, community: Community) -> tuple[str, str, str]:
    """(district, street, community) names, plain, in one query (the relationships may not be
    loaded on an object already in the session)."""
    names = await public.get_community(session, community.id)
    if names is None:
        return "", "", community.name
    return names.district, names.street, names.name


def names_label(district: str, street: str, community: str) -> str:
    """福田区 › 沙头街道 › 新沙社区, plain (escape it to show it)."""
    return " › ".join((district, street, community))


def label_of(names: PublicCommunity) -> str:
    return names_label(names.district, names.street, names.name)


async def community_label(session: AsyncSession, community: Community) -> str:
    """福田区 › 沙头街道 › 新沙社区, plain (escape it to show it)."""
    return names_label(*await community_names(session, community))


async def render_level(
    session: AsyncSession,
    factory: type[BindCb] | type[PickCb],
    level: OrgLevel,
    parent_id: int,
    page: int,
    heading: str,
) -> PickerView | None:
    """The text and buttons of one level, under `heading`; None if the parent vanished."""
    if level is OrgLevel.DISTRICTS:
        districts = await org.list_districts(session)
        if not districts:
            return PickerView(heading + "\n\n" + _no_communities(), None, empty=True)
        items = [(d.id, d.name) for d in districts]
        text = heading + "\n\n" + _("Choose the district:")
        return PickerView(text, org_keyboard(factory, level, 0, items, page, None))
    if not plausible_id(parent_id):
        return None
    if level is OrgLevel.STREETS:
        district = await org.get_district(session, parent_id)
        if district is None:
            return None
        streets = await org.list_streets(session, district.id)
        items = [(s.id, s.name) for s in streets]
        text = (
            heading
            + "\n\n"
            + _("Choose the street in {district}:").format(district=quote(district.name))
        )
        back = (OrgLevel.DISTRICTS, 0)
        return PickerView(text, org_keyboard(factory, level, district.id, items, page, back))
    if level is OrgLevel.COMMUNITIES:
        street = await org.get_street(session, parent_id)
        if street is None:
            return None
        communities = await org.list_communities(session, street.id)
        items = [(c.id, c.name) for c in communities]
        text = (
            heading
            + "\n\n"
            + _("Choose the community in {path}:").format(
                path=community_path(street.district.name, street.name)
            )
        )
        back = (OrgLevel.STREETS, street.district_id)
        return PickerView(text, org_keyboard(factory, level, street.id, items, page, back))
    return None


def _no_communities() -> str:
    return _(
        "No communities have been set up yet, so there is nothing to choose from. "
        "Please try again later."
    )
