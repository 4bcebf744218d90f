"""Real servers for tests: an ASGI app under uvicorn, in-process, on a free port of 127.0.0.1.

Test modules import these (`from servers import ...`; the tests/ root is on sys.path, as for
conftest):

- `free_port()`: a port of 127.0.0.1 nobody listens on (just now).
- `serve(app, ...)`: an async context manager serving `app` under uvicorn; yields the base URL
  ("http://127.0.0.1:<port>") once uvicorn has started, and stops it on leaving.
- `serve_sandbox(database, ...)`: the whole service in sandbox mode (`create_app` with no
  BOT_TOKEN, so the Bot API emulator is built in) on a SQLite file, served with its lifespan;
  yields the base URL and the app. Unless told `quick=False`, the service keeps Telegram's
  limits in tenths (`QUICK_LIMITS`) and sends its outbox every `QUICK_OUTBOX_EVERY` s
  rather than every 2 s: the emulator is not Telegram, and the tests would wait them out.
- `png(width, height)`: a valid RGB PNG image of one colour, to upload.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from apscheduler.triggers.interval import IntervalTrigger
from fastapi import FastAPI
from uvicorn.config import LifespanType

from bot.ratelimit import Limits
from storage.settings import Settings
from webhook.app import create_app
from webhook.runtime import Runtime

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def serve(
    app: Any,
    *,
    port: int | None = None,
    lifespan: LifespanType = "auto",
    poll: float = 0.01,
    timeout: float = 5.0,
    force_exit: bool = True,
) -> AsyncIterator[str]:
    """Serve the ASGI `app` under uvicorn on `port` (a free one by default) and yield its base
    URL once uvicorn has started (checked every `poll` seconds, failing after `timeout`).

    On leaving, uvicorn is told to exit and awaited; with `force_exit` (the default) it waits
    at most a second for the requests still open (a page's long poll) and then cancels them.
    The app's lifespan runs (or not) as `lifespan` says, as with uvicorn's option, and is
    shut down on leaving either way: uvicorn's own `force_exit` would skip that, and leave
    what the app started (its scheduler, its senders) running until the test's event loop
    is torn down, where it is cancelled mid-way."""
    port = free_port() if port is None else port
    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        log_level="warning",
        lifespan=lifespan,
        timeout_graceful_shutdown=1 if force_exit else None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not (server.started or task.done()):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(poll)
        assert server.started, f"uvicorn did not start on port {port} within {timeout}s"
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        await task


# Telegram's limits (bot.ratelimit.Limits) ten times as fast, and the outbox's tick.
QUICK_LIMITS = Limits(global_window=0.1, chat_interval=0.1, group_window=6.0)
QUICK_OUTBOX_EVERY = 0.2  # seconds; webhook.jobs.SEND_OUTBOX_EVERY in the service


@asynccontextmanager
async def serve_sandbox(
    database: Path, *, force_exit: bool = True, quick: bool = True
) -> AsyncIterator[tuple[str, FastAPI]]:
    """The whole service in sandbox mode on the SQLite file `database`, served with its
    lifespan (slow to start: polled every 0.05 s, for up to 30 s); yields (base URL, app).
    With `quick`, its sending is paced by QUICK_LIMITS and ticks every QUICK_OUTBOX_EVERY s
    from the moment it accepts (before any tick of its own)."""
    port = free_port()
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{database}",
        bot_token=None,
    )
    # The sandbox's bot reaches the built-in emulator where this process listens.
    app = create_app(settings, listen=(HOST, port))
    async with serve(app, port=port, poll=0.05, timeout=30.0, force_exit=force_exit) as base:
        if quick:
            runtime: Runtime = app.state.runtime
            runtime.limiter.limits = QUICK_LIMITS
            assert runtime.scheduler is not None
            runtime.scheduler.reschedule_job(
                "send_outbox", trigger=IntervalTrigger(seconds=QUICK_OUTBOX_EVERY)
            )
        yield base, app


def png(width: int, height: int) -> bytes:
    """A `width` × `height` RGB PNG, every pixel the same colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\x10\x80\x40" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
