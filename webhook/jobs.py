"""Timed work on APScheduler. Each job claims its rows in the database, so that with several
replicas ticking, each piece of work happens once (ARCHITECTURE.md, scaling out).

- closing council votes whose deadline has passed (also those that fell due while the
  service was down), then stopping their polls;
- sending the polls a replica that stopped left unsent, and stopping the polls of a closed
  vote that a replica which stopped left running (each under a lease on the vote);
- sending the outbox within Telegram's limits;
- forgetting old update ids.

A job that cannot reach the database logs it and tries again on its next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession

from bot.notify_texts import NotificationRenderer
from bot.outbox import OutboxSender
from bot.polls import (
    cancel_background,
    close_and_stop,
    council_poll_sender,
    schedule_vote_polls,
    spawn,
    stop_claimed_vote_polls,
    vote_closer,
)
from storage.models import utcnow
from storage.services import council, notifications
from storage.services.updates import prune_dead_letters, prune_processed
from webhook.runtime import Runtime

log = logging.getLogger(__name__)

CLOSE_VOTES_EVERY = 20  # seconds
RESUME_POLLS_EVERY = 60  # seconds
STOP_POLLS_EVERY = 60  # seconds
SEND_OUTBOX_EVERY = 2  # seconds
OUTBOX_BATCH = 50


def install_senders(runtime: Runtime) -> None:
    """What sends on its own, at the runtime's shared rate (Runtime.limiter): the outbox
    sender, and the council's poll sender and early closer that handlers and the officials'
    API reach through the runtime."""
    settings = runtime.settings
    runtime.outbox = OutboxSender(
        runtime.bot,
        runtime.sessionmaker,
        runtime.limiter,
        NotificationRenderer(runtime.i18n, settings.tz),
        default_locale=settings.default_locale,
    )
    runtime.poll_sender = council_poll_sender(runtime)
    runtime.vote_closer = vote_closer(runtime)


async def stop_senders(runtime: Runtime) -> None:
    """At shutdown: polls still being sent or stopped get a few seconds, then are cancelled.
    What was done is recorded; a send claimed but not requested yet and the vote's lease are
    let go (bot.polls), so another replica's resume_poll_sending or stop_left_polls carries
    on at its next tick."""
    await cancel_background(runtime)


async def _vote_ids(
    runtime: Runtime, work: str, find: Callable[[AsyncSession], Awaitable[list[int]]]
) -> list[int]:
    """The votes a job has work on; none this tick when the store cannot be reached (the
    job logs it and tries again on its next tick)."""
    try:
        async with runtime.sessionmaker() as session:
            return await find(session)
    except Exception as error:
        log.warning("%s: the store is unavailable (%r); next tick", work, error)
        return []


async def close_due_votes(
    runtime: Runtime, *, now: datetime | None = None, wait: bool = False
) -> list[int]:
    """Close every open vote whose deadline has passed; the ids this replica closed. Another
    replica closing the same vote at the same time makes close_vote return None here.
    The polls are stopped after each commit, in the background unless `wait`. Due on the
    database's clock unless `now` is given: replicas' clocks need not agree."""
    due = await _vote_ids(runtime, "closing votes", lambda s: council.due_vote_ids(s, now))
    closed: list[int] = []
    for vote_id in due:
        try:
            result = await close_and_stop(runtime, vote_id, now=now, wait=wait)
        except Exception:
            log.exception("closing vote %s failed; next tick", vote_id)
            continue
        if result is not None:
            closed.append(vote_id)
    if closed:
        log.info("closed council votes %s", closed)
    return closed


async def resume_poll_sending(runtime: Runtime, now: datetime | None = None) -> list[int]:
    """Finish sending polls that a replica left unsent: one that stopped let go of its lease,
    one that died left it to run out. Sending skips the polls already recorded. Returns the
    votes taken up."""
    moment = now or utcnow()
    vote_ids = await _vote_ids(
        runtime, "resuming poll sending", lambda s: council.votes_with_unsent_polls(s, moment)
    )
    for vote_id in vote_ids:
        schedule_vote_polls(runtime, vote_id, now=(lambda: moment) if now else utcnow)
    return vote_ids


async def stop_left_polls(runtime: Runtime, now: datetime | None = None) -> list[int]:
    """Stop the polls of closed votes still running: left by a replica that closed the vote
    and stopped (or died) before it stopped them all, or recorded after the close (a send in
    flight at the time). Each vote's stopping is claimed with a lease
    (bot.polls.stop_claimed_vote_polls), in the background like the sending. Returns the
    votes found."""
    moment = now or utcnow()
    vote_ids = await _vote_ids(
        runtime, "stopping polls", lambda s: council.votes_with_running_polls(s, moment)
    )
    for vote_id in vote_ids:
        spawn(
            runtime,
            stop_claimed_vote_polls(runtime, vote_id, now=moment),
            name=f"council-vote-{vote_id}-stop",
        )
    return vote_ids


async def send_outbox(runtime: Runtime) -> int:
    """One round of the outbox sender; how many messages went out."""
    sender = runtime.outbox
    if sender is None:
        return 0
    try:
        return await sender.run_once(OUTBOX_BATCH)
    except Exception as error:
        log.warning("outbox: %r; next tick", error)
        return 0


async def prune_processed_updates(runtime: Runtime, *, now: datetime | None = None) -> None:
    """Nightly: forget update ids older than Telegram could ever redeliver (24 h) plus a
    margin, answers to polls never recognised, long past any vote (council.prune_strays), the
    outbox's settled messages (notifications.prune_settled), and old dead letters."""
    moment = now or utcnow()
    settings = runtime.settings
    try:
        async with runtime.sessionmaker() as session:
            removed = await prune_processed(session, settings.processed_update_retention_days)
            strays = await council.prune_strays(session, moment)
            settled = await notifications.prune_settled(
                session, settings.notification_retention_days, moment
            )
            letters = await prune_dead_letters(session, settings.dead_letter_retention_days, moment)
    except Exception as error:
        log.warning("pruning update ids, stray polls, sent messages, dead letters: %r", error)
        return
    if removed or strays or settled or letters:
        log.info(
            "pruned %d processed update ids, %d stray polls, %d settled messages and %d dead "
            "letters",
            removed,
            strays,
            settled,
            letters,
        )


