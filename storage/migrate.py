"""Alembic migrations run from code (`minsheng db upgrade`, tests), with no alembic.ini needed.

The script location is found next to this module, so an installed package migrates from
any working directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
ALEMBIC_INI = Path(__file__).resolve().with_name("alembic.ini")


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config for the store's migrations, without reading any file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        # ConfigParser interpolation: a password may contain '%'.
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None, "the store has at least one revision"
    return head


async def _run(database_url: str, operation: Callable[[Config], None]) -> None:
    config = alembic_config(database_url)

    def with_connection(connection: Connection) -> None:
        config.attributes["connection"] = connection
        operation(config)

    # Not storage.db.create_engine: SQLite must migrate with foreign keys off (see env.py).
    engine = create_async_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(with_connection)
    finally:
        await engine.dispose()


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database at `database_url` up to `revision`."""
    await _run(database_url, lambda config: command.upgrade(config, revision))


async def downgrade(database_url: str, revision: str) -> None:
    """Migrate down to `revision` ('base' for an empty database, '-1' for one step)."""
    await _run(database_url, lambda config: command.downgrade(config, revision))


async def current(database_url: str) -> str | None:
    """The revision the database is at, or None if it has never been migrated."""
    from alembic.runtime.migration import MigrationContext

    engine = create_async_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()
