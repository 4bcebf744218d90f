"""The whole service end to end without a browser: the real app in sandbox mode under uvicorn,
the real AiohttpSession talking to the built-in emulator, updates through the webhook route.

Replays, wrong secrets and poison bodies against the full dispatcher (the route's own tests
use a minimal one)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import serve_sandbox
from sqlalchemy import func, select

from bot.handlers.commands import group_payload
from storage.models import DeadLetter, Suggestion
from webhook.runtime import Runtime
from webhook.sandbox.demo import XINSHA_GROUP, ZHANG_WEI
from webhook.telegram import SECRET_HEADER


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[str, Runtime, list[dict[str, Any]]]]:
    async with serve_sandbox(tmp_path / "e2e.db", force_exit=False) as (base, app):
        runtime: Runtime = app.state.runtime
        delivered: list[dict[str, Any]] = []
        deliver = runtime.emulator._deliver

        async def recording(update: dict[str, Any]) -> int:
            delivered.append(update)
            status: int = await deliver(update)
            return status

        runtime.emulator.set_deliver(recording)
        yield base, runtime, delivered


async def press(runtime: Runtime, user: int, chat: int, label: str) -> None:
    """Press the newest inline button whose text contains `label`."""
    for message in reversed(runtime.emulator.view(user, chat)["messages"]):
        for r, row in enumerate(message.get("inline_keyboard") or []):
            for c, button in enumerate(row):
                if label in button["text"]:
                    await runtime.emulator.user_press_button(user, chat, message["id"], r, c)
                    return
    raise AssertionError(f"no button {label!r}")


def last_bot_html(runtime: Runtime, user: int, chat: int) -> str:
    messages = [m for m in runtime.emulator.view(user, chat)["messages"] if m["from"]["is_bot"]]
    return str(messages[-1].get("html", ""))


async def test_replayed_update_through_the_full_app_has_no_effect(service: Any) -> None:
    base, runtime, delivered = service
    emulator = runtime.emulator
    await emulator.user_start(ZHANG_WEI)
    before = len(emulator.view(ZHANG_WEI, ZHANG_WEI)["messages"])
    assert before >= 2  # the /start and the bot's welcome
    replay = delivered[-1]
    async with httpx.AsyncClient(base_url=base) as client:
        headers = {SECRET_HEADER: runtime.webhook_secret}
        for _ in range(3):
            response = await client.post("/telegram/webhook", json=replay, headers=headers)
            assert response.status_code == 200
        # The bot said nothing more: the update was handled once.
        assert len(emulator.view(ZHANG_WEI, ZHANG_WEI)["messages"]) == before

        for bad in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: runtime.webhook_secret + "x"}):
            response = await client.post("/telegram/webhook", json=replay, headers=bad)
            assert response.status_code == 401

        poison = await client.post(
            "/telegram/webhook", content=b'{"update_id": "x"}', headers=headers
        )
        assert poison.status_code == 200
    async with runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(DeadLetter)) == 1


async def test_poison_bodies_through_the_full_app_are_dead_lettered(service: Any) -> None:
    """Bodies that authenticate but are no Update this service can handle: 200 and a dead
    letter each, never a 500 (Telegram would retry it for a day)."""
    base, runtime, _ = service
    beyond_64_bits = {
        "update_id": 2**63,
        "message": {
            "message_id": 1,
            "date": 1_780_000_000,
            "chat": {"id": ZHANG_WEI, "type": "private", "first_name": "张伟"},
            "from": {"id": ZHANG_WEI, "is_bot": False, "first_name": "张伟"},
            "text": "/start",
        },
    }
    deeply_nested = b"[" * 100_000 + b"]" * 100_000
    async with httpx.AsyncClient(base_url=base) as client:
        headers = {SECRET_HEADER: runtime.webhook_secret}
        for body in (json.dumps(beyond_64_bits).encode(), deeply_nested):
            response = await client.post("/telegram/webhook", content=body, headers=headers)
            assert response.status_code == 200
    async with runtime.sessionmaker() as session:
        letters = (await session.scalars(select(DeadLetter).order_by(DeadLetter.id))).all()
    assert [letter.update_id for letter in letters] == [None, None]
    assert letters[0].reason == "unparseable update: update_id out of range"
    assert letters[1].reason.startswith("unparseable update:")


async def test_a_group_command_deleted_before_the_answer_still_gets_one(service: Any) -> None:
    """An anti-spam bot deletes each command in the group as it arrives, before this bot
    answers it: the answer comes all the same, as a plain message, through the JSON session
    and the emulator (which refuses a reply to a deleted message, as Telegram does)."""
    _, runtime, _ = service
    emulator = runtime.emulator
    forward = emulator._deliver
    assert forward is not None

    async def anti_spam(update: dict[str, Any]) -> int:
        message = update.get("message") or {}
        if message.get("chat", {}).get("id") == XINSHA_GROUP:
            # (The deletion is the bot's own call: it is an admin of the group, as the
            # anti-spam bot would be.)
            await emulator.call(
                "deleteMessage", {"chat_id": XINSHA_GROUP, "message_id": message["message_id"]}
            )
        status: int = await forward(update)
        return status

    emulator.set_deliver(anti_spam)
    before = emulator.view(ZHANG_WEI, XINSHA_GROUP)["rev"]
    await emulator.user_send_text(ZHANG_WEI, XINSHA_GROUP, "/help")
    new = emulator.view(ZHANG_WEI, XINSHA_GROUP, since=before)["messages"]
    command = [m for m in new if m["deleted"]]
    answers = [m for m in new if not m["deleted"] and m["from"]["is_bot"]]
    assert len(command) == 1 and len(answers) == 1
    assert "/suggest" in answers[0]["html"] and "reply_to" not in answers[0]
    assert not emulator.delivery_errors
    async with runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(DeadLetter)) == 0


async def test_the_resident_flow_through_the_emulator_stores_a_suggestion(service: Any) -> None:
    """The dialog end to end over real HTTP both ways, hostile text included."""
    _, runtime, _ = service
    user = chat = ZHANG_WEI
    emulator = runtime.emulator
    await emulator.user_start(user, group_payload(XINSHA_GROUP))  # the group's button
    await press(runtime, user, chat, "社区环境整治")
    title = "<b>修</b>路灯'); DROP TABLE suggestion; --"
    await emulator.user_send_text(user, chat, title)
    await emulator.user_send_text(user, chat, "楼道太暗 🌙 & 老人上下楼不安全")
    await emulator.user_send_text(user, chat, "新沙路 3 栋")
    await press(runtime, user, chat, "跳过")  # photos
    await press(runtime, user, chat, "跳过")  # kind and cost
    await press(runtime, user, chat, "确认提交")
    html = last_bot_html(runtime, user, chat)
    assert "新沙-" in html
    async with runtime.sessionmaker() as session:
        stored = (
            await session.scalars(select(Suggestion).order_by(Suggestion.id.desc()).limit(1))
        ).one()
    assert stored.title == title  # kept verbatim: SQL in text is only text
    assert stored.number in html
    await emulator.user_send_text(user, chat, "/my")
    assert stored.number in last_bot_html(runtime, user, chat)
    # What the resident typed came back escaped, never as markup.
    rendered = "".join(str(m.get("html", "")) for m in emulator.view(user, chat)["messages"])
    assert "<b>修</b>" not in rendered and "&lt;b&gt;修&lt;/b&gt;" in rendered
