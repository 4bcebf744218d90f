"""Council votes as native Telegram polls: sending a convened vote's polls, and stopping them
once the vote is closed.

A vote of 13 candidates in a group is 14 messages or more, and a group takes 20 a minute, so
sending can outlast any webhook request: it runs as a background task of the process
(`schedule_vote_polls`), paced by the shared SendLimiter. Every poll sent is recorded at
once (council.record_poll), so answers find their candidate even while the rest is still
going out, and a poll Telegram refuses is recorded on its item and told to the convener.

sendPoll is never repeated when Telegram may have carried it out: only a 429 (not done) and a
connection that was never made are retried. A network error, a timeout, a 5xx or an answer
that cannot be read leave it unknown whether the poll exists: the send is recorded as
uncertain (council.record_send_uncertain), never made again (nor by a later run: each
sendPoll is claimed before it is made, council.record_poll_attempt), and the convener is told
what to check. Answers in such a poll are kept by the store, and counted once the `poll`
updates Telegram sends for the bot's polls show it (bot.handlers.council.on_poll).

A sender spends most of its life waiting for its turn (a group takes a message a second, 20
a minute), and a shutdown cancels it there. So a send is claimed only once its turn has come,
the request following at once, and a claim whose request was not made (cancelled or failed
before it, or answered 429) is let go: another run sends that poll, rather than take it for
possibly posted. A run that stops lets go of its lease on the vote too (sending, and stopping
the polls after the close), so another replica carries on at its next tick
(webhook.jobs.resume_poll_sending, stop_left_polls).

A member's private chat that refuses the bot (a 403: they never started it, or blocked it) is
given up for the run, recorded as unreachable on the candidate whose poll it stopped (the
convener is told whom to ask), and the person marked as blocking the bot. Runs after that
leave the chat alone while the mark stands. Once they write to the bot or unblock it, the
mark goes and their votes' polls count as unsent again (council.reopen_polls_owed_to): the
next run sends them the header and the polls they miss, each claimed as ever.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InputPollOption
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import create_i18n
from bot.notify_texts import rules_line, split_text
from bot.ratelimit import SendLimiter
from bot.telegram_errors import REQUEST_ERRORS, FailureKind, classify, describe
from bot.texts import (
    cap_warning,
    category_label,
    kind_label,
    local_deadline,
    over_cap,
    quote,
    short,
    yuan,
)
from storage import rules
from storage.models import PollSendState, VoteStatus, utcnow
from storage.rules import Category, Kind, RuleViolation
from storage.services import council
from storage.services.chats import reader_of
from storage.services.council.sending import reopen_for_returned_members, reopen_polls_owed_to
from storage.services.people import mark_blocked
from storage.settings import Settings

log = logging.getLogger(__name__)

# The options of every council poll, in this order: option ids 0, 1, 2 are
# rules.POLL_CHOICES (agree, against, abstain). Both languages, as one poll serves a group.
POLL_OPTIONS: tuple[str, ...] = ("同意 Agree", "反对 Against", "弃权 Abstain")
assert len(POLL_OPTIONS) == len(rules.POLL_CHOICES)

# sendPoll's close_date must lie 5 to 2,628,000 seconds ahead (Bot API, as in aiogram's
# SendPoll). A margin on both ends absorbs the clocks' difference and the request's time;
# outside the window the poll is left open and the scheduler's close stops it.
CLOSE_DATE_MIN = 5
CLOSE_DATE_MAX = 2_628_000
CLOSE_DATE_MARGIN = 30

MAX_RETRIES = 5  # per message, for 429s and network errors
NETWORK_BACKOFF = 2.0
# What _call tries again: what Telegram certainly did not carry out, and, for a request
# that may be made twice, what it may have.
_TRY_AGAIN = (FailureKind.RATE_LIMITED, FailureKind.NEVER_SENT, FailureKind.UNCERTAIN)
# Why a send found SENDING (attempted, no outcome written) is uncertain.
SENDER_STOPPED = "the bot stopped while sending this poll, before Telegram's answer came"

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SentPoll:
    item_id: int
    chat_id: int
    poll_id: str
    message_id: int


@dataclass(frozen=True, slots=True)
class FailedPoll:
    item_id: int
    chat_id: int
    error: str


@dataclass
class SendReport:
    """What send_vote_polls did. `skipped`: polls found already sent or in doubt (a second
    run). `uncertain`: polls that may or may not exist, found so by this run (not sent
    again; the convener is told)."""

    vote_id: int
    found: bool = True
    header_messages: int = 0
    polls: list[SentPoll] = field(default_factory=list)
    failed: list[FailedPoll] = field(default_factory=list)
    uncertain: list[FailedPoll] = field(default_factory=list)
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class _Item:
    id: int
    position: int
    number: str
    title: str
    category: Category
    kind: Kind | None
    cost_fen: int | None
    description: str


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything sending needs, read in one session before the first request."""

    vote_id: int
    community: str
    closes_at: datetime
    council_size: int
    quorum_pct: int
    threshold_pct: int
    items: list[_Item]
    chats: dict[int, str]  # chat id → locale of the header
    sends: dict[tuple[int, int], PollSendState]  # (item id, chat id) → as claimed or recorded
    # Members' private chats whose person is marked as blocking the bot (after a 403).
    blocked: frozenset[int] = frozenset()


