"""Migrations: every revision goes up, down and up again (the "stairway"), and the schema
they build is exactly storage.models' metadata, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from conftest import _run, create_postgres_database, drop_postgres_database
from sqlalchemy import Connection, inspect

from storage import migrate
from storage.db import create_engine
from storage.models import Base


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
    ]
)
def empty_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
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


def _revisions() -> list[Script]:
    """Oldest first."""
    return list(reversed(list(migrate.script_directory().walk_revisions("base", "heads"))))


def _down_target(revision: Script) -> str:
    down = revision.down_revision
    if down is None:
        return "base"
    return down if isinstance(down, str) else "-1"


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


def test_one_head() -> None:
    # Two engineers adding revisions in parallel make two heads; merge them before release.
    assert len(migrate.script_directory().get_heads()) == 1


def test_alembic_ini_finds_the_same_scripts() -> None:
    config = Config(str(migrate.ALEMBIC_INI))
    assert ScriptDirectory.from_config(config).get_current_head() == migrate.head_revision()


async def test_stairway(empty_url: str) -> None:
    for revision in _revisions():
        await migrate.upgrade(empty_url, revision.revision)
        await migrate.downgrade(empty_url, _down_target(revision))
        await migrate.upgrade(empty_url, revision.revision)
    assert await migrate.current(empty_url) == migrate.head_revision()


async def test_downgrade_to_base_leaves_nothing(empty_url: str) -> None:
    await migrate.upgrade(empty_url)
    assert {t.name for t in Base.metadata.sorted_tables} <= await _tables(empty_url)
    await migrate.downgrade(empty_url, "base")
    assert await _tables(empty_url) <= {"alembic_version"}
    assert await migrate.current(empty_url) is None


async def test_migrations_match_models(empty_url: str) -> None:
    await migrate.upgrade(empty_url)

    def diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, Base.metadata))

    engine = create_engine(empty_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


def test_offline_sql_for_postgresql() -> None:
    """`alembic upgrade --sql` (env.py's offline mode) renders without a database."""
    buffer = io.StringIO()
    config = Config(output_buffer=buffer)
    config.set_main_option("script_location", str(migrate.MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", "postgresql+asyncpg://nobody@localhost/none")
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    assert "CREATE TABLE suggestion (" in sql
    assert "CONSTRAINT uq_suggestion_number UNIQUE (number)" in sql
