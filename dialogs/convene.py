"""Convening a council vote (决议) from a staff member's private chat: /convene › community (when
the person's roles cover several with candidates) › candidates (toggles, pages of eight) ›
deadline › summary › `storage.services.council.convene`, after which the process's poll
sender (`council_poll_sender` in the dispatcher's workflow data) sends the native polls to
the council's group, or to each member privately.

The FSM data holds ids only: the community, the candidates chosen, the page, the deadline as
an ISO instant. The candidates are read afresh at every step, so one that a colleague put to
a vote meanwhile simply drops out of the list; the store checks everything again anyway.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards
from bot.callbacks import ConveneAction, ConveneCb
from bot.polls import start_sending
from bot.texts import LISTING_BUDGET, local_deadline, over_cap, quote, short, zone_name
from dialogs import suggestion as suggestion_dialog
from dialogs.common import (
    NOT_COMMAND,
    Reply,
    chat_of,
    choose_with_buttons_note,
    close_keyboard,
    current_step,
    private_dialog,
    send,
    settle,
    stale,
)
from dialogs.org_picker import get_community
from dialogs.staff import failed_text, reasking, staff_principals
from storage import rules
from storage.models import Community, Suggestion, utcnow
from storage.rules import RuleViolation
from storage.rules import State as Status
from storage.services import access, chats, council, officials
from storage.services.suggestions import PublicFilter
from storage.settings import Settings

log = logging.getLogger(__name__)

PollSender = Callable[[int], Any]


class ConveneForm(StatesGroup):
    community = State()
    candidates = State()
    deadline = State()
    summary = State()


CANDIDATES_FETCH = 500
BUTTON_TITLE_MAX = 22
NUMBER_LENGTH = 18  # a long suggestion number: 香蜜湖景田北-2026-0001
_DEADLINE_RE = re.compile(
    r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?\s+(\d{1,2})\s*[:：]\s*(\d{2})$"
)


def is_dialog_state(raw_state: str | None) -> bool:
    return raw_state is not None and raw_state in ConveneForm.__all_states_names__


# --- who convenes where ----------------------------------------------------------------------


async def convening_principals(session: AsyncSession, telegram_id: int) -> list[access.Principal]:
    return await staff_principals(session, telegram_id, council.CONVENE_ROLES)


async def candidates_by_community(
    session: AsyncSession, principals: list[access.Principal]
) -> dict[int, list[Suggestion]]:
    """The suggestions awaiting the council (待议事会讨论) in the person's scopes, oldest first."""
    found: dict[int, Suggestion] = {}
    for principal in principals:
        page, _total = await officials.list_suggestions(
            session,
            principal,
            PublicFilter(status=Status.CANDIDATE),
            limit=CANDIDATES_FETCH,
        )
        for item in page:
            found[item.id] = item
    grouped: dict[int, list[Suggestion]] = {}
    for item in sorted(found.values(), key=lambda s: (s.created_at, s.id)):
        grouped.setdefault(item.community_id, []).append(item)
    return grouped


async def candidates_of(
    session: AsyncSession, principal: access.Principal, community_id: int
) -> list[Suggestion]:
    page, _total = await officials.list_suggestions(
        session,
        principal,
        PublicFilter(community_id=community_id, status=Status.CANDIDATE),
        limit=CANDIDATES_FETCH,
    )
    return sorted(page, key=lambda s: (s.created_at, s.id))


def not_staff_text() -> str:
    return _(
        "/convene is for the staff of a community (and the street and district officials), "
        "who put the suggestions the community accepted to the residents' council. If you "
        "are one of them, please ask for an invitation link."
    )


def council_empty_text(community: str) -> str:
    return _(
        "The residents' council of {community} has no members yet, so there is nobody to "
        "vote. Invite the members first: an administrator creates an invitation link with "
        "<code>minsheng invite create --role council_member --scope {community} --uses 30</code> "
        "and sends it to them."
    ).format(community=quote(community))


# --- steps -------------------------------------------------------------------------------


