"""What every dialog shares: who is talking (as storage knows people), where it stands, and the
few ways a dialog answers a press or a message.

One person's updates are handled one at a time, with the conversation's state read once the
lock is held: the gate (bot.gate) does both before any router sees the update."""

from __future__ import annotations

import asyncio
from typing import Any

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    MaybeInaccessibleMessageUnion,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    User,
)
from aiogram.utils.i18n import gettext as _

from bot.filters import InForm
from storage.services.people import TelegramIdentity

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None
# What a handler returns: the update's last Bot API call, unsent. The webhook answers Telegram
# with it (Telegram makes the call once the update is handled), polling makes it after the
# handler. Everything awaited in the handler happens before it, so it must be the last call.
Reply = TelegramMethod[Any] | None

# A message that is not a command (a command goes to its own handler, whatever the step).
NOT_COMMAND = ~F.text.startswith("/")


def identity(user: User) -> TelegramIdentity:
    return TelegramIdentity(
        telegram_id=user.id,
        first_name=user.first_name,
        username=user.username,
        language_code=user.language_code,
    )


async def current_step(state: FSMContext, form: type[StatesGroup]) -> State | None:
    """The step of `form` the conversation is at, or None when it is elsewhere."""
    raw = await state.get_state()
    for step in form.__states__:
        if step.state == raw:
            return step
    return None


def private_dialog(name: str, form: type[StatesGroup]) -> tuple[Router, Router]:
    """A dialog's router, `<name>-dialog`, for private chats only, and inside it `<name>-steps`
    for the handlers bound to a step of `form`: it lets in only conversations in the form, one
    check instead of one per handler for everyone else. The dialog's way in (its command)
    goes on the outer router, whose own handlers are checked before its sub-routers."""
    router = Router(name=f"{name}-dialog")
    router.message.filter(F.chat.type == "private")
    router.callback_query.filter(F.message.chat.type == "private")
    steps = Router(name=f"{name}-steps")
    steps.message.filter(InForm(form))
    steps.callback_query.filter(InForm(form))
    router.include_router(steps)
    return router, steps


def send(bot: Bot, chat_id: int, text: str, markup: Markup = None) -> SendMessage:
    """A message to the chat, bound to `bot`: await it to send it now, or return it from the
    handler as its reply (the update's last call)."""
    return SendMessage(chat_id=chat_id, text=text, reply_markup=markup).as_(bot)


def chat_of(callback: CallbackQuery) -> int:
    """The chat a button was pressed in (the person's own, for a message too old to say)."""
    return callback.message.chat.id if callback.message is not None else callback.from_user.id


async def close_keyboard(
    message: MaybeInaccessibleMessageUnion | None, text: str | None = None
) -> None:
    """Take the buttons off a message whose question is answered, optionally saying what was
    chosen; a message that cannot be edited any more is left as it is."""
    if not isinstance(message, Message):
        return
    try:
        if text is None:
            await message.edit_reply_markup(reply_markup=None)
        else:
            await message.edit_text(text, reply_markup=None)
    except TelegramBadRequest:
        pass


async def settle(
    callback: CallbackQuery, chosen: str | None = None, *, answer: str | None = None
) -> None:
    """Answer a button press and close the keyboard it came from (saying `chosen`, if given).
    The two calls are independent, so they go to Telegram together: a press costs one round
    trip of waiting, not two."""

    async def answer_press() -> None:
        await callback.answer(answer)

    # Both finish before the update goes on (or fails with the first error).
    outcomes = await asyncio.gather(
        answer_press(), close_keyboard(callback.message, chosen), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def stale(callback: CallbackQuery) -> None:
    """A button of another question than the one in hand: say so and take its buttons away."""
    await settle(callback, answer=_("This button is out of date."))


# What every dialog says when the answer does not fit the step, before asking it again.


def choose_with_buttons_note() -> str:
    return _("Please choose with the buttons.")


def type_text_note() -> str:
    return _("Please type your answer as text.")
