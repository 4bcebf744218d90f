"""Fixtures shared by the whole suite.

Services follow the contract's rule: when PostgreSQL, Redis or Debian's chromium is missing,
the tests that need it skip with the reason, except with `REQUIRE_SERVICES=1`, where they
fail. PostgreSQL and Redis come from `TEST_POSTGRES_URL` and `TEST_REDIS_URL`.

Databases are migrated with the real Alembic migrations once per session, then handed to each
test empty: on SQLite as a copy of a migrated template file, on PostgreSQL by emptying a
throwaway database made for this session (so parallel runs by several people on one server do
not meet). `tests/storage/test_migrations.py` proves the migrations equal `storage.models`.

Parallel runs (`make test` runs `pytest -n 2`, pytest-xdist): each worker is a session of its
own, so it makes its own PostgreSQL database on the TEST_POSTGRES_URL server (named after its
pid) and its own SQLite template. Redis has no such names, and each test flushes the database
it uses: worker gw0 takes TEST_REDIS_URL's database, gwN the N-th below it (so with -n 2 and
the default redis://127.0.0.1:6379/15, databases 15 and 14). A plain `pytest` is one session
on TEST_REDIS_URL's database alone.

Fixtures: `database_url` (each test runs twice, ids `sqlite` and `postgres`), `sqlite_url`,
`postgres_url`, and on top of `database_url`: `engine`, `sessionmaker`, `session`, `org`.
Also `redis_url` and `chromium_path`; tests marked `browser` skip without chromium. The URL
fixtures are synchronous, so sync tests that call `asyncio.run` (the CLI's) can use them.

Helpers other test modules may import (`from conftest import ...`): `unavailable(reason)`
skips or fails by the rule above; `OrgTree` is what `org` returns;
`create_postgres_database()` / `drop_postgres_database(url)` for a test that needs a database
of its own (call `postgres_server` first so an absent server skips).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage import migrate
from storage.db import create_engine, create_sessionmaker
from storage.models import Base, Street
from storage.services.org import OrgRow, find_community, import_rows

# tests/webhook/public_data is a helper module and, for its `client` fixture, a plugin of the
# modules that import it: registered here, before they import it, so that loading it as a
# plugin raises no warning.
pytest.register_assert_rewrite("public_data")

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def _worker_redis_url(url: str, worker: str | None) -> str:
    """`url` for the pytest-xdist worker `worker` ("gw0", "gw1", ...; None when not under
    xdist): gw0 keeps the database `url` names, gwN takes the one N below it, since each test
    flushes the database it uses."""
    index = int(worker.removeprefix("gw")) if worker and worker.startswith("gw") else 0
    parts = urlsplit(url)
    database = int(parts.path.lstrip("/") or 0) - index
    if database < 0:
        raise RuntimeError(f"too many test workers for the Redis databases below {url}")
    return urlunsplit(parts._replace(path=f"/{database}"))


REDIS_URL = _worker_redis_url(
    os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    os.environ.get("PYTEST_XDIST_WORKER"),
)
CHROMIUM = "/usr/bin/chromium"

_T = TypeVar("_T")


def unavailable(reason: str) -> NoReturn:
    """A service the test needs is missing: skip, or fail under REQUIRE_SERVICES=1."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run set-up work from a sync fixture on a private loop, leaving pytest-asyncio's alone."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # So that `-m "not postgres"` / `-m "not redis"` also leave out tests using the fixtures.
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "postgres_url" in names or "postgres_server" in names:
            item.add_marker(pytest.mark.postgres)
        if "redis_url" in names:
            item.add_marker(pytest.mark.redis)


def pytest_collection_finish(session: pytest.Session) -> None:
    # What the imports and the collection built lives as long as the session: moved out of
    # the cyclic collector's sight, so that each full collection does not walk it again (in
    # tests/dialogs they took 12 s of 60, 6 s so), as webhook.app does after its start-up.
    gc.collect()
    gc.freeze()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("browser") and not os.access(CHROMIUM, os.X_OK):
        unavailable(f"browser test needs Debian's chromium at {CHROMIUM}")


@pytest.fixture
def chromium_path() -> str:
    """Path of Debian's chromium, for Playwright's `executable_path`."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"needs Debian's chromium at {CHROMIUM}")
    return CHROMIUM


# --- SQLite ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    _run(migrate.upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh, migrated, empty SQLite database file in `tmp_path` (for SQLite-only tests)."""
    path = tmp_path / "minsheng.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


# --- PostgreSQL -----------------------------------------------------------------------------