async def _principal(
    session: AsyncSession, telegram_id: int, community_id: int
) -> access.Principal | None:
    return await access.principal_for(session, telegram_id, community_id, council.CONVENE_ROLES)


async def _in_reach(
    session: AsyncSession, telegram_id: int, data: dict[str, Any]
) -> tuple[access.Principal, Community] | None:
    """The person's role over the community of the conversation's `data`, and the community;
    None if it is out of their reach (or gone)."""
    community_id = int(data.get("community_id") or 0)
    principal = await _principal(session, telegram_id, community_id)
    community = await get_community(session, community_id)
    if principal is None or community is None:
        return None
    return principal, community


def candidates_text(
    community: Community, items: list[Suggestion], selected: set[int], page: int
) -> str:
    pages = keyboards.candidate_pages(len(items))
    page = min(max(page, 0), pages - 1)
    size = keyboards.CANDIDATE_PAGE_SIZE
    shown = items[page * size : (page + 1) * size]
    lines = [
        "<b>" + _("Council vote · {community}").format(community=quote(community.name)) + "</b>",
        "",
        _(
            "Choose the suggestions to put to the residents' council ({chosen} of {total} "
            "chosen). Each gets its own poll."
        ).format(chosen=len(selected), total=len(items)),
        "",
    ]
    lines += [
        ("☑ " if item.id in selected else "☐ ")
        + f"<b>{quote(item.number)}</b> {quote(short(item.title, 60))}"
        + (" ⚠️" if over_cap(item.kind, item.estimated_cost_fen) else "")
        for item in shown
    ]
    if any(over_cap(item.kind, item.estimated_cost_fen) for item in shown):
        lines += ["", _("⚠️ The resident's estimate is above the cap for its kind of project.")]
    if pages > 1:
        lines += ["", _("Page {page} of {pages}").format(page=page + 1, pages=pages)]
    return "\n".join(lines)


async def candidates_view(
    session: AsyncSession, telegram_id: int, state: FSMContext
) -> tuple[str, InlineKeyboardMarkup] | None:
    """The candidates step as it stands; None if the community is out of reach."""
    data = await state.get_data()
    found = await _in_reach(session, telegram_id, data)
    if found is None:
        return None
    principal, community = found
    items = await candidates_of(session, principal, community.id)
    offered = {item.id for item in items}
    selected = [i for i in (int(x) for x in data.get("selected") or []) if i in offered]
    page = min(max(int(data.get("page") or 0), 0), keyboards.candidate_pages(len(items)) - 1)
    await state.update_data(selected=selected, page=page)
    buttons = [(item.id, f"{item.number} {short(item.title, BUTTON_TITLE_MAX)}") for item in items]
    text = candidates_text(community, items, set(selected), page)
    return text, keyboards.convene_candidates_keyboard(buttons, set(selected), page)


def deadline_prompt(settings: Settings) -> str:
    return (
        "<b>"
        + _("Deadline")
        + "</b>\n\n"
        + _(
            "Until when may the council vote? Choose below, or type a date and time as "
            "YYYY-MM-DD HH:MM ({zone}), at most {days} days from now. The vote also "
            "closes as soon as every member has voted."
        ).format(zone=quote(zone_name(settings.timezone)), days=rules.MAX_VOTE_DAYS)
    )


