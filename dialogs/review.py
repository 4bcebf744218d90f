"""Screening (商议) in a staff member's private chat: /review shows the suggestions waiting for
the community one at a time, to accept as a candidate (correcting category and kind if need
be), reject with one of the programme's exclusion reasons and a note for the proposer, merge
into a duplicate, or skip for now; each through `storage.services.screening`.

Who may screen is the store's question (community staff, and the street, district and city
officials over their communities): the queue is what their roles cover. The FSM data holds
ids and small codes only; the card is read afresh from the store at every step, so what a
colleague did meanwhile is never overwritten. Every button names the suggestion it is about,
and a press about another one than the card in hand is stale.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards
from bot.callbacks import (
    KindChoice,
    ReviewAction,
    ReviewCategoryCb,
    ReviewCb,
    ReviewKindCb,
    ReviewMergeCb,
    ReviewReasonCb,
)
from bot.texts import (
    cap_warning,
    category_label,
    exclusion_reason_label,
    kind_label,
    local_date,
    map_url,
    over_cap,
    photos_line,
    quote,
    short,
    source_type_label,
    status_label,
    yuan,
)
from dialogs import suggestion as suggestion_dialog
from dialogs.common import (
    NOT_COMMAND,
    Reply,
    chat_of,
    choose_with_buttons_note,
    current_step,
    private_dialog,
    send,
    settle,
    stale,
    type_text_note,
)
from dialogs.org_picker import community_label
from dialogs.staff import failed_text, reasking, staff_principals
from storage import rules
from storage.models import Suggestion
from storage.rules import (
    Category,
    ExclusionReason,
    Kind,
    RuleViolation,
)
from storage.services import access, officials, screening
from storage.services.suggestions import PublicFilter
from storage.settings import Settings


class ReviewForm(StatesGroup):
    card = State()  # the suggestion with accept / correct / reject / merge / next
    category = State()  # correcting: the right category
    kind = State()  # correcting: the right kind, then accepted
    reason = State()  # rejecting: which exclusion reason
    note = State()  # rejecting: a note for the proposer
    confirm_reject = State()
    merge_target = State()  # merging: into which suggestion
    confirm_merge = State()


QUEUE_FETCH = 200
SKIPPED_KEPT = 500
MERGE_BUTTONS = 8
MERGE_SCAN = 100  # recent suggestions of the community looked at for the merge buttons
BUTTON_TITLE_MAX = 24
CARD_DESCRIPTION_MAX = 1500  # a card stays far below Telegram's 4,096 characters
# What a person may type for a suggestion number: 新沙-2026-0007, with any dash.
_DASHES = re.compile(r"[\s]*[-‐‑‒–—―－﹣][\s]*")


def is_dialog_state(raw_state: str | None) -> bool:
    return raw_state is not None and raw_state in ReviewForm.__all_states_names__


# --- who screens what ----------------------------------------------------------------------


async def screening_principals(session: AsyncSession, telegram_id: int) -> list[access.Principal]:
    """The person's roles that screen, narrowest scope first."""
    return await staff_principals(session, telegram_id, screening.SCREENING_ROLES)


async def load(
    session: AsyncSession, telegram_id: int, suggestion_id: int
) -> tuple[access.Principal, Suggestion] | None:
    """The suggestion, and the narrowest of the person's roles that covers it; None if it is
    gone or outside every scope they hold."""
    for principal in await screening_principals(session, telegram_id):
        try:
            return principal, await officials.get_suggestion(session, principal, suggestion_id)
        except RuleViolation as exc:
            if exc.code == "unknown_suggestion":
                return None
    return None


async def next_waiting(
    session: AsyncSession, principals: list[access.Principal], skipped: set[int]
) -> tuple[Suggestion | None, int]:
    """The oldest suggestion waiting in any of the scopes, and how many wait (not skipped)."""
    waiting: dict[int, Suggestion] = {}
    for principal in principals:
        for item in await screening.review_queue(
            session, principal, limit=QUEUE_FETCH + len(skipped)
        ):
            waiting[item.id] = item
    ordered = sorted(
        (s for s in waiting.values() if s.id not in skipped), key=lambda s: (s.created_at, s.id)
    )
    return (ordered[0] if ordered else None), len(ordered)