_DB_PREFIX = "minsheng_test_"


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_admin(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(_asyncpg_dsn(url), timeout=3)


async def _drop_stale_databases(admin: asyncpg.Connection) -> None:
    """Databases left by runs that crashed on this machine (their pid is in the name)."""
    names = await admin.fetch(
        "SELECT datname FROM pg_database WHERE datname LIKE $1", _DB_PREFIX + "%"
    )
    for (name,) in names:
        pid = name.removeprefix(_DB_PREFIX).split("_")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(asyncpg.PostgresError):
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def create_postgres_database(migrated: bool = True) -> str:
    """A new throwaway database on the TEST_POSTGRES_URL server; its SQLAlchemy URL."""
    name = f"{_DB_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    admin = await _pg_admin(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    if migrated:
        await migrate.upgrade(url)
    return url


async def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    assert name and name.startswith(_DB_PREFIX), "only databases these fixtures made"
    admin = await _pg_admin(POSTGRES_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
    ]
)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database never migrated: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    request.getfixturevalue("postgres_server")
    url = _run(create_postgres_database(migrated=False))
    try:
        yield url
    finally:
        _run(drop_postgres_database(url))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """TEST_POSTGRES_URL once the server answers; skip or fail (REQUIRE_SERVICES) otherwise.

    Checked once per session: pytest caches a session fixture's skip for every later test.
    """

    async def check() -> None:
        admin = await _pg_admin(POSTGRES_URL)
        try:
            await _drop_stale_databases(admin)
        finally:
            await admin.close()

    try:
        _run(check())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        unavailable(f"PostgreSQL at {make_url(POSTGRES_URL)!r} unreachable: {exc!r}")
    return POSTGRES_URL


async def _emptying_sql(conn: asyncpg.Connection) -> str:
    """One batch that empties the database: DELETE every table, children first, then set back
    the sequences that were used (`ALTER SEQUENCE ... RESTART` would write a new file for
    each of them, ten times the cost of the rest at one emptying per test)."""
    present = {r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name in present]
    statements = [f'DELETE FROM "{name}"' for name in tables]
    statements.append(
        "SELECT setval(format('%I.%I', schemaname, sequencename), start_value, false)"
        " FROM pg_sequences WHERE last_value IS NOT NULL"
    )
    return "; ".join(statements)


class _SessionDatabase:
    """This session's PostgreSQL database, and one connection that empties it before each
    test, kept on an event loop of its own for the whole session (pytest-asyncio's loops
    last one test)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._conn: asyncpg.Connection | None = None
        self._emptying = ""

    async def _connect(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(_asyncpg_dsn(self.url), timeout=5)
            # A test that leaked an open transaction must not hang the next one.
            await self._conn.execute("SET lock_timeout = '10s'")
            self._emptying = self._emptying or await _emptying_sql(self._conn)
        return self._conn

    async def _empty(self) -> None:
        try:
            await (await self._connect()).execute(self._emptying)
        except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
            # The connection was lost between two tests: once more, on a new one.
            if self._conn is not None:
                self._conn.terminate()
            self._conn = None
            await (await self._connect()).execute(self._emptying)

    def empty(self) -> None:
        self._loop.run_until_complete(self._empty())

    def close(self) -> None:
        try:
            if self._conn is not None:
                self._loop.run_until_complete(self._conn.close(timeout=5))
        finally:
            self._loop.close()


@pytest.fixture(scope="session")
def _postgres_session_database(postgres_server: str) -> Iterator[_SessionDatabase]:
    try:
        url = _run(create_postgres_database())
    except asyncpg.PostgresError as exc:
        unavailable(f"cannot create a test database on PostgreSQL: {exc!r}")
    database = _SessionDatabase(url)
    try:
        yield database
    finally:
        try:
            database.close()
        finally:
            _run(drop_postgres_database(url))


@pytest.fixture
def postgres_url(_postgres_session_database: _SessionDatabase) -> str:
    """A migrated, empty PostgreSQL database (this session's, emptied before the test)."""
    _postgres_session_database.empty()
    return _postgres_session_database.url


# --- Both backends --------------------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated, empty database; every test using it runs on SQLite and PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """`storage.db.create_engine(database_url)`, disposed after the test."""
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session for the test; open more from `sessionmaker` to act as separate requests."""
    async with sessionmaker() as session:
        yield session


@dataclass(frozen=True, slots=True)
class OrgTree:
    """Ids of the seeded tree: 福田区 › 沙头街道 › 新沙社区, 天安社区."""

    district_id: int
    street_id: int
    xinsha_id: int  # 新沙社区
    tianan_id: int  # 天安社区


ORG_ROWS = (
    OrgRow(2, "福田区", "沙头街道", "新沙社区"),
    OrgRow(3, "福田区", "沙头街道", "天安社区"),
)


@pytest.fixture
async def org(sessionmaker: async_sessionmaker[AsyncSession]) -> OrgTree:
    """A small administrative tree, through storage.services.org.import_rows."""
    async with sessionmaker() as session:
        await import_rows(session, ORG_ROWS)
        xinsha = await find_community(session, "新沙社区")
        tianan = await find_community(session, "天安社区")
        assert xinsha is not None and tianan is not None
        street = await session.get(Street, xinsha.street_id)
        assert street is not None
        return OrgTree(street.district_id, street.id, xinsha.id, tianan.id)


# --- Redis ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _redis_server() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_URL} unreachable: {exc!r}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_url(_redis_server: str) -> Iterator[str]:
    """TEST_REDIS_URL, its database flushed before and after the test."""
    client = redis.Redis.from_url(_redis_server, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.flushdb()
        yield _redis_server
        client.flushdb()
    finally:
        client.close()
