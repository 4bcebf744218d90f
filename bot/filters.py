"""Cheap router-level filters: one check that turns an update away from a whole router (or
lets it in), instead of checking it against each of the router's handlers.

They are coroutines, so aiogram calls them inline rather than in a worker thread (see
bot.performance).
"""

from __future__ import annotations

from aiogram.enums import ChatType
from aiogram.filters import Filter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import StatesGroup
from aiogram.types import CallbackQuery, Message, TelegramObject

# Telegram's two kinds of group (a group upgraded to a supergroup changes its id).
GROUP_TYPES = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})


class InForm(Filter):
    """The conversation is at one of the steps of `form` (or of its nested groups).

    `raw_state` is the conversation's state that the gate (bot.gate) puts in the handler data;
    an update with no conversation has none, and is in no form."""

    __slots__ = ("states",)

    def __init__(self, form: type[StatesGroup]) -> None:
        self.states = frozenset(form.__all_states_names__)

    async def __call__(self, event: TelegramObject, raw_state: str | None = None) -> bool:
        return raw_state in self.states


def could_be_command(message: Message) -> bool:
    """The message could be a command to aiogram's `Command` filter with its default prefix:
    its text (or, without text, its caption) starts with "/" once leading whitespace is
    dropped. `Command` takes the text's first whitespace-separated word and checks that its
    first character is the prefix, so every message some `Command(...)` or `CommandStart()`
    matches is one of these."""
    text = message.text or message.caption
    # str.split() and str.lstrip() agree on what whitespace is.
    return text is not None and text.lstrip().startswith("/")


class IsCommand(Filter):
    """`could_be_command`, as a filter: a router whose message handlers all need a command
    may put it on the router itself."""

    async def __call__(self, message: Message) -> bool:
        return could_be_command(message)


class PressOf(Filter):
    """The button pressed carries the callback data of one of `kinds` (by their prefixes), in
    a private chat: for a router whose button handlers all take such data, so that presses of
    other buttons (most of them: the dialogs') are turned away with one check."""

    __slots__ = ("prefixes",)

    def __init__(self, *kinds: type[CallbackData]) -> None:
        self.prefixes = tuple(f"{kind.__prefix__}{kind.__separator__}" for kind in kinds)

    async def __call__(self, callback: CallbackQuery) -> bool:
        message = callback.message
        return (
            callback.data is not None
            and callback.data.startswith(self.prefixes)
            and message is not None
            and message.chat.type == "private"
        )