def not_staff_text() -> str:
    return _(
        "/review is for the staff of a community (and the street and district officials), "
        "who screen the residents' suggestions. If you are one of them, please ask for an "
        "invitation link. To suggest a project yourself, send /suggest."
    )


def gone_text() -> str:
    return _("That suggestion is no longer there for you to review.")


# --- texts -------------------------------------------------------------------------------


def named(item: Suggestion) -> str:
    """<b>新沙-2026-0007</b> «title», escaped."""
    return _("<b>{number}</b> “{title}”").format(
        number=quote(item.number), title=quote(short(item.title, 60))
    )


async def card_text(
    session: AsyncSession, item: Suggestion, settings: Settings, waiting: int | None
) -> str:
    if item.location_text:
        location = quote(item.location_text)
    elif item.latitude is not None and item.longitude is not None:
        shared = _("shared location ({latitude:.5f}, {longitude:.5f})").format(
            latitude=item.latitude, longitude=item.longitude
        )
        location = f'<a href="{quote(map_url(item.latitude, item.longitude))}">{shared}</a>'

    else:
        location = "—"
    description = item.description
    if len(description) > CARD_DESCRIPTION_MAX:
        description = description[: CARD_DESCRIPTION_MAX - 1] + "…"
    cost = (
        _("about ¥{amount}").format(amount=yuan(item.estimated_cost_fen))
        if item.estimated_cost_fen is not None
        else _("not specified")
    )
    heading = (
        _("Waiting for review ({count} waiting)").format(count=waiting)
        if waiting is not None
        else _("Waiting for review")
    )
    lines = [
        "<b>" + heading + "</b>",
        "",
        f"<b>{quote(item.number)}</b> · {status_label(item.status)}",
        _("Community: {value}").format(value=quote(await community_label(session, item.community))),
        _("Suggested as: {value}").format(value=source_type_label(item.source_type)),
        _("Category: {value}").format(value=category_label(item.category)),
        _("Kind: {value}").format(
            value=kind_label(item.kind) if item.kind is not None else _("not specified")
        ),
        _("Title: {value}").format(value=quote(item.title)),
        _("Description: {value}").format(value=quote(description)),
        _("Location: {value}").format(value=location),
        _("Rough cost: {value}").format(value=cost),
        *([cap_warning(item.kind)] if over_cap(item.kind, item.estimated_cost_fen) else []),
        _("Submitted on: {date}").format(date=local_date(item.created_at, settings.tz)),
        photos_line(len(item.photo_file_ids or [])),
    ]
    return "\n".join(lines)


def handled_text(number: str, status: rules.State | None) -> str:
    """Why a suggestion is no longer waiting for screening; `number` is HTML already."""
    if status is rules.State.WITHDRAWN:
        return _("{number} was withdrawn by its proposer.").format(number=number)
    return _("{number} has already been handled, perhaps by a colleague.").format(number=number)


def violation_text(exc: RuleViolation, number: str, status: rules.State | None = None) -> str:
    """What to say when the store refused; `number` is plain (a failed operation has rolled
    the session back, so the suggestion's attributes are not to be read afterwards), and
    `status` what the suggestion is now, when known."""
    number = quote(number)
    match exc.code:
        case "transition_not_allowed":
            return handled_text(number, status)
        case "unknown_suggestion":
            return _("That suggestion no longer exists.")
        case "out_of_scope" | "role_not_allowed" | "scope_mismatch":
            return _("You may not screen {number} (any more).").format(number=number)
        case "merge_into_self":
            return _("A suggestion cannot be merged into itself.")
        case "merge_other_community":
            return _("Only suggestions of the same community can be merged.")
        case "merge_target_inactive":
            return _("That suggestion is closed; merge only into one that is still open.")
        case "note_required":
            return _("For “Other reason” a note saying why is needed.")
        case "note_too_long":
            return _("That note is too long: at most {max} characters.").format(
                max=rules.REJECTION_NOTE_MAX
            )
    return failed_text(exc.code)


# --- steps -------------------------------------------------------------------------------


