"""Every kind of update Telegram may post, through the real route and the whole dispatcher.

The bot subscribes to a few update types, but a webhook gets what Telegram sends: edited
messages, channel posts, inline queries, reactions, boosts, business updates, service
messages, callbacks whose message is gone, updates of kinds newer than aiogram. Each must be
answered 200 with no dead letter and no exception logged (a 500 or a dead letter would be
retried or kept for nothing); the bot stays silent where nothing was asked of it, answers a
message in the chat (and topic) it came from, and answers every button press exactly once,
editing only a message it can see.

Kinds already driven through the dispatcher elsewhere are left out here: group chatter, group
commands and binding (tests/bot/test_group_binding.py, test_council_handlers.py), the bot
added, removed, blocked or unblocked (test_group_binding.py), chat migration, polls and poll
answers (test_council_handlers.py), stray private messages and deep links
(test_private_commands.py, test_group_binding.py, dialogs/test_suggestion_bad_input.py).

Also: the same update delivered four times at once is handled once, without Redis (its mark
in the store: the others wait for the first, then are 200) and with it (the gate's claim: the
others are 503, "in progress", until Telegram redelivers).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.methods import GetChat, GetChatMember, GetMe
from aiogram.types import Update
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram_fakes import (
    ADMIN_RIGHTS,
    BOT_ID,
    BOT_USERNAME,
    Group,
    Harness,
    Person,
    make_harness,
    make_settings,
    private_chat,
    utf16_length,
)
from webhook_fakes import harness_runtime, next_update_id, post_update, route_client

from bot.sender import install_request_middlewares
from bot.session import method_payload
from storage.models import DeadLetter

pytest_plugins = ["telegram_fakes"]

SECRET = "update-kinds-secret"
Sessions = async_sessionmaker[AsyncSession]

DATE = 1_780_000_000
ZHANG = Person(7001, "张伟")
CUSTOMER = Person(7002, "客户")
U, C = ZHANG.json(), CUSTOMER.json()
GROUP = Group(-1001234567890)
G = GROUP.json()
CHANNEL = {"id": -1009876543210, "type": "channel", "title": "新沙社区公告"}
ME = {"id": BOT_ID, "is_bot": True, "first_name": "民生微实事", "username": BOT_USERNAME}
TELEGRAM = {"id": 777000, "is_bot": False, "first_name": "Telegram"}  # linked channel posts
READS = (GetMe, GetChat, GetChatMember)  # calls that say nothing to anyone

SILENT, MESSAGE, ANSWER = "silent", "message", "answer"  # what the bot does with the update
UNKNOWN_KIND = pytest.mark.filterwarnings("ignore:Detected unknown update type")


def msg(
    chat: dict[str, Any], sender: dict[str, Any] | None = None, **content: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {"message_id": 3, "date": DATE, "chat": chat, **content}
    if sender is not None:
        message["from"] = sender
    return message


def private(**content: Any) -> dict[str, Any]:
    return msg(private_chat(ZHANG), U, **content)


def in_group(**content: Any) -> dict[str, Any]:
    return msg(G, U, **content)


def post(**content: Any) -> dict[str, Any]:
    return msg(CHANNEL, sender_chat=CHANNEL, **content)


def command(text: str) -> dict[str, Any]:
    length = utf16_length(text.split()[0])
    return {"text": text, "entities": [{"type": "bot_command", "offset": 0, "length": length}]}


def edited(message: dict[str, Any]) -> dict[str, Any]:
    return {**message, "edit_date": DATE + 60}


def member(status: str, user: dict[str, Any] = ME) -> dict[str, Any]:
    return {"status": status, "user": user, **({"until_date": 0} if status == "kicked" else {})}


def joined(chat: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A chat_member or my_chat_member update's payload: someone went from `old` to `new`."""
    return {"chat": chat, "from": U, "date": DATE, "old_chat_member": old, "new_chat_member": new}


