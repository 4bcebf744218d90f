"""How much filtering an update costs on its way to its handler: routers whose own filters
(private chats, "in this dialog", "a command") turn an update away before it is checked against
each of their handlers. Counts, never timings: every `HandlerObject.check` (a router's own
filters or a handler's) and every filter it evaluates, per update."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiogram import Router
from aiogram.dispatcher.event.handler import FilterObject, HandlerObject
from aiogram.filters import Command
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message, Update
from telegram_fakes import CATEGORY, Driver, Group, Harness, Person

from bot.filters import InForm, IsCommand
from bot.handlers import create_root_router
from dialogs.convene import ConveneForm
from dialogs.review import ReviewForm
from dialogs.suggestion import SuggestionForm

pytest_plugins = ["telegram_fakes"]

RESIDENT = Person(1101, "小红")
NEIGHBOURS = Group(-100_4242)


@dataclass
class Count:
    checks: int = 0  # HandlerObject.check: a router's own filters, or one handler's
    filters: int = 0  # single filters evaluated by those checks
    handlers: list[str] = field(default_factory=list)  # the handlers that ran


@dataclass
class Counter:
    count: Count = field(default_factory=Count)

    async def feed(self, h: Harness, update: Update) -> Count:
        self.count = Count()
        await h.feed(update)
        return self.count


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Counter:
    counter = Counter()
    check, filter_call, handler_call = HandlerObject.check, FilterObject.call, HandlerObject.call

    async def counted_check(self: HandlerObject, *args: Any, **kwargs: Any) -> Any:
        counter.count.checks += 1
        return await check(self, *args, **kwargs)

    async def counted_filter(self: FilterObject, *args: Any, **kwargs: Any) -> Any:
        counter.count.filters += 1
        return await filter_call(self, *args, **kwargs)

    async def counted_handler(self: HandlerObject, *args: Any, **kwargs: Any) -> Any:
        name = getattr(self.callback, "__name__", repr(self.callback))
        if name != "_listen_update":  # the dispatcher's own handler of every update
            counter.count.handlers.append(name)
        return await handler_call(self, *args, **kwargs)

    monkeypatch.setattr(HandlerObject, "check", counted_check)
    monkeypatch.setattr(FilterObject, "call", counted_filter)
    monkeypatch.setattr(HandlerObject, "call", counted_handler)
    return counter


async def test_filter_checks_per_update(
    bot_harness: Harness, dialog_driver: Driver, counter: Counter
) -> None:
    h, p = bot_harness, RESIDENT
    await dialog_driver.category(p)

    button_press = await counter.feed(h, h.button_update(p, CATEGORY, exact=True))
    title = await counter.feed(h, h.updates.text(p, "修复3栋楼梯间照明灯"))
    help_ = await counter.feed(h, h.updates.text(p, "/help"))
    poll = await counter.feed(
        h,
        h.updates._update(
            poll_answer={
                "poll_id": "poll-none",
                "option_ids": [0],
                "option_persistent_ids": ["0"],
                "user": p.json(),
            }
        ),
    )
    group = await counter.feed(h, h.updates.text(p, "大家好", NEIGHBOURS))

    # (checks, filters) before the routers' own filters: (47, 43), (38, 36), (6, 3), (6, 0)
    # and (20, 18); the /help message now pays one filter more, `IsCommand`.
    assert button_press.handlers == ["on_category"]
    assert button_press.checks <= 16 and button_press.filters <= 13, button_press
    assert title.handlers == ["on_title"]
    assert title.checks <= 16 and title.filters <= 16, title
    assert help_.handlers == ["cmd_help"]
    assert help_.checks <= 6 and help_.filters <= 4, help_
    assert poll.handlers == ["on_poll_answer"]
    assert poll.checks <= 6 and poll.filters <= 0, poll
    assert group.handlers == []
    assert group.checks <= 17 and group.filters <= 14, group


def routers(root: Router) -> Iterator[Router]:
    yield root
    for sub in root.sub_routers:
        yield from routers(sub)


def by_name() -> dict[str, Router]:
    return {router.name: router for router in routers(create_root_router())}


def own_filters(router: Router, event: str) -> list[Any]:
    return [item.callback for item in router.observers[event]._handler.filters or []]


def handler_filters(router: Router, event: str) -> list[list[Any]]:
    return [
        [item.callback for item in handler.filters or []]
        for handler in router.observers[event].handlers
    ]


@pytest.mark.parametrize(
    ("name", "form"),
    [
        ("suggestion-dialog", SuggestionForm),
        ("review-steps", ReviewForm),
        ("convene-steps", ConveneForm),
    ],
)
def test_a_form_router_holds_only_handlers_of_its_steps(name: str, form: type[StatesGroup]) -> None:
    """A handler in a router that lets in only the form's conversations must be bound to one
    of the form's steps: one that is not would never run outside the form."""
    router = by_name()[name]
    for event in ("message", "callback_query"):
        [gate] = [f for f in own_filters(router, event) if isinstance(f, InForm)]
        assert gate.states == set(form.__all_states_names__)
        filters = handler_filters(router, event)
        assert filters
        for found in filters:
            assert any(isinstance(f, State) and f.state in gate.states for f in found), found
    assert not router.sub_routers


@pytest.mark.parametrize(
    ("name", "steps"), [("review-dialog", "review-steps"), ("convene-dialog", "convene-steps")]
)
def test_a_dialog_s_way_in_comes_before_its_steps(name: str, steps: str) -> None:
    router = by_name()[name]
    assert [sub.name for sub in router.sub_routers] == [steps]
    assert not router.callback_query.handlers
    [entry] = handler_filters(router, "message")
    assert [type(f) for f in entry] == [Command]


@pytest.mark.parametrize("name", ["private-commands", "council", "groups"])
def test_a_command_router_holds_only_commands(name: str) -> None:
    """`IsCommand` on the router is safe only while every message handler needs a `Command`
    with aiogram's default prefix."""
    router = by_name()[name]
    assert any(isinstance(f, IsCommand) for f in own_filters(router, "message"))
    filters = handler_filters(router, "message")
    assert filters
    for found in filters:
        commands = [f for f in found if isinstance(f, Command)]
        assert commands and all(c.prefix == "/" for c in commands), found
    assert not router.sub_routers


# Whitespace of every kind (str.split() drops it before the command), and look-alikes.
LEADING = [chr(i) for i in range(0x3001) if chr(i).isspace()] + [
    "", "\u200b", "\ufeff", "\uff0f", "x", "\\", "/",
]  # fmt: skip


async def test_is_command_lets_through_whatever_a_command_could_match() -> None:
    """The router's `IsCommand` against aiogram's `Command` matching any command name: they
    agree on every text and caption, so no message a `Command` takes is turned away."""
    any_command = Command(re.compile(".*"), ignore_mention=True)
    is_command = IsCommand()
    for lead in LEADING:
        for body in ("/help", "/start s_12", "/", "/bind@minsheng_bot council", "help", ""):
            for text, caption in ((lead + body, None), (None, lead + body), ("", lead + body)):
                message = Message.model_construct(text=text, caption=caption)
                expected = bool(await any_command(message, None))  # type: ignore[arg-type]
                assert await is_command(message) is expected, (text, caption)
