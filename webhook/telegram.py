"""POST /telegram/webhook: authenticate, parse, de-duplicate, dispatch, and answer only once
the update's effects are committed (CONTRACT.md)."""

from __future__ import annotations

import json
import logging
import secrets
from typing import Annotated, Any

from aiogram.exceptions import (
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import TelegramMethod
from aiogram.types import Update
from fastapi import APIRouter, Header, Request, Response, status
from pydantic import ValidationError
from pydantic_core import from_json
from redis import exceptions as redis_errors
from sqlalchemy import exc as sa_errors
from starlette.requests import ClientDisconnect

from bot.dedup import UpdateInProgress
from bot.session import reply_body
from storage.services.updates import dead_letter
from webhook.deps import RuntimeDep
from webhook.runtime import Runtime

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY_BYTES = 1024 * 1024  # Telegram's updates are far smaller; refuse to buffer more
# The update ids the store can hold (a 64-bit signed column: ProcessedUpdate, DeadLetter).
# Telegram's are positive and far below the top; one beyond it is not an Update this service
# can handle, so it is a poison body, not a handler's failure (which would dead-letter it
# under the very id the column refuses).
UPDATE_ID_MIN, UPDATE_ID_MAX = -(2**63), 2**63 - 1

# Failures of what the update depends on, not of the update: Telegram should retry it.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa_errors.OperationalError,
    sa_errors.InterfaceError,
    sa_errors.TimeoutError,
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    OSError,
    TimeoutError,
    UpdateInProgress,
    TelegramNetworkError,
    TelegramServerError,
    TelegramRetryAfter,
)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    return isinstance(error, sa_errors.DBAPIError) and bool(error.connection_invalidated)


def _unavailable(what: str) -> Response:
    return Response(
        content=json.dumps({"ok": False, "error": f"{what} unavailable, retry later"}),
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        media_type="application/json",
        headers={"Retry-After": "5"},
    )


def _storable_update_id(update_id: int) -> bool:
    return UPDATE_ID_MIN <= update_id <= UPDATE_ID_MAX


def _update_id_of(body: bytes) -> int | None:
    """The `update_id` of a body that is not an Update, to file its dead letter under, if it
    has one the store can hold.

    Parsed by pydantic-core (as the Update itself was), never `json.loads`: whoever holds the
    secret chooses the body, its nesting depth included, and pydantic-core counts depth
    (refusing past 200 levels with a ValueError) where `json.loads` recurses on the
    interpreter's stack and raises RecursionError, which escaped the route as a 500. A body
    nested too deep therefore goes without its update_id, even one given at its top level.
    """
    try:
        parsed = from_json(body)
    except ValueError:
        return None
    value = parsed.get("update_id") if isinstance(parsed, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and _storable_update_id(value):
        return value
    return None


async def _dead_letter(
    runtime: Runtime, body: bytes, reason: str, update_id: int | None = None
) -> Response:
    """Keep `body` with `reason`, filed under `update_id` (by default, the body's own if it
    has one), and answer 200 so that Telegram stops redelivering it."""
    if update_id is None:
        update_id = _update_id_of(body)
    try:
        async with runtime.sessionmaker() as session:
            await dead_letter(session, body, reason, update_id)
    except Exception as error:
        if is_transient(error):
            return _unavailable("storage")
        raise
    return Response(status_code=status.HTTP_200_OK)


async def _reply(runtime: Runtime, update_id: int, method: TelegramMethod[Any]) -> Response:
    """A method a handler returned (`return message.answer(...)`), as Telegram's webhook reply:
    the 200's JSON body names it and Telegram runs it afterwards, its result unreported. The
    update is already committed, so an upload, which the reply cannot carry, is called here and
    a failure of it only logged."""
    body = reply_body(runtime.bot, method)
    if body is None:
        try:
            await runtime.bot(method)
        except Exception:
            log.exception("update %s: the reply %s failed", update_id, method.__api_method__)
        return Response(status_code=status.HTTP_200_OK)
    return Response(content=body, status_code=status.HTTP_200_OK, media_type="application/json")


def _declared_length(request: Request) -> int | None:
    """The body's Content-Length, if the request gives a valid one."""
    declared = request.headers.get("content-length")
    if declared is None or not (declared.isascii() and declared.isdigit()):
        return None
    return int(declared)


async def _read_body(request: Request) -> tuple[bytes, bool]:
    """The request's body and True; or, once it passes MAX_BODY_BYTES, where reading stops,
    what was read of it and False."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        if chunk:
            size += len(chunk)
            chunks.append(chunk)
            if size > MAX_BODY_BYTES:
                return b"".join(chunks)[:MAX_BODY_BYTES], False
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), True


def create_telegram_router() -> APIRouter:
    router = APIRouter()

    @router.post("/telegram/webhook", include_in_schema=False)
    async def telegram_webhook(
        request: Request,
        runtime: RuntimeDep,
        secret: Annotated[str | None, Header(alias=SECRET_HEADER)] = None,
    ) -> Response:
        # 401 for a missing header as for a wrong one; compare in constant time.
        if secret is None or not secrets.compare_digest(
            secret.encode(), runtime.webhook_secret.encode()
        ):
            return Response(status_code=status.HTTP_401_UNAUTHORIZED)
        # A body over the limit is refused unread (by its Content-Length) or unfinished (read
        # no further than the limit), so no sender holding the secret makes the process hold
        # more. It is authenticated and no Update: like any poison body it is answered 200 and
        # dead-lettered (with what was read of it), not 413, which Telegram would redeliver
        # for a day.
        declared = _declared_length(request)
        if declared is not None and declared > MAX_BODY_BYTES:
            return await _dead_letter(runtime, b"", f"body too large: {declared} bytes")
        try:
            body, whole = await _read_body(request)
        except ClientDisconnect:
            # The sender gave up before the body arrived: nothing to handle, nobody to answer.
            return Response(status_code=status.HTTP_400_BAD_REQUEST)
        if not whole:
            return await _dead_letter(runtime, body, f"body too large: over {MAX_BODY_BYTES} bytes")
        try:
            update = Update.model_validate_json(body, context={"bot": runtime.bot})
        except ValidationError as error:
            # A poison body would be retried by Telegram for a day: keep it and say 200.
            return await _dead_letter(runtime, body, f"unparseable update: {error}")
        if not _storable_update_id(update.update_id):
            return await _dead_letter(runtime, body, "unparseable update: update_id out of range")
        try:
            result = await runtime.dispatcher.feed_update(runtime.bot, update)
        except Exception as error:
            if is_transient(error):
                log.warning("update %s deferred: %r", update.update_id, error)
                return _unavailable(type(error).__name__)
            log.exception("update %s failed; dead-lettered", update.update_id)
            return await _dead_letter(runtime, body, f"handler error: {error!r}", update.update_id)
        if isinstance(result, TelegramMethod):
            return await _reply(runtime, update.update_id, result)
        return Response(status_code=status.HTTP_200_OK)

    return router