def press(data: str | None, message: dict[str, Any] | None, **more: Any) -> dict[str, Any]:
    """A button press; `message` None for an inline message's, `{"date": 0, …}` for one too
    old for Telegram to send (inaccessible)."""
    query: dict[str, Any] = {"id": "cq-1", "from": U, "chat_instance": "ci", **more}
    if data is not None:
        query["data"] = data
    if message is not None:
        query["message"] = message
    return {"callback_query": query}


BOTS = msg(private_chat(ZHANG), ME, text="…")
BOTS_IN_GROUP = msg(G, ME, text="…")
GONE = {"chat": private_chat(ZHANG), "message_id": 5, "date": 0}
GONE_IN_GROUP = {"chat": G, "message_id": 5, "date": 0}
CHANNEL_ADMIN = {**member("administrator"), **ADMIN_RIGHTS, "can_post_messages": True}
PREMIUM = {"source": "premium", "user": U}
THUMBS_UP = {"type": "emoji", "emoji": "👍"}
PHOTO = [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]
ADDRESS = {"country_code": "CN", "state": "", "city": "深圳", "street_line1": "新沙路",
           "street_line2": "", "post_code": "518000"}  # fmt: skip


def case(name: str, expect: str, *marks: pytest.MarkDecorator, **payload: Any) -> Any:
    return pytest.param(payload, expect, id=name, marks=marks)