def poll_options() -> list[InputPollOption | str]:
    # No parse mode: the bot's default (HTML) would make Telegram parse the options.
    return [InputPollOption(text=rules.poll_option(o), text_parse_mode=None) for o in POLL_OPTIONS]


def close_date_for(closes_at: datetime, now: datetime) -> datetime | None:
    """The poll's close_date when Telegram accepts one for this deadline, else None."""
    ahead = (closes_at - now).total_seconds()
    if CLOSE_DATE_MIN + CLOSE_DATE_MARGIN <= ahead <= CLOSE_DATE_MAX - CLOSE_DATE_MARGIN:
        return closes_at
    return None


def header_texts(plan: _Plan, locale: str, i18n: I18n, tz: ZoneInfo) -> list[str]:
    """The message before the polls: the candidates, the deadline, how to vote (HTML, cut
    into messages of at most 4,096 characters). It says that the vote closes early once every
    member has voted (council.close_vote), as a member who answered early, meaning to think
    again, would otherwise find it closed; and gives the council's size as a count
    ("members: 1"), which reads right in either language whatever the number."""
    with i18n.context(), i18n.use_locale(locale):
        lines = [
            _("<b>Residents' council vote</b> — {community}").format(
                community=quote(plan.community)
            ),
            _("Suggestions:"),
        ]
        for item in plan.items:
            lines += ["", f"{item.position}. <b>{quote(item.number)}</b> {quote(item.title)}"]
            lines += candidate_details(item)
        lines += [
            "",
            _("Voting closes at {deadline}.").format(deadline=local_deadline(plan.closes_at, tz)),
            rules_line(plan.council_size, plan.quorum_pct, plan.threshold_pct),
            _(
                "How to vote: in each poll below, choose Agree, Against or Abstain; only "
                "council members' answers count. You can change your answer until the vote "
                "closes: at the deadline, or earlier, as soon as every council member has voted."
            ),
        ]
    return split_text("\n".join(lines))


# Of a candidate's description, what the council's message shows (the board has the rest).
DESCRIPTION_SHOWN = 160


def candidate_details(item: _Item) -> list[str]:
    """What the council discusses besides the title: category, kind and the resident's
    estimate (flagged above its kind's cap), and the start of the description."""
    facts = [
        category_label(item.category),
        kind_label(item.kind) if item.kind is not None else _("kind not specified"),
    ]
    if item.cost_fen is not None:
        facts.append(_("about ¥{amount}").format(amount=yuan(item.cost_fen)))
    lines = [" · ".join(facts)]
    if over_cap(item.kind, item.cost_fen):
        lines.append(cap_warning(item.kind))
    lines.append(quote(short(item.description, DESCRIPTION_SHOWN)))
    return lines


