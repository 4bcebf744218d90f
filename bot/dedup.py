"""De-duplication of Telegram updates by `update_id`.

Telegram redelivers an update until it gets a 2xx, and may deliver one twice; handling must
happen once. With Redis the gate (bot.gate) claims the update; without it, the store does, in
the update's own transaction.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage.services.updates import claim_update


class UpdateInProgress(Exception):
    """The same update (or the same person's previous one) is being handled right now, by this
    or another replica: the route answers 503 and Telegram delivers it again later."""


class StoreDeduplicator:
    """The mark is a row written in the update's own transaction: it commits or rolls back
    with the update's effects, so there is nothing to finish or release."""

    async def claim(self, update_id: int, session: AsyncSession) -> bool:
        """True if this update should be handled now; False if it already was."""
        return await claim_update(session, update_id)
