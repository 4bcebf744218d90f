"""Labels for the programme's vocabulary (categories, kinds, states, source types, exclusion
reasons, the council polls' choices) in the user's language, and small helpers for showing
what people typed, money and times.

The msgids are English; the Chinese catalogue carries the programme's official terms
(PROGRAMME.md), so a resident reads the words a Shenzhen community worker would use.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any, TypeGuard
from urllib.parse import quote as quote_url
from zoneinfo import ZoneInfo

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.text_decorations import html_decoration

from storage.rules import (
    FEN_PER_YUAN,
    KIND_CAP_FEN,
    Category,
    Choice,
    ExclusionReason,
    Kind,
    SourceType,
    State,
    exceeds_cap,
    format_yuan,
)

_CATEGORY: dict[Category, Any] = {
    Category.SAFETY: __("Remove safety hazards"),
    Category.ENVIRONMENT: __("Community environment"),
    Category.CULTURE_SPORTS: __("Culture, sports and recreation"),
    Category.CARE: __("Care for residents"),
}

_KIND: dict[Kind, Any] = {
    Kind.SERVICE: __("Service project"),
    Kind.PHYSICAL: __("Physical project"),
}

_STATE: dict[State, Any] = {
    State.SUBMITTED: __("Submitted"),
    State.UNDER_REVIEW: __("Under review"),
    State.CANDIDATE: __("Awaiting the council"),
    State.REJECTED: __("Not accepted"),
    State.MERGED: __("Merged"),
    State.COUNCIL_VOTE: __("Council voting"),
    State.RESOLVED_CANDIDATE: __("Community candidate project"),
    State.NOT_PASSED: __("Not passed"),
    State.DETERMINED: __("Determined by the street office"),
    State.DEFERRED: __("Deferred"),
    State.PUBLISHED: __("Published"),
    State.IMPLEMENTER_ASSIGNED: __("Implementer assigned"),
    State.STARTED: __("In progress"),
    State.COMPLETED: __("Completed"),
    State.ACCOUNTS_PUBLISHED: __("Final accounts published"),
    State.EVALUATED: __("Evaluated"),
    State.WITHDRAWN: __("Withdrawn"),
    State.CANCELLED: __("Cancelled"),
}

_SOURCE_TYPE: dict[SourceType, Any] = {
    SourceType.RESIDENT: __("Resident"),
    SourceType.UNIT: __("Unit in the community"),
    SourceType.SOCIAL_ORGANISATION: __("Social organisation"),
    SourceType.REPRESENTATIVE: __("Representative or committee member"),
}

# The programme's exclusion reasons (PROGRAMME.md, 实施内容), as a rejected proposer reads them.
_EXCLUSION_REASON: dict[ExclusionReason, Any] = {
    ExclusionReason.PROPERTY_MANAGEMENT: __(
        "The property management company or another party is responsible"
    ),
    ExclusionReason.GOVERNMENT_INVESTMENT: __("Duplicates a government investment project"),
    ExclusionReason.OUT_OF_SCOPE: __("Not one of the four kinds of micro-project"),
    ExclusionReason.OTHER: __("Other reason"),
}

# The council polls' options (rules.POLL_CHOICES), as a council member reads them.
_CHOICE: dict[Choice, Any] = {
    Choice.AGREE: __("Agree"),
    Choice.AGAINST: __("Against"),
    Choice.ABSTAIN: __("Abstain"),
}

assert set(_CATEGORY) == set(Category)
assert set(_KIND) == set(Kind)
assert set(_STATE) == set(State)
assert set(_SOURCE_TYPE) == set(SourceType)
assert set(_EXCLUSION_REASON) == set(ExclusionReason)
assert set(_CHOICE) == set(Choice)


def category_label(category: Category | str) -> str:
    return str(_CATEGORY[Category(category)])


def kind_label(kind: Kind | str) -> str:
    return str(_KIND[Kind(kind)])


def status_label(state: State | str) -> str:
    return str(_STATE[State(state)])


def source_type_label(source_type: SourceType | str) -> str:
    return str(_SOURCE_TYPE[SourceType(source_type)])


def exclusion_reason_label(reason: ExclusionReason | str) -> str:
    return str(_EXCLUSION_REASON[ExclusionReason(reason)])


def choice_label(choice: Choice | str) -> str:
    return str(_CHOICE[Choice(choice)])


def quote(text: str) -> str:
    """What a person typed (or an administrator imported), safe inside an HTML message."""
    return html_decoration.quote(text)


def short(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters (for a button, or a line of a list)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def yuan(fen: int) -> str:
    return format_yuan(fen)


def cap_yuan(cap_fen: int) -> str:
    return f"{cap_fen // FEN_PER_YUAN:,}"


def over_cap(kind: Kind | None, cost_fen: int | None) -> TypeGuard[Kind]:
    """An estimate above its kind's cap: allowed, but determining it needs a justification."""
    return kind is not None and cost_fen is not None and exceeds_cap(kind, cost_fen)


