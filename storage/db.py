"""Engine and session factory for the project store (SQLite for a street, PostgreSQL for a city)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import ColumnElement, Table, TextClause, bindparam, event, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import InstrumentedAttribute

_P = ParamSpec("_P")
_R = TypeVar("_R")


def create_engine(database_url: str, **kwargs: Any) -> AsyncEngine:
    url = make_url(database_url)
    # A failed statement's error (and so any log or dead letter that quotes it) shows the SQL
    # but not its parameters: residents' names, usernames and Telegram ids, what they wrote.
    kwargs.setdefault("hide_parameters", True)
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            # WAL lets the board read while a dialog writes; foreign keys are off by default.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # No pre-ping: it costs a round trip per checkout, and a connection found dead mid-update
    # already turns into a 503 (Telegram redelivers) and is replaced by the pool.
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_timeout", 5)
    # A dead server must fail fast (503) rather than hold the webhook open.
    kwargs.setdefault("connect_args", {"timeout": 5, "command_timeout": 10})
    return create_async_engine(url, **kwargs)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_sqlite(bind: AsyncEngine | AsyncSession) -> bool:
    engine = bind.get_bind() if isinstance(bind, AsyncSession) else bind
    return engine.dialect.name == "sqlite"


async def take_write_lock(
    session: AsyncSession, column: InstrumentedAttribute[Any], where: ColumnElement[bool]
) -> None:
    """Before reading rows to change them (SELECT … FOR UPDATE), on SQLite: a no-op UPDATE of
    them (`column` = itself) takes the single writer lock first. A SQLite transaction that
    has read cannot turn into a writer once another has committed meanwhile ("database is
    locked" at once, whatever the busy timeout); one that writes first waits its turn, then
    reads the latest committed rows, and nobody else commits before it. PostgreSQL's row
    locks need nothing more."""
    if is_sqlite(session):
        await session.execute(
            update(column.class_)
            .where(where)
            .values({column.key: column})
            .execution_options(synchronize_session=False)
        )


def upsert(session: AsyncSession, model: Any) -> Any:
    """`INSERT` with ON CONFLICT support for the session's backend (PostgreSQL or SQLite)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def insert_on_conflict(
    model: type[Any],
    columns: Sequence[str],
    conflict: Sequence[str],
    then: str = "DO NOTHING",
    returning: Sequence[str] = (),
) -> TextClause:
    """`INSERT INTO <model's table> (columns) VALUES (:columns) ON CONFLICT (conflict) <then>`, one
    statement for PostgreSQL and SQLite (≥ 3.35) alike, for the paths every update takes.

    SQLAlchemy compiles its dialect `insert().on_conflict_*()` afresh on each execution (the
    construct has no cache key); a text() statement is compiled once. Parameters are typed by
    the table's columns, so values are stored exactly as the ORM stores them. `then` is SQL
    after the conflict target, e.g. "DO UPDATE SET n = t.n + 1" (`excluded.` works in both).
    """
    table = model.__table__
    assert isinstance(table, Table)
    known = table.c
    for name in (*columns, *conflict, *returning):
        if name not in known:
            raise ValueError(f"{table.name} has no column {name}")
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608 - names from metadata
        f"VALUES ({', '.join(':' + name for name in columns)}) "
        f"ON CONFLICT ({', '.join(conflict)}) {then}"
        + (f" RETURNING {', '.join(returning)}" if returning else "")
    )
    return text(sql).bindparams(*(bindparam(name, type_=known[name].type) for name in columns))


def operation(fn: Callable[_P, Coroutine[Any, Any, _R]]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """A service operation that commits at its end rolls back when it fails (a RuleViolation
    found after rows were locked, a database error), so its locks go at once, not when the
    front end gets round to closing the session. The session is its `session` argument, or
    its first."""

    @functools.wraps(fn)
    async def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await fn(*args, **kwargs)
        except Exception:
            session = kwargs.get("session", args[0] if args else None)
            if isinstance(session, AsyncSession):
                await session.rollback()
            raise

    return run
