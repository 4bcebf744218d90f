"""The suggestion dialog (项目征集): a resident's idea for a micro-project, step by step, in a
private chat, ending with `storage.services.suggestions.submit`.

Steps: community (skipped when it came with the group's deep link, or answered by a link
followed while it is asked) › category › title › description › location › photos › kind and
rough cost › summary with submit / edit / cancel.
Everything entered lives in the FSM data as plain JSON values, so with Redis a draft survives a
restart of the service. Bad input never loses what was entered: the same step is asked again.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, ReplyKeyboardRemove
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards
from bot.callbacks import (
    CategoryCb,
    DraftField,
    EditCb,
    KindCb,
    KindChoice,
    OrgLevel,
    PickCb,
    SourceCb,
    Step,
    StepCb,
)
from bot.filters import InForm
from bot.texts import (
    board_anchor,
    cap_yuan,
    category_label,
    kind_label,
    photos_line,
    quote,
    source_type_label,
    yuan,
)
from dialogs.common import (
    NOT_COMMAND,
    Markup,
    Reply,
    chat_of,
    choose_with_buttons_note,
    current_step,
    identity,
    send,
    settle,
    stale,
    type_text_note,
)
from dialogs.org_picker import get_community_names, label_of, render_level
from storage import rules
from storage.rules import Category, Kind, RuleViolation, SourceType
from storage.services.public import PublicCommunity
from storage.services.suggestions import (
    DailyLimitReached,
    Draft,
    count_today_by_telegram_id,
    submit,
)
from storage.settings import Settings


class SuggestionForm(StatesGroup):
    community = State()
    category = State()
    title = State()
    description = State()
    location = State()
    photos = State()
    kind = State()
    cost = State()
    summary = State()
    # Who is suggesting: reached from the summary's edit menu only (most are residents, the
    # default, so nobody else answers it).
    source = State()


ORDER: tuple[State, ...] = (
    SuggestionForm.community,
    SuggestionForm.category,
    SuggestionForm.title,
    SuggestionForm.description,
    SuggestionForm.location,
    SuggestionForm.photos,
    SuggestionForm.kind,
    SuggestionForm.cost,
    SuggestionForm.summary,
)
FIELD_STEP: dict[DraftField, State] = {
    DraftField.COMMUNITY: SuggestionForm.community,
    DraftField.CATEGORY: SuggestionForm.category,
    DraftField.TITLE: SuggestionForm.title,
    DraftField.DESCRIPTION: SuggestionForm.description,
    DraftField.LOCATION: SuggestionForm.location,
    DraftField.PHOTOS: SuggestionForm.photos,
    DraftField.KIND: SuggestionForm.kind,
    DraftField.SOURCE: SuggestionForm.source,
}
# Which step fixes what the store refused (RuleViolation.code).
VIOLATION_STEP: dict[str, State] = {
    "unknown_community": SuggestionForm.community,
    "title_length": SuggestionForm.title,
    "description_length": SuggestionForm.description,
    "location_length": SuggestionForm.location,
    "bad_location": SuggestionForm.location,
    "too_many_photos": SuggestionForm.photos,
    "cost_without_kind": SuggestionForm.kind,
    "cost_negative": SuggestionForm.cost,
    "cost_not_integer_fen": SuggestionForm.cost,
    "cost_too_large": SuggestionForm.cost,
    "estimate_too_large": SuggestionForm.cost,
}
# Media groups already told "no more photos", so that an album gets one refusal, not four.
REFUSED_GROUPS_KEPT = 10


def empty_draft(community_id: int | None = None, community_label: str = "") -> dict[str, Any]:
    return {
        # Confirming this draft twice (Telegram redelivering the press) stores it once.
        "key": secrets.token_hex(16),
        "community_id": community_id,
        "community_label": community_label,
        "category": None,
        "title": None,
        "description": None,
        "location_text": None,
        "latitude": None,
        "longitude": None,
        "photos": [],
        "refused_groups": [],
        # Set when the summary's edit button brings the person back to the photos: the photos
        # already sent stay until a new one arrives, which replaces them all.
        "replacing_photos": False,
        "kind": None,
        "cost_fen": None,
        "source_type": SourceType.RESIDENT.value,
        "editing": False,
    }


def is_dialog_state(raw_state: str | None) -> bool:
    return raw_state is not None and raw_state in SuggestionForm.__all_states_names__


# --- limits ------------------------------------------------------------------------------


async def daily_limit_reached(session: AsyncSession, telegram_id: int, settings: Settings) -> bool:
    today = await count_today_by_telegram_id(session, telegram_id, settings.tz)
    return today >= settings.max_suggestions_per_day


def daily_limit_text(limit: int) -> str:
    return _(
        "You have already made {limit} suggestions today, which is the most one person can make "
        "in a day. Thank you for caring about your community! Please come back tomorrow."
    ).format(limit=limit)


# --- prompts -----------------------------------------------------------------------------


def _prompt(step: State, data: dict[str, Any]) -> tuple[str, Markup]:
    """The question of a step (all but the community step, which needs the store)."""
    if step == SuggestionForm.category:
        return _("What is it about? Please choose a category:"), keyboards.category_keyboard()
    if step == SuggestionForm.title:
        return (
            _(
                "Please give your suggestion a short title (at most {max} characters), "
                "for example: Repair the stairwell lights in Building 3"
            ).format(max=rules.TITLE_MAX),
            None,
        )
    if step == SuggestionForm.description:
        return (
            _(
                "Now please describe it (at most {max} characters): what is the problem, who "
                "would benefit, and what would you like to be done? It will be public on the "
                "board, so please leave out names, phone numbers and flat numbers."
            ).format(max=rules.DESCRIPTION_MAX),
            None,
        )
    if step == SuggestionForm.location:
        return (
            _(
                "Where is it? Please type the place (estate, building, street corner…), "
                "or tap “{share}” below."
            ).format(share=keyboards.location_share_label()),
            keyboards.location_keyboard(),
        )
    if step == SuggestionForm.photos:
        count = len(data.get("photos") or [])
        if count and data.get("replacing_photos"):
            text = _(
                "Photos sent before: {count}. New photos you send now replace them "
                "(at most {max}); to keep the ones sent before, tap “{keep}”."
            ).format(count=count, max=rules.MAX_PHOTOS, keep=keyboards.keep_photos_label())
            return text, keyboards.photos_keyboard(True, keep=True)
        if count:
            text = _(
                "You have sent {count} of at most {max} photos. Send another, or tap “{done}”."
            ).format(count=count, max=rules.MAX_PHOTOS, done=keyboards.done_label())
        else:
            text = _(
                "Photos help the community understand. You can send up to {max} photos now, "
                "or tap “{skip}”."
            ).format(max=rules.MAX_PHOTOS, skip=keyboards.skip_label())
        return text, keyboards.photos_keyboard(bool(count))
    if step == SuggestionForm.kind:
        return (
            _(
                "Is it a service project (activities, care, training…) or a physical project "
                "(facilities, equipment, small works…)? If you are not sure, tap “{skip}”."
            ).format(skip=keyboards.skip_label()),
            keyboards.kind_keyboard(),
        )
    if step == SuggestionForm.source:
        return (
            _(
                "Who is making this suggestion? A suggestion from a unit in the community, a "
                "social organisation or a representative or committee member is shown as such "
                "on the board."
            ),
            keyboards.source_keyboard(),
        )
    if step == SuggestionForm.cost:
        return (
            _(
                "Roughly how much might it cost, in yuan? For example 12000 or 1.5万. "
                "If you don't know, tap “{skip}”."
            ).format(skip=keyboards.skip_label()),
            keyboards.cost_keyboard(),
        )
    return summary_text(data), keyboards.summary_keyboard()


def summary_text(data: dict[str, Any]) -> str:
    lines = [
        "<b>" + _("Please check your suggestion") + "</b>",
        "",
        _("Community: {value}").format(value=quote(data.get("community_label") or "")),
        _("Category: {value}").format(
            value=category_label(data["category"]) if data.get("category") else "—"
        ),
        _("Title: {value}").format(value=quote(data.get("title") or "")),
        _("Description: {value}").format(value=quote(data.get("description") or "")),
        _("Location: {value}").format(value=location_text(data)),
        photos_text(data),
        _("Kind and rough cost: {value}").format(value=kind_cost_text(data)),
        _("Suggested as: {value}").format(value=source_type_label(_source_type(data))),
        "",
        _("The title, description and location will be public on the board; your name will not."),
        _("Is everything right?"),
    ]
    return "\n".join(lines)


def _source_type(data: dict[str, Any]) -> SourceType:
    """Who the draft says is suggesting (a resident in a draft older than the question)."""
    return SourceType(data.get("source_type") or SourceType.RESIDENT)


def photos_text(data: dict[str, Any]) -> str:
    return photos_line(len(data.get("photos") or []))


def location_text(data: dict[str, Any]) -> str:
    if data.get("location_text"):
        return quote(data["location_text"])
    if data.get("latitude") is not None and data.get("longitude") is not None:
        return _("shared location ({latitude:.5f}, {longitude:.5f})").format(
            latitude=data["latitude"], longitude=data["longitude"]
        )
    return "—"


def kind_cost_text(data: dict[str, Any]) -> str:
    if not data.get("kind"):
        return _("not specified")
    text = kind_label(data["kind"])
    if data.get("cost_fen") is not None:
        text += " · " + _("about ¥{amount}").format(amount=yuan(data["cost_fen"]))
    return text


async def go(
    bot: Bot,
    chat_id: int,
    state: FSMContext,
    session: AsyncSession,
    step: State,
    note: str | None = None,
) -> SendMessage:
    """Enter `step` and return its question (after `note`, if any), for the handler to return
    as its reply.

    The question goes out once the update is handled, after the state changed, so it must be
    the update's last call. Telegram does not report whether it arrived: should it be lost,
    the person's next answer meets the new step (a message that does not fit a step gets the
    question again).
    """
    data = await state.get_data()
    markup: Markup
    if step == SuggestionForm.community:
        view = await render_level(
            session,
            PickCb,
            OrgLevel.DISTRICTS,
            0,
            0,
            _("Which community is your suggestion for?"),
        )
        assert view is not None
        text, markup = view.text, view.markup
        if view.empty:
            await state.clear()
            return send(bot, chat_id, text)
    else:
        text, markup = _prompt(step, data)
    if step == SuggestionForm.summary and data.get("editing"):
        await state.update_data(editing=False)
    await state.set_state(step)
    return send(bot, chat_id, f"{note}\n\n{text}" if note else text, markup)


def next_step(finished: State, data: dict[str, Any]) -> State:
    if finished == SuggestionForm.kind:
        return SuggestionForm.cost if data.get("kind") else SuggestionForm.summary
    if data.get("editing") or finished == SuggestionForm.source:
        return SuggestionForm.summary
    return ORDER[ORDER.index(finished) + 1]


async def advance(
    bot: Bot,
    chat_id: int,
    state: FSMContext,
    session: AsyncSession,
    finished: State,
    note: str | None = None,
) -> SendMessage:
    """Go on to the step after `finished`; returns its question (see `go`)."""
    return await go(bot, chat_id, state, session, next_step(finished, await state.get_data()), note)


async def reask(
    bot: Bot, chat_id: int, state: FSMContext, session: AsyncSession, note: str
) -> SendMessage | None:
    """The current step's question again, after saying why, for the handler to return
    (see `go`); None outside the dialog."""
    step = await current_step(state, SuggestionForm)
    if step is None:
        return None
    return await go(bot, chat_id, state, session, step, note)


def continue_note() -> str:
    return _(
        "You have a suggestion in progress, so let's continue where you left off. "
        "(To start over, send /cancel first.)"
    )


async def continue_reply(
    bot: Bot, chat_id: int, state: FSMContext, session: AsyncSession
) -> SendMessage | None:
    """In the middle of a suggestion: its current question again, after saying so, for the
    handler to return; None outside the dialog."""
    return await reask(bot, chat_id, state, session, continue_note())


async def continue_with_link(
    bot: Bot,
    chat_id: int,
    state: FSMContext,
    session: AsyncSession,
    community: PublicCommunity | None,
) -> SendMessage | None:
    """A community's (or group's) deep link in the middle of a suggestion: the link's community
    answers the community question if that is still unanswered (/suggest, then a group's
    button), and the dialog goes on from there; otherwise, as any other way back in, the
    current question again. Returns it for the handler to return; None outside the dialog."""
    step = await current_step(state, SuggestionForm)
    data = await state.get_data()
    if community is None or step != SuggestionForm.community or data.get("community_id"):
        return await continue_reply(bot, chat_id, state, session)
    await state.update_data(community_id=community.id, community_label=label_of(community))
    return await advance(
        bot, chat_id, state, session, SuggestionForm.community, greeting(community)
    )


async def answer_then_continue(
    message: Message,
    text: str,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    raw_state: str | None,
    markup: Markup = None,
) -> Reply:
    """`text` (with `markup`), then the suggestion's question if one is in progress: the last
    of them is returned, for the handler to return (other commands do not lose the person's
    place)."""
    if not is_dialog_state(raw_state):
        return message.answer(text, reply_markup=markup)
    await message.answer(text, reply_markup=markup)
    return await continue_reply(bot, message.chat.id, state, session)


async def start(
    bot: Bot,
    chat_id: int,
    telegram_id: int,
    state: FSMContext,
    session: AsyncSession,
    settings: Settings,
    community: PublicCommunity | None = None,
    note: str | None = None,
) -> SendMessage:
    """Begin a new suggestion, for a known community if it came with the group's link;
    returns the first question (see `go`), after `note` when there is no community."""
    if await daily_limit_reached(session, telegram_id, settings):
        await state.clear()
        return send(bot, chat_id, daily_limit_text(settings.max_suggestions_per_day))
    if community is None:
        await state.set_data(empty_draft())
        return await go(bot, chat_id, state, session, SuggestionForm.community, note)
    await state.set_data(empty_draft(community.id, label_of(community)))
    return await go(bot, chat_id, state, session, SuggestionForm.category, greeting(community))


def greeting(community: PublicCommunity) -> str:
    """Before the first question, when the community came with the link."""
    return _("Let's write down your suggestion for {community}.").format(
        community="<b>" + quote(community.name) + "</b>"
    )


def group_unlinked_note() -> str:
    """Before the community question, when a group's button brought the person here and the
    group is linked to no community (any more)."""
    return _(
        "The group you came from is not linked to a community at the moment, so please "
        "choose your community here."
    )


# --- handlers ----------------------------------------------------------------------------


async def on_pick(
    callback: CallbackQuery,
    callback_data: PickCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
) -> Reply:
    heading = _("Which community is your suggestion for?")
    if callback_data.level is not OrgLevel.PICK:
        view = await render_level(
            session, PickCb, callback_data.level, callback_data.id, callback_data.page, heading
        )
        if view is None:
            view = await render_level(session, PickCb, OrgLevel.DISTRICTS, 0, 0, heading)
        if view is not None and isinstance(callback.message, Message):
            # Awaited: an edit that changes nothing is refused, and that refusal is ignored.
            with contextlib.suppress(TelegramBadRequest):
                await callback.message.edit_text(view.text, reply_markup=view.markup)
        return callback.answer()
    community = await get_community_names(session, callback_data.id)
    if community is None:
        await callback.answer(_("That community is no longer available."), show_alert=True)
        return await go(bot, chat_of(callback), state, session, SuggestionForm.community)
    label = label_of(community)
    await state.update_data(community_id=community.id, community_label=label)
    await settle(callback, _("Community: {value}").format(value=quote(label)))
    return await advance(bot, chat_of(callback), state, session, SuggestionForm.community)


async def on_category(
    callback: CallbackQuery,
    callback_data: CategoryCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
) -> Reply:
    await state.update_data(category=callback_data.category.value)
    chosen = _("Category: {value}").format(value=category_label(callback_data.category))
    await settle(callback, chosen)
    return await advance(bot, chat_of(callback), state, session, SuggestionForm.category)


async def choose_with_buttons(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot
) -> Reply:
    """Text (or anything else) where a button press is expected."""
    return await reask(bot, message.chat.id, state, session, choose_with_buttons_note())


async def on_title(message: Message, state: FSMContext, session: AsyncSession, bot: Bot) -> Reply:
    assert message.text is not None
    # A title is one line: line breaks and runs of spaces become single spaces.
    title = " ".join(rules.clean_text(message.text).split())
    length = rules.char_length(title)
    if not title:
        note = _("The title cannot be empty.")
        return await reask(bot, message.chat.id, state, session, note)
    if length > rules.TITLE_MAX:
        note = _(
            "That title is {length} characters long, but at most {max} fit. "
            "Could you make it shorter?"
        ).format(length=length, max=rules.TITLE_MAX)
        return await reask(bot, message.chat.id, state, session, note)
    await state.update_data(title=title)
    return await advance(bot, message.chat.id, state, session, SuggestionForm.title)


async def on_description(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot
) -> Reply:
    assert message.text is not None
    description = rules.clean_text(message.text)
    length = rules.char_length(description)
    if not description:
        note = _("The description cannot be empty.")
        return await reask(bot, message.chat.id, state, session, note)
    if length > rules.DESCRIPTION_MAX:
        note = _(
            "That description is {length} characters long, but at most {max} fit. "
            "Could you shorten it a little?"
        ).format(length=length, max=rules.DESCRIPTION_MAX)
        return await reask(bot, message.chat.id, state, session, note)
    await state.update_data(description=description)
    return await advance(bot, message.chat.id, state, session, SuggestionForm.description)


async def text_expected(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot
) -> Reply:
    """A photo, sticker, voice note… where typed text is expected."""
    return await reask(bot, message.chat.id, state, session, type_text_note())


def _type_instead_labels(i18n: I18n) -> set[str]:
    """The "type instead" button's text in every language: the keyboard may have been sent
    before the person switched language."""
    labels = set()
    for locale in (*i18n.available_locales, i18n.default_locale):
        with i18n.use_locale(locale):
            labels.add(keyboards.location_type_label())
    return labels


async def on_location_text(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot, i18n: I18n
) -> Reply:
    assert message.text is not None
    text = rules.clean_text(message.text)
    if text in _type_instead_labels(i18n):
        return send(bot, message.chat.id, _("Please type the address:"), ReplyKeyboardRemove())
    length = rules.char_length(text)
    if not text:
        note = _("The location cannot be empty.")
        return await reask(bot, message.chat.id, state, session, note)
    if length > rules.LOCATION_MAX:
        note = _(
            "That is {length} characters long, but at most {max} fit. "
            "Please describe the place more briefly."
        ).format(length=length, max=rules.LOCATION_MAX)
        return await reask(bot, message.chat.id, state, session, note)
    await state.update_data(location_text=text, latitude=None, longitude=None)
    return await _location_done(message, state, session, bot)


async def on_location_shared(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot
) -> Reply:
    assert message.location is not None
    place = None
    if message.venue is not None:
        place = " ".join(f"{message.venue.title} {message.venue.address}".split())
        place = place[: rules.LOCATION_MAX]
    await state.update_data(
        location_text=place,
        latitude=message.location.latitude,
        longitude=message.location.longitude,
    )
    return await _location_done(message, state, session, bot)


async def _location_done(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot
) -> SendMessage:
    # The request-location keyboard is a reply keyboard: it stays until told to go. This goes
    # out now; the next question, returned, after it.
    await send(bot, message.chat.id, "📍 " + _("Location noted."), ReplyKeyboardRemove())
    return await advance(bot, message.chat.id, state, session, SuggestionForm.location)


async def on_photo(message: Message, state: FSMContext, bot: Bot) -> None:
    """Photos are answered while the conversation's lock is held, not as the webhook's reply:
    an album arrives as concurrent updates, and their answers must keep their order."""
    assert message.photo
    data = await state.get_data()
    photos: list[str] = list(data.get("photos") or [])
    refused: list[str] = list(data.get("refused_groups") or [])
    if data.get("replacing_photos"):
        # The first new photo after "edit the photos": the earlier ones go, as the question
        # said; the rest of an album are added to it (one at a time, under the lock).
        photos, refused = [], []
    largest = max(message.photo, key=lambda size: (size.width * size.height, size.file_size or 0))
    if largest.file_id in photos:
        pass  # the same update delivered again: answer as before, count it once
    elif len(photos) >= rules.MAX_PHOTOS:
        group = message.media_group_id
        if group is not None:
            if group in refused:
                return
            refused = [*refused, group][-REFUSED_GROUPS_KEPT:]
        note = _(
            "You have already sent {max} photos, which is the most I can take. "
            "Tap “{done}” to go on."
        ).format(max=rules.MAX_PHOTOS, done=keyboards.done_label())
        await send(bot, message.chat.id, note, keyboards.photos_keyboard(True))
        await state.update_data(refused_groups=refused)
        return
    else:
        photos.append(largest.file_id)
    count = photos.index(largest.file_id) + 1
    if count < rules.MAX_PHOTOS:
        text = _("Photo {count} of {max} received. Send another, or tap “{done}”.")
    else:
        text = _("Photo {count} of {max} received. That is the most; tap “{done}” to go on.")
    await send(
        bot,
        message.chat.id,
        text.format(count=count, max=rules.MAX_PHOTOS, done=keyboards.done_label()),
        keyboards.photos_keyboard(True),
    )
    await state.update_data(photos=photos, refused_groups=refused, replacing_photos=False)


async def photo_expected(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot
) -> Reply:
    note = _("Please send a photo (as a photo, not as a file), or tap the button.")
    return await reask(bot, message.chat.id, state, session, note)


async def on_photos_done(
    callback: CallbackQuery, state: FSMContext, session: AsyncSession, bot: Bot
) -> Reply:
    """Done or skip: go on with the photos as they are."""
    await state.update_data(replacing_photos=False)
    await settle(callback)
    return await advance(bot, chat_of(callback), state, session, SuggestionForm.photos)


async def on_photos_keep(
    callback: CallbackQuery, state: FSMContext, session: AsyncSession, bot: Bot
) -> Reply:
    """Editing the photos: keep the ones sent before, unless a new one has replaced them
    since (the press is then on an old question: the newer one's button goes on)."""
    if not (await state.get_data()).get("replacing_photos"):
        await stale(callback)
        return None
    return await on_photos_done(callback, state, session, bot)


async def on_kind(
    callback: CallbackQuery,
    callback_data: KindCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
) -> Reply:
    if callback_data.kind is KindChoice.SKIP:
        await state.update_data(kind=None, cost_fen=None)
        chosen = _("Kind: not specified")
    else:
        await state.update_data(kind=callback_data.kind.value)
        chosen = _("Kind: {value}").format(value=kind_label(callback_data.kind.value))
    await settle(callback, chosen)
    return await advance(bot, chat_of(callback), state, session, SuggestionForm.kind)


async def on_cost(message: Message, state: FSMContext, session: AsyncSession, bot: Bot) -> Reply:
    assert message.text is not None
    try:
        cost_fen = rules.parse_yuan(message.text)
    except ValueError:
        problem = _(
            "Sorry, I could not read that as an amount. Please type a number of yuan, "
            "for example 12000 or 1.5万."
        )
        return await reask(bot, message.chat.id, state, session, problem)
    if cost_fen == 0:
        # No project costs nothing: a 0 stands for "I don't know", which is what skipping says
        # (and the summary would show "about ¥0").
        problem = _(
            "Please type an amount above ¥0. If you are not sure how much it might cost, "
            "tap “{skip}”."
        ).format(skip=keyboards.skip_label())
        return await reask(bot, message.chat.id, state, session, problem)
    data = await state.get_data()
    if not data.get("kind"):  # no cost without a kind: nothing to attach it to
        return await advance(bot, message.chat.id, state, session, SuggestionForm.cost)
    kind = Kind(data["kind"])
    if cost_fen > rules.estimate_limit(kind):
        problem = _(
            "¥{amount} is far beyond a micro-project: the cap for this kind of project ({kind}) "
            "is ¥{cap}. Please check the number, or skip the cost."
        ).format(
            amount=yuan(cost_fen), kind=kind_label(kind), cap=cap_yuan(rules.KIND_CAP_FEN[kind])
        )
        return await reask(bot, message.chat.id, state, session, problem)
    await state.update_data(cost_fen=cost_fen)
    note: str | None = None
    if rules.exceeds_cap(kind, cost_fen):
        note = _(
            "Noted: about ¥{amount}. In principle, the cap for this kind of project ({kind}) "
            "is ¥{cap}; the street office will decide whether a larger amount is justified."
        ).format(
            amount=yuan(cost_fen),
            kind=kind_label(kind),
            cap=cap_yuan(rules.KIND_CAP_FEN[kind]),
        )
    return await advance(bot, message.chat.id, state, session, SuggestionForm.cost, note)


async def on_source(
    callback: CallbackQuery,
    callback_data: SourceCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
) -> Reply:
    await state.update_data(source_type=callback_data.source.value)
    await settle(callback, source_type_label(callback_data.source))
    return await advance(bot, chat_of(callback), state, session, SuggestionForm.source)


async def on_cost_skip(
    callback: CallbackQuery, state: FSMContext, session: AsyncSession, bot: Bot
) -> Reply:
    await state.update_data(cost_fen=None)
    await settle(callback)
    return await advance(bot, chat_of(callback), state, session, SuggestionForm.cost)


def _draft(data: dict[str, Any]) -> Draft:
    return Draft(
        community_id=int(data["community_id"]),
        category=Category(data["category"]),
        title=str(data["title"]),
        description=str(data["description"]),
        location_text=data.get("location_text"),
        latitude=data.get("latitude"),
        longitude=data.get("longitude"),
        photo_file_ids=list(data.get("photos") or []),
        kind=Kind(data["kind"]) if data.get("kind") else None,
        estimated_cost_fen=data.get("cost_fen"),
        source_type=_source_type(data),
        key=data.get("key"),
    )


def _missing_step(data: dict[str, Any]) -> State | None:
    """The first required step without an answer (a draft from an older version, say)."""
    required = (
        ("community_id", SuggestionForm.community),
        ("category", SuggestionForm.category),
        ("title", SuggestionForm.title),
        ("description", SuggestionForm.description),
    )
    for key, step in required:
        if not data.get(key):
            return step
    if not data.get("location_text") and data.get("latitude") is None:
        return SuggestionForm.location
    return None


async def on_confirm(
    callback: CallbackQuery,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
) -> Reply:
    chat_id = chat_of(callback)
    data = await state.get_data()
    missing = _missing_step(data)
    if missing is not None:
        await settle(callback)
        await state.update_data(editing=True)
        note = _("One answer is still missing.")
        return await go(bot, chat_id, state, session, missing, note)
    try:
        suggestion = await submit(
            session,
            identity(callback.from_user),
            _draft(data),
            tz=settings.tz,
            daily_limit=settings.max_suggestions_per_day,
        )
    except DailyLimitReached as exc:
        await callback.answer()
        note = (
            daily_limit_text(exc.limit)
            + "\n\n"
            + _("Your draft is kept: tap “{submit}” again tomorrow.").format(
                submit=keyboards.confirm_label()
            )
        )
        return send(bot, chat_id, note)
    except RuleViolation as exc:
        step = VIOLATION_STEP.get(exc.code, SuggestionForm.summary)
        await settle(callback)
        await state.update_data(editing=True)
        note = _("Sorry, one answer needs to be changed before I can submit it.")
        return await go(bot, chat_id, state, session, step, note)
    await state.clear()
    await settle(callback, answer=_("Submitted. Thank you!"))
    return send(bot, chat_id, submitted_text(suggestion.number, settings.board_base))


def submitted_text(number: str, board_base: str | None) -> str:
    """The thanks for a suggestion just submitted, with a link to its page on the board when
    the service knows the board's address (`settings.board_base`)."""
    text = _(
        "✅ Thank you! Your suggestion has been submitted as number <b>{number}</b>.\n\n"
        "The community will look at it first; then the residents' council discusses it and "
        "the street office decides. I will tell you about every step. "
        "See your suggestions with /my."
    ).format(number=quote(number))
    link = board_link(board_base, number)
    return f"{text}\n\n{link}" if link else text


def board_link(board_base: str | None, number: str) -> str | None:
    """An HTML link to suggestion `number`'s public page, or None without the board's address."""
    if not board_base:
        return None
    return "🔗 " + board_anchor(board_base, number, quote(_("See it on the public board")))


async def on_cancel(callback: CallbackQuery, state: FSMContext, bot: Bot) -> Reply:
    await state.clear()
    await settle(callback)
    # To the chat, not as an answer to the summary: a summary older than 48 hours comes as an
    # inaccessible message, and the person must still hear that the draft is gone.
    return send(bot, chat_of(callback), cancelled_text())


def cancelled_text() -> str:
    return _("Cancelled; nothing was saved. Send /suggest whenever you want to start again.")


async def on_edit_menu(callback: CallbackQuery, state: FSMContext, bot: Bot) -> Reply:
    data = await state.get_data()
    fields = list(DraftField)
    if not data.get("community_id"):
        fields.remove(DraftField.COMMUNITY)
    return await _summary_buttons(callback, bot, data, keyboards.edit_keyboard(fields))


async def on_back_to_summary(callback: CallbackQuery, state: FSMContext, bot: Bot) -> Reply:
    data = await state.get_data()
    return await _summary_buttons(callback, bot, data, keyboards.summary_keyboard())


async def _summary_buttons(
    callback: CallbackQuery, bot: Bot, data: dict[str, Any], markup: InlineKeyboardMarkup
) -> Reply:
    """The summary's buttons become `markup` (the field menu, or back). A summary older than
    48 hours comes as an inaccessible message, which cannot be edited: it is sent again."""
    if not isinstance(callback.message, Message):
        await callback.answer()
        return send(bot, chat_of(callback), summary_text(data), markup)
    # Awaited: an edit that changes nothing is refused, and that refusal is ignored.
    with contextlib.suppress(TelegramBadRequest):
        await callback.message.edit_reply_markup(reply_markup=markup)
    return callback.answer()


async def on_edit_field(
    callback: CallbackQuery,
    callback_data: EditCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
) -> Reply:
    changes: dict[str, Any] = {"editing": True}
    if callback_data.field is DraftField.PHOTOS:
        # New photos replace the earlier ones, but only once one arrives: going on without
        # sending any keeps them (the question says which is which).
        data = await state.get_data()
        changes.update(replacing_photos=bool(data.get("photos")))
    await state.update_data(changes)
    await settle(callback)
    return await go(bot, chat_of(callback), state, session, FIELD_STEP[callback_data.field])


async def use_summary_buttons(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot
) -> Reply:
    note = _("Please use the buttons under the summary.")
    return await reask(bot, message.chat.id, state, session, note)


def create_router() -> Router:
    """The dialog lives in private chats only; in a group nothing here ever runs.

    It relies on the gate (bot.gate), which hands it one update of a person at a time and the
    conversation's state as `raw_state`. Every handler here is bound to a step of the form, so
    the router lets in only updates of a conversation in the form: any other update is turned
    away with one check instead of being checked against each handler.
    """
    router = Router(name="suggestion-dialog")
    router.message.filter(F.chat.type == "private", InForm(SuggestionForm))
    router.callback_query.filter(F.message.chat.type == "private", InForm(SuggestionForm))

    form = SuggestionForm
    text = F.text & NOT_COMMAND

    router.callback_query.register(on_pick, form.community, PickCb.filter())
    router.message.register(choose_with_buttons, form.community, NOT_COMMAND)

    router.callback_query.register(on_category, form.category, CategoryCb.filter())
    router.message.register(choose_with_buttons, form.category, NOT_COMMAND)

    router.message.register(on_title, form.title, text)
    router.message.register(text_expected, form.title, NOT_COMMAND)

    router.message.register(on_description, form.description, text)
    router.message.register(text_expected, form.description, NOT_COMMAND)

    router.message.register(on_location_shared, form.location, F.location)
    router.message.register(on_location_text, form.location, text)
    router.message.register(text_expected, form.location, NOT_COMMAND)

    router.message.register(on_photo, form.photos, F.photo)
    router.callback_query.register(
        on_photos_done, form.photos, StepCb.filter(F.step == Step.PHOTOS_DONE)
    )
    router.callback_query.register(
        on_photos_keep, form.photos, StepCb.filter(F.step == Step.PHOTOS_KEEP)
    )
    router.message.register(photo_expected, form.photos, NOT_COMMAND)

    router.callback_query.register(on_kind, form.kind, KindCb.filter())
    router.message.register(choose_with_buttons, form.kind, NOT_COMMAND)

    router.message.register(on_cost, form.cost, text)
    router.callback_query.register(on_cost_skip, form.cost, StepCb.filter(F.step == Step.COST_SKIP))
    router.message.register(text_expected, form.cost, NOT_COMMAND)

    router.callback_query.register(on_source, form.source, SourceCb.filter())
    router.message.register(choose_with_buttons, form.source, NOT_COMMAND)

    router.callback_query.register(on_confirm, form.summary, StepCb.filter(F.step == Step.CONFIRM))
    router.callback_query.register(on_cancel, form.summary, StepCb.filter(F.step == Step.CANCEL))
    router.callback_query.register(on_edit_menu, form.summary, StepCb.filter(F.step == Step.EDIT))
    router.callback_query.register(
        on_back_to_summary, form.summary, StepCb.filter(F.step == Step.SUMMARY)
    )
    router.callback_query.register(on_edit_field, form.summary, EditCb.filter())
    router.message.register(use_summary_buttons, form.summary, NOT_COMMAND)
    return router
