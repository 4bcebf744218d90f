"""What every dialog shares: who is talking (as storage knows people), and where it stands.

One person's updates are handled one at a time, with the conversation's state read once the
lock is held: the gate (bot.gate) does both before any router sees the update."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import User

from bot.filters import InForm
from storage.services.people import TelegramIdentity


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