# fmt: off
CASES = [
    # Kinds the bot does not ask for, or has nothing to say to.
    case("edited-message", SILENT, edited_message=edited(private(text="改了"))),
    case("edited-command", SILENT, edited_message=edited(private(**command("/start")))),
    case("channel-post", SILENT, channel_post=post(text="公告")),
    case("channel-command", SILENT, channel_post=post(**command("/bind"))),
    case("edited-channel-post", SILENT, edited_channel_post=edited(post(text="x"))),
    case("inline-query", SILENT,
         inline_query={"id": "iq", "from": U, "query": "路灯", "offset": ""}),
    case("chosen-inline-result", SILENT,
         chosen_inline_result={"result_id": "r", "from": U, "query": "x"}),
    case("shipping-query", SILENT, shipping_query={
        "id": "s", "from": U, "invoice_payload": "p", "shipping_address": ADDRESS}),
    case("pre-checkout-query", SILENT, pre_checkout_query={
        "id": "p", "from": U, "currency": "XTR", "total_amount": 1, "invoice_payload": "p"}),
    case("added-to-a-channel", SILENT,
         my_chat_member=joined(CHANNEL, member("left"), CHANNEL_ADMIN)),
    case("removed-from-a-channel", SILENT,
         my_chat_member=joined(CHANNEL, member("member"), member("left"))),
    case("chat-member", SILENT,
         chat_member=joined(G, member("left", U), member("member", U))),
    case("chat-join-request", SILENT,
         chat_join_request={"chat": G, "from": U, "user_chat_id": ZHANG.id, "date": DATE}),
    case("message-reaction", SILENT, message_reaction={
        "chat": G, "message_id": 1, "user": U, "date": DATE, "old_reaction": [],
        "new_reaction": [THUMBS_UP]}),
    case("message-reaction-count", SILENT, message_reaction_count={
        "chat": G, "message_id": 1, "date": DATE,
        "reactions": [{"type": THUMBS_UP, "total_count": 1}]}),
    case("chat-boost", SILENT, chat_boost={"chat": CHANNEL, "boost": {
        "boost_id": "b", "add_date": DATE, "expiration_date": DATE + 99, "source": PREMIUM}}),
    case("removed-chat-boost", SILENT, removed_chat_boost={
        "chat": CHANNEL, "boost_id": "b", "remove_date": DATE, "source": PREMIUM}),
    case("business-connection", SILENT, business_connection={
        "id": "bc", "user": U, "user_chat_id": ZHANG.id, "date": DATE, "is_enabled": True}),
    case("business-message", SILENT, business_message={
        **msg(private_chat(CUSTOMER), C, **command("/start")), "business_connection_id": "bc"}),
    case("deleted-business-messages", SILENT, deleted_business_messages={
        "business_connection_id": "bc", "chat": private_chat(ZHANG), "message_ids": [1]}),
    case("unknown-kind", SILENT, UNKNOWN_KIND, brand_new_update_kind={"x": 1}),
    case("only-update-id", SILENT, UNKNOWN_KIND),
    # Service messages and automatic forwards in a group.
    case("linked-channel-post", SILENT, message=msg(
        G, TELEGRAM, sender_chat=CHANNEL, is_automatic_forward=True, text="公告")),
    case("new-members", SILENT, message=in_group(new_chat_members=[C])),
    case("bot-among-new-members", SILENT, message=in_group(new_chat_members=[ME])),
    case("left-member", SILENT, message=in_group(left_chat_member=C)),
    case("pinned", SILENT, message=in_group(pinned_message=BOTS_IN_GROUP)),
    case("pinned-inaccessible", SILENT, message=in_group(pinned_message=GONE_IN_GROUP)),
    case("group-created", SILENT,
         message=msg(Group(-556, "x", "group").json(), U, group_chat_created=True)),
    case("new-title", SILENT, message=in_group(new_chat_title="新名字")),
    # Messages the bot answers where they came from.
    case("via-bot", MESSAGE,
         message=private(text="x", via_bot={"id": 5, "is_bot": True, "first_name": "gif"})),
    case("forwarded", MESSAGE, message=private(
        text="fwd", forward_origin={"type": "user", "date": DATE, "sender_user": C})),
    case("forwarded-command", MESSAGE, message=private(
        forward_origin={"type": "hidden_user", "date": DATE, "sender_user_name": "x"},
        **command("/suggest"))),
    case("caption-command", MESSAGE, message=private(caption="/suggest", photo=PHOTO)),
    case("contact", MESSAGE, message=private(contact={"phone_number": "1", "first_name": "a"})),
    case("dice", MESSAGE, message=private(dice={"emoji": "🎲", "value": 3})),
    case("empty-text", MESSAGE, message=private(text="")),
    case("no-sender", MESSAGE, message=msg(private_chat(ZHANG), text="hi")),
    case("write-access-allowed", MESSAGE,
         message=private(write_access_allowed={"from_request": True})),
    case("users-shared", MESSAGE,
         message=private(users_shared={"request_id": 1, "users": [{"user_id": 5}]})),
    case("web-app-data", MESSAGE, message=private(web_app_data={"data": "x", "button_text": "b"})),
    case("start-group-link-beyond-64-bits", MESSAGE,
         message=private(**command("/start g_-" + "9" * 20))),
    case("start-group-link-oversized", MESSAGE,
         message=private(**command("/start g_-1" + "0" * 200))),
    case("command-in-a-topic", MESSAGE,
         message=in_group(message_thread_id=5, is_topic_message=True, **command("/help"))),
    case("unknown-fields", MESSAGE,
         message={**private(text="你好"), "future_field": {"a": 1}}, future_top=1),
    case("two-payloads", MESSAGE,
         message=private(text="你好"), edited_message=edited(private(text="改"))),
    # Button presses: each answered once, whatever its data or its message.
    case("press-inline-message", ANSWER, **press("st:ok", None, inline_message_id="im")),
    case("press-inaccessible", ANSWER, **press("st:ok", GONE)),
    case("press-inaccessible-group-bind", ANSWER, **press("bd:d:0:0", GONE_IN_GROUP)),
    case("press-inaccessible-council-bind", ANSWER, **press("cg:1", GONE_IN_GROUP)),
    case("press-without-data", ANSWER, **press(None, BOTS)),
    case("press-game", ANSWER, **press(None, BOTS, game_short_name="g")),
    case("press-oversized-data", ANSWER, **press("st:" + "x" * 200, BOTS)),
    case("press-bind-bad-level", ANSWER, **press("bd:zz:0:0", BOTS_IN_GROUP)),
    case("press-bind-bad-int", ANSWER, **press("bd:d:abc:0", BOTS_IN_GROUP)),
    case("press-bind-huge-int", ANSWER, **press("bd:k:" + "9" * 23 + ":0", BOTS_IN_GROUP)),
    case("press-unknown-language", ANSWER, **press("lg:xx", BOTS)),
    case("press-review-huge-id", ANSWER, **press("rv:a:" + "9" * 20, BOTS)),
    case("press-control-characters", ANSWER, **press("\u0000:\u202e", BOTS)),
]
# fmt: on


