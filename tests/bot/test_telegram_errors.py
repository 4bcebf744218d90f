"""bot.telegram_errors: each of aiogram's errors read as what became of the request, the one
reading the outbox and the council polls decide on."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiogram.exceptions import (
    ClientDecodeError,
    RestartingTelegram,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessage
from aiohttp import ClientConnectorError

from bot.telegram_errors import REQUEST_ERRORS, Failure, FailureKind, classify, describe

METHOD = SendMessage(chat_id=-100_111, text="x")


def refused_connection() -> ClientConnectorError:
    key = SimpleNamespace(host="api.telegram.org", port=443, ssl=True)
    return ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))  # type: ignore[arg-type]


def never_connected() -> TelegramNetworkError:
    """As aiogram raises it: its own error, caused by aiohttp's."""
    cause = refused_connection()
    error = TelegramNetworkError(method=METHOD, message=f"ClientConnectorError: {cause}")
    error.__cause__ = cause
    return error


# Telegram did nothing: it answered so, or the request never reached it.
DID_NOTHING = [
    (
        TelegramRetryAfter(method=METHOD, message="Too Many", retry_after=7),
        FailureKind.RATE_LIMITED,
    ),
    (TelegramForbiddenError(method=METHOD, message="Forbidden"), FailureKind.CHAT_GONE),
    (
        TelegramMigrateToChat(method=METHOD, message="migrated", migrate_to_chat_id=-100_999),
        FailureKind.MIGRATED,
    ),
    (TelegramUnauthorizedError(method=METHOD, message="Unauthorized"), FailureKind.UNAUTHORIZED),
    (TelegramBadRequest(method=METHOD, message="Bad Request: x"), FailureKind.REFUSED),
    (TelegramNotFound(method=METHOD, message="Not Found"), FailureKind.REFUSED),
    (TelegramConflictError(method=METHOD, message="Conflict"), FailureKind.REFUSED),
    # aiogram files a 413 under its network errors, but Telegram answered it.
    (TelegramEntityTooLarge(method=METHOD, message="Too Large"), FailureKind.REFUSED),
    # A status aiogram has no class for.
    (TelegramAPIError(method=METHOD, message="Payment Required"), FailureKind.REFUSED),
    (never_connected(), FailureKind.NEVER_SENT),
    (refused_connection(), FailureKind.NEVER_SENT),  # as aiohttp raises it
]
# Telegram may have carried it out: no answer came, or none that can be read.
MAY_HAVE_DONE = [
    TelegramNetworkError(method=METHOD, message="Request timeout error"),
    TelegramNetworkError(method=METHOD, message="ServerDisconnectedError: closed"),
    TelegramServerError(method=METHOD, message="Internal Server Error"),
    RestartingTelegram(method=METHOD, message="restart"),
    ClientDecodeError("Failed to decode object", ValueError("html"), "<html>502</html>"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError(),
    ValueError("nothing known"),
]


@pytest.mark.parametrize(
    ("error", "kind"),
    [*DID_NOTHING, *((error, FailureKind.UNCERTAIN) for error in MAY_HAVE_DONE)],
    ids=lambda value: value.name if isinstance(value, FailureKind) else type(value).__name__,
)
def test_each_error_reads_as_what_became_of_the_request(
    error: Exception, kind: FailureKind
) -> None:
    assert classify(error) == Failure(
        kind,
        describe(error),
        retry_after=7 if kind is FailureKind.RATE_LIMITED else 0,
        new_chat_id=-100_999 if kind is FailureKind.MIGRATED else 0,
    )


def test_every_error_a_request_raises_is_caught_by_the_senders() -> None:
    for error in (
        never_connected(),
        TimeoutError(),
        OSError(),
        ClientDecodeError("x", OSError(), ""),
    ):
        assert isinstance(error, REQUEST_ERRORS)


def test_describe_gives_telegrams_description_else_the_error() -> None:
    assert describe(TelegramBadRequest(method=METHOD, message="Bad Request: x")) == "Bad Request: x"
    assert describe(TimeoutError()) == "TimeoutError()"
