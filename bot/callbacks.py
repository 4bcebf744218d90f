"""Callback data of every inline button, with short prefixes: Telegram allows 64 bytes.

Buttons carry ids and small codes only, never text a person typed.
"""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData

from storage.rules import Category


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


class EditCb(CallbackData, prefix="ef"):
    field: DraftField


class LangCb(CallbackData, prefix="lg"):
    locale: str