async def show_next(
    bot: Bot,
    chat_id: int,
    telegram_id: int,
    state: FSMContext,
    session: AsyncSession,
    settings: Settings,
    note: str | None = None,
    principals: list[access.Principal] | None = None,
) -> SendMessage:
    """The next suggestion waiting (after `note`), or that there is none: returned, for the
    handler to return as its reply. `principals`: the person's screening roles, if the
    caller has just read them."""
    data = await state.get_data()
    skipped = [int(i) for i in data.get("skipped") or []][-SKIPPED_KEPT:]
    prefix = f"{note}\n\n" if note else ""
    if principals is None:
        principals = await screening_principals(session, telegram_id)
    if not principals:
        await state.clear()
        return send(bot, chat_id, prefix + not_staff_text())
    item, waiting = await next_waiting(session, principals, set(skipped))
    if item is None:
        if skipped:
            text = _(
                "No other suggestion is waiting; you skipped {count} for now. "
                "Send /review to go through them again."
            ).format(count=len(skipped))
        else:
            text = _("🎉 No suggestion is waiting for review. Thank you!")
        await state.clear()
        return send(bot, chat_id, prefix + text)
    # The count is kept for the card shown again on "back" (as of when this one was taken).
    await state.set_data({"id": item.id, "skipped": skipped, "waiting": waiting})
    text = await card_text(session, item, settings, waiting)
    await state.set_state(ReviewForm.card)
    return send(bot, chat_id, prefix + text, keyboards.review_card_keyboard(item.id))


async def go(
    bot: Bot,
    chat_id: int,
    telegram_id: int,
    state: FSMContext,
    session: AsyncSession,
    settings: Settings,
    step: State,
    note: str | None = None,
) -> SendMessage:
    """Enter `step` and return its question about the suggestion in hand (after `note`), for
    the handler to return. A suggestion that is gone, or no longer waiting, is left for the
    next one."""
    data = await state.get_data()
    found = await load(session, telegram_id, int(data.get("id") or 0))
    if found is None or found[1].status not in screening.QUEUE_STATES:
        gone = (
            handled_text(quote(found[1].number), found[1].status)
            if found is not None
            else gone_text()
        )
        return await show_next(bot, chat_id, telegram_id, state, session, settings, gone)
    principal, item = found
    text, markup = await _prompt(session, principal, item, step, data, settings)
    await state.set_state(step)
    return send(bot, chat_id, f"{note}\n\n{text}" if note else text, markup)


async def ask(
    callback: CallbackQuery,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
    step: State,
    note: str | None = None,
) -> SendMessage:
    """`go` for the person who pressed a button."""
    who = callback.from_user.id
    return await go(bot, chat_of(callback), who, state, session, settings, step, note)


async def ask_next(
    callback: CallbackQuery,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
    note: str | None = None,
) -> SendMessage:
    """`show_next` for the person who pressed a button."""
    who = callback.from_user.id
    return await show_next(bot, chat_of(callback), who, state, session, settings, note)