def cap_warning(kind: Kind) -> str:
    return _(
        "⚠️ Above the cap for this kind of project (¥{cap}): the street office may determine "
        "it only with a recorded justification."
    ).format(cap=cap_yuan(KIND_CAP_FEN[kind]))


def map_url(latitude: float, longitude: float) -> str:
    """A shared location on Amap (高德地图), which residents and staff in China use; Telegram's
    coordinates are WGS-84, which Amap is told."""
    return f"https://uri.amap.com/marker?position={longitude:.6f},{latitude:.6f}&coordinate=wgs84"


def board_suggestion_url(base: str, number: str) -> str:
    """A suggestion's public page on the board, under the service's public address `base`
    (settings.public_url). The number is one path segment, percent-encoded as the board's own
    links have it (新沙-2026-0007 → %E6%96%B0%E6%B2%99-2026-0007)."""
    return f"{base.rstrip('/')}/board/suggestions/{quote_url(number, safe='')}"


def board_anchor(board_base: str, number: str, label: str) -> str:
    """`label` (HTML) linking suggestion `number`'s page on the board."""
    href = html.escape(board_suggestion_url(board_base, number), quote=True)
    return f'<a href="{href}">{label}</a>'


def linked_number(board_base: str | None, number: str) -> str:
    """A suggestion's number as HTML, linking its page on the board when the board's address
    is known (settings.board_base)."""
    return board_anchor(board_base, number, quote(number)) if board_base else quote(number)


def local_date(moment: datetime, tz: ZoneInfo) -> str:
    """YYYY-MM-DD in the programme's time zone."""
    return moment.astimezone(tz).strftime("%Y-%m-%d")


def local_datetime(moment: datetime, tz: ZoneInfo) -> str:
    """YYYY-MM-DD HH:MM in the programme's time zone."""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def photos_line(count: int) -> str:
    """How many photos a suggestion has, for the resident's summary and the staff's card."""
    return _("Photos: {count}").format(count=count) if count else _("Photos: none")


# TIMEZONE values that are China Standard Time, which people know as Beijing time.
CHINA_TIME = frozenset({"Asia/Shanghai", "Asia/Chongqing", "Asia/Chungking", "Asia/Harbin", "PRC"})


def zone_name(timezone: str) -> str:
    """The programme's time zone as people name it: 北京时间 / Beijing time for China's,
    else its tz database name."""
    return _("Beijing time") if timezone in CHINA_TIME else timezone


def local_deadline(moment: datetime, tz: ZoneInfo) -> str:
    """A deadline as people read it, with its zone: 2026-11-30 18:03（北京时间）."""
    return _("{time} ({zone})").format(
        time=local_datetime(moment, tz), zone=quote(zone_name(tz.key))
    )


# Of a message's 4,096 characters: leaves room for the "…and N more." line.
LISTING_BUDGET = 3800


def listing(header: str, blocks: list[str], budget: int = LISTING_BUDGET) -> str:
    """A bold `header` and as many `blocks` as fit in one message, a blank line apart; the
    rest are counted in a last line ("…and 3 more.")."""
    text = "<b>" + header + "</b>"
    shown = 0
    for block in blocks:
        if len(text) + len(block) + 2 > budget:
            break
        text += "\n\n" + block
        shown += 1
    if shown < len(blocks):
        text += "\n\n" + _("…and {count} more.").format(count=len(blocks) - shown)
    return text