async def _plan(
    sessionmaker: async_sessionmaker[AsyncSession], vote_id: int, default_locale: str
) -> _Plan | None:
    async with sessionmaker() as session:
        vote = await council.get_vote(session, vote_id)
        if vote is None or vote.status is not VoteStatus.OPEN:
            return None
        sends = await council.poll_sends(session, vote_id)
        chats: dict[int, str] = {}
        blocked: set[int] = set()
        for chat_id in council.delivery_chats(vote):
            reader = await reader_of(session, chat_id, default_locale)
            chats[chat_id] = reader.locale
            if reader.person is not None and reader.person.blocked_bot_at is not None:
                blocked.add(chat_id)
        return _Plan(
            vote_id=vote.id,
            community=vote.community.name,
            closes_at=vote.closes_at,
            council_size=vote.council_size,
            quorum_pct=vote.quorum_pct,
            threshold_pct=vote.threshold_pct,
            items=[
                _Item(
                    i.id,
                    i.position,
                    i.suggestion.number,
                    i.suggestion.title,
                    i.suggestion.category,
                    i.suggestion.kind,
                    i.suggestion.estimated_cost_fen,
                    i.suggestion.description,
                )
                for i in vote.items
            ],
            chats=chats,
            sends=sends,
            blocked=frozenset(blocked),
        )


class _ChatGone(Exception):
    """403: the bot may not write to this chat (blocked by the member, removed from the
    group): nothing more is sent there."""


class _Unsure(Exception):
    """A request that must not be made twice got no usable answer: Telegram may have carried
    it out (telegram_errors.FailureKind.UNCERTAIN)."""


async def _let_go(work: Callable[[], Awaitable[Any]], what: str) -> bool:
    """Run `work` (letting go of a claim or a lease) to its end even while the caller is being
    cancelled, since that is when it matters (a shutdown stopping a sender). A failure is
    logged, not raised: what is not let go runs out, or is taken for in doubt, as before.
    Whether it was done."""
    task = asyncio.ensure_future(work())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        raise  # cancelled once more while at it: the task still runs to its end
    except Exception as error:
        log.warning("%s: %r", what, error)
        return False
    return True


class _NotClaimed(Exception):
    """The send may not be made: council.record_poll_attempt found it sent, in doubt or in
    flight (another run), or the vote closed."""


class _ClaimFailed(Exception):
    """The store could not claim a send: nothing was requested, and the run stops as it does
    when the store fails."""


@dataclass
class _SendClaim:
    """An item's sendPoll to one chat, claimed (council.record_poll_attempt) only once its
    turn has come, the request following at once, and let go
    (council.release_poll_attempt) when the request was not made after all."""

    sessionmaker: async_sessionmaker[AsyncSession]
    item_id: int
    chat_id: int
    attempted_at: datetime | None = None  # the claim's mark, while it is held

    async def take(self) -> None:
        """Claim the send, or raise _NotClaimed. Cancelled or failing with the claim perhaps
        written (its commit in flight), it lets the claim go before it raises."""
        self.attempted_at = mark = utcnow()
        try:
            async with self.sessionmaker() as session:
                claimed = await council.record_poll_attempt(
                    session, self.item_id, self.chat_id, now=mark
                )
        except asyncio.CancelledError:
            await self.release()
            raise
        except Exception as error:
            await self.release()
            raise _ClaimFailed(describe(error)) from error
        if not claimed:
            self.attempted_at = None
            raise _NotClaimed

    async def release(self) -> None:
        """Let the claim go, if it is held: the request was not made."""
        mark, self.attempted_at = self.attempted_at, None
        if mark is None:
            return

        async def release() -> None:
            async with self.sessionmaker() as session:
                await council.release_poll_attempt(
                    session, self.item_id, self.chat_id, attempted_at=mark
                )

        await _let_go(release, f"letting go of the send of item {self.item_id} in {self.chat_id}")


