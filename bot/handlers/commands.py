"""Commands in a private chat: /start (with or without a deep-link payload: `g_<group>`
suggests for the group's community, `s_<community>` for a community, `i_<code>` is an
invitation), /help, /suggest, /my, /cancel, /lang,
and the language buttons."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, ReplyKeyboardRemove
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import LangCb, WithdrawCb, WithdrawStep
from bot.filters import IsCommand, PressOf
from bot.gate import Passage
from bot.handlers.invites import person_roles, redeem_invite, roles_overview
from bot.keyboards import (
    LANGUAGE_NAMES,
    language_keyboard,
    withdraw_confirm_keyboard,
    withdraw_keyboard,
)
from bot.texts import linked_number, listing, local_date, quote, status_label
from dialogs import convene, review, suggestion
from dialogs.common import Reply, chat_of, identity, send, settle, stale
from dialogs.org_picker import get_community_names
from storage import rules
from storage.rules import RuleViolation, State
from storage.services import chats, invites
from storage.services.people import SUPPORTED_LOCALES, set_locale
from storage.services.public import PublicCommunity
from storage.services.suggestions import list_for_proposer, proposer_item, withdraw
from storage.settings import Settings

log = logging.getLogger(__name__)

# Deep-link payloads Telegram accepts; anything else is treated as a plain /start.
PAYLOAD_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A suggestion's deep link: `g_<group chat id>` (what groups' buttons carry) or
# `s_<community id>` (what they carried before, still honoured).
SUGGEST_PAYLOAD_RE = re.compile(r"^(?:g_(-[1-9][0-9]{0,17})|s_([1-9][0-9]{0,17}))$")

MY_FETCH = 1000
# Withdraw buttons under /my: the suggestions still SUBMITTED are the newest, a few a day.
MY_WITHDRAW_BUTTONS = 10


@dataclass(frozen=True, slots=True)
class SuggestLink:
    """Where a deep link into the suggestion dialog came from: a group's button names the
    group, whose community is looked up when it is pressed, so that buttons posted before an
    admin changed the group's link follow the change; a community's link names it."""

    group_id: int | None = None
    community_id: int | None = None

    async def community(self, session: AsyncSession) -> PublicCommunity | None:
        if self.group_id is not None:
            return await chats.suggesting_community(session, self.group_id)
        assert self.community_id is not None
        return await get_community_names(session, self.community_id)

    async def from_known_group(self, session: AsyncSession) -> bool:
        """A group's link whose group the bot knows (when its community is not found, the
        group is linked to none now); an unknown group's link is a plain /start."""
        return (
            self.group_id is not None and await chats.get_chat(session, self.group_id) is not None
        )


def group_payload(chat_id: int) -> str:
    return f"g_{chat_id}"


def parse_suggest_payload(args: str | None) -> SuggestLink | None:
    """The link of a well-formed `g_<group>` or `s_<community>` payload, else None."""
    if not args or not PAYLOAD_RE.match(args):
        return None
    match = SUGGEST_PAYLOAD_RE.match(args)
    if match is None:
        return None
    group, community = match.groups()
    if group is not None:
        return SuggestLink(group_id=int(group))
    return SuggestLink(community_id=int(community))


def commands_overview() -> str:
    return "\n".join(
        (
            _("/suggest — suggest a project for your community"),
            _("/my — your suggestions and where they stand"),
            _("/cancel — stop the suggestion you are writing"),
            _("/lang — 中文 / English"),
            _("/help — what I can do"),
        )
    )


def welcome_text(first_name: str, roles: str | None = None) -> str:
    return (
        _("Hello, {name}!").format(name=quote(first_name))
        + "\n\n"
        + _(
            "I am the assistant for livelihood micro-projects (民生微实事): residents suggest "
            "small, practical projects for their community, the residents' council discusses "
            "them, and the street office funds and delivers them, all in public."
        )
        + "\n\n"
        + commands_overview()
        + (f"\n\n{roles}" if roles else "")
    )


def help_text(roles: str | None = None) -> str:
    return (
        _(
            "A micro-project is something small that many residents would benefit from: "
            "removing a safety hazard, improving the environment, a cultural or sports "
            "facility, or care for residents. Property management duties and government "
            "investment projects are not included."
        )
        + "\n\n"
        + commands_overview()
        + (f"\n\n{roles}" if roles else "")
    )


