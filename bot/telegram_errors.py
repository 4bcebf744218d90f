"""What a failed request to Telegram means for whoever made it: one reading of aiogram's errors
for every sender (bot.outbox, bot.polls), which then decide what to do on it.

aiogram raises a class per kind of answer, but its classes do not say what a sender must
know first: whether Telegram carried the request out. A TelegramNetworkError is raised both
when the connection was never made (nothing reached Telegram: safe to repeat) and when the
answer was lost after the request went (a timeout: it may have been done); a 413
(TelegramEntityTooLarge) is filed under the network errors although Telegram answered it,
refusing; and an answer that cannot be read (ClientDecodeError: a proxy's error page, say)
is no TelegramAPIError at all. `classify` sorts them by that question, once.

A sender's policy is its own: a notice may arrive twice, so the outbox sends again what may
have been done; a council poll must not be posted twice, so bot.polls records it as
uncertain and tells the convener.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiohttp import ClientConnectorError

# What a request to Telegram raises when it fails: an answer of Telegram's, one that cannot
# be read, or none (aiogram wraps aiohttp's errors and its timeout in TelegramNetworkError;
# these last two are for what reaches a sender unwrapped).
REQUEST_ERRORS: tuple[type[Exception], ...] = (
    TelegramAPIError,
    ClientDecodeError,
    OSError,
    TimeoutError,
)


class FailureKind(enum.Enum):
    # Telegram did nothing:
    RATE_LIMITED = "rate_limited"  # a 429: the same request succeeds after `retry_after`
    CHAT_GONE = "chat_gone"  # a 403: the bot may not write there (blocked, removed)
    MIGRATED = "migrated"  # the group is now the supergroup `new_chat_id`
    REFUSED = "refused"  # another 4xx: the request is wrong for Telegram, and stays so
    UNAUTHORIZED = "unauthorized"  # a 401: the bot's token is refused; nothing goes anywhere
    NEVER_SENT = "never_sent"  # the connection was never made (DNS, TCP, TLS, proxy)
    # Telegram may have carried it out:
    UNCERTAIN = "uncertain"  # no usable answer after the request went: a timeout, a 5xx, …


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureKind
    description: str  # describe(error)
    retry_after: float = 0.0  # RATE_LIMITED: seconds to wait
    new_chat_id: int = 0  # MIGRATED: the supergroup's id (no chat's id is 0)


def classify(error: BaseException) -> Failure:
    """What `error`, raised by a request to Telegram, says became of the request. An error of
    no kind known here is taken as UNCERTAIN: nothing shows the request did not go."""
    description = describe(error)
    if isinstance(error, TelegramRetryAfter):
        return Failure(FailureKind.RATE_LIMITED, description, retry_after=error.retry_after)
    if isinstance(error, TelegramMigrateToChat):
        return Failure(FailureKind.MIGRATED, description, new_chat_id=error.migrate_to_chat_id)
    if isinstance(error, TelegramForbiddenError):
        return Failure(FailureKind.CHAT_GONE, description)
    if isinstance(error, TelegramUnauthorizedError):
        return Failure(FailureKind.UNAUTHORIZED, description)
    if isinstance(error, TelegramEntityTooLarge):  # a network error to aiogram, but answered
        return Failure(FailureKind.REFUSED, description)
    if _never_connected(error):
        return Failure(FailureKind.NEVER_SENT, description)
    if isinstance(error, TelegramAPIError) and not isinstance(
        error, TelegramNetworkError | TelegramServerError
    ):
        return Failure(FailureKind.REFUSED, description)
    return Failure(FailureKind.UNCERTAIN, description)


def _never_connected(error: BaseException) -> bool:
    """The connection to Telegram was never made: the request did not reach it. aiogram wraps
    aiohttp's error in a TelegramNetworkError."""
    return isinstance(error, ClientConnectorError) or isinstance(
        error.__cause__, ClientConnectorError
    )


def describe(error: BaseException) -> str:
    """The error as stored and told to people: Telegram's description when there is one."""
    return getattr(error, "message", None) or repr(error)


__all__ = ["REQUEST_ERRORS", "Failure", "FailureKind", "classify", "describe"]
