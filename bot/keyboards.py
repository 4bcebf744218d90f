"""Keyboards of the bot and its dialogs. Labels go through gettext at the time of sending,
so a keyboard is always in the language of the person it is shown to."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

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
    ConveneAction,
    ConveneCb,
    CouncilBindCb,
    DraftField,
    EditCb,
    GroupLangCb,
    KindCb,
    KindChoice,
    LangCb,
    OrgLevel,
    PickCb,
    ReviewAction,
    ReviewCategoryCb,
    ReviewCb,
    ReviewKindCb,
    ReviewMergeCb,
    ReviewReasonCb,
    SourceCb,
    Step,
    StepCb,
    WithdrawCb,
    WithdrawStep,
)
from bot.texts import category_label, exclusion_reason_label, kind_label, source_type_label
from storage.rules import Category, ExclusionReason, Kind, SourceType

_Item = TypeVar("_Item")

ORG_PAGE_SIZE = 8

# Shown in the language's own name, whatever the current language is.
LANGUAGE_NAMES: dict[str, str] = {"zh": "中文", "en": "English"}


def _button(text: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data)


def inline(rows: Sequence[Sequence[InlineKeyboardButton]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[list(row) for row in rows])


def language_keyboard(choice: type[LangCb | GroupLangCb] = LangCb) -> InlineKeyboardMarkup:
    """中文 / English, for a person's own language (LangCb) or a group's (GroupLangCb)."""
    return inline(
        [[_button(name, choice(locale=code).pack()) for code, name in LANGUAGE_NAMES.items()]]
    )


def suggest_label() -> str:
    return _("Suggest a project")


def suggest_link_keyboard(url: str) -> InlineKeyboardMarkup:
    """The group's button that opens the private dialog for the group's community."""
    return inline([[InlineKeyboardButton(text=suggest_label(), url=url)]])


def private_chat_keyboard(url: str) -> InlineKeyboardMarkup:
    return inline([[InlineKeyboardButton(text=_("Open a private chat"), url=url)]])


def withdraw_keyboard(items: Sequence[tuple[int, str]]) -> InlineKeyboardMarkup:
    """Under /my: a button per suggestion that may still be withdrawn, (id, number)."""
    return inline(
        [
            [
                _button(
                    _("Withdraw {number}").format(number=number),
                    WithdrawCb(step=WithdrawStep.ASK, id=id_).pack(),
                )
            ]
            for id_, number in items
        ]
    )


def withdraw_confirm_keyboard(suggestion_id: int) -> InlineKeyboardMarkup:
    return inline(
        [
            [
                _button(
                    _("Yes, withdraw it"),
                    WithdrawCb(step=WithdrawStep.YES, id=suggestion_id).pack(),
                ),
                _button(
                    _("No, keep it"), WithdrawCb(step=WithdrawStep.NO, id=suggestion_id).pack()
                ),
            ]
        ]
    )


def _pages(count: int, size: int) -> int:
    """How many pages of `size` buttons `count` of them make (one at least)."""
    return max(1, -(-count // size))


def _page_of(
    items: Sequence[_Item], size: int, page: int, to_page: Callable[[int], str]
) -> tuple[Sequence[_Item], list[InlineKeyboardButton]]:
    """The items on `page` (clamped to the pages there are) and the row of « Previous /
    Next » buttons to its neighbours (`to_page` packs a page's callback data); no row when
    everything fits on one page."""
    pages = _pages(len(items), size)
    page = min(max(page, 0), pages - 1)
    paging: list[InlineKeyboardButton] = []
    if page > 0:
        paging.append(_button("« " + _("Previous"), to_page(page - 1)))
    if page < pages - 1:
        paging.append(_button(_("Next") + " »", to_page(page + 1)))
    return items[page * size : (page + 1) * size], paging


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
    shown, paging = _page_of(
        items,
        ORG_PAGE_SIZE,
        page,
        lambda to: factory(level=level, id=parent_id, page=to).pack(),
    )
    below = {
        OrgLevel.DISTRICTS: OrgLevel.STREETS,
        OrgLevel.STREETS: OrgLevel.COMMUNITIES,
        OrgLevel.COMMUNITIES: OrgLevel.PICK,
    }[level]
    buttons = [_button(name, factory(level=below, id=item_id).pack()) for item_id, name in shown]
    rows: list[list[InlineKeyboardButton]] = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    if paging:
        rows.append(paging)
    if back is not None:
        rows.append([_button("‹ " + _("Back"), factory(level=back[0], id=back[1]).pack())])
    return inline(rows)


def category_keyboard() -> InlineKeyboardMarkup:
    return inline([[_button(category_label(c), CategoryCb(category=c).pack())] for c in Category])


def source_keyboard() -> InlineKeyboardMarkup:
    """Who is making the suggestion: a resident, a unit, a social organisation, a
    representative (两代表一委员)."""
    return inline([[_button(source_type_label(s), SourceCb(source=s).pack())] for s in SourceType])


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


def keep_photos_label() -> str:
    return _("Keep these photos")


def photos_keyboard(have_photos: bool, *, keep: bool = False) -> InlineKeyboardMarkup:
    """The photo step's one button, which goes on: "done" once photos are sent, "skip" before;
    `keep` when editing the photos, where going on keeps the ones sent earlier."""
    if keep:
        return inline(
            [[_button("✅ " + keep_photos_label(), StepCb(step=Step.PHOTOS_KEEP).pack())]]
        )
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
        DraftField.SOURCE: _("Suggested as"),
    }
    return labels[field]


def edit_keyboard(fields: Sequence[DraftField]) -> InlineKeyboardMarkup:
    buttons = [_button(field_label(f), EditCb(field=f).pack()) for f in fields]
    rows: list[list[InlineKeyboardButton]] = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append([_button("‹ " + _("Back to the summary"), StepCb(step=Step.SUMMARY).pack())])
    return inline(rows)


# --- Screening (/review) --------------------------------------------------------------------


def back_label() -> str:
    return "‹ " + _("Back")


def review_accept_label() -> str:
    return "✅ " + _("Accept for the council")


def review_correct_label() -> str:
    return "✏️ " + _("Correct category/kind, then accept")


def review_reject_label() -> str:
    return "❌ " + _("Not accepted")


def review_merge_label() -> str:
    return "🔗 " + _("Merge")


def review_next_label() -> str:
    return "⏭ " + _("Next suggestion")


def review_card_keyboard(suggestion_id: int) -> InlineKeyboardMarkup:
    def cb(action: ReviewAction) -> str:
        return ReviewCb(action=action, id=suggestion_id).pack()

    return inline(
        [
            [_button(review_accept_label(), cb(ReviewAction.ACCEPT))],
            [_button(review_correct_label(), cb(ReviewAction.CORRECT))],
            [
                _button(review_reject_label(), cb(ReviewAction.REJECT)),
                _button(review_merge_label(), cb(ReviewAction.MERGE)),
            ],
            [_button(review_next_label(), cb(ReviewAction.NEXT))],
        ]
    )


def _review_back(suggestion_id: int) -> InlineKeyboardButton:
    return _button(back_label(), ReviewCb(action=ReviewAction.BACK, id=suggestion_id).pack())


def current_mark(label: str, current: bool) -> str:
    return f"{label} · " + _("current") if current else label


def review_category_keyboard(suggestion_id: int, current: Category) -> InlineKeyboardMarkup:
    rows = [
        [
            _button(
                current_mark(category_label(c), c is current),
                ReviewCategoryCb(id=suggestion_id, category=c).pack(),
            )
        ]
        for c in Category
    ]
    rows.append([_review_back(suggestion_id)])
    return inline(rows)


def keep_kind_label(current: Kind | None) -> str:
    return _("Keep: {kind}").format(
        kind=kind_label(current) if current is not None else _("not specified")
    )


def review_kind_keyboard(suggestion_id: int, current: Kind | None) -> InlineKeyboardMarkup:
    def cb(kind: KindChoice) -> str:
        return ReviewKindCb(id=suggestion_id, kind=kind).pack()

    return inline(
        [
            [
                _button(kind_label(Kind.SERVICE), cb(KindChoice.SERVICE)),
                _button(kind_label(Kind.PHYSICAL), cb(KindChoice.PHYSICAL)),
            ],
            # Keeping the resident's kind: only when they gave one (a candidate needs it).
            *([[_button(keep_kind_label(current), cb(KindChoice.SKIP))]] if current else []),
            [_review_back(suggestion_id)],
        ]
    )


def review_reason_keyboard(suggestion_id: int) -> InlineKeyboardMarkup:
    rows = [
        [
            _button(
                exclusion_reason_label(reason),
                ReviewReasonCb(id=suggestion_id, reason=reason).pack(),
            )
        ]
        for reason in ExclusionReason
    ]
    rows.append([_review_back(suggestion_id)])
    return inline(rows)


def review_note_keyboard(suggestion_id: int, skippable: bool) -> InlineKeyboardMarkup:
    rows: list[list[InlineKeyboardButton]] = []
    if skippable:
        skip = ReviewCb(action=ReviewAction.SKIP_NOTE, id=suggestion_id).pack()
        rows.append([_button("⏭ " + skip_label(), skip)])
    rows.append([_review_back(suggestion_id)])
    return inline(rows)


def review_confirm_reject_label() -> str:
    return "✅ " + _("Confirm: not accepted")


def review_reject_confirm_keyboard(suggestion_id: int) -> InlineKeyboardMarkup:
    confirm = ReviewCb(action=ReviewAction.CONFIRM_REJECT, id=suggestion_id).pack()
    return inline(
        [[_button(review_confirm_reject_label(), confirm)], [_review_back(suggestion_id)]]
    )


def review_merge_keyboard(
    suggestion_id: int, targets: Sequence[tuple[int, str]]
) -> InlineKeyboardMarkup:
    rows = [
        [_button(label, ReviewMergeCb(id=suggestion_id, into=target_id).pack())]
        for target_id, label in targets
    ]
    rows.append([_review_back(suggestion_id)])
    return inline(rows)


def review_confirm_merge_label() -> str:
    return "✅ " + _("Confirm the merge")


def review_merge_confirm_keyboard(suggestion_id: int) -> InlineKeyboardMarkup:
    confirm = ReviewCb(action=ReviewAction.CONFIRM_MERGE, id=suggestion_id).pack()
    return inline([[_button(review_confirm_merge_label(), confirm)], [_review_back(suggestion_id)]])


# --- Convening a council vote (/convene) ----------------------------------------------------

CANDIDATE_PAGE_SIZE = 8
# (hours from now, label) of the deadline buttons.
DEADLINE_CHOICES: tuple[int, ...] = (1, 24, 72, 168)


def convene_community_keyboard(items: Sequence[tuple[int, str]]) -> InlineKeyboardMarkup:
    buttons = [
        _button(label, ConveneCb(action=ConveneAction.COMMUNITY, id=item_id).pack())
        for item_id, label in items
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append([_button("✖️ " + _("Cancel"), ConveneCb(action=ConveneAction.CANCEL).pack())])
    return inline(rows)


def select_all_label() -> str:
    return _("Select all")


def select_none_label() -> str:
    return _("Select none")


def convene_next_label() -> str:
    return _("Next: the deadline") + " ›"


def candidate_pages(count: int) -> int:
    return _pages(count, CANDIDATE_PAGE_SIZE)


def convene_candidates_keyboard(
    items: Sequence[tuple[int, str]], selected: Collection[int], page: int
) -> InlineKeyboardMarkup:
    """One toggle (☑/☐) a row for the candidates of `page`, pages of eight, select all or
    none, and on to the deadline."""
    shown, paging = _page_of(
        items,
        CANDIDATE_PAGE_SIZE,
        page,
        lambda to: ConveneCb(action=ConveneAction.PAGE, id=to).pack(),
    )
    rows: list[list[InlineKeyboardButton]] = [
        [
            _button(
                ("☑ " if item_id in selected else "☐ ") + label,
                ConveneCb(action=ConveneAction.TOGGLE, id=item_id).pack(),
            )
        ]
        for item_id, label in shown
    ]
    if paging:
        rows.append(paging)
    everything = all(item_id in selected for item_id, _label in items)
    if everything:
        rows.append([_button(select_none_label(), ConveneCb(action=ConveneAction.NONE).pack())])
    else:
        rows.append([_button(select_all_label(), ConveneCb(action=ConveneAction.ALL).pack())])
    rows.append(
        [
            _button(convene_next_label(), ConveneCb(action=ConveneAction.DONE).pack()),
            _button("✖️ " + _("Cancel"), ConveneCb(action=ConveneAction.CANCEL).pack()),
        ]
    )
    return inline(rows)


def deadline_label(hours: int) -> str:
    if hours % 24 == 0 and hours >= 48:
        return _("{days} days").format(days=hours // 24)
    return _("{hours} hours").format(hours=hours) if hours != 1 else _("1 hour")


def convene_deadline_keyboard() -> InlineKeyboardMarkup:
    buttons = [
        _button(deadline_label(hours), ConveneCb(action=ConveneAction.HOURS, id=hours).pack())
        for hours in DEADLINE_CHOICES
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append([_button(back_label(), ConveneCb(action=ConveneAction.CANDIDATES).pack())])
    return inline(rows)


def convene_confirm_label() -> str:
    return "✅ " + _("Convene the vote")


def convene_summary_keyboard() -> InlineKeyboardMarkup:
    def cb(action: ConveneAction) -> str:
        return ConveneCb(action=action).pack()

    return inline(
        [
            [_button(convene_confirm_label(), cb(ConveneAction.CONFIRM))],
            [
                _button("✏️ " + _("Suggestions"), cb(ConveneAction.CANDIDATES)),
                _button("✏️ " + _("Deadline"), cb(ConveneAction.DEADLINE)),
            ],
            [_button("✖️ " + _("Cancel"), cb(ConveneAction.CANCEL))],
        ]
    )


# --- The council's group ----------------------------------------------------------------------


def council_bind_keyboard(items: Sequence[tuple[int, str]]) -> InlineKeyboardMarkup:
    return inline([[_button(label, CouncilBindCb(id=item_id).pack())] for item_id, label in items])
