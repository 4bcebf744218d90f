"""The `minsheng` command line, called through main([...]) as the console script does."""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from storage import migrate
from storage.db import create_engine, create_sessionmaker
from storage.models import Community, District, Street
from webhook.cli import main

GOOD = "district,street,community\n福田区,沙头街道,新沙社区\n福田区,沙头街道,天安社区\n"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean configuration: no developer's .env, no stray variables."""
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "BOT_TOKEN", "PUBLIC_URL", "WEBHOOK_SECRET", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _csv(tmp_path: Path, text: str, name: str = "org.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _counts(url: str) -> tuple[int, int, int]:
    async def count() -> tuple[int, int, int]:
        engine = create_engine(url)
        try:
            async with create_sessionmaker(engine)() as session:
                return (
                    int(await session.scalar(select(func.count(District.id))) or 0),
                    int(await session.scalar(select(func.count(Street.id))) or 0),
                    int(await session.scalar(select(func.count(Community.id))) or 0),
                )
        finally:
            await engine.dispose()

    return asyncio.run(count())


def test_org_import_is_idempotent(
    env: pytest.MonkeyPatch, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("DATABASE_URL", database_url)
    path = _csv(tmp_path, GOOD)
    assert main(["org", "import", path]) == 0
    assert capsys.readouterr().out.strip() == (
        "imported: 1 district, 1 street, 2 communities "
        "(0 districts, 0 streets, 0 communities already present)"
    )
    assert main(["org", "import", path]) == 0
    assert capsys.readouterr().out.strip() == (
        "imported: 0 districts, 0 streets, 0 communities "
        "(1 districts, 1 streets, 2 communities already present)"
    )
    assert _counts(database_url) == (1, 1, 2)


def test_org_import_bad_row_imports_nothing(
    env: pytest.MonkeyPatch, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("DATABASE_URL", database_url)
    path = _csv(tmp_path, GOOD + "福田区,,香蜜社区\n")
    assert main(["org", "import", path]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "line 4: street is empty" in captured.err
    assert "nothing was imported" in captured.err
    assert _counts(database_url) == (0, 0, 0)


def test_org_import_unreadable_files(
    env: pytest.MonkeyPatch, sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("DATABASE_URL", sqlite_url)
    assert main(["org", "import", str(tmp_path / "missing.csv")]) == 1
    assert "missing.csv" in capsys.readouterr().err
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(GOOD.encode("gbk"))
    assert main(["org", "import", str(gbk)]) == 1
    assert "not a UTF-8 file" in capsys.readouterr().err


def test_org_import_before_migrating(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    assert main(["org", "import", _csv(tmp_path, GOOD)]) == 1
    assert "minsheng db upgrade" in capsys.readouterr().err


def test_db_upgrade(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    env.setenv("DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    assert asyncio.run(migrate.current(url)) == migrate.head_revision()
    assert main(["db", "upgrade"]) == 0  # nothing left to do
    assert main(["org", "import", _csv(tmp_path, GOOD)]) == 0


def test_db_upgrade_uses_dotenv(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'from-dotenv.db'}"
    (tmp_path / ".env").write_text(f"DATABASE_URL={url}\n", encoding="utf-8")
    assert main(["db", "upgrade"]) == 0
    assert asyncio.run(migrate.current(url)) == migrate.head_revision()


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """webhook.server replaced: these tests are about argument handling, not serving."""
    calls: list[tuple[str, Any]] = []
    module = types.ModuleType("webhook.server")
    module.serve = lambda settings, host, port: calls.append(("serve", (settings, host, port)))  # type: ignore[attr-defined]
    module.polling = lambda settings: calls.append(("polling", settings))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "webhook.server", module)
    return calls


def test_serve_and_polling(env: pytest.MonkeyPatch, fake_server: list[tuple[str, Any]]) -> None:
    assert main(["serve"]) == 0
    assert main(["serve", "--host", "0.0.0.0", "--port", "8080"]) == 0
    assert main(["polling"]) == 0
    (_, (settings, host, port)), (_, (_, host2, port2)), (name, _) = fake_server
    assert (host, port, host2, port2, name) == ("127.0.0.1", 8000, "0.0.0.0", 8080, "polling")
    assert settings.sandbox


def test_serve_refuses_a_public_url_without_a_bot_token(
    env: pytest.MonkeyPatch, fake_server: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A deployment whose BOT_TOKEN did not reach the process does not start (in sandbox mode,
    on its database and public address): it says which variable is missing."""
    env.setenv("PUBLIC_URL", "https://minsheng.example.org")
    env.setenv("WEBHOOK_SECRET", "city_secret-1")
    assert main(["serve"]) == 2
    assert fake_server == []
    assert "BOT_TOKEN is required when PUBLIC_URL is set" in capsys.readouterr().err


def test_usage_errors(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["db"], ["org", "import"], ["serve", "--port", "web"]):
        with pytest.raises(SystemExit) as raised:
            main(argv)
        assert raised.value.code == 2
    capsys.readouterr()


def test_bad_configuration(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("TIMEZONE", "Mars/Olympus")
    assert main(["db", "upgrade"]) == 2
    assert "unknown time zone" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("WEBHOOK_SECRET", "WEBHOOK_SECRET must be 1-256 characters of A-Z a-z 0-9 _ -"),
        ("MAX_SUGGESTIONS_PER_DAY", "max_suggestions_per_day\n  Input should be a valid integer"),
    ],
    ids=["WEBHOOK_SECRET", "MAX_SUGGESTIONS_PER_DAY"],
)
def test_a_configuration_error_names_the_variable_not_its_value(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, said: str
) -> None:
    """pydantic's errors repeat the value refused, and `minsheng` prints the error to the
    service's log: a WEBHOOK_SECRET outside its alphabet (`openssl rand -base64` output) would
    be kept there. The error says which variable and what is wrong, without the value."""
    env.setenv(name, "Q2hhbmdlTWUhU2VjcmV0+PleaseK33p/Hidden=")
    assert main(["token", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("configuration error: ")
    assert said in err
    assert "PleaseK33p" not in err


def test_a_configuration_error_across_settings_prints_none_of_them(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rule across settings (PUBLIC_URL wants WEBHOOK_SECRET) fails on all of them at once,
    and its error would repeat every setting read: the bot token and DATABASE_URL's password
    with them (pydantic shortens it to its head and tail, which here hold the password)."""
    env.setenv("BOT_TOKEN", "123456789:AAH-configuration-token-0123456789")
    env.setenv("PUBLIC_URL", "https://minsheng.example.org")
    env.setenv("DATABASE_URL", "postgresql+asyncpg://ms:pw-Configuration-9@db/m")
    assert main(["token", "list"]) == 2
    err = capsys.readouterr().err
    assert "WEBHOOK_SECRET is required when PUBLIC_URL is set" in err
    assert "Configuration-9" not in err
    assert "configuration-token" not in err
