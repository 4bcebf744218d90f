"""Two costs aiogram leaves on every update, removed once at start-up.

- aiogram runs every synchronous filter in a worker thread (`asyncio.to_thread`). Magic filters
  (`F.text`, `F.chat.type == "private"`) and FSM states are attribute checks that cost far
  less than the thread hop; the dialogs use dozens, so each update paid tens of hops.
- aiogram parses each Bot API answer with `Response[method.__returning__]`, a pydantic class
  that pydantic caches only weakly: after a garbage collection the next call rebuilds it
  (milliseconds). Holding one strong reference per method keeps the cache warm.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from aiogram import Router, methods
from aiogram.dispatcher.event.handler import FilterObject
from aiogram.fsm.state import State

_RESPONSE_TYPES: list[Any] = []


def keep_response_types() -> None:
    if _RESPONSE_TYPES:
        return
    for name in methods.__all__:
        method = getattr(methods, name)
        if (
            inspect.isclass(method)
            and issubclass(method, methods.TelegramMethod)
            and method is not methods.TelegramMethod
        ):
            returning = getattr(method, "__returning__", None)
            if returning is not None:
                _RESPONSE_TYPES.append(methods.Response[returning])  # type: ignore[valid-type]


def _inline(check: Callable[..., Any]) -> Callable[..., Any]:
    async def run(*args: Any, **kwargs: Any) -> Any:
        return check(*args, **kwargs)

    return run


def _is_cheap(item: FilterObject) -> bool:
    return not item.awaitable and (item.magic is not None or isinstance(item.callback, State))


def run_cheap_filters_inline(root: Router) -> int:
    """Make magic-filter and state filters coroutines in the whole router tree. The filter's
    parameters were read from the original callable, so arguments are passed as before.
    Returns how many filters changed."""
    changed = 0
    for router in root.chain_tail:
        for observer in router.observers.values():
            groups = [observer._handler.filters or []]
            groups += [handler.filters or [] for handler in observer.handlers]
            for filters in groups:
                for item in filters:
                    if _is_cheap(item):
                        item.callback = _inline(item.callback)
                        item.awaitable = True
                        changed += 1
    return changed
