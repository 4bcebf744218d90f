"""Timed work on APScheduler. Each job claims its rows in the database, so that with several
replicas ticking, each piece of work happens once (ARCHITECTURE.md, scaling out)."""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from storage.services.updates import prune_processed
from webhook.runtime import Runtime

log = logging.getLogger(__name__)


async def prune_processed_updates(runtime: Runtime) -> None:
    """Forget update ids older than Telegram could ever redeliver (24 h) plus a margin."""
    async with runtime.sessionmaker() as session:
        removed = await prune_processed(session, runtime.settings.processed_update_retention_days)
    if removed:
        log.info("pruned %d processed update ids", removed)


def create_scheduler(runtime: Runtime) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=runtime.settings.tz)
    # Deleting old rows is idempotent, so it needs no claim; jitter spreads replicas apart.
    scheduler.add_job(
        prune_processed_updates,
        CronTrigger(hour=3, minute=30, jitter=600, timezone=runtime.settings.tz),
        args=[runtime],
        id="prune_processed_updates",
        coalesce=True,
        misfire_grace_time=3600,
    )
    return scheduler
