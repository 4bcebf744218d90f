"""Bot API calls as `application/json` instead of aiogram's multipart forms.

aiogram's `AiohttpSession` builds a multipart `FormData` for every call (a random boundary,
every value JSON-encoded into a string part, objects encoded twice). Telegram accepts the same
parameters as one JSON object, which is cheaper to build and to send. Only uploads need
multipart: a method that carries an `InputFile` anywhere goes the parent's way.

`method_payload` is the JSON object of a method's parameters; the webhook route reuses it to
answer an update with the method a handler returned (Telegram's webhook reply).
"""

from __future__ import annotations

import datetime
import json
import re
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, cast

from aiogram.client.default import Default
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import InputFile
from aiohttp import ClientError, ClientTimeout
from pydantic import BaseModel

if TYPE_CHECKING:
    from aiogram import Bot

__all__ = ["JsonAiohttpSession", "dump_payload", "method_payload", "redact_token"]

_JSON_HEADERS: Final = {"Content-Type": "application/json"}


class _CarriesFiles(Exception):
    """Raised from deep inside a value: the method uploads something, JSON cannot carry it."""


def _prepare(value: Any, bot: Bot) -> Any:
    """`BaseSession.prepare_value` without the JSON-in-a-string step: what the JSON body holds.

    None inside objects and lists is dropped, `Default(...)` resolves to the bot's default,
    enums become their values and datetimes Unix time (an integer, Telegram's type; aiogram's
    form sends the same number as a string).
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float:
        return value
    if kind is dict:
        prepared: dict[str, Any] = {}
        for key, item in value.items():
            if item is not None and (prepared_item := _prepare(item, bot)) is not None:
                prepared[key] = prepared_item
        return prepared
    if kind is list or kind is tuple:
        items: list[Any] = []
        for item in value:
            if item is not None and (prepared_item := _prepare(item, bot)) is not None:
                items.append(prepared_item)
        return items
    if value is None:
        return None
    if isinstance(value, Default):
        return _prepare(bot.default[value.name], bot)
    if isinstance(value, InputFile):
        raise _CarriesFiles
    if isinstance(value, Enum):
        return _prepare(value.value, bot)
    if isinstance(value, str | int | float):  # subclasses of the plain types
        return value
    if isinstance(value, datetime.datetime):
        return round(value.timestamp())
    if isinstance(value, datetime.timedelta):
        return round((datetime.datetime.now() + value).timestamp())
    if isinstance(value, BaseModel):
        return _prepare(value.model_dump(warnings=False), bot)
    if isinstance(value, dict | list | tuple):  # subclasses of the containers
        return _prepare(dict(value) if isinstance(value, dict) else list(value), bot)
    return value


def method_payload(bot: Bot, method: TelegramMethod[Any]) -> dict[str, Any] | None:
    """The method's parameters as Telegram reads them from a JSON body, or None when the method
    uploads a file (only multipart can carry one).

    Semantically what aiogram's multipart form carries: the same fields (None and "" left out,
    as the form leaves them out), objects and lists as JSON values rather than strings.
    """
    payload: dict[str, Any] = {}
    try:
        for key, value in method.model_dump(warnings=False, exclude_none=True).items():
            prepared = _prepare(value, bot)
            if prepared is not None and prepared != "":
                payload[key] = prepared
    except _CarriesFiles:
        return None
    return payload


def dump_payload(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (Chinese text as itself, not \\u escapes)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def reply_body(bot: Bot, method: TelegramMethod[Any]) -> bytes | None:
    """The webhook reply that makes Telegram call `method` (`{"method": …, …}`), or None for
    an upload, which a reply cannot carry."""
    payload = method_payload(bot, method)
    if payload is None:
        return None
    return dump_payload({"method": method.__api_method__, **payload})


_TOKEN_SHAPE = re.compile(r"\d{3,}:[A-Za-z0-9_-]{10,}")


def redact_token(text: str, token: str) -> str:
    """`text` without the bot's token (nor anything shaped like a bot token)."""
    return _TOKEN_SHAPE.sub("<token>", text.replace(token, "<token>"))


class JsonAiohttpSession(AiohttpSession):
    """`AiohttpSession` that posts `application/json` unless the method uploads a file.

    Same errors as the parent (timeouts and connection failures as `TelegramNetworkError`,
    Telegram's refusals through `check_response`); session middlewares still wrap
    `make_request` through `BaseSession.__call__`.
    """

    def _encode(self, payload: dict[str, Any]) -> bytes:
        if self.json_dumps is json.dumps:
            return dump_payload(payload)
        return self.json_dumps(payload).encode()  # a custom encoder given to the session

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,
    ) -> TelegramType:
        try:
            return await self._request(bot, method, timeout)
        except TelegramNetworkError as error:
            # aiohttp names the URL in some errors ("Can not write request body for
            # https://api.telegram.org/bot<token>/sendPoll"), and these texts go on to the
            # log, the audit trail and officials' messages: the token never goes with them.
            cleaned = redact_token(error.message, bot.token)
            if cleaned == error.message:
                raise
            raise TelegramNetworkError(method=method, message=cleaned) from None

    async def _request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,
    ) -> TelegramType:
        payload = method_payload(bot, method)
        if payload is None:
            return await super().make_request(bot, method, timeout)
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        try:
            async with session.post(
                url,
                data=self._encode(payload),
                headers=_JSON_HEADERS,
                timeout=ClientTimeout(total=self.timeout if timeout is None else timeout),
            ) as resp:
                raw_result = await resp.text()
        except TimeoutError as e:
            raise TelegramNetworkError(method=method, message="Request timeout error") from e
        except ClientError as e:
            raise TelegramNetworkError(method=method, message=f"{type(e).__name__}: {e}") from e
        response = self.check_response(
            bot=bot, method=method, status_code=resp.status, content=raw_result
        )
        return cast(TelegramType, response.result)
