"""Telegram update bookkeeping in the store: de-duplication and dead letters."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import insert_on_conflict
from storage.models import DeadLetter, ProcessedUpdate, utcnow

DEAD_LETTER_BODY_MAX = 64 * 1024


# Compiled once (see storage.db.insert_on_conflict): without Redis, every update runs it.
_CLAIM = insert_on_conflict(
    ProcessedUpdate,
    ("update_id", "processed_at"),
    ("update_id",),
    returning=("update_id",),
)


async def claim_update(session: AsyncSession, update_id: int) -> bool:
    """Record `update_id` as handled in the current transaction; False if it already was.

    The row commits with the update's own effects, so a failed update leaves no mark and
    Telegram's redelivery is handled afresh (a service that commits part-way takes the mark
    with it: the caller then releases it, `release_update`).
    """
    params = {"update_id": update_id, "processed_at": utcnow()}
    return (await session.execute(_CLAIM, params)).first() is not None


async def release_update(session: AsyncSession, update_id: int) -> None:
    """Forget that `update_id` was handled, and commit: for an update that failed after
    something committed its mark early (see bot.middlewares), so that its redelivery runs."""
    await session.execute(delete(ProcessedUpdate).where(ProcessedUpdate.update_id == update_id))
    await session.commit()


async def dead_letter(
    session: AsyncSession, body: bytes | str, reason: str, update_id: int | None = None
) -> DeadLetter:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    # PostgreSQL text cannot hold NUL; keep the body readable and faithful otherwise.
    letter = DeadLetter(
        update_id=update_id,
        reason=reason[:2000].replace("\x00", "\\x00"),
        body=text[:DEAD_LETTER_BODY_MAX].replace("\x00", "\\x00"),
    )
    session.add(letter)
    await session.commit()
    return letter


async def prune_processed(session: AsyncSession, older_than_days: int) -> int:
    cutoff = utcnow() - timedelta(days=older_than_days)
    result: Any = await session.execute(
        delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < cutoff)
    )
    await session.commit()
    return int(result.rowcount or 0)


async def prune_dead_letters(
    session: AsyncSession, older_than_days: int, now: datetime | None = None
) -> int:
    """Forget dead letters older than `older_than_days`: each holds a whole update, with the
    names and words of whoever sent it, which is kept only as long as someone may look into
    why it could not be handled. Commits."""
    cutoff = (now or utcnow()) - timedelta(days=older_than_days)
    result: Any = await session.execute(delete(DeadLetter).where(DeadLetter.received_at < cutoff))
    await session.commit()
    return int(result.rowcount or 0)
