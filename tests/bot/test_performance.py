"""The start-up fixes of bot.performance: no cheap filter left to run in a thread, and the
Bot API's response classes kept alive across garbage collections."""

from __future__ import annotations

import gc

from aiogram.fsm.state import State
from aiogram.methods import Response, SendMessage
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import performance
from bot.factory import create_dispatcher
from storage.settings import Settings


def filters_of(dispatcher):  # type: ignore[no-untyped-def]
    for router in dispatcher.chain_tail:
        for observer in router.observers.values():
            yield from observer._handler.filters or []
            for handler in observer.handlers:
                yield from handler.filters or []


def test_no_magic_or_state_filter_runs_in_a_thread(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    dispatcher = create_dispatcher(Settings(_env_file=None), sessionmaker)  # type: ignore[call-arg]
    cheap = [f for f in filters_of(dispatcher) if f.magic is not None]
    assert cheap, "the dialogs use magic filters"
    assert all(f.awaitable for f in filters_of(dispatcher) if f.magic is not None)
    assert not [
        f for f in filters_of(dispatcher) if isinstance(f.callback, State) and not f.awaitable
    ]


async def test_inlined_filters_still_filter(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    dispatcher = create_dispatcher(Settings(_env_file=None), sessionmaker)  # type: ignore[call-arg]
    private = Message.model_validate(
        {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "hi"}
    )
    group = Message.model_validate(
        {"message_id": 1, "date": 0, "chat": {"id": -5, "type": "supergroup"}, "text": "hi"}
    )
    seen = []
    for router in dispatcher.chain_tail:
        for item in router.message._handler.filters or []:
            if item.magic is not None:
                seen.append((await item.call(private), await item.call(group)))
    # The dialogs' "private chats only" filters, now coroutines, still tell the two apart.
    assert (True, False) in seen


def test_response_classes_survive_collection() -> None:
    performance.keep_response_types()
    before = id(Response[SendMessage.__returning__])
    gc.collect()
    assert id(Response[SendMessage.__returning__]) == before