async def roles_text(session: AsyncSession, telegram_id: int) -> str | None:
    """The staff's and council members' section of /start and /help (None for residents)."""
    return roles_overview(await person_roles(session, telegram_id))


async def cmd_start(
    message: Message,
    command: CommandObject,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
    raw_state: str | None,
) -> Reply:
    assert message.from_user is not None
    if command.args and PAYLOAD_RE.match(command.args) and invites.is_invite_payload(command.args):
        await redeem_invite(message, command.args, session)
        return await suggestion.continue_reply(bot, message.chat.id, state, session)
    link = parse_suggest_payload(command.args)
    community = await link.community(session) if link is not None else None
    if community is not None or (link is not None and await link.from_known_group(session)):
        if suggestion.is_dialog_state(raw_state):
            # In the middle of a suggestion: the link's community may answer its community
            # question, else the person goes on where they left off.
            return await suggestion.continue_with_link(
                bot, message.chat.id, state, session, community
            )
        # A group's button, the group linked to no community any more: ask for the community.
        note = None if community is not None else suggestion.group_unlinked_note()
        return await suggestion.start(
            bot, message.chat.id, message.from_user.id, state, session, settings, community, note
        )
    roles = await roles_text(session, message.from_user.id)
    text = welcome_text(message.from_user.first_name, roles)
    return await suggestion.answer_then_continue(message, text, state, session, bot, raw_state)


async def cmd_help(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot, raw_state: str | None
) -> Reply:
    assert message.from_user is not None
    text = help_text(await roles_text(session, message.from_user.id))
    return await suggestion.answer_then_continue(message, text, state, session, bot, raw_state)


async def cmd_suggest(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
    raw_state: str | None,
) -> Reply:
    assert message.from_user is not None
    if suggestion.is_dialog_state(raw_state):
        return await suggestion.continue_reply(bot, message.chat.id, state, session)
    return await suggestion.start(
        bot, message.chat.id, message.from_user.id, state, session, settings
    )


async def cmd_my(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
    raw_state: str | None,
) -> Reply:
    """The person's suggestions; then, in the middle of one, its question again."""
    assert message.from_user is not None
    found = await list_for_proposer(session, message.from_user.id, limit=MY_FETCH)
    if not found:
        text = (
            _("You have not submitted any suggestion yet.")
            if suggestion.is_dialog_state(raw_state)
            else _("You have not made any suggestions yet. Send /suggest to make your first one.")
        )
        return await suggestion.answer_then_continue(message, text, state, session, bot, raw_state)
    lines = [
        _("<b>{number}</b> · {status} · {date}\n{title}").format(
            number=linked_number(settings.board_base, item.number),
            status=status_label(item.status),
            date=local_date(item.created_at, settings.tz),
            title=quote(item.title),
        )
        for item in found
    ]
    text = listing(_("Your suggestions"), lines)
    withdrawable = [(i.id, i.number) for i in found if rules.withdrawable(i.status)]
    markup = None
    if withdrawable:
        text += "\n\n" + _(
            "A suggestion the community has not begun to look at can still be withdrawn: "
            "use the buttons below."
        )
        markup = withdraw_keyboard(withdrawable[:MY_WITHDRAW_BUTTONS])
    return await suggestion.answer_then_continue(
        message, text, state, session, bot, raw_state, markup
    )


def not_withdrawable_text(number: str, status: State) -> str:
    """Plain text: it may go in a button's alert."""
    return _(
        "Suggestion {number} can no longer be withdrawn: the community has begun to deal with "
        "it (now: {status}). If it should be stopped, please tell the community's staff."
    ).format(number=number, status=status_label(status))