class _QuietOverlap(logging.Filter):
    """A sending round may outlast the 2 s interval (it paces to Telegram's limits); the
    tick that finds it still running is skipped by design, not worth a warning each time."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("send_outbox" in message and "maximum number of running instances" in message)


def _quiet_scheduler_logs() -> None:
    # The executor logs every run at INFO: thirty lines a minute for the outbox alone.
    # Failures are still logged (ERROR), and so are the jobs' own messages.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _QuietOverlap) for f in scheduler_log.filters):
        scheduler_log.addFilter(_QuietOverlap())


def _every(
    scheduler: AsyncIOScheduler,
    runtime: Runtime,
    job: Callable[[Runtime], Awaitable[Any]],
    seconds: int,
    *,
    jitter: int | None = None,
    grace: int | None = None,
    start_now: bool = False,
) -> None:
    """A job every `seconds`, one run at a time in this process (a tick that finds the last
    run still going is skipped), missed ticks coalesced; `jitter` spreads replicas apart."""
    scheduler.add_job(
        job,
        IntervalTrigger(seconds=seconds, jitter=jitter),
        args=[runtime],
        id=job.__name__,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=grace or seconds,
        **({"next_run_time": utcnow()} if start_now else {}),
    )


def create_scheduler(runtime: Runtime) -> AsyncIOScheduler:
    _quiet_scheduler_logs()
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
    # Closing is claimed per vote in the database (compare-and-set on its status); at
    # start-up at once: votes that fell due while the service was down.
    _every(scheduler, runtime, close_due_votes, CLOSE_VOTES_EVERY, jitter=2, start_now=True)
    # Polls left unsent by a replica that stopped or died while sending (a lease per vote).
    _every(scheduler, runtime, resume_poll_sending, RESUME_POLLS_EVERY, jitter=5)
    # Polls of closed votes left running by a replica that stopped (a lease per vote).
    _every(scheduler, runtime, stop_left_polls, STOP_POLLS_EVERY, jitter=5)
    # Sending is claimed per message (a lease); a round may outlast its interval.
    _every(scheduler, runtime, send_outbox, SEND_OUTBOX_EVERY, grace=SEND_OUTBOX_EVERY * 5)
    return scheduler