async def summary_view(
    session: AsyncSession, telegram_id: int, state: FSMContext, settings: Settings
) -> str | None:
    data = await state.get_data()
    found = await _in_reach(session, telegram_id, data)
    if found is None:
        return None
    principal, community = found
    items = {item.id: item for item in await candidates_of(session, principal, community.id)}
    chosen = [items[i] for i in (int(x) for x in data.get("selected") or []) if i in items]
    closes_at = datetime.fromisoformat(str(data["closes_at"]))
    members = len(await access.council_members(session, community.id))
    group = await chats.council_chat(session, community.id)
    if group is not None:
        where = _("to the council's group “{title}”").format(title=quote(group.title or "—"))
    else:
        where = _("to each member in a private chat with me (no council group is linked)")
    head = [
        "<b>" + _("Please check the council vote") + "</b>",
        "",
        _("Community: {value}").format(value=quote(community.name)),
        _("Suggestions ({count}):").format(count=len(chosen)),
    ]
    tail = [
        _("Deadline: {value}").format(value=local_deadline(closes_at, settings.tz)),
        _("Council members: {count}").format(count=members),
        _(
            "Rules: more than {quorum}% of the members must vote, and a suggestion passes with "
            "more than {threshold}% of the votes cast agreeing."
        ).format(quorum=community.council_quorum_pct, threshold=community.council_threshold_pct),
        _("The polls go {where}.").format(where=where),
    ]
    # Every candidate on its line, in one message: titles are cut to what leaves room for
    # all of them (50 with long numbers would not fit Telegram's 4,096 characters whole).
    room = LISTING_BUDGET - sum(len(line) + 1 for line in head + tail)
    title_max = min(60, room // max(1, len(chosen)) - len("· <b></b> \n") - NUMBER_LENGTH)
    while True:
        listed = [
            f"· <b>{quote(item.number)}</b> {quote(short(item.title, title_max))}"
            for item in chosen
        ]
        text = "\n".join(head + listed + tail)
        # Telegram counts UTF-16 units (an emoji is two); the markup's tags are not counted.
        if rules.utf16_len(text) <= LISTING_BUDGET or title_max <= 4:
            return text
        title_max -= 4


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
    """Enter `step` and return its question (after `note`), for the handler to return."""
    prefix = f"{note}\n\n" if note else ""
    markup: InlineKeyboardMarkup
    if step == ConveneForm.candidates:
        view = await candidates_view(session, telegram_id, state)
        if view is None:
            return await _out_of_reach(bot, chat_id, state, prefix)
        text, markup = view
    elif step == ConveneForm.deadline:
        text, markup = deadline_prompt(settings), keyboards.convene_deadline_keyboard()
    else:
        summary = await summary_view(session, telegram_id, state, settings)
        if summary is None:
            return await _out_of_reach(bot, chat_id, state, prefix)
        text, markup = summary, keyboards.convene_summary_keyboard()
    await state.set_state(step)
    return send(bot, chat_id, prefix + text, markup)


async def _out_of_reach(bot: Bot, chat_id: int, state: FSMContext, prefix: str) -> SendMessage:
    await state.clear()
    text = _("You may not convene a vote for this community (any more).")
    return send(bot, chat_id, prefix + text)


async def reask(
    bot: Bot,
    chat_id: int,
    telegram_id: int,
    state: FSMContext,
    session: AsyncSession,
    settings: Settings,
    note: str,
) -> SendMessage | None:
    """The current step's question again, after `note` (at the community step, whose buttons
    are still there, only the note); None outside the dialog."""
    step = await current_step(state, ConveneForm)
    if step == ConveneForm.community:
        return send(bot, chat_id, note)
    if step is None:
        return None
    return await go(bot, chat_id, telegram_id, state, session, settings, step, note)


async def start_for(
    bot: Bot,
    chat_id: int,
    telegram_id: int,
    state: FSMContext,
    session: AsyncSession,
    settings: Settings,
    community_id: int,
) -> SendMessage:
    community = await get_community(session, community_id)
    if community is None:
        return await _out_of_reach(bot, chat_id, state, "")
    if not await access.council_members(session, community_id):
        await state.clear()
        return send(bot, chat_id, council_empty_text(community.name))
    await state.set_data({"community_id": community_id, "selected": [], "page": 0})
    return await go(bot, chat_id, telegram_id, state, session, settings, ConveneForm.candidates)


# --- deadline ------------------------------------------------------------------------------


def parse_deadline(text: str, settings: Settings) -> datetime | None:
    """`YYYY-MM-DD HH:MM` in the programme's time zone (also with / or . and a full-width
    colon); None if it is not one."""
    match = _DEADLINE_RE.match(rules.clean_text(text))
    if match is None:
        return None
    year, month, day, hour, minute = (int(part) for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, tzinfo=settings.tz)
    except ValueError:
        return None


def deadline_problem(closes_at: datetime, now: datetime) -> str | None:
    if closes_at <= now:
        return deadline_passed_text()
    if closes_at > now + timedelta(days=rules.MAX_VOTE_DAYS):
        return deadline_too_far_text()
    return None


def deadline_passed_text() -> str:
    return _("That time has already passed. Please choose a time in the future.")


def deadline_too_far_text() -> str:
    return _("A vote may last at most {days} days. Please choose an earlier time.").format(
        days=rules.MAX_VOTE_DAYS
    )


# --- handlers ------------------------------------------------------------------------------


async def cmd_convene(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
    raw_state: str | None,
) -> Reply:
    assert message.from_user is not None
    who = message.from_user.id
    if suggestion_dialog.is_dialog_state(raw_state):
        return await suggestion_dialog.continue_reply(bot, message.chat.id, state, session)
    principals = await convening_principals(session, who)
    if not principals:
        return message.answer(not_staff_text())
    grouped = await candidates_by_community(session, principals)
    if not grouped:
        await state.clear()
        return message.answer(
            _("No suggestions are waiting for the council. Accept suggestions with /review first.")
        )
    if len(grouped) == 1:
        (community_id,) = grouped
        return await start_for(bot, message.chat.id, who, state, session, settings, community_id)
    items: list[tuple[int, str]] = []
    for community_id, candidates in grouped.items():
        community = await get_community(session, community_id)
        if community is not None:
            label = _("{community} ({count})").format(
                community=community.name, count=len(candidates)
            )
            items.append((community_id, label))
    items.sort(key=lambda item: item[1])
    await state.set_data({})
    await state.set_state(ConveneForm.community)
    return message.answer(
        _("Which community's council should vote?"),
        reply_markup=keyboards.convene_community_keyboard(items),
    )


async def on_community(
    callback: CallbackQuery,
    callback_data: ConveneCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    who = callback.from_user.id
    if await _principal(session, who, callback_data.id) is None:
        await stale(callback)
        return None
    community = await get_community(session, callback_data.id)
    await settle(
        callback, _("Community: {value}").format(value=quote(community.name if community else "—"))
    )
    return await start_for(bot, chat_of(callback), who, state, session, settings, callback_data.id)


async def _redraw(callback: CallbackQuery, session: AsyncSession, state: FSMContext) -> None:
    view = await candidates_view(session, callback.from_user.id, state)
    await callback.answer()
    if view is None or not isinstance(callback.message, Message):
        return
    with contextlib.suppress(TelegramBadRequest):  # "not modified" when nothing changed
        await callback.message.edit_text(view[0], reply_markup=view[1])


def too_many_text() -> str:
    return _("At most {max} suggestions can be put to one vote.").format(
        max=rules.MAX_VOTE_CANDIDATES
    )


async def on_toggle(
    callback: CallbackQuery, callback_data: ConveneCb, state: FSMContext, session: AsyncSession
) -> None:
    selected = [int(i) for i in await state.get_value("selected") or []]
    if callback_data.id in selected:
        selected.remove(callback_data.id)
    elif len(selected) >= rules.MAX_VOTE_CANDIDATES:
        await callback.answer(too_many_text(), show_alert=True)
        return
    else:
        selected.append(callback_data.id)
    await state.update_data(selected=selected)
    await _redraw(callback, session, state)


async def on_page(
    callback: CallbackQuery, callback_data: ConveneCb, state: FSMContext, session: AsyncSession
) -> None:
    await state.update_data(page=callback_data.id)
    await _redraw(callback, session, state)


async def on_all(callback: CallbackQuery, state: FSMContext, session: AsyncSession) -> None:
    data = await state.get_data()
    principal = await _principal(session, callback.from_user.id, int(data.get("community_id") or 0))
    if principal is None:
        await stale(callback)
        return
    items = await candidates_of(session, principal, int(data["community_id"]))
    if len(items) > rules.MAX_VOTE_CANDIDATES:
        await callback.answer(too_many_text(), show_alert=True)
        items = items[: rules.MAX_VOTE_CANDIDATES]
    await state.update_data(selected=[item.id for item in items])
    await _redraw(callback, session, state)


async def on_none(callback: CallbackQuery, state: FSMContext, session: AsyncSession) -> None:
    await state.update_data(selected=[])
    await _redraw(callback, session, state)


async def on_candidates_done(
    callback: CallbackQuery,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    view = await candidates_view(session, callback.from_user.id, state)  # drops the vanished
    selected = await state.get_value("selected") or []
    if view is not None and not selected:
        await callback.answer(_("Please choose at least one suggestion."), show_alert=True)
        return None
    await settle(callback)
    step = ConveneForm.deadline if view is not None else ConveneForm.candidates
    return await go(bot, chat_of(callback), callback.from_user.id, state, session, settings, step)


async def _deadline_chosen(
    bot: Bot,
    chat_id: int,
    telegram_id: int,
    state: FSMContext,
    session: AsyncSession,
    settings: Settings,
    closes_at: datetime,
) -> SendMessage:
    await state.update_data(closes_at=closes_at.isoformat())
    return await go(bot, chat_id, telegram_id, state, session, settings, ConveneForm.summary)


async def on_hours(
    callback: CallbackQuery,
    callback_data: ConveneCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    if callback_data.id not in keyboards.DEADLINE_CHOICES:
        await stale(callback)
        return None
    closes_at = utcnow() + timedelta(hours=callback_data.id)
    deadline = local_deadline(closes_at, settings.tz)
    await settle(callback, _("Deadline: {value}").format(value=deadline))
    return await _deadline_chosen(
        bot, chat_of(callback), callback.from_user.id, state, session, settings, closes_at
    )


async def on_deadline_text(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot, settings: Settings
) -> Reply:
    assert message.text is not None and message.from_user is not None
    who = message.from_user.id
    closes_at = parse_deadline(message.text, settings)
    if closes_at is None:
        problem = _(
            "Sorry, I could not read that as a date and time. Please type it like "
            "{example}, or choose a button."
        ).format(
            example=(utcnow() + timedelta(days=3))
            .astimezone(settings.tz)
            .strftime("%Y-%m-%d 20:00")
        )
        return await reask(bot, message.chat.id, who, state, session, settings, problem)
    refusal = deadline_problem(closes_at, utcnow())
    if refusal is not None:
        return await reask(bot, message.chat.id, who, state, session, settings, refusal)
    return await _deadline_chosen(bot, message.chat.id, who, state, session, settings, closes_at)


async def on_back_to(
    callback: CallbackQuery,
    callback_data: ConveneCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    step = (
        ConveneForm.candidates
        if callback_data.action is ConveneAction.CANDIDATES
        else ConveneForm.deadline
    )
    await settle(callback)
    return await go(bot, chat_of(callback), callback.from_user.id, state, session, settings, step)


async def on_cancel(callback: CallbackQuery, state: FSMContext) -> None:
    await state.clear()
    await settle(callback, cancelled_text())


def cancelled_text() -> str:
    return _("Cancelled; no vote was convened. Send /convene to start again.")


async def on_confirm(
    callback: CallbackQuery,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
    council_poll_sender: PollSender | None = None,
) -> Reply:
    chat_id, who = chat_of(callback), callback.from_user.id
    data = await state.get_data()
    found = await _in_reach(session, who, data)
    if found is None or not data.get("closes_at"):
        await settle(callback)
        return await _out_of_reach(bot, chat_id, state, "")
    principal, community = found
    request = council.ConveneRequest(
        community_id=community.id,
        suggestion_ids=[int(i) for i in data.get("selected") or []],
        closes_at=datetime.fromisoformat(str(data["closes_at"])),
    )
    name = community.name  # a refused convene rolls the session back, expiring what it read
    try:
        vote = await council.convene(session, principal, request)
    except RuleViolation as exc:
        await settle(callback)
        return await _refused(bot, chat_id, who, state, session, settings, name, exc)
    await state.clear()
    await callback.answer(_("Convened."))
    await start_sending(council_poll_sender, vote.id)
    if vote.council_chat_id is not None:
        group = await chats.get_chat(session, vote.council_chat_id)
        where = _("The polls are on their way to the council's group “{title}”.").format(
            title=quote(group.title if group is not None and group.title else "—")
        )
    else:
        where = _(
            "The polls are on their way to the {count} council members, each in a private "
            "chat with me."
        ).format(count=vote.council_size)
    text = (
        _("✅ The council vote is convened: {count} suggestions, open until {deadline}.").format(
            count=len(vote.items),
            deadline=local_deadline(vote.closes_at, settings.tz),
        )
        + "\n"
        + where
        + "\n\n"
        + _(
            "Council members see what is open for them with /votes. The vote closes at the "
            "deadline, or as soon as every member has voted; everyone is then told the result."
        )
    )
    await close_keyboard(callback.message, text)
    return None


async def _refused(
    bot: Bot,
    chat_id: int,
    who: int,
    state: FSMContext,
    session: AsyncSession,
    settings: Settings,
    community: str,
    exc: RuleViolation,
) -> SendMessage:
    if exc.code == "council_empty":
        await state.clear()
        return send(bot, chat_id, council_empty_text(community))
    if exc.code in {"closes_at_past", "closes_at_too_far"}:
        problem = (
            deadline_passed_text() if exc.code == "closes_at_past" else deadline_too_far_text()
        )
        return await go(bot, chat_id, who, state, session, settings, ConveneForm.deadline, problem)
    if exc.code in {
        "no_candidates",
        "too_many_candidates",
        "duplicate_candidate",
        "unknown_suggestion",
        "candidate_other_community",
        "not_a_candidate",
    }:
        problem = _(
            "Some of the suggestions changed meanwhile (perhaps a colleague put them to a vote). "
            "Please check the choice again."
        )
        step = ConveneForm.candidates
        return await go(bot, chat_id, who, state, session, settings, step, problem)
    if exc.code in {"out_of_scope", "role_not_allowed", "scope_mismatch"}:
        return await _out_of_reach(bot, chat_id, state, "")
    await state.clear()
    return send(bot, chat_id, failed_text(exc.code))


use_the_buttons = reasking(reask, choose_with_buttons_note)


def create_router() -> Router:
    """/convene is the way in; every other handler is bound to a step (see private_dialog).
    The gate (bot.gate) hands the dialog one update of a person at a time."""
    form = ConveneForm
    router, steps = private_dialog("convene", form)
    router.message.register(cmd_convene, Command("convene"))

    def on(step: State, handler: Any, *actions: ConveneAction) -> None:
        steps.callback_query.register(handler, step, ConveneCb.filter(F.action.in_(actions)))

    on(form.community, on_community, ConveneAction.COMMUNITY)
    on(form.candidates, on_toggle, ConveneAction.TOGGLE)
    on(form.candidates, on_page, ConveneAction.PAGE)
    on(form.candidates, on_all, ConveneAction.ALL)
    on(form.candidates, on_none, ConveneAction.NONE)
    on(form.candidates, on_candidates_done, ConveneAction.DONE)
    on(form.deadline, on_hours, ConveneAction.HOURS)
    steps.message.register(on_deadline_text, form.deadline, F.text & NOT_COMMAND)
    on(form.deadline, on_back_to, ConveneAction.CANDIDATES)
    on(form.summary, on_back_to, ConveneAction.CANDIDATES, ConveneAction.DEADLINE)
    on(form.summary, on_confirm, ConveneAction.CONFIRM)
    for step in (form.community, form.candidates, form.deadline, form.summary):
        on(step, on_cancel, ConveneAction.CANCEL)
    for step in (form.community, form.candidates, form.deadline, form.summary):
        steps.message.register(use_the_buttons, step, NOT_COMMAND)
    return router