async def _call(
    limiter: SendLimiter,
    chat_id: int,
    request: Callable[[], Coroutine[Any, Any, Any]],
    sleep: Sleep,
    *,
    idempotent: bool = True,
    claim: _SendClaim | None = None,
) -> Any:
    """One request to `chat_id` within the limits: 429s and network errors are waited out
    and retried (MAX_RETRIES times); Telegram's refusals (a 4xx: it did nothing, and would
    refuse again) are the caller's at once, a 403 as _ChatGone. A request that is not
    `idempotent` (sendPoll: a second one is a second poll) is retried only when Telegram
    certainly did not carry it out (a 429, a connection never made); when it may have,
    _Unsure is raised. What an error means is bot.telegram_errors.classify's.

    With a `claim`, it is taken once the limiter grants the turn (not while waiting for it,
    nor through a 429's wait: a sender stopped there has not made the request) and nothing
    is awaited between it and the request. Where Telegram certainly did not carry the
    request out, the claim is let go; it is taken again on the next turn."""
    for attempt in range(1, MAX_RETRIES + 1):
        await limiter.acquire(chat_id)
        if claim is not None:
            await claim.take()
        try:
            return await request()
        except REQUEST_ERRORS as error:
            failure = classify(error)
            if failure.kind is FailureKind.CHAT_GONE:
                raise _ChatGone(failure.description) from error
            if failure.kind is FailureKind.UNCERTAIN and not idempotent:
                raise _Unsure(failure.description) from error
            if failure.kind not in _TRY_AGAIN:
                raise  # refused (it did nothing, and would again): the caller's
            if claim is not None:
                await claim.release()  # not carried out: taken again on the next turn
            if attempt == MAX_RETRIES:
                raise
            if failure.kind is FailureKind.RATE_LIMITED:
                await limiter.pause(chat_id, failure.retry_after)
                await sleep(failure.retry_after)
            else:
                await sleep(NETWORK_BACKOFF * attempt)
    raise AssertionError("unreachable")