async def on_withdraw(
    callback: CallbackQuery, callback_data: WithdrawCb, session: AsyncSession, bot: Bot
) -> Reply:
    """A button under /my asks to confirm; the confirmation withdraws or keeps. The list's
    buttons stay, for the person's other suggestions."""
    telegram_id = callback.from_user.id
    if callback_data.step is WithdrawStep.NO:
        await settle(callback, _("Kept: nothing has changed."))
        return None
    if callback_data.step is WithdrawStep.ASK:
        item = await proposer_item(session, telegram_id, callback_data.id)
        if item is None:
            await callback.answer(_("This button is out of date."))
            return None
        if item.status is State.WITHDRAWN:  # an old list's button, pressed again
            await callback.answer(_("Suggestion {number} is withdrawn.").format(number=item.number))
            return None
        if not rules.withdrawable(item.status):
            await callback.answer(not_withdrawable_text(item.number, item.status), show_alert=True)
            return None
        await callback.answer()
        question = _(
            "Withdraw suggestion <b>{number}</b> “{title}”?\n\nThe community will not take it "
            "up, and it stays on the public board as withdrawn. This cannot be undone."
        ).format(number=quote(item.number), title=quote(item.title))
        return send(bot, chat_of(callback), question, withdraw_confirm_keyboard(item.id))
    try:
        done = await withdraw(session, telegram_id, callback_data.id)
        number, title = done.number, done.title
    except RuleViolation as exc:
        item = await proposer_item(session, telegram_id, callback_data.id)
        if exc.code not in ("transition_not_allowed", "has_merged_duplicates") or item is None:
            await stale(callback)
            return None
        if item.status is not State.WITHDRAWN:
            await settle(callback, quote(not_withdrawable_text(item.number, item.status)))
            return None
        # Withdrawn already: this confirmation pressed twice, or delivered again after the
        # withdrawal committed and its answer failed. Say what was done.
        number, title = item.number, item.title
    await settle(
        callback,
        _(
            "Suggestion <b>{number}</b> “{title}” has been withdrawn. You are welcome to "
            "suggest another project with /suggest."
        ).format(number=quote(number), title=quote(title)),
        answer=_("Withdrawn."),
    )
    return None


async def cmd_cancel(message: Message, state: FSMContext, raw_state: str | None) -> Reply:
    if review.is_dialog_state(raw_state) or convene.is_dialog_state(raw_state):
        await state.clear()
        return message.answer(
            _("Stopped. Send /review or /convene whenever you want to carry on."),
            reply_markup=ReplyKeyboardRemove(),
        )
    if not suggestion.is_dialog_state(raw_state):
        return message.answer(_("There is nothing to cancel."), reply_markup=ReplyKeyboardRemove())
    await state.clear()
    return message.answer(suggestion.cancelled_text(), reply_markup=ReplyKeyboardRemove())


async def cmd_lang(message: Message) -> Reply:
    return message.answer(_("Please choose your language:"), reply_markup=language_keyboard())


async def on_language(
    callback: CallbackQuery,
    callback_data: LangCb,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    i18n: I18n,
    passage: Passage,
    raw_state: str | None,
) -> Reply:
    locale = callback_data.locale
    if locale not in SUPPORTED_LOCALES:
        await callback.answer(_("This button is out of date."), show_alert=False)
        return None
    # The choice and the menu it calls for commit with the update (the session middleware).
    await set_locale(session, identity(callback.from_user), locale)
    # The gate caches the choice once this has committed.
    passage.remember_locale, passage.locale_chosen = locale, True
    # The rest of this update is already in the old language: answer in the new one.
    with i18n.use_locale(locale):
        done = _("From now on I will speak {language} with you.").format(
            language=LANGUAGE_NAMES[locale]
        )
        await callback.answer()
        if isinstance(callback.message, Message):
            try:
                await callback.message.edit_text(done, reply_markup=None)
            except TelegramBadRequest:
                await callback.message.answer(done)
        # A suggestion in progress goes on, its question now in the new language.
        reply = (
            await suggestion.continue_reply(bot, chat_of(callback), state, session)
            if suggestion.is_dialog_state(raw_state)
            else None
        )
    return reply


def create_router() -> Router:
    """Private chats only. Every message handler needs a `Command` (or `CommandStart`) with the
    "/" prefix, so the router turns away any other message with one `IsCommand` check; and
    every button handler takes a language or a withdrawal, so one `PressOf` check turns away
    other presses (the dialogs')."""
    router = Router(name="private-commands")
    router.message.filter(F.chat.type == "private", IsCommand())
    router.callback_query.filter(PressOf(LangCb, WithdrawCb))
    router.message.register(cmd_start, CommandStart())
    router.message.register(cmd_help, Command("help"))
    router.message.register(cmd_suggest, Command("suggest"))
    router.message.register(cmd_my, Command("my"))
    router.message.register(cmd_cancel, Command("cancel"))
    router.message.register(cmd_lang, Command("lang"))
    router.callback_query.register(on_language, LangCb.filter())
    router.callback_query.register(on_withdraw, WithdrawCb.filter())
    return router