# --- the service -----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def gated(request: pytest.FixtureRequest, sessionmaker: Sessions) -> AsyncIterator[Harness]:
    """The bot without Redis (de-duplication in the store) and with it (the gate's claim)."""
    redis = None
    if request.param == "redis":
        redis = Redis.from_url(request.getfixturevalue("redis_url"))
    h = make_harness(make_settings(), sessionmaker, redis)
    install_request_middlewares(h.session)
    yield h
    if redis is not None:
        await redis.aclose()


@pytest.fixture
async def client(
    bot_harness: Harness, database_url: str, engine: AsyncEngine, sessionmaker: Sessions
) -> AsyncIterator[httpx.AsyncClient]:
    install_request_middlewares(bot_harness.session)
    service = harness_runtime(bot_harness, database_url, sessionmaker, SECRET, engine)
    async with route_client(service) as client:
        yield client


async def dead_letters(sessionmaker: Sessions) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(DeadLetter)) or 0)


def said(h: Harness, *responses: httpx.Response) -> list[dict[str, Any]]:
    """What the bot did that someone sees, as Bot API payloads with their "method": the calls
    it made, then the webhook replies in `responses` (the calls Telegram makes after a 200)."""
    done = [
        {"method": c.method.__api_method__, **(method_payload(h.bot, c.method) or {})}
        for c in h.session.calls
        if not isinstance(c.method, READS)
    ]
    return done + [json.loads(r.content) for r in responses if r.status_code == 200 and r.content]


# --- every kind ------------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "expect"), CASES)
async def test_every_kind_of_update_is_taken_in_quietly(
    bot_harness: Harness,
    client: httpx.AsyncClient,
    sessionmaker: Sessions,
    caplog: pytest.LogCaptureFixture,
    payload: dict[str, Any],
    expect: str,
) -> None:
    response = await post_update(client, {"update_id": next_update_id(), **payload}, SECRET)
    assert response.status_code == 200
    assert await dead_letters(sessionmaker) == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    did = said(bot_harness, response)
    methods = [d["method"] for d in did]
    if expect == SILENT:
        assert did == []
    elif expect == MESSAGE:
        message = payload["message"]
        assert methods == ["sendMessage"], did
        assert did[0]["chat_id"] == message["chat"]["id"]
        assert did[0].get("message_thread_id") == message.get("message_thread_id")
    else:
        query = payload["callback_query"]
        assert methods.count("answerCallbackQuery") == 1, did
        assert "sendMessage" not in methods, did
        message = query.get("message")
        if message is None or message["date"] == 0:  # nothing the bot may edit
            assert methods == ["answerCallbackQuery"], did


# --- the same update four times at once ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "chat"), [("/start", None), ("/help", GROUP)], ids=["private", "group"]
)
async def test_the_same_update_four_times_at_once_is_handled_once(
    gated: Harness,
    database_url: str,
    engine: AsyncEngine,
    sessionmaker: Sessions,
    text: str,
    chat: Group | None,
) -> None:
    """Telegram redelivers an update it had no answer to in time, and may do so while the
    first delivery is still being handled (by this replica or another)."""
    update: Update = gated.updates.text(ZHANG, text, chat)
    body = update.model_dump_json(exclude_none=True, by_alias=True)
    async with route_client(
        harness_runtime(gated, database_url, sessionmaker, SECRET, engine)
    ) as client:
        responses = await asyncio.gather(*(post_update(client, body, SECRET) for _ in range(4)))
        codes = sorted(r.status_code for r in responses)
        # Those refused as "in progress" come again; by then the update is done.
        again = await post_update(client, body, SECRET)
    assert again.status_code == 200 and not again.content
    if isinstance(gated.dispatcher.storage, RedisStorage):
        assert codes[0] == 200 and set(codes) <= {200, 503}, codes
    else:
        assert codes == [200] * 4
    sent = [d for d in said(gated, *responses, again) if d["method"] == "sendMessage"]
    assert len(sent) == 1, sent
    assert await dead_letters(sessionmaker) == 0
