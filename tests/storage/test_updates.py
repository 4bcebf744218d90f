"""Telegram update bookkeeping: de-duplication within the update's transaction, dead letters."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import DeadLetter, ProcessedUpdate, utcnow
from storage.services import updates

Sessions = async_sessionmaker[AsyncSession]


async def test_second_claim_is_refused(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        assert await updates.claim_update(session, 2**40) is True
        assert await updates.claim_update(session, 2**40 + 1) is True
        await session.commit()
    async with sessionmaker() as session:
        assert await updates.claim_update(session, 2**40) is False
        assert await updates.claim_update(session, 7) is True


async def test_rolled_back_claim_leaves_no_mark(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        assert await updates.claim_update(session, 42) is True
        await session.rollback()
    async with sessionmaker() as session:
        assert await session.get(ProcessedUpdate, 42) is None
        assert await updates.claim_update(session, 42) is True


async def test_concurrent_claims_one_wins(sessionmaker: Sessions) -> None:
    """A redelivery racing the first delivery waits for it, then sees it handled."""
    async with sessionmaker() as first, sessionmaker() as second:
        assert await updates.claim_update(first, 99) is True
        racing = asyncio.create_task(updates.claim_update(second, 99))
        await asyncio.sleep(0.2)
        assert not racing.done()  # blocked on the first transaction
        await first.commit()
        assert await asyncio.wait_for(racing, 10) is False
        await second.rollback()


async def test_dead_letter(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        stored = await updates.dead_letter(
            session, b'{"update_id": 5, "message": \xff}', "bad JSON", update_id=5
        )
        big = await updates.dead_letter(session, "x" * 100_000, "r" * 3000)
    async with sessionmaker() as session:
        letter = await session.get(DeadLetter, stored.id)
        assert letter is not None
        assert letter.body == '{"update_id": 5, "message": \ufffd}'
        assert (letter.reason, letter.update_id) == ("bad JSON", 5)
        assert letter.received_at.tzinfo is not None
        kept = await session.get(DeadLetter, big.id)
        assert kept is not None and kept.update_id is None
        assert len(kept.body) == updates.DEAD_LETTER_BODY_MAX
        assert len(kept.reason) == 2000


async def test_prune_processed(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        session.add(ProcessedUpdate(update_id=1, processed_at=utcnow() - timedelta(days=8)))
        session.add(ProcessedUpdate(update_id=2, processed_at=utcnow() - timedelta(days=6)))
        await session.commit()
        assert await updates.prune_processed(session, older_than_days=7) == 1
        remaining = await session.scalars(select(ProcessedUpdate.update_id))
        assert list(remaining) == [2]
        assert await session.scalar(select(func.count(DeadLetter.id))) == 0
