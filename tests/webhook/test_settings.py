"""Configuration: the contract's variables, their defaults and cross-field rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from storage.settings import Settings
from webhook.app import with_own_site


def test_defaults_are_the_contracts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BOT_TOKEN", "DATABASE_URL", "REDIS_URL", "PUBLIC_URL", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.sandbox
    assert settings.database_url == "sqlite+aiosqlite:///./minsheng.db"
    assert settings.redis_url is None
    assert settings.timezone == "Asia/Shanghai"
    assert settings.default_locale == "zh"
    assert settings.telegram_api_base == "https://api.telegram.org"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", "123:abc")
    monkeypatch.setenv("DEFAULT_LOCALE", "en")
    monkeypatch.setenv("TIMEZONE", "Europe/Berlin")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert not settings.sandbox
    assert settings.bot_token is not None and settings.bot_token.get_secret_value() == "123:abc"
    assert "123:abc" not in repr(settings)  # secrets are never printed
    assert settings.tz.key == "Europe/Berlin"


@pytest.mark.parametrize("secret", ["", "has space", "ü", "x" * 257, "semi;colon"])
def test_webhook_secret_shape(secret: str) -> None:
    with pytest.raises(ValidationError):
        Settings(webhook_secret=secret, _env_file=None)  # type: ignore[call-arg,arg-type]


def test_public_url_needs_secret_and_https() -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_SECRET"):
        Settings(
            public_url="https://minsheng.example.org",
            bot_token="42:TEST",  # type: ignore[arg-type]
            _env_file=None,  # type: ignore[call-arg]
        )
    with pytest.raises(ValidationError, match="https"):
        Settings(
            public_url="http://minsheng.example.org",
            webhook_secret="abc",  # type: ignore[arg-type]
            bot_token="42:TEST",  # type: ignore[arg-type]
            _env_file=None,  # type: ignore[call-arg]
        )
    ok = Settings(
        public_url="https://minsheng.example.org/",
        webhook_secret="abc",  # type: ignore[arg-type]
        bot_token="42:TEST",  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )
    assert ok.public_url == "https://minsheng.example.org"
    assert ok.effective_webhook_secret == "abc"


def test_a_public_deployment_without_its_bot_token_is_refused(sqlite_url: str) -> None:
    """No BOT_TOKEN is sandbox mode, which seeds demo people and roles into the store's tree
    (a real place: its 新沙社区 is the city's) and serves /sandbox to anyone. With PUBLIC_URL
    set, a deployment whose token went missing (a secret renamed, not mounted) is refused,
    naming BOT_TOKEN, rather than opening the sandbox on its own database and address."""
    with pytest.raises(ValidationError, match="BOT_TOKEN is required when PUBLIC_URL is set"):
        Settings(
            public_url="https://minsheng.example.org",
            webhook_secret="city_secret-1",  # type: ignore[arg-type]
            database_url=sqlite_url,
            _env_file=None,  # type: ignore[call-arg]
        )


def test_unknown_timezone_and_locale_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(timezone="Mars/Olympus", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Settings(default_locale="fr", _env_file=None)  # type: ignore[call-arg,arg-type]


def test_sandbox_secret_is_made_once_per_process() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.effective_webhook_secret == settings.effective_webhook_secret
    assert len(settings.effective_webhook_secret) >= 32


def test_the_boards_address_for_the_bots_links() -> None:
    assert Settings(_env_file=None).board_base is None  # type: ignore[call-arg]
    public = Settings(
        public_url="https://bot.example.org",
        webhook_secret="abc",  # type: ignore[arg-type]
        bot_token="42:TEST",  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )
    assert public.board_base == "https://bot.example.org"
    own = public.model_copy(update={"site_url": "https://minsheng.example.org"})
    assert own.board_base == "https://minsheng.example.org"
    assert Settings(site_url="http://127.0.0.1:8000/", _env_file=None).board_base == (  # type: ignore[call-arg]
        "http://127.0.0.1:8000"
    )
    with pytest.raises(ValidationError, match="SITE_URL"):
        Settings(site_url="minsheng.example.org", _env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("::", "127.0.0.1"),
        ("192.0.2.7", "192.0.2.7"),
        ("::1", "[::1]"),
        ("minsheng.local", "minsheng.local"),
    ],
)
def test_the_sandbox_links_its_own_board(host: str, shown: str) -> None:
    sandbox = Settings(_env_file=None)  # type: ignore[call-arg]
    assert with_own_site(sandbox, (host, 8123)).board_base == f"http://{shown}:8123"
    chosen = sandbox.model_copy(update={"site_url": "https://board.example.org"})
    assert with_own_site(chosen, (host, 8123)).board_base == "https://board.example.org"
