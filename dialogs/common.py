"""What every dialog shares: who is talking (as storage knows people), and where it stands.

One person's updates are handled one at a time, with the conversation's state read once the
lock is held: the gate (bot.gate) does both before any router sees the update."""

from __future__ import annotations

from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import User

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