async def _prompt(
    session: AsyncSession,
    principal: access.Principal,
    item: Suggestion,
    step: State,
    data: dict[str, Any],
    settings: Settings,
) -> tuple[str, InlineKeyboardMarkup]:
    if step == ReviewForm.category:
        text = _("What is the right category for {suggestion}?").format(suggestion=named(item))
        return text, keyboards.review_category_keyboard(item.id, item.category)
    if step == ReviewForm.kind:
        # The category just chosen is on the message above (what the press settled into).
        text = _(
            "And the kind of project? Your choice accepts {suggestion} for the council."
        ).format(suggestion=named(item))
        return text, keyboards.review_kind_keyboard(item.id, item.kind)
    if step == ReviewForm.reason:
        text = _(
            "Why is {suggestion} not accepted? Please choose the reason; the proposer will be "
            "told politely, in their language."
        ).format(suggestion=named(item))
        return text, keyboards.review_reason_keyboard(item.id)
    if step == ReviewForm.note:
        reason = ExclusionReason(data["reason"])
        if reason is ExclusionReason.OTHER:
            text = _(
                "Please write a short note for the proposer saying why (at most {max} "
                "characters). They will read it as you write it."
            ).format(max=rules.REJECTION_NOTE_MAX)
        else:
            text = _(
                "You may add a short note for the proposer (at most {max} characters), "
                "or tap “{skip}”. They will read it as you write it."
            ).format(max=rules.REJECTION_NOTE_MAX, skip=keyboards.skip_label())
        skippable = reason is not ExclusionReason.OTHER
        return text, keyboards.review_note_keyboard(item.id, skippable)
    if step == ReviewForm.confirm_reject:
        note = data.get("note")
        text = "\n".join(
            (
                _("Not accept {suggestion}?").format(suggestion=named(item)),
                _("Reason: {value}").format(value=exclusion_reason_label(data["reason"])),
                _("Note: {value}").format(value=quote(note) if note else "—"),
                "",
                _(
                    "The proposer will be told the reason and the note; the public board shows "
                    "the reason only, not the note."
                ),
            )
        )
        return text, keyboards.review_reject_confirm_keyboard(item.id)
    if step == ReviewForm.merge_target:
        targets = await merge_targets(session, principal, item)
        if targets:
            text = _(
                "Merge {suggestion} into which suggestion of the same community? Choose below, "
                "or type its number (for example {example})."
            ).format(suggestion=named(item), example=quote(targets[0].number))
        else:
            text = _(
                "Merge {suggestion} into which suggestion of the same community? No other "
                "open suggestion of the community is recent enough to list: please type its "
                "number (like {example})."
            ).format(suggestion=named(item), example=quote(item.number))
        buttons = [(t.id, f"{t.number} · {short(t.title, BUTTON_TITLE_MAX)}") for t in targets]
        return text, keyboards.review_merge_keyboard(item.id, buttons)
    if step == ReviewForm.confirm_merge:
        target = await _target(session, principal, int(data.get("into") or 0))
        into = named(target) if target is not None else "—"
        text = (
            _("Merge {suggestion} into {into}?").format(suggestion=named(item), into=into)
            + "\n\n"
            + _(
                "The proposers and followers of both will follow {number} from now on, "
                "and they will be told."
            ).format(number=quote(target.number) if target is not None else "—")
        )
        return text, keyboards.review_merge_confirm_keyboard(item.id)
    waiting = data.get("waiting")
    return await card_text(session, item, settings, waiting), keyboards.review_card_keyboard(
        item.id
    )


async def reask(
    bot: Bot,
    chat_id: int,
    telegram_id: int,
    state: FSMContext,
    session: AsyncSession,
    settings: Settings,
    note: str,
) -> SendMessage | None:
    """The current step's question again, after `note`; None outside the dialog."""
    step = await current_step(state, ReviewForm)
    if step is None:
        return None
    return await go(bot, chat_id, telegram_id, state, session, settings, step, note)


# --- merging: which suggestion -------------------------------------------------------------


async def merge_targets(
    session: AsyncSession, principal: access.Principal, item: Suggestion
) -> list[Suggestion]:
    """Recent open suggestions of the same community to offer as buttons, newest first."""
    found, _total = await officials.list_suggestions(
        session, principal, PublicFilter(community_id=item.community_id), limit=MERGE_SCAN
    )
    return [s for s in found if s.id != item.id and screening.open_to_merge(s)][:MERGE_BUTTONS]


def normalise_number(text: str) -> str:
    return _DASHES.sub("-", rules.clean_text(text)).replace(" ", "")


async def _target(
    session: AsyncSession, principal: access.Principal, target_id: int
) -> Suggestion | None:
    try:
        return await officials.get_suggestion(session, principal, target_id)
    except RuleViolation:
        return None


def target_problem(item: Suggestion, target: Suggestion | None) -> str | None:
    """Why `target` cannot take `item` in, or None if it can."""
    if target is None:
        return _("That suggestion is no longer there.")
    if target.id == item.id:
        return _("A suggestion cannot be merged into itself.")
    if target.community_id != item.community_id:
        return _("Only suggestions of the same community can be merged.")
    if not screening.open_to_merge(target):
        return _("{number} is “{status}”; merge only into a suggestion that is still open.").format(
            number=quote(target.number), status=status_label(target.status)
        )
    return None


# --- handlers ------------------------------------------------------------------------------


async def cmd_review(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
    raw_state: str | None,
) -> Reply:
    assert message.from_user is not None
    if suggestion_dialog.is_dialog_state(raw_state):
        return await suggestion_dialog.continue_reply(bot, message.chat.id, state, session)
    principals = await screening_principals(session, message.from_user.id)
    if not principals:
        return message.answer(not_staff_text())
    await state.set_data({"skipped": []})
    return await show_next(
        bot, message.chat.id, message.from_user.id, state, session, settings, principals=principals
    )


