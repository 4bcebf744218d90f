"""De-duplication of Telegram updates by `update_id`: in Redis when configured, else in the store.

Telegram redelivers an update until it gets a 2xx, and may deliver one twice; handling must
happen once. A claim is only final when the update's handling succeeded.
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from storage.services.updates import claim_update


class UpdateInProgress(Exception):
    """The same update is being handled right now (by this or another replica)."""


class Deduplicator(Protocol):
    async def claim(self, update_id: int, session: AsyncSession) -> bool:
        """True if this update should be handled now; False if it already was."""

    async def done(self, update_id: int) -> None: ...

    async def release(self, update_id: int) -> None: ...


class StoreDeduplicator:
    """The mark is a row written in the update's own transaction: it commits or rolls back
    with the update's effects, so there is nothing to finish or release."""

    async def claim(self, update_id: int, session: AsyncSession) -> bool:
        return await claim_update(session, update_id)

    async def done(self, update_id: int) -> None:
        return None

    async def release(self, update_id: int) -> None:
        return None


class RedisDeduplicator:
    """`SET NX` a short-lived 'processing' mark; on success it becomes a long-lived 'done'.

    A second delivery while the first is still being handled raises UpdateInProgress (the
    route answers 503 and Telegram retries later) rather than being dropped: if the first
    attempt then fails, the update is not lost.
    """

    PROCESSING_TTL = 120  # seconds; longer than any update takes, shorter than a retry cycle
    DONE_TTL = 7 * 24 * 3600  # Telegram gives up on an update after 24 h

    def __init__(self, redis: Redis, prefix: str = "minsheng:update:") -> None:
        self.redis = redis
        self.prefix = prefix

    def _key(self, update_id: int) -> str:
        return f"{self.prefix}{update_id}"

    async def claim(self, update_id: int, session: AsyncSession) -> bool:
        key = self._key(update_id)
        if await self.redis.set(key, b"processing", nx=True, ex=self.PROCESSING_TTL):
            return True
        state = await self.redis.get(key)
        if state == b"done":
            return False
        if state is None:  # expired between the two calls: try once more
            return bool(await self.redis.set(key, b"processing", nx=True, ex=self.PROCESSING_TTL))
        raise UpdateInProgress(update_id)

    async def done(self, update_id: int) -> None:
        await self.redis.set(self._key(update_id), b"done", ex=self.DONE_TTL)

    async def release(self, update_id: int) -> None:
        await self.redis.delete(self._key(update_id))
