"""The webhook route's contract (CONTRACT.md): secret, de-duplication, dead letters, 503 when
what an update depends on is down, and 200 only once its effects are committed.

The dispatcher here is a real aiogram Dispatcher with the project's session middleware and a
handler that writes to the store, so the route's guarantees are tested apart from any dialog.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx
import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.types import Message
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from tcp_proxy import TcpProxy
from webhook_fakes import ROUTE, message_update, post_update, route_app, route_client

from bot import factory
from bot.factory import create_base_dispatcher, create_redis
from storage.db import create_engine, create_sessionmaker
from storage.models import DeadLetter, ProcessedUpdate
from storage.services.chats import note_membership
from storage.services.updates import DEAD_LETTER_BODY_MAX
from storage.settings import Settings
from webhook.runtime import Runtime
from webhook.telegram import MAX_BODY_BYTES, SECRET_HEADER

SECRET = "s3cret_token-for-tests"
SOCKET_TIMEOUT = 1.0  # factory.REDIS_SOCKET_TIMEOUT where Redis goes silent


def build_dispatcher(runtime_holder: dict[str, Any], redis: Redis | None) -> Dispatcher:
    """One handler that writes a row (a chat record) per message; 'boom' raises a bug."""
    router = Router()
    calls: list[int] = runtime_holder.setdefault("calls", [])

    @router.message()
    async def write(message: Message, session: AsyncSession, after_commit: list[Any]) -> None:
        if message.text == "boom":
            raise RuntimeError("a bug in a handler")
        if message.text == "after":

            async def look() -> None:
                # Runs once the update's transaction has committed: a new session sees it.
                async with runtime_holder["sessionmaker"]() as fresh:
                    from storage.models import Chat

                    runtime_holder["seen_after_commit"] = await fresh.get(Chat, message.chat.id)

            after_commit.append(look)
        calls.append(message.message_id)
        await note_membership(
            session, message.chat.id, message.text or "", "private", is_member=True
        )

    dispatcher = create_base_dispatcher(runtime_holder["sessionmaker"], redis)
    dispatcher.include_router(router)
    return dispatcher


async def make_client(
    database_url: str, redis_url: str | None = None
) -> tuple[httpx.AsyncClient, Runtime, dict[str, Any]]:
    settings = Settings(database_url=database_url, redis_url=redis_url, webhook_secret=SECRET)
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    redis = create_redis(redis_url) if redis_url else None
    holder: dict[str, Any] = {"sessionmaker": sessionmaker}
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        bot=Bot("42:TEST"),
        dispatcher=build_dispatcher(holder, redis),
        redis=redis,
        webhook_secret=SECRET,
    )
    client = route_client(runtime)
    return client, runtime, holder


@pytest.fixture
async def client(
    database_url: str,
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime, dict[str, Any]]]:
    made = await make_client(database_url)
    yield made
    await made[0].aclose()
    await made[1].engine.dispose()


async def post(client: httpx.AsyncClient, body: Any, secret: str | None = SECRET) -> httpx.Response:
    return await post_update(client, body, secret)


async def count(runtime: Runtime, model: Any) -> int:
    async with runtime.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_missing_or_wrong_secret_is_401_and_has_no_effect(client: Any) -> None:
    http, runtime, holder = client
    for secret in (None, "", "wrong", SECRET + "x", SECRET.upper()):
        response = await post(http, message_update(), secret=secret)
        assert response.status_code == 401, secret
    assert holder["calls"] == []
    assert await count(runtime, ProcessedUpdate) == 0


async def test_a_secret_header_that_is_not_exactly_the_secret_is_401(client: Any) -> None:
    """Raw header bytes the route cannot take for the secret: not UTF-8 text (no 500 from
    decoding them), and the secret given twice with a wrong one first."""
    http, runtime, holder = client
    for headers in (
        [(SECRET_HEADER, "秘密".encode())],
        [(SECRET_HEADER, b"\xff" + SECRET.encode())],
        [(SECRET_HEADER, "wrong"), (SECRET_HEADER, SECRET)],
    ):
        response = await http.post(ROUTE, json=message_update(), headers=headers)
        assert response.status_code == 401, headers
    assert holder["calls"] == []
    assert await count(runtime, ProcessedUpdate) == 0


async def test_update_handled_once_and_committed_before_200(client: Any) -> None:
    http, runtime, holder = client
    update = message_update("新沙")
    first = await post(http, update)
    assert first.status_code == 200
    # Committed: another session sees the handler's write and the de-duplication mark.
    async with runtime.sessionmaker() as session:
        from storage.models import Chat

        chat = await session.get(Chat, 555)
        assert chat is not None and chat.title == "新沙"
    replay = await post(http, update)
    assert replay.status_code == 200
    assert holder["calls"] == [1]
    assert await count(runtime, ProcessedUpdate) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"{}",
        b'{"update_id": "seven"}',
        b'{"update_id": 5, "message": {"text": 42}}',
        b"[1, 2, 3]",
        '{"update_id": 9, "message": "\u0000"}'.encode(),
        pytest.param(b"", id="empty"),
        pytest.param(b"null", id="null"),
        pytest.param(b'"x"', id="string"),
        pytest.param(b"5", id="number"),
        pytest.param(b'{"update_id": NaN}', id="nan"),
        pytest.param(b'{"update_id": 1, "message": "\xff\xfe"}', id="not-utf8"),
        pytest.param(b'\xef\xbb\xbf{"update_id": 1}', id="bom"),
        pytest.param(b'{"update_id": 8, "message": {"text": "\\ud800"}}', id="lone-surrogate"),
    ],
)
async def test_unparseable_authenticated_body_is_dead_lettered_with_200(
    client: Any, body: bytes
) -> None:
    http, runtime, holder = client
    response = await post(http, body)
    assert response.status_code == 200
    async with runtime.sessionmaker() as session:
        letters = (await session.scalars(select(DeadLetter))).all()
    assert len(letters) == 1
    assert "unparseable" in letters[0].reason
    assert holder["calls"] == []


@pytest.mark.parametrize("update_id", [2**63, 2**64 + 5, -(2**63) - 1, 10**40])
async def test_an_update_id_beyond_64_bits_is_dead_lettered_without_it(
    client: Any, update_id: int
) -> None:
    """No Update of Telegram's: the store's columns cannot hold the id, so it is a poison body
    (200 and a dead letter with no update_id), not a handler error that fails again when the
    dead letter is filed under it (a 500, retried by Telegram for a day)."""
    http, runtime, holder = client
    response = await post(http, message_update(update_id=update_id))
    assert response.status_code == 200
    async with runtime.sessionmaker() as session:
        letter = (await session.scalars(select(DeadLetter))).one()
    assert letter.update_id is None
    assert letter.reason == "unparseable update: update_id out of range"
    assert holder["calls"] == []
    assert await count(runtime, ProcessedUpdate) == 0


@pytest.mark.parametrize("update_id", [0, -1, 2**63 - 1, -(2**63)])
async def test_update_ids_at_the_edges_of_64_bits_are_handled(client: Any, update_id: int) -> None:
    http, runtime, holder = client
    update = message_update(update_id=update_id)
    for _ in range(2):  # and de-duplicated
        assert (await post(http, update)).status_code == 200
    assert holder["calls"] == [1]
    assert await count(runtime, DeadLetter) == 0


@pytest.mark.parametrize(
    ("body", "handled"),
    [
        pytest.param(b'{"update_id": 11.0, "message": MESSAGE}', True, id="float-id"),
        pytest.param(b'{"update_id": 12, "update_id": 13, "message": MESSAGE}', True, id="twice"),
        pytest.param(
            b'{"update_id": true}',
            False,
            id="bool-id",
            marks=pytest.mark.filterwarnings("ignore:Detected unknown update type"),
        ),
    ],
)
async def test_json_that_reads_as_an_update_is_handled_not_dead_lettered(
    client: Any, body: bytes, handled: bool
) -> None:
    """JSON Telegram never sends but that pydantic reads as an Update (an id of 11.0 or true,
    a key given twice): an update like any other, answered 200 and handled once."""
    http, runtime, holder = client
    message = json.dumps(message_update()["message"]).encode()
    body = body.replace(b"MESSAGE", message)
    for _ in range(2):
        assert (await post(http, body)).status_code == 200
    assert holder["calls"] == ([1] if handled else [])
    assert await count(runtime, DeadLetter) == 0
    assert await count(runtime, ProcessedUpdate) == 1


DEEP = 100_000


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * DEEP + b"]" * DEEP, id="arrays"),
        pytest.param(b'{"a":' * DEEP + b"1" + b"}" * DEEP, id="objects"),
        pytest.param(
            b'{"update_id": 7, "message": ' + b"[" * DEEP + b"]" * DEEP + b"}", id="inside"
        ),
        pytest.param(b"[" * DEEP, id="unclosed"),
        pytest.param(b'{"update_id": ' + b"9" * 5000 + b"}", id="long-number"),
    ],
)
async def test_deeply_nested_or_huge_json_is_dead_lettered_with_200(
    client: Any, body: bytes
) -> None:
    """Only the secret's holder can post, but what it posts is read without recursion: JSON
    nested 100,000 deep is refused by depth-counting parsers, not by a RecursionError (a 500)."""
    http, runtime, holder = client
    response = await post(http, body)
    assert response.status_code == 200
    async with runtime.sessionmaker() as session:
        letter = (await session.scalars(select(DeadLetter))).one()
    assert letter.reason.startswith("unparseable update:")
    assert letter.update_id is None  # past the parser's depth, its id is not looked for
    assert holder["calls"] == []


async def test_unauthenticated_garbage_is_not_kept(client: Any) -> None:
    http, runtime, _ = client
    assert (await post(http, b"garbage", secret="nope")).status_code == 401
    assert await count(runtime, DeadLetter) == 0


async def test_handler_bug_is_dead_lettered_and_rolled_back(client: Any) -> None:
    http, runtime, _ = client
    update = message_update("boom")
    response = await post(http, update)
    assert response.status_code == 200
    async with runtime.sessionmaker() as session:
        letter = (await session.scalars(select(DeadLetter))).one()
    assert letter.update_id == update["update_id"]
    assert "a bug in a handler" in letter.reason
    # The failed update left no de-duplication mark behind.
    assert await count(runtime, ProcessedUpdate) == 0


@pytest.mark.postgres
async def test_postgres_down_mid_run_gives_503_then_recovers(postgres_url: str) -> None:
    target = make_url(postgres_url)
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
    proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    http, runtime, holder = await make_client(proxied)
    try:
        assert (await post(http, message_update("before"))).status_code == 200
        proxy.cut()
        down = message_update("during")
        response = await post(http, down)
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        proxy.restore()
        # Telegram redelivers the same update; it is handled now, exactly once.
        assert (await post(http, down)).status_code == 200
        assert (await post(http, down)).status_code == 200
        assert holder["calls"].count(1) == 2  # "before" and "during", each once
        assert await count(runtime, ProcessedUpdate) == 2
        assert await count(runtime, DeadLetter) == 0
    finally:
        await http.aclose()
        await runtime.engine.dispose()
        await proxy.stop()


@pytest.mark.redis
@pytest.mark.parametrize("outage", ["refused", "silent"])
async def test_redis_down_mid_run_gives_503_in_seconds_then_recovers(
    sqlite_url: str, redis_url: str, outage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis gone mid-run, refusing connections or (a partition, a frozen host) answering
    nothing at all: the update gets a 503 within seconds (bot.factory.create_redis bounds
    every call), not a request held for minutes, and goes through once Redis is back.

    The bound is factory.REDIS_SOCKET_TIMEOUT (5 s); the answer may take three times it,
    here on a bound of a second so that the test does not wait out five, twice."""
    assert factory.REDIS_SOCKET_TIMEOUT <= 5
    monkeypatch.setattr(factory, "REDIS_SOCKET_TIMEOUT", SOCKET_TIMEOUT)
    target = make_url(redis_url.replace("redis://", "postgresql://"))  # reuse the URL parser
    proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 6379).start()
    proxied = f"redis://127.0.0.1:{proxy.port}/{target.database or 0}"
    http, runtime, holder = await make_client(sqlite_url, proxied)
    try:
        assert (await post(http, message_update("before"))).status_code == 200
        if outage == "refused":
            proxy.cut()
        else:
            proxy.silence()
        down = message_update("during")
        try:
            answer = await asyncio.wait_for(post(http, down), 3 * SOCKET_TIMEOUT)
        except TimeoutError:
            pytest.fail(f"no answer within three socket timeouts while Redis was {outage}")
        assert answer.status_code == 503
        proxy.restore()
        assert (await post(http, down)).status_code == 200
        assert (await post(http, down)).status_code == 200
        assert len(holder["calls"]) == 2
        # With Redis configured, de-duplication lives there, not in the store.
        assert await count(runtime, ProcessedUpdate) == 0
    finally:
        await http.aclose()
        assert runtime.redis is not None
        await runtime.redis.aclose()
        await runtime.engine.dispose()
        await proxy.stop()


