"""`minsheng token ...` and `minsheng invite ...`, called through main([...]) as the console
script does: tokens shown once and usable, revoked by prefix; invite links with the bot's
username (sandbox, getMe, or given), and scope names that repeat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.db import create_engine, create_sessionmaker
from storage.models import ApiToken, Invite, RoleGrant
from storage.rules import Role, ScopeLevel
from storage.services import invites, tokens
from storage.services.access import Principal
from storage.services.people import TelegramIdentity
from webhook.cli import main

ORG = (
    "district,street,community\n"
    "福田区,沙头街道,新沙社区\n"
    "福田区,沙头街道,天安社区\n"
    "南山区,粤海街道,新沙社区\n"
)
BOT_TOKEN = "123456789:AAH-test-token-for-the-cli-0123456789"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean configuration: no developer's .env, no stray variables."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "DATABASE_URL",
        "BOT_TOKEN",
        "PUBLIC_URL",
        "WEBHOOK_SECRET",
        "REDIS_URL",
        "TELEGRAM_API_BASE",
        "SANDBOX_BOT_USERNAME",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def org_db(
    env: pytest.MonkeyPatch, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    env.setenv("DATABASE_URL", database_url)
    path = tmp_path / "org.csv"
    path.write_text(ORG, encoding="utf-8")
    assert main(["org", "import", str(path)]) == 0
    capsys.readouterr()
    return database_url


def _in_store(url: str, work: Any) -> Any:
    async def run() -> Any:
        engine = create_engine(url)
        try:
            async with create_sessionmaker(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _count(url: str, model: Any) -> int:
    async def work(session: Any) -> int:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)

    result: int = _in_store(url, work)
    return result


def test_token_create_list_revoke(org_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["token", "create", "--role", "street_official", "--scope", "沙头街道"]
    assert main([*argv, "--label", "街道办系统"]) == 0
    captured = capsys.readouterr()
    token = captured.out.splitlines()[0]
    assert captured.out == token + "\n"  # the token alone
    assert re.fullmatch(r"ms_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", token)
    prefix = token.split("_")[1]
    assert "shown only this once" in captured.err and prefix in captured.err
    assert token not in captured.err

    async def who(session: Any) -> Principal | None:
        return await tokens.authenticate(session, token)

    principal = _in_store(org_db, who)
    assert principal is not None
    assert (principal.role, principal.scope.level) == (Role.STREET_OFFICIAL, ScopeLevel.STREET)

    assert main(["token", "create", "--role", "city_admin"]) == 0
    capsys.readouterr()
    assert main(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert token not in listing and token.split("_", 2)[2] not in listing
    lines = listing.splitlines()
    assert lines[0].split("\t") == [
        "prefix",
        "role",
        "scope",
        "created",
        "last used",
        "revoked",
        "label",
    ]
    row = next(line.split("\t") for line in lines if line.startswith(prefix))
    assert row[1:3] == ["street_official", "福田区 › 沙头街道"]
    assert (row[5], row[6]) == ("active", "街道办系统")
    assert any("\tcity_admin\tcity\t" in line for line in lines)

    assert main(["token", "revoke", prefix]) == 0
    assert capsys.readouterr().out.strip() == f"token {prefix} revoked"
    assert _in_store(org_db, who) is None
    assert main(["token", "revoke", f"ms_{prefix}"]) == 0
    assert "already revoked" in capsys.readouterr().out
    assert main(["token", "revoke", "ffffffff"]) == 1
    assert "no token with prefix" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--role", "city_admin", "--scope", "福田区"], "city_admin takes no scope"),
        (["--role", "district_admin"], "district_admin needs a district name"),
        (["--role", "district_admin", "--scope", "罗湖区"], "no district named '罗湖区'"),
        (["--role", "community_staff", "--scope", "沙头街道"], "no community named '沙头街道'"),
    ],
)
def test_token_create_refusals(
    org_db: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["token", "create", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert _count(org_db, ApiToken) == 0


def test_no_token_for_a_council_member(org_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["token", "create", "--role", "council_member", "--scope", "天安社区"])
    assert raised.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_name_two_communities_share(org_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["token", "create", "--role", "community_staff", "--scope"]
    assert main([*argv, "新沙社区"]) == 1
    err = capsys.readouterr().err
    assert "2 community scopes match '新沙社区'" in err
    assert "南山区/粤海街道/新沙社区" in err and "福田区/沙头街道/新沙社区" in err
    assert _count(org_db, ApiToken) == 0
    assert main([*argv, "沙头街道/新沙社区"]) == 0
    assert main([*argv, "南山区 › 粤海街道 › 新沙社区"]) == 0
    assert main([*argv, "天安社区"]) == 0  # unique names need no path
    assert main([*argv, "粤海街道/天安社区"]) == 1
    capsys.readouterr()
    assert _count(org_db, ApiToken) == 3


def test_invite_in_sandbox_mode(org_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["invite", "create", "--role", "council_member", "--scope", "天安社区"]
    assert main([*argv, "--uses", "3", "--expires-days", "7"]) == 0
    captured = capsys.readouterr()
    link = captured.out.strip()
    match = re.fullmatch(r"https://t\.me/minsheng_sandbox_bot\?start=(i_[A-Za-z0-9_-]{22})", link)
    assert match, link
    assert "council_member of 福田区 › 沙头街道 › 天安社区; 3 uses; expires" in captured.err

    async def redeem(session: Any) -> RoleGrant:
        return await invites.redeem(session, match.group(1), TelegramIdentity(31, "委员"))

    grant = _in_store(org_db, redeem)
    assert (grant.role, grant.scope_level) == (Role.COUNCIL_MEMBER, ScopeLevel.COMMUNITY)

    assert main(["invite", "list"]) == 0
    row = capsys.readouterr().out.splitlines()[1].split("\t")
    assert row[:4] == [match.group(1), "council_member", "福田区 › 沙头街道 › 天安社区", "1/3"]
    assert main(["invite", "revoke", match.group(1)]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["invite", "revoke", "i_unknown"]) == 1
    capsys.readouterr()


def test_invite_for_a_city_admin(org_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["invite", "create", "--role", "city_admin"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("https://t.me/minsheng_sandbox_bot?start=i_")
    assert "city_admin of the whole city; 1 use; does not expire" in captured.err


@pytest.mark.parametrize("argv", [["--uses", "0"], ["--expires-days", "-1"], ["--uses", "x"]])
def test_invite_usage_errors(
    org_db: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["invite", "create", "--role", "council_member", "--scope", "天安社区", *argv])
    assert raised.value.code == 2
    capsys.readouterr()


class _GetMe(BaseHTTPRequestHandler):
    calls: list[str] = []  # noqa: RUF012

    def do_POST(self) -> None:
        type(self).calls.append(self.path)
        body = json.dumps(
            {
                "ok": True,
                "result": {
                    "id": 123456789,
                    "is_bot": True,
                    "first_name": "民生微实事",
                    "username": "minsheng_city_bot",
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _RedirectLoop(BaseHTTPRequestHandler):
    """A Bot API address behind a misconfigured proxy: every request is redirected to itself."""

    def do_POST(self) -> None:
        self.send_response(307)
        self.send_header("Location", self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextlib.contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def bot_api() -> Iterator[str]:
    """A Bot API server that answers getMe."""
    _GetMe.calls = []
    with _serving(_GetMe) as url:
        yield url


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_invite_asks_getme_for_the_username(
    org_db: str, env: pytest.MonkeyPatch, bot_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("BOT_TOKEN", BOT_TOKEN)
    env.setenv("TELEGRAM_API_BASE", bot_api)
    assert main(["invite", "create", "--role", "community_staff", "--scope", "天安社区"]) == 0
    assert capsys.readouterr().out.startswith("https://t.me/minsheng_city_bot?start=i_")
    assert _GetMe.calls == [f"/bot{BOT_TOKEN}/getMe"]


def test_invite_when_telegram_cannot_be_reached(
    org_db: str, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("BOT_TOKEN", BOT_TOKEN)
    env.setenv("TELEGRAM_API_BASE", f"http://127.0.0.1:{_closed_port()}")
    argv = ["invite", "create", "--role", "community_staff", "--scope", "天安社区"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "could not ask Telegram for the bot's username" in captured.err
    assert "--bot-username" in captured.err
    assert _count(org_db, Invite) == 0
    assert main([*argv, "--bot-username", "@minsheng_city_bot"]) == 0
    assert capsys.readouterr().out.startswith("https://t.me/minsheng_city_bot?start=i_")
    assert _count(org_db, Invite) == 1


@pytest.mark.parametrize("where", ["no scheme", "redirect loop"])
def test_invite_does_not_print_the_bot_token_when_getme_fails(
    org_db: str, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """aiohttp names the request URL, /bot<token>/getMe, in some of its errors (a
    TELEGRAM_API_BASE without its scheme; a proxy that redirects in a loop); what the operator
    is told (and a log keeps) says what failed without the token."""
    env.setenv("BOT_TOKEN", BOT_TOKEN)
    with _serving(_RedirectLoop) as looping:
        env.setenv("TELEGRAM_API_BASE", "api.telegram.org" if where == "no scheme" else looping)
        assert main(["invite", "create", "--role", "community_staff", "--scope", "天安社区"]) == 1
    err = capsys.readouterr().err
    assert "could not ask Telegram for the bot's username" in err
    assert ("InvalidUrl" if where == "no scheme" else "TooManyRedirects") in err
    assert BOT_TOKEN.split(":", 1)[1] not in err
    assert _count(org_db, Invite) == 0


def test_access_commands_before_migrating(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    assert main(["token", "list"]) == 1
    assert "minsheng db upgrade" in capsys.readouterr().err
