"""Callback data of every inline button, with short prefixes: Telegram allows 64 bytes.

Buttons carry ids and small codes only, never text a person typed.
"""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData

from storage.rules import Category, ExclusionReason, SourceType


class OrgLevel(StrEnum):
    """A step in the district › street › community picker."""

    DISTRICTS = "d"  # show the districts (id unused)
    STREETS = "s"  # show the streets of district `id`
    COMMUNITIES = "c"  # show the communities of street `id`
    PICK = "k"  # community `id` chosen


class BindCb(CallbackData, prefix="bd"):
    """Binding a group to its community; only the group's admins' presses count."""

    level: OrgLevel
    id: int = 0
    page: int = 0


class KeepBindingCb(CallbackData, prefix="bk"):
    """/bind in a group already bound: keep the binding as it is (its "change" button is the
    picker's first step, a `BindCb`). Only the group's admins' presses count."""


class PickCb(CallbackData, prefix="pc"):
    """Choosing the community in the private suggestion dialog."""

    level: OrgLevel
    id: int = 0
    page: int = 0


class CategoryCb(CallbackData, prefix="ct"):
    category: Category


class KindChoice(StrEnum):
    SERVICE = "service"
    PHYSICAL = "physical"
    SKIP = "skip"


class KindCb(CallbackData, prefix="kd"):
    kind: KindChoice


class Step(StrEnum):
    PHOTOS_DONE = "pd"  # "Done" or "Skip" under the photos step: go on, keeping any sent
    PHOTOS_KEEP = "pk"  # editing the photos: go on with the ones sent before
    COST_SKIP = "cs"
    CONFIRM = "ok"
    EDIT = "ed"  # show the field menu
    CANCEL = "no"
    SUMMARY = "sm"  # back from the field menu to the summary


class StepCb(CallbackData, prefix="st"):
    step: Step


class DraftField(StrEnum):
    COMMUNITY = "community"
    CATEGORY = "category"
    TITLE = "title"
    DESCRIPTION = "description"
    LOCATION = "location"
    PHOTOS = "photos"
    KIND = "kind"
    SOURCE = "source"  # who suggests: a resident (the default), a unit, … (summary's edit only)


class EditCb(CallbackData, prefix="ef"):
    field: DraftField


class SourceCb(CallbackData, prefix="so"):
    """Who is making the suggestion (PROGRAMME.md: residents, units, social organisations,
    the representatives; recorded as the suggestion's source type)."""

    source: SourceType


class LangCb(CallbackData, prefix="lg"):
    locale: str


class GroupLangCb(CallbackData, prefix="gl"):
    """The language the bot speaks in a group (its admins choose it)."""

    locale: str


class WithdrawStep(StrEnum):
    ASK = "a"  # a button under /my: ask to confirm
    YES = "y"
    NO = "n"


class WithdrawCb(CallbackData, prefix="wd"):
    """The proposer withdrawing their suggestion `id` (its number is looked up, not carried)."""

    step: WithdrawStep
    id: int


# --- Screening (/review) ------------------------------------------------------------------
# Every screening button names the suggestion it is about: a press on the card of another
# suggestion than the one being reviewed now is stale.


class ReviewAction(StrEnum):
    ACCEPT = "a"
    CORRECT = "c"  # correct category and kind, then accept
    REJECT = "r"
    MERGE = "m"
    NEXT = "n"  # skip this one for now
    BACK = "b"  # back to the card
    SKIP_NOTE = "s"  # reject without a note
    CONFIRM_REJECT = "k"
    CONFIRM_MERGE = "j"


class ReviewCb(CallbackData, prefix="rv"):
    action: ReviewAction
    id: int  # the suggestion


class ReviewCategoryCb(CallbackData, prefix="rc"):
    id: int
    category: Category


class ReviewKindCb(CallbackData, prefix="rk"):
    id: int
    kind: KindChoice  # SKIP: keep the kind as it is


class ReviewReasonCb(CallbackData, prefix="rr"):
    id: int
    reason: ExclusionReason


class ReviewMergeCb(CallbackData, prefix="rm"):
    id: int  # the duplicate
    into: int  # the suggestion it is merged into


# --- Convening a council vote (/convene) --------------------------------------------------


class ConveneAction(StrEnum):
    COMMUNITY = "c"  # `id`: the community chosen
    TOGGLE = "t"  # `id`: the candidate (suggestion) toggled
    PAGE = "p"  # `id`: the page to show
    ALL = "a"  # select every candidate offered
    NONE = "z"  # select none
    DONE = "d"  # candidates chosen: on to the deadline
    HOURS = "h"  # `id`: the deadline, hours from now
    CANDIDATES = "b"  # back to the candidates
    DEADLINE = "e"  # back to the deadline
    CONFIRM = "k"
    CANCEL = "x"


class ConveneCb(CallbackData, prefix="cv"):
    action: ConveneAction
    id: int = 0


class CouncilBindCb(CallbackData, prefix="cg"):
    """Binding a group as a community's council group; only the community's staff's presses
    count."""

    id: int  # the community