async def send_vote_polls(
    bot: Bot,
    sessionmaker: async_sessionmaker[AsyncSession],
    vote_id: int,
    limiter: SendLimiter,
    *,
    i18n: I18n | None = None,
    tz: ZoneInfo | None = None,
    default_locale: str = "zh",
    now: Callable[[], datetime] = utcnow,
    sleep: Sleep = asyncio.sleep,
) -> SendReport:
    """Send an open vote's polls: to the council's group, or to each member privately (see
    council.delivery_chats), each chat getting the header then one poll per candidate in
    order. Polls already recorded are not sent again, so a second run completes the first.
    A poll Telegram refuses (400) is recorded on its item, which tells the convener, and the
    rest go on; a chat that refuses the bot (403) is given up after recording why. A poll
    that may or may not have been posted (no usable answer, or an earlier run that stopped
    while sending it) is recorded as uncertain, which tells the convener, and never sent
    again."""
    report = SendReport(vote_id)
    plan = await _plan(sessionmaker, vote_id, default_locale)
    if plan is None:
        report.found = False
        return report
    i18n = i18n or create_i18n(default_locale)
    tz = tz or ZoneInfo("Asia/Shanghai")

    async def record_error(
        item: _Item, chat_id: int, error: str, *, unreachable: bool = False
    ) -> None:
        report.failed.append(FailedPoll(item.id, chat_id, error))
        async with sessionmaker() as session:
            await council.record_send_error(
                session,
                item.id,
                error,
                chat_id=chat_id if chat_id > 0 else None,
                unreachable=unreachable,
            )

    async def record_uncertain(item: _Item, chat_id: int, error: str) -> None:
        log.warning(
            "vote %s: poll of item %s in %s uncertain: %s", vote_id, item.id, chat_id, error
        )
        report.uncertain.append(FailedPoll(item.id, chat_id, error))
        async with sessionmaker() as session:
            await council.record_send_uncertain(
                session, item.id, error, chat_id=chat_id if chat_id > 0 else None
            )

    async def serve(chat_id: int, locale: str) -> None:
        if chat_id in plan.blocked and any(
            plan.sends.get((item.id, chat_id)) is PollSendState.REFUSED for item in plan.items
        ):
            # Refused already, and the member has not come back since: another try would be
            # refused too. Their coming back makes the vote's polls count as unsent again.
            log.info("vote %s: polls to %s wait until they can be written to", vote_id, chat_id)
            return
        pending: list[_Item] = []
        for item in plan.items:
            state = plan.sends.get((item.id, chat_id))
            if state is None or state is PollSendState.REFUSED:
                pending.append(item)
            elif state is PollSendState.SENDING:
                # An earlier run's sendPoll without an outcome: the poll may exist.
                await record_uncertain(item, chat_id, SENDER_STOPPED)
            else:  # sent, or in doubt
                report.skipped += 1
        if not pending:
            return
        current = pending[0]
        try:
            if len(pending) == len(plan.items):  # nothing sent here yet: the header first
                for text in header_texts(plan, locale, i18n, tz):
                    try:
                        await _call(limiter, chat_id, _message(chat_id, text), sleep)
                        report.header_messages += 1
                    except TelegramBadRequest as error:
                        log.warning("vote %s: header refused in %s: %s", vote_id, chat_id, error)
            for current in pending:
                if now() >= plan.closes_at:
                    log.warning("vote %s: deadline passed while sending its polls", vote_id)
                    return
                await _send_poll(current, chat_id)
        except _ChatGone as gone:
            # Recorded once, on the candidate whose poll it stopped: the convener is told.
            # A member's chat is unreachable: the polls go once they can be written to.
            await record_error(current, chat_id, str(gone), unreachable=chat_id > 0)
            if chat_id > 0:
                async with sessionmaker() as session:
                    await mark_blocked(session, chat_id)

    def _message(chat_id: int, text: str) -> Callable[[], Coroutine[Any, Any, Any]]:
        return lambda: bot.send_message(chat_id, text)

    async def _send_poll(item: _Item, chat_id: int) -> None:
        question = rules.poll_question(item.number, item.title)
        # Claimed when its turn comes (see _call), not before waiting for it.
        claim = _SendClaim(sessionmaker, item.id, chat_id)

        def request() -> Coroutine[Any, Any, Any]:
            return bot.send_poll(
                chat_id,
                question=question,
                options=poll_options(),
                question_parse_mode=None,
                is_anonymous=False,
                allows_multiple_answers=False,
                close_date=close_date_for(plan.closes_at, now()),
            )

        try:
            message = await _call(limiter, chat_id, request, sleep, idempotent=False, claim=claim)
        except _NotClaimed:
            report.skipped += 1  # sent, in doubt or being sent by another run; or closed
            return
        except (_ChatGone, _ClaimFailed):
            raise
        except _Unsure as unsure:
            await record_uncertain(item, chat_id, str(unsure))
            return
        except REQUEST_ERRORS as error:
            # Refused, out of 429 retries, or never connected: nothing was posted.
            await record_error(item, chat_id, describe(error))
            return
        except Exception as error:
            # None of the errors a request to Telegram raises (_call sorts those): whether
            # the poll exists is not known.
            await record_uncertain(item, chat_id, describe(error))
            return
        poll = getattr(message, "poll", None)
        if poll is None:
            await record_error(item, chat_id, "Telegram answered without a poll")
            return
        async with sessionmaker() as session:
            await council.record_poll(session, item.id, poll.id, chat_id, message.message_id)
        report.polls.append(SentPoll(item.id, chat_id, poll.id, message.message_id))

    # One chat's failure (the store gone while claiming) ends the run, and only once every
    # chat has stopped: the caller then lets go of the vote's lease, which no chat of this
    # run may still be sending under.
    chats = [
        asyncio.ensure_future(serve(chat_id, locale)) for chat_id, locale in plan.chats.items()
    ]
    try:
        await asyncio.gather(*chats)
    except BaseException:
        for chat in chats:
            chat.cancel()
        await asyncio.gather(*chats, return_exceptions=True)
        raise
    log.info(
        "vote %s: %d polls sent, %d refused, %d uncertain, %d already sent or in doubt",
        vote_id,
        len(report.polls),
        len(report.failed),
        len(report.uncertain),
        report.skipped,
    )
    return report


