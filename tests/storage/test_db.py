"""storage.db: the engine's errors keep parameters out; insert_on_conflict: one statement for
both backends, compiled once, with values stored exactly as the ORM stores them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine.default import CACHE_HIT
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import insert_on_conflict
from storage.models import ProcessedUpdate

AT = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
STATEMENT = insert_on_conflict(
    ProcessedUpdate, ("update_id", "processed_at"), ("update_id",), returning=("update_id",)
)


async def test_a_failed_statement_does_not_show_its_parameters(session: AsyncSession) -> None:
    """Errors are logged (and a handler's is kept in a dead letter): the SQL says what failed,
    the parameters, residents' personal data, stay out."""
    statement = text("SELECT * FROM no_such_table WHERE username = :username")
    with pytest.raises(DBAPIError) as raised:
        await session.execute(statement, {"username": "secret_handle_z9"})
    await session.rollback()
    assert "no_such_table" in str(raised.value)
    assert "secret_handle_z9" not in f"{raised.value} {raised.value!r}"


async def test_inserts_once_and_returns_only_the_new_row(session: AsyncSession) -> None:
    first = await session.execute(STATEMENT, {"update_id": 5, "processed_at": AT})
    assert first.scalar_one() == 5
    again = await session.execute(STATEMENT, {"update_id": 5, "processed_at": datetime.now(UTC)})
    assert again.first() is None
    await session.commit()
    # Read back through the ORM: the aware datetime went in as the ORM would write it.
    stored = (await session.scalars(select(ProcessedUpdate))).one()
    assert stored.update_id == 5 and stored.processed_at == AT


async def test_the_statement_is_compiled_once(session: AsyncSession) -> None:
    engine = session.get_bind()
    seen: list[object] = []

    def note(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any) -> None:
        if statement.startswith("INSERT INTO processed_update"):
            seen.append(context.cache_hit)

    event.listen(engine, "after_cursor_execute", note)
    try:
        for update_id in (11, 12, 13):
            await session.execute(STATEMENT, {"update_id": update_id, "processed_at": AT})
    finally:
        event.remove(engine, "after_cursor_execute", note)
    await session.rollback()
    # A dialect insert().on_conflict_*() would say NO_CACHE_KEY every time.
    assert seen[1:] == [CACHE_HIT] * 2, seen


def test_unknown_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="no column nope"):
        insert_on_conflict(ProcessedUpdate, ("update_id", "nope"), ("update_id",))
