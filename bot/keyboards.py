"""Keyboards of the bot and its dialogs. Labels go through gettext at the time of sending,
so a keyboard is always in the language of the person it is shown to."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from aiogram.utils.i18n import gettext as _

from bot.callbacks import (
    BindCb,
    CategoryCb,
    DraftField,
    EditCb,
    KindCb,
    KindChoice,
    LangCb,
    OrgLevel,
    PickCb,
    Step,
    StepCb,
)
from bot.texts import category_label, kind_label
from storage.rules import Category, Kind

ORG_PAGE_SIZE = 8

# Shown in the language's own name, whatever the current language is.
LANGUAGE_NAMES: dict[str, str] = {"zh": "中文", "en": "English"}


def _button(text: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data)


def inline(rows: Sequence[Sequence[InlineKeyboardButton]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[list(row) for row in rows])


def language_keyboard() -> InlineKeyboardMarkup:
    return inline(
        [[_button(name, LangCb(locale=code).pack()) for code, name in LANGUAGE_NAMES.items()]]
    )


def suggest_label() -> str:
    return _("Suggest a project")


def suggest_link_keyboard(url: str) -> InlineKeyboardMarkup:
    """The group's button that opens the private dialog for the group's community."""
    return inline([[InlineKeyboardButton(text=suggest_label(), url=url)]])


def private_chat_keyboard(url: str) -> InlineKeyboardMarkup:
    return inline([[InlineKeyboardButton(text=_("Open a private chat"), url=url)]])


def org_keyboard(
    factory: type[BindCb] | type[PickCb],
    level: OrgLevel,
    parent_id: int,
    items: Sequence[tuple[int, str]],
    page: int,
    back: tuple[OrgLevel, int] | None,
) -> InlineKeyboardMarkup:
    """One level of district › street › community: two buttons a row, pages of eight, and a
    way back up. `level` is what the items are; pressing one goes one level down."""
    pages = max(1, -(-len(items) // ORG_PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    shown = items[page * ORG_PAGE_SIZE : (page + 1) * ORG_PAGE_SIZE]
    below = {
        OrgLevel.DISTRICTS: OrgLevel.STREETS,
        OrgLevel.STREETS: OrgLevel.COMMUNITIES,
        OrgLevel.COMMUNITIES: OrgLevel.PICK,
    }[level]
    buttons = [_button(name, factory(level=below, id=item_id).pack()) for item_id, name in shown]
    rows: list[list[InlineKeyboardButton]] = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    paging: list[InlineKeyboardButton] = []
    if page > 0:
        paging.append(
            _button("« " + _("Previous"), factory(level=level, id=parent_id, page=page - 1).pack())
        )
    if page < pages - 1:
        paging.append(
            _button(_("Next") + " »", factory(level=level, id=parent_id, page=page + 1).pack())
        )
    if paging:
        rows.append(paging)
    if back is not None:
        rows.append([_button("‹ " + _("Back"), factory(level=back[0], id=back[1]).pack())])
    return inline(rows)


def category_keyboard() -> InlineKeyboardMarkup:
    return inline([[_button(category_label(c), CategoryCb(category=c).pack())] for c in Category])


def location_share_label() -> str:
    return "📍 " + _("Share location")


def location_type_label() -> str:
    return "⌨️ " + _("Type the address instead")


def location_keyboard() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text=location_share_label(), request_location=True)],
            [KeyboardButton(text=location_type_label())],
        ],
        resize_keyboard=True,
        one_time_keyboard=True,
        input_field_placeholder=_("Or type the address here"),
    )


def done_label() -> str:
    return _("Done")


def skip_label() -> str:
    return _("Skip")


def photos_keyboard(have_photos: bool) -> InlineKeyboardMarkup:
    label = "✅ " + done_label() if have_photos else "⏭ " + skip_label()
    return inline([[_button(label, StepCb(step=Step.PHOTOS_DONE).pack())]])


def kind_keyboard() -> InlineKeyboardMarkup:
    return inline(
        [
            [
                _button(kind_label(Kind.SERVICE), KindCb(kind=KindChoice.SERVICE).pack()),
                _button(kind_label(Kind.PHYSICAL), KindCb(kind=KindChoice.PHYSICAL).pack()),
            ],
            [_button("⏭ " + skip_label(), KindCb(kind=KindChoice.SKIP).pack())],
        ]
    )


def cost_keyboard() -> InlineKeyboardMarkup:
    return inline([[_button("⏭ " + skip_label(), StepCb(step=Step.COST_SKIP).pack())]])


def confirm_label() -> str:
    return _("Submit")


def summary_keyboard() -> InlineKeyboardMarkup:
    return inline(
        [
            [_button("✅ " + confirm_label(), StepCb(step=Step.CONFIRM).pack())],
            [
                _button("✏️ " + _("Edit"), StepCb(step=Step.EDIT).pack()),
                _button("✖️ " + _("Cancel"), StepCb(step=Step.CANCEL).pack()),
            ],
        ]
    )


def field_label(field: DraftField) -> str:
    labels = {
        DraftField.COMMUNITY: _("Community"),
        DraftField.CATEGORY: _("Category"),
        DraftField.TITLE: _("Title"),
        DraftField.DESCRIPTION: _("Description"),
        DraftField.LOCATION: _("Location"),
        DraftField.PHOTOS: _("Photos"),
        DraftField.KIND: _("Kind and cost"),
    }
    return labels[field]


def edit_keyboard(fields: Sequence[DraftField]) -> InlineKeyboardMarkup:
    buttons = [_button(field_label(f), EditCb(field=f).pack()) for f in fields]
    rows: list[list[InlineKeyboardButton]] = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append([_button("‹ " + _("Back to the summary"), StepCb(step=Step.SUMMARY).pack())])
    return inline(rows)
