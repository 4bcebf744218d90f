"""De-duplication of Telegram updates by `update_id`.

Telegram redelivers an update until it gets a 2xx, and may deliver one twice; handling must
happen once. With Redis the gate (bot.gate) claims the update; without it, the store does, in
the update's own transaction.
"""

from __future__ import annotations


class UpdateInProgress(Exception):
    """The same update (or the same person's previous one) is being handled right now, by this
    or another replica: the route answers 503 and Telegram delivers it again later."""
