"""The bot's routers, built fresh on every call (a router can be attached only once)."""

from __future__ import annotations

from aiogram import Router


def create_root_router() -> Router:
    """Commands first, then the council (poll answers, /votes, and `/bind council` before the
    groups' own /bind), then groups, then the dialogs (screening, convening a vote, the
    suggestion), then the fallback for whatever nobody else took (unknown commands, stray
    messages, stale buttons)."""
    from bot.handlers import commands, council, fallback, groups
    from dialogs import convene, review, suggestion

    root = Router(name="root")
    root.include_routers(
        commands.create_router(),
        council.create_router(),
        groups.create_router(),
        review.create_router(),
        convene.create_router(),
        suggestion.create_router(),
        fallback.create_router(),
    )
    return root