@pytest.mark.redis
async def test_redis_dedup_in_progress_is_503_not_dropped(sqlite_url: str, redis_url: str) -> None:
    http, runtime, holder = await make_client(sqlite_url, redis_url)
    try:
        update = message_update("x")
        assert runtime.redis is not None
        # Another replica is handling this very update right now.
        await runtime.redis.set(f"minsheng:update:{update['update_id']}", b"processing", ex=60)
        assert (await post(http, update)).status_code == 503
        await runtime.redis.delete(f"minsheng:update:{update['update_id']}")
        assert (await post(http, update)).status_code == 200
        assert (await post(http, update)).status_code == 200
        assert len(holder["calls"]) == 1
    finally:
        await http.aclose()
        assert runtime.redis is not None
        await runtime.redis.aclose()
        await runtime.engine.dispose()


CHUNK = 64 * 1024


async def post_chunks(
    runtime: Runtime, chunks: Iterable[bytes], length: int | None, secret: str = SECRET
) -> tuple[int, int]:
    """POST `chunks` to the route as a server hands a body to the app, one `receive()` each,
    with `length` as the Content-Length (None: chunked, no length given). The answer's
    status, and how many bytes of the body the route pulled."""
    pieces = iter(chunks)
    upcoming = next(pieces, None)
    pulled = 0
    started: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled, upcoming
        piece, upcoming = upcoming, next(pieces, None)
        if piece is None:
            return {"type": "http.disconnect"}
        pulled += len(piece)
        return {"type": "http.request", "body": piece, "more_body": upcoming is not None}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.append(message["status"])

    headers = [(SECRET_HEADER.lower().encode(), secret.encode())]
    if length is None:
        headers.append((b"transfer-encoding", b"chunked"))
    else:
        headers.append((b"content-length", str(length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": ROUTE,
        "raw_path": ROUTE.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("149.154.167.200", 443),
        "server": ("test", 80),
        "state": {},
    }
    await route_app(runtime)(scope, receive, send)
    [status] = started
    return status, pulled


def _spaces(total: int) -> Iterator[bytes]:
    """`total` bytes of JSON whitespace, CHUNK at a time."""
    while total > 0:
        yield b" " * min(CHUNK, total)
        total -= CHUNK


SENT = 32 * MAX_BODY_BYTES


async def test_a_declared_oversized_body_is_dead_lettered_unread(client: Any) -> None:
    """A Content-Length over the limit is refused before a byte of the body is read: 200 and
    a dead letter saying so, as for any poison body (a 413 Telegram would retry for a day);
    without the secret, a 401, also unread."""
    _, runtime, holder = client
    assert await post_chunks(runtime, _spaces(SENT), SENT, secret="nope") == (401, 0)
    assert await count(runtime, DeadLetter) == 0
    assert await post_chunks(runtime, _spaces(SENT), SENT) == (200, 0)
    async with runtime.sessionmaker() as session:
        letter = (await session.scalars(select(DeadLetter))).one()
    assert (letter.reason, letter.body, letter.update_id) == (
        f"body too large: {SENT} bytes",
        "",
        None,
    )
    assert holder["calls"] == []


async def test_an_oversized_stream_is_read_no_further_than_the_limit(client: Any) -> None:
    """A body with no Content-Length (chunked) is counted as it arrives and read no further
    than the limit, however much the sender has: a sender with the secret cannot make the
    process buffer 32 MiB, or gigabytes. What was read of it is dead-lettered (as far as a
    dead letter keeps), with 200."""
    _, runtime, holder = client
    status_code, pulled = await post_chunks(runtime, _spaces(SENT), None)
    assert status_code == 200
    assert pulled <= MAX_BODY_BYTES + CHUNK, f"read {pulled:,} bytes of a {SENT:,}-byte body"
    async with runtime.sessionmaker() as session:
        letter = (await session.scalars(select(DeadLetter))).one()
    assert letter.reason == f"body too large: over {MAX_BODY_BYTES} bytes"
    assert letter.body == " " * DEAD_LETTER_BODY_MAX
    assert holder["calls"] == []


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_of_exactly_the_limit_is_read_whole(client: Any, declared: bool) -> None:
    """An update padded with whitespace to exactly MAX_BODY_BYTES, in pieces, is handled; one
    byte more is too large."""
    _, runtime, holder = client

    async def post_padded(total: int) -> int:
        update = json.dumps(message_update()).encode()
        chunks = itertools.chain([update], _spaces(total - len(update)))
        status_code, _ = await post_chunks(runtime, chunks, total if declared else None)
        return status_code

    assert await post_padded(MAX_BODY_BYTES) == 200
    assert holder["calls"] == [1]
    assert await count(runtime, DeadLetter) == 0
    assert await post_padded(MAX_BODY_BYTES + 1) == 200
    assert holder["calls"] == [1]
    async with runtime.sessionmaker() as session:
        letter = (await session.scalars(select(DeadLetter))).one()
    assert letter.reason.startswith("body too large:")


async def test_after_commit_hooks_see_the_committed_update(client: Any) -> None:
    http, _, holder = client
    assert (await post(http, message_update("after"))).status_code == 200
    assert holder["seen_after_commit"] is not None