async def stop_polls(
    bot: Bot,
    polls: list[tuple[int, int]],
    limiter: SendLimiter,
    *,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> int:
    """stopPoll each (chat_id, message_id) after a close, best effort; with `sessionmaker`,
    each one stopped (or found already closed or gone) is recorded. Returns how many."""
    by_chat: dict[int, list[int]] = {}
    for chat_id, message_id in polls:
        by_chat.setdefault(chat_id, []).append(message_id)
    stopped = 0

    def stop(chat_id: int, message_id: int) -> Callable[[], Coroutine[Any, Any, Any]]:
        return lambda: bot.stop_poll(chat_id=chat_id, message_id=message_id)

    async def serve(chat_id: int, message_ids: list[int]) -> None:
        nonlocal stopped
        for message_id in message_ids:
            try:
                await _call(limiter, chat_id, stop(chat_id, message_id), sleep)
            except TelegramBadRequest as error:
                text = error.message.lower()
                if not ("already been closed" in text or "not found" in text):
                    log.warning("stopPoll %s/%s refused: %s", chat_id, message_id, error.message)
                    continue
            except _ChatGone as gone:
                log.info("stopPoll in %s: %s; the rest there are left", chat_id, gone)
                return
            except Exception as error:
                log.warning("stopPoll %s/%s failed: %r", chat_id, message_id, error)
                continue
            stopped += 1
            if sessionmaker is not None:
                try:
                    async with sessionmaker() as session:
                        await council.record_poll_stopped(session, chat_id, message_id)
                except Exception as error:
                    log.warning("recording stopped poll %s/%s: %r", chat_id, message_id, error)

    await asyncio.gather(*(serve(chat_id, ids) for chat_id, ids in by_chat.items()))
    return stopped


# --- In the running process ------------------------------------------------------------------


class PollRuntime(Protocol):
    """What the process holds (webhook.runtime.Runtime has it all)."""

    settings: Settings
    bot: Bot
    sessionmaker: async_sessionmaker[AsyncSession]
    limiter: SendLimiter
    i18n: I18n
    background: set[asyncio.Task[Any]]


def spawn(runtime: PollRuntime, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    """Run `work` in the background, keeping a reference (asyncio holds tasks weakly) and
    logging what it raises."""
    tasks = runtime.background
    task = asyncio.get_running_loop().create_task(work, name=name)
    tasks.add(task)

    def finished(done: asyncio.Task[Any]) -> None:
        tasks.discard(done)
        if not done.cancelled() and done.exception() is not None:
            log.error("background task %s failed", name, exc_info=done.exception())

    task.add_done_callback(finished)
    return task


async def wait_background(runtime: PollRuntime) -> None:
    """Wait for the background work started so far (and what it starts meanwhile)."""
    tasks = runtime.background
    while tasks:
        await asyncio.gather(*list(tasks), return_exceptions=True)


async def cancel_background(runtime: PollRuntime, grace: float = 5.0) -> None:
    """At shutdown: give background work `grace` seconds, then cancel what is left."""
    tasks = runtime.background
    if not tasks:
        return
    _, pending = await asyncio.wait(list(tasks), timeout=grace)
    for task in pending:
        log.warning("cancelling %s at shutdown", task.get_name())
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


async def _release_lease(runtime: PollRuntime, vote_id: int, until: datetime | None) -> bool:
    """Let go of the vote's polls lease this run took (`until`, as read after taking it),
    even while being cancelled."""
    if until is None:
        return False

    async def release() -> None:
        async with runtime.sessionmaker() as session:
            await council.release_poll_lease(session, vote_id, until=until)

    return await _let_go(release, f"letting go of the polls lease of vote {vote_id}")


async def send_claimed_vote_polls(
    runtime: PollRuntime, vote_id: int, *, now: Callable[[], datetime] = utcnow
) -> SendReport | None:
    """send_vote_polls under the vote's sending lease (council.claim_poll_sending): None if
    another replica holds it or the polls were all sent already. A run that stops before its
    end (a shutdown cancels it) lets go of the lease, so another replica's
    resume_poll_sending sends the rest at its next tick, not once the lease has run out; it
    does not count the polls as sent (finish_poll_sending), as a send it was making when
    stopped is for the next run to record as in doubt."""
    async with runtime.sessionmaker() as session:
        if not await council.claim_poll_sending(session, vote_id, now=now()):
            return None
        until = await council.held_poll_lease(session, vote_id)
    settings = runtime.settings
    try:
        report = await send_vote_polls(
            runtime.bot,
            runtime.sessionmaker,
            vote_id,
            runtime.limiter,
            i18n=runtime.i18n,
            tz=settings.tz,
            default_locale=settings.default_locale,
            now=now,
        )
    except BaseException:
        await _release_lease(runtime, vote_id, until)
        raise
    async with runtime.sessionmaker() as session:
        await council.finish_poll_sending(session, vote_id, now=now(), until=until)
        # A member who came back while this run held the lease: their reopening was
        # overtaken by the finish just above, so it is made again here.
        if await reopen_for_returned_members(session, vote_id):
            log.info("vote %s: a member came back meanwhile; theirs go next", vote_id)
    return report


def schedule_vote_polls(
    runtime: PollRuntime, vote_id: int, *, now: Callable[[], datetime] = utcnow
) -> None:
    """Start sending a convened vote's polls in the background, and return at once."""
    spawn(
        runtime,
        send_claimed_vote_polls(runtime, vote_id, now=now),
        name=f"council-vote-{vote_id}-polls",
    )


async def stop_claimed_vote_polls(
    runtime: PollRuntime, vote_id: int, *, now: datetime | None = None
) -> int | None:
    """Stop a closed vote's running polls under its stopping lease
    (council.claim_poll_stopping); how many were stopped (or found closed or gone), None if
    another replica holds the lease or none is left. The lease is let go once every poll is
    stopped, and when the run stops before its end (a shutdown cancels it), so that another
    replica's stop_left_polls carries on at its next tick; polls it could not stop keep it,
    and are tried again when it runs out."""
    moment = now or utcnow()
    async with runtime.sessionmaker() as session:
        polls = await council.claim_poll_stopping(session, vote_id, now=moment)
        if polls is None:
            return None
        until = await council.held_poll_lease(session, vote_id)
    try:
        stopped = await stop_polls(
            runtime.bot, polls, runtime.limiter, sessionmaker=runtime.sessionmaker
        )
    except BaseException:
        await _release_lease(runtime, vote_id, until)
        raise
    if stopped == len(polls):
        await _release_lease(runtime, vote_id, until)
    else:
        log.warning(
            "vote %s: %d of %d polls not stopped; tried again in %s",
            vote_id,
            len(polls) - stopped,
            len(polls),
            council.POLL_STOPPING_LEASE,
        )
    return stopped


async def close_and_stop(
    runtime: PollRuntime,
    vote_id: int,
    *,
    now: datetime | None = None,
    wait: bool = False,
) -> council.CloseResult | None:
    """Close a vote (council.close_vote: once, whoever races) and then stop its polls.
    For the early close when the last ballot is in, and for the scheduler. None when the
    vote was closed by someone else or is not due (not everyone has voted before the
    deadline). The polls are stopped in the background unless `wait`, under the stopping
    lease (stop_claimed_vote_polls): if this replica stops first, or a run sending the polls
    still holds the vote's lease, webhook.jobs.stop_left_polls stops them later."""
    try:
        async with runtime.sessionmaker() as session:
            result = await council.close_vote(session, vote_id, now=now)
    except RuleViolation as violation:
        if violation.code != "vote_not_due":
            raise
        return None
    if result is None:
        return None
    outcomes = {item_id: outcome.value for item_id, outcome in result.outcomes.items()}
    log.info("council vote %s closed: %s", vote_id, outcomes)
    if result.polls_to_stop:
        work = stop_claimed_vote_polls(runtime, vote_id, now=now)
        if wait:
            await work
        else:
            spawn(runtime, work, name=f"council-vote-{vote_id}-stop")
    return result


def awaitable_none() -> asyncio.Future[None]:
    """An already finished awaitable: for callables that callers may or may not await."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def council_poll_sender(runtime: PollRuntime) -> Callable[[int], Awaitable[None]]:
    """`Runtime.poll_sender`: starts sending at once when called; the
    officials' API awaits the result, the convene dialog may or may not (either works)."""

    def send(vote_id: int) -> Awaitable[None]:
        schedule_vote_polls(runtime, vote_id)
        return awaitable_none()

    return send


PollSender = Callable[[int], Awaitable[Any]]
# What an update runs once committed (bot.middlewares.UpdateSessionMiddleware): its hooks.
AfterCommitHooks = list[Callable[[], Awaitable[Any]]]


async def start_sending(sender: Callable[[int], Any] | None, vote_id: int) -> None:
    """After a vote is convened (the convene dialog, the officials' API): start sending its
    polls through the process's sender. The vote stands, committed, whatever happens here:
    what failed is on its items, or in the log, and the scheduler's resume_poll_sending
    sends what is unsent."""
    if sender is None:
        log.warning("no council poll sender in this process: vote %s not sent", vote_id)
        return
    try:
        started = sender(vote_id)
        if inspect.isawaitable(started):
            await started
    except Exception:
        log.exception("sending the polls of council vote %s failed", vote_id)


async def send_owed_polls(
    session: AsyncSession,
    telegram_id: int,
    sender: PollSender | None,
    after_commit: AfterCommitHooks | None,
) -> list[int]:
    """A council member can be written to now (they write to the bot): the open votes whose
    polls Telegram refused them as unreachable are owed again (council.reopen_polls_owed_to,
    in the caller's transaction, the update's), and `sender` (the process's
    council_poll_sender, from the dispatcher's workflow data) sends them once it has
    committed (`after_commit`); without one, the scheduler's resume_poll_sending does at its
    next tick. The run sends only what they miss, each send claimed, so nothing goes twice
    however often they write. The ids of those votes."""
    vote_ids = await reopen_polls_owed_to(session, telegram_id)
    if vote_ids:
        log.info("council votes %s owe polls to %s, reachable now", vote_ids, telegram_id)
        if sender is not None and after_commit is not None:
            after_commit.extend(functools.partial(sender, vote_id) for vote_id in vote_ids)
    return vote_ids


def vote_closer(runtime: PollRuntime) -> Callable[[int], Awaitable[council.CloseResult | None]]:
    """`Runtime.vote_closer`: an after-commit hook's early close."""

    def close(vote_id: int) -> Awaitable[council.CloseResult | None]:
        return close_and_stop(runtime, vote_id)

    return close


__all__ = [
    "CLOSE_DATE_MAX",
    "CLOSE_DATE_MIN",
    "POLL_OPTIONS",
    "FailedPoll",
    "PollRuntime",
    "SendReport",
    "SentPoll",
    "cancel_background",
    "close_and_stop",
    "close_date_for",
    "council_poll_sender",
    "header_texts",
    "poll_options",
    "schedule_vote_polls",
    "send_owed_polls",
    "send_vote_polls",
    "spawn",
    "stop_claimed_vote_polls",
    "stop_polls",
    "vote_closer",
    "wait_background",
]
