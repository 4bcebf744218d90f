"""A fresh sandbox start shows, in the seeded residents' group (新沙社区居民群: bound to 新沙社区,
the bot an admin), the bot's "Suggest a project" message, pinned, posted by the real bot
through the emulator once the server is accepting: the README's first step ("open the
community group and press 我要提建议") works from the first second. Once per start, since the
emulator's chats live in memory; never in real (BOT_TOKEN) mode; never in the council's group
or in a group the bot is not in.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiogram import Dispatcher
from aiogram.methods import PinChatMessage, SendMessage, SetMyCommands
from servers import serve_sandbox
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram_fakes import RecordingSession, make_bot, make_settings

from storage.models import Community
from storage.services.chats import bind_chat
from webhook.app import _after_listening
from webhook.runtime import Runtime
from webhook.sandbox.demo import (
    DIRECTOR_CHEN,
    LIU_MIN,
    TIANAN_GROUP,
    XINSHA_COUNCIL_GROUP,
    XINSHA_GROUP,
    ZHANG_WEI,
    ZHAO_LEI,
    seed_demo,
    suggest_groups,
)

pytest_plugins = ["telegram_fakes"]


def suggest_messages(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's messages in a chat view with a deep-link button."""
    return [
        m
        for m in view["messages"]
        if m["from"]["is_bot"]
        and any(b["kind"] == "deeplink" for row in m.get("inline_keyboard", []) for b in row)
    ]


async def wait_for_pin(
    emulator: Any, user: int, chat: int, timeout: float = 20.0
) -> dict[str, Any]:
    """The chat's view once something is pinned in it (the post runs in the background)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        view: dict[str, Any] = emulator.view(user, chat)
        if view["pinned"] is not None:
            return view
        assert asyncio.get_running_loop().time() < deadline, f"nothing pinned: {view}"
        await asyncio.sleep(0.05)


async def menu_with(emulator: Any, user: int, command: str, timeout: float = 10.0) -> list[str]:
    """The commands in `user`'s private menu once it holds `command`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        menu = [c["command"] for c in emulator.commands_for(user, user)]
        if command in menu:
            return menu
        assert asyncio.get_running_loop().time() < deadline, f"no /{command}: {menu}"
        await asyncio.sleep(0.05)


async def test_a_fresh_start_pins_the_suggest_message_in_the_residents_group(
    tmp_path: Path,
) -> None:
    database = tmp_path / "sandbox.db"
    for start in range(2):  # the store persists, the emulator's chats do not
        async with serve_sandbox(database) as (_base, app):
            runtime: Runtime = app.state.runtime
            emulator = runtime.emulator
            view = await wait_for_pin(emulator, ZHANG_WEI, XINSHA_GROUP)
            await asyncio.sleep(0.3)  # anything more would have come by now
            view = emulator.view(ZHANG_WEI, XINSHA_GROUP)
            [message] = suggest_messages(view)
            assert view["pinned"]["message_id"] == message["id"], f"start {start}"
            # In Chinese, as the bot posts it, without the "admins, pin this" line.
            assert "为新沙社区提建议" in message["html"]
            assert "置顶这条消息" not in message["html"]
            [[button]] = message["inline_keyboard"]
            assert button["text"] == "我要提建议"
            username = runtime.settings.sandbox_bot_username
            assert button["url"] == f"https://t.me/{username}?start=g_{XINSHA_GROUP}"
            # Telegram's service message for the pin, by the bot.
            services = [m for m in view["messages"] if m.get("service")]
            assert any("置顶了" in m["service"] for m in services)
            # Only the residents' group: not the council's, not one the bot is not in.
            assert suggest_messages(emulator.view(LIU_MIN, XINSHA_COUNCIL_GROUP)) == []
            assert emulator.view(LIU_MIN, XINSHA_COUNCIL_GROUP)["pinned"] is None
            assert emulator.view(DIRECTOR_CHEN, TIANAN_GROUP)["messages"] == []
            assert not emulator.delivery_errors
            # Menus: a resident's has no staff commands; staff and council members have theirs.
            menu = [c["command"] for c in emulator.commands_for(ZHANG_WEI, ZHANG_WEI)]
            assert menu == ["start", "help", "suggest", "my", "cancel", "lang"]
            await menu_with(emulator, ZHAO_LEI, "votes")  # set after 刘敏's (by Telegram id)
            menu = [c["command"] for c in emulator.commands_for(LIU_MIN, LIU_MIN)]
            assert menu[-2:] == ["review", "convene"], f"start {start}"

            if start == 0:
                # It works like any bot message: the button opens the private dialog.
                await emulator.user_press_button(ZHANG_WEI, XINSHA_GROUP, message["id"], 0, 0)
                private = emulator.view(ZHANG_WEI, ZHANG_WEI)["messages"]
                assert "/start" in private[0]["html"]
                assert private[0]["html"].endswith(f" g_{XINSHA_GROUP}")
                said = [m.get("html", "") for m in private if m["from"]["is_bot"]]
                assert any("新沙社区" in html for html in said), said


# --- without a server ---------------------------------------------------------------------


def runtime_on(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    recording: RecordingSession,
    emulator: Any,
) -> Runtime:
    return Runtime(
        settings=make_settings(),
        engine=engine,
        sessionmaker=sessionmaker,
        bot=make_bot(recording),
        dispatcher=Dispatcher(),
        emulator=emulator,
    )


async def test_only_in_sandbox_mode(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        await seed_demo(session)
    # Real mode (no emulator): the command menu, nothing posted in any group.
    real = RecordingSession()
    await _after_listening(runtime_on(engine, sessionmaker, real, None))
    assert real.calls and {c.name for c in real.calls} <= {SetMyCommands.__name__}

    # Sandbox mode: the residents' group's message, pinned silently.
    sandbox = RecordingSession()
    await _after_listening(runtime_on(engine, sessionmaker, sandbox, object()))
    posted = [c for c in sandbox.calls if isinstance(c.method, SendMessage)]
    assert [int(c.method.chat_id) for c in posted] == [XINSHA_GROUP]
    assert posted[0].text is not None and "为新沙社区提建议" in posted[0].text
    [pin] = [c.method for c in sandbox.calls if isinstance(c.method, PinChatMessage)]
    assert pin.message_id == posted[0].result.message_id and pin.disable_notification
    # After the command menu, which needs the server accepting too.
    names = [c.name for c in sandbox.calls]
    assert names.index(SendMessage.__name__) > names.index(SetMyCommands.__name__)


async def test_suggest_groups_follow_the_store_and_the_bots_membership(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        await seed_demo(session)
        [(chat_id, community)] = await suggest_groups(session)
        assert chat_id == XINSHA_GROUP and community.name == "新沙社区"
        tianan = (
            await session.scalars(select(Community).where(Community.name == "天安社区"))
        ).one()
        # 天安's group bound in an earlier run: the bot is not in it at start, so no post.
        await bind_chat(
            session, TIANAN_GROUP, tianan, title="天安社区邻里群", chat_type="supergroup",
            bound_by_person_id=None,
        )  # fmt: skip
        assert [c for c, _ in await suggest_groups(session)] == [XINSHA_GROUP]
        # 新沙's group rebound to 天安 by a person: its button is for 天安 now.
        await bind_chat(
            session, XINSHA_GROUP, tianan, title="新沙社区居民群", chat_type="supergroup",
            bound_by_person_id=None,
        )  # fmt: skip
        [(chat_id, community)] = await suggest_groups(session)
        assert chat_id == XINSHA_GROUP and community.name == "天安社区"
