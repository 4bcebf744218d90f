"""The one configuration object (environment or `.env`), shared by every room of the project.

It lives in storage/ because that is the room everything else depends on.
"""

from __future__ import annotations

import re
import secrets
from functools import cached_property
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
TELEGRAM_PUBLIC_API = "https://api.telegram.org"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        # A validation error names the variable and what is wrong with it, never its value:
        # `minsheng` prints the error, and a wrong WEBHOOK_SECRET (or, for a cross-field rule,
        # every setting at once, BOT_TOKEN and DATABASE_URL's password with them) would
        # otherwise reach the service's log.
        hide_input_in_errors=True,
    )

    bot_token: SecretStr | None = None
    telegram_api_base: str = TELEGRAM_PUBLIC_API
    webhook_secret: SecretStr | None = None
    public_url: str | None = None
    # Where people open the board, for links in the bot's messages, if not PUBLIC_URL (the
    # board on a host of its own); the sandbox sets it to its own address.
    site_url: str | None = None
    database_url: str = "sqlite+aiosqlite:///./minsheng.db"
    redis_url: str | None = None
    timezone: str = "Asia/Shanghai"
    default_locale: Literal["zh", "en"] = "zh"

    # Programme settings beyond the contract's names.
    max_suggestions_per_day: int = Field(default=5, ge=1, le=1000)
    processed_update_retention_days: int = Field(default=7, ge=1)
    notification_retention_days: int = Field(default=90, ge=1)
    # Dead letters hold whole updates (names, messages): kept long enough to look into.
    dead_letter_retention_days: int = Field(default=30, ge=1)
    sandbox_bot_username: str = "minsheng_sandbox_bot"

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _SECRET_RE.match(value.get_secret_value()):
            raise ValueError("WEBHOOK_SECRET must be 1-256 characters of A-Z a-z 0-9 _ -")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("public_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("PUBLIC_URL must be an https:// URL (Telegram requires it)")
        return value.rstrip("/") if value else value

    @field_validator("site_url")
    @classmethod
    def _site(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("SITE_URL must be an http(s):// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _public_deployment(self) -> Settings:
        if self.public_url and self.webhook_secret is None:
            raise ValueError("WEBHOOK_SECRET is required when PUBLIC_URL is set")
        if self.public_url and self.bot_token is None:
            # No BOT_TOKEN means sandbox mode, which seeds demo people and roles into the
            # store's tree and serves /sandbox to anyone: a public deployment whose token went
            # missing must stop, not open the sandbox on its own database and address.
            raise ValueError(
                "BOT_TOKEN is required when PUBLIC_URL is set "
                "(sandbox mode, without BOT_TOKEN, is for a machine without PUBLIC_URL)"
            )
        return self

    @property
    def board_base(self) -> str | None:
        """The address the board's links in the bot's messages start with, if any."""
        return self.site_url or self.public_url

    @property
    def sandbox(self) -> bool:
        """No BOT_TOKEN: the built-in Bot API emulator stands in for Telegram."""
        return self.bot_token is None

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def effective_webhook_secret(self) -> str:
        """The configured secret, or (sandbox and development) one made for this process."""
        if self.webhook_secret is not None:
            return self.webhook_secret.get_secret_value()
        return secrets.token_urlsafe(32)