async def _in_hand(callback: CallbackQuery, suggestion_id: int, state: FSMContext) -> bool:
    """Whether the press is about the suggestion in hand; if not, it is answered as stale."""
    if await state.get_value("id") == suggestion_id:
        return True
    await stale(callback)
    return False


async def on_accept(
    callback: CallbackQuery,
    callback_data: ReviewCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    if not await _in_hand(callback, callback_data.id, state):
        return None
    return await _accept(callback, callback_data.id, state, session, bot, settings, None, None)


async def on_kind(
    callback: CallbackQuery,
    callback_data: ReviewKindCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    if not await _in_hand(callback, callback_data.id, state):
        return None
    raw_category = await state.get_value("category")
    category = Category(raw_category) if raw_category else None
    kind = None if callback_data.kind is KindChoice.SKIP else Kind(callback_data.kind.value)
    return await _accept(callback, callback_data.id, state, session, bot, settings, category, kind)


async def _accept(
    callback: CallbackQuery,
    suggestion_id: int,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
    category: Category | None,
    kind: Kind | None,
) -> SendMessage:
    found = await load(session, callback.from_user.id, suggestion_id)
    if found is None:
        await settle(callback)
        gone = violation_text(RuleViolation("unknown_suggestion", ""), "")
        return await ask_next(callback, state, session, bot, settings, gone)
    principal, item = found
    number = item.number
    try:
        done = await screening.accept(session, principal, item.id, category=category, kind=kind)
    except RuleViolation as exc:
        await settle(callback)
        if exc.code == "kind_required":  # the resident gave none: staff choose it first
            # The category goes with the kind: a correction's, or none (as the resident
            # chose); never one left over from a correction abandoned with ‹ Back.
            await state.update_data(category=category.value if category is not None else None)
            note = _(
                "First choose the kind of project: service and physical projects have "
                "different caps, and the street office applies them to every project."
            )
            return await ask(callback, state, session, bot, settings, ReviewForm.kind, note)
        problem = await refusal_text(session, principal, exc, suggestion_id, number)
        return await ask_next(callback, state, session, bot, settings, problem)
    result = _("✅ {suggestion} is accepted and awaits the council ({category} · {kind}).").format(
        suggestion=named(done),
        category=category_label(done.category),
        kind=kind_label(done.kind) if done.kind is not None else _("kind not specified"),
    )
    await settle(callback, result, answer=_("Accepted."))
    return await ask_next(callback, state, session, bot, settings)


async def on_category(
    callback: CallbackQuery,
    callback_data: ReviewCategoryCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    if not await _in_hand(callback, callback_data.id, state):
        return None
    await state.update_data(category=callback_data.category.value)
    await settle(
        callback, _("Category: {value}").format(value=category_label(callback_data.category))
    )
    return await ask(callback, state, session, bot, settings, ReviewForm.kind)


async def on_reason(
    callback: CallbackQuery,
    callback_data: ReviewReasonCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    if not await _in_hand(callback, callback_data.id, state):
        return None
    await state.update_data(reason=callback_data.reason.value, note=None)
    await settle(
        callback,
        _("Reason: {value}").format(value=exclusion_reason_label(callback_data.reason)),
    )
    return await ask(callback, state, session, bot, settings, ReviewForm.note)


async def on_note(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot, settings: Settings
) -> Reply:
    assert message.text is not None and message.from_user is not None
    note = rules.clean_text(message.text)
    who = message.from_user.id
    if not note:
        return await reask(
            bot, message.chat.id, who, state, session, settings, _("The note is empty.")
        )
    length = rules.char_length(note)
    if length > rules.REJECTION_NOTE_MAX:
        problem = _(
            "That note is {length} characters long, but at most {max} fit. "
            "Could you shorten it a little?"
        ).format(length=length, max=rules.REJECTION_NOTE_MAX)
        return await reask(bot, message.chat.id, who, state, session, settings, problem)
    await state.update_data(note=note)
    return await go(bot, message.chat.id, who, state, session, settings, ReviewForm.confirm_reject)


async def on_skip_note(
    callback: CallbackQuery,
    callback_data: ReviewCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    if not await _in_hand(callback, callback_data.id, state):
        return None
    if await state.get_value("reason") == ExclusionReason.OTHER.value:
        await settle(callback)
        note = _("For “Other reason” a note saying why is needed.")
        return await ask(callback, state, session, bot, settings, ReviewForm.note, note)
    await state.update_data(note=None)
    await settle(callback)
    return await ask(callback, state, session, bot, settings, ReviewForm.confirm_reject)


async def on_confirm_reject(
    callback: CallbackQuery,
    callback_data: ReviewCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    if not await _in_hand(callback, callback_data.id, state):
        return None
    data = await state.get_data()
    found = await load(session, callback.from_user.id, callback_data.id)
    if found is None or not data.get("reason"):
        await settle(callback)
        return await ask_next(callback, state, session, bot, settings, gone_text())
    principal, item = found
    number, reason = item.number, ExclusionReason(data["reason"])
    try:
        await screening.reject(session, principal, item.id, reason, data.get("note"))
    except RuleViolation as exc:
        await settle(callback)
        problem = await refusal_text(session, principal, exc, callback_data.id, number)
        if exc.code in {"note_required", "note_too_long"}:
            return await ask(callback, state, session, bot, settings, ReviewForm.note, problem)
        return await ask_next(callback, state, session, bot, settings, problem)
    result = _("❌ {suggestion}: not accepted ({reason}). The proposer will be told.").format(
        suggestion=named(item), reason=exclusion_reason_label(reason)
    )
    await settle(callback, result, answer=_("Done."))
    return await ask_next(callback, state, session, bot, settings)


async def _chose_target(
    chat_id: int,
    who: int,
    target_id: int | None,
    number: str | None,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    found = await load(session, who, int(await state.get_value("id") or 0))
    if found is None:
        return await show_next(bot, chat_id, who, state, session, settings, gone_text())
    principal, item = found
    if number is not None:
        target = await officials.find_by_number(
            session, principal, item.community_id, number, year=datetime.now(settings.tz).year
        )
        if target is None:
            problem = _("{community} has no suggestion numbered {number}.").format(
                community=quote(item.community.name), number=quote(number)
            )
            return await reask(bot, chat_id, who, state, session, settings, problem)
    else:
        target = await _target(session, principal, target_id or 0)
    refusal = target_problem(item, target)
    if refusal is not None or target is None:
        return await reask(bot, chat_id, who, state, session, settings, refusal or "")
    await state.update_data(into=target.id)
    return await go(bot, chat_id, who, state, session, settings, ReviewForm.confirm_merge)


async def on_merge_pick(
    callback: CallbackQuery,
    callback_data: ReviewMergeCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    if not await _in_hand(callback, callback_data.id, state):
        return None
    await settle(callback)
    return await _chose_target(
        chat_of(callback),
        callback.from_user.id,
        callback_data.into,
        None,
        state,
        session,
        bot,
        settings,
    )


async def on_merge_number(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot, settings: Settings
) -> Reply:
    assert message.text is not None and message.from_user is not None
    number = normalise_number(message.text)
    return await _chose_target(
        message.chat.id, message.from_user.id, None, number, state, session, bot, settings
    )


async def on_confirm_merge(
    callback: CallbackQuery,
    callback_data: ReviewCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    if not await _in_hand(callback, callback_data.id, state):
        return None
    found = await load(session, callback.from_user.id, callback_data.id)
    into_id = int(await state.get_value("into") or 0)
    if found is None or not into_id:
        await settle(callback)
        return await ask_next(callback, state, session, bot, settings, gone_text())
    principal, item = found
    number = item.number
    try:
        await screening.merge(session, principal, item.id, into_id)
    except RuleViolation as exc:
        await settle(callback)
        problem = await refusal_text(session, principal, exc, callback_data.id, number)
        if exc.code in {"merge_into_self", "merge_other_community", "merge_target_inactive"}:
            step = ReviewForm.merge_target
            return await ask(callback, state, session, bot, settings, step, problem)
        return await ask_next(callback, state, session, bot, settings, problem)
    target = await _target(session, principal, into_id)
    result = _(
        "🔗 {suggestion} is merged into {number}. The people following either will be told."
    ).format(suggestion=named(item), number=quote(target.number) if target is not None else "—")
    await settle(callback, result, answer=_("Merged."))
    return await ask_next(callback, state, session, bot, settings)


async def on_next(
    callback: CallbackQuery,
    callback_data: ReviewCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    if not await _in_hand(callback, callback_data.id, state):
        return None
    skipped = [int(i) for i in await state.get_value("skipped") or []]
    if callback_data.id not in skipped:
        skipped.append(callback_data.id)
    await state.update_data(skipped=skipped[-SKIPPED_KEPT:])
    await settle(callback)
    return await ask_next(callback, state, session, bot, settings)


async def refusal_text(
    session: AsyncSession,
    principal: access.Principal,
    exc: RuleViolation,
    suggestion_id: int,
    number: str,
) -> str:
    """violation_text, knowing what became of the suggestion when it had moved on."""
    status = None
    if exc.code == "transition_not_allowed":
        with contextlib.suppress(RuleViolation):
            status = (await officials.get_suggestion(session, principal, suggestion_id)).status
    return violation_text(exc, number, status)


def _opening(step: State, **forget: None) -> Callable[..., Awaitable[Reply]]:
    """The handler of a button of the card in hand that opens `step`, forgetting the answers
    named in `forget` (from an earlier visit)."""

    async def handler(
        callback: CallbackQuery,
        callback_data: ReviewCb,
        state: FSMContext,
        session: AsyncSession,
        bot: Bot,
        settings: Settings,
    ) -> Reply:
        if not await _in_hand(callback, callback_data.id, state):
            return None
        if forget:
            await state.update_data(forget)
        await settle(callback)
        return await ask(callback, state, session, bot, settings, step)

    return handler


on_correct = _opening(ReviewForm.category, category=None)
on_reject = _opening(ReviewForm.reason, reason=None, note=None)
on_merge = _opening(ReviewForm.merge_target, into=None)
on_back = _opening(ReviewForm.card, category=None)  # an unfinished correction is dropped
use_the_buttons = reasking(reask, choose_with_buttons_note)
text_expected = reasking(reask, type_text_note)


def create_router() -> Router:
    """/review is the way in; every other handler is bound to a step (see private_dialog).
    The gate (bot.gate) hands the dialog one update of a person at a time."""
    form = ReviewForm
    router, steps = private_dialog("review", form)
    router.message.register(cmd_review, Command("review"))
    text = F.text & NOT_COMMAND

    def action(step: State, handler: Any, kind: ReviewAction) -> None:
        steps.callback_query.register(handler, step, ReviewCb.filter(F.action == kind))

    action(form.card, on_accept, ReviewAction.ACCEPT)
    action(form.card, on_correct, ReviewAction.CORRECT)
    action(form.card, on_reject, ReviewAction.REJECT)
    action(form.card, on_merge, ReviewAction.MERGE)
    action(form.card, on_next, ReviewAction.NEXT)
    for step in (
        form.category,
        form.kind,
        form.reason,
        form.note,
        form.confirm_reject,
        form.merge_target,
        form.confirm_merge,
    ):
        action(step, on_back, ReviewAction.BACK)
    steps.callback_query.register(on_category, form.category, ReviewCategoryCb.filter())
    steps.callback_query.register(on_kind, form.kind, ReviewKindCb.filter())
    steps.callback_query.register(on_reason, form.reason, ReviewReasonCb.filter())
    action(form.note, on_skip_note, ReviewAction.SKIP_NOTE)
    steps.message.register(on_note, form.note, text)
    steps.message.register(text_expected, form.note, NOT_COMMAND)
    action(form.confirm_reject, on_confirm_reject, ReviewAction.CONFIRM_REJECT)
    steps.callback_query.register(on_merge_pick, form.merge_target, ReviewMergeCb.filter())
    steps.message.register(on_merge_number, form.merge_target, text)
    steps.message.register(text_expected, form.merge_target, NOT_COMMAND)
    action(form.confirm_merge, on_confirm_merge, ReviewAction.CONFIRM_MERGE)
    for step in (
        form.card,
        form.category,
        form.kind,
        form.reason,
        form.confirm_reject,
        form.confirm_merge,
    ):
        steps.message.register(use_the_buttons, step, NOT_COMMAND)
    return router
