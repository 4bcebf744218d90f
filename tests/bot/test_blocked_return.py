"""A person marked as having blocked the bot (a 403) hears from it again once they come back:
Telegram's update when they unblock or restart the bot clears the mark, so they are among the
followers told of a change again. The mark is cleared by that update's own statement, also
when the person's language is cached and the way in needs no SQL (the Redis gate), and by
the first private message of someone who never started the bot (no such update comes).
A council member among them is owed the private polls Telegram refused them meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram.utils.i18n import I18n
from redis.asyncio import Redis
from sending_fakes import (
    FakePollRuntime,
    TelegramDouble,
    add_candidates,
    convene,
    forbidden,
    make_council,
    member_tid,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import Group, Harness, Person, make_harness, private_chat

from bot.polls import send_claimed_vote_polls, wait_background
from bot.ratelimit import Limits, MemorySendLimiter
from storage.models import CouncilVote
from storage.models import Person as PersonRow
from storage.services import notifications, people
from storage.services.people import TelegramIdentity
from storage.settings import Settings
from webhook.jobs import resume_poll_sending

pytest_plugins = ["telegram_fakes", "sending_fakes"]

Sessions = async_sessionmaker[AsyncSession]
PROPOSER = Person(10_000, "居民0")  # add_candidates' first proposer


async def blocked_at(sessionmaker: Sessions, telegram_id: int) -> Any:
    async with sessionmaker() as session:
        person = await session.scalar(select(PersonRow).where(PersonRow.telegram_id == telegram_id))
        assert person is not None
        return person.blocked_bot_at


async def followers(sessionmaker: Sessions, suggestion_id: int) -> list[int]:
    async with sessionmaker() as session:
        return [p.telegram_id for p in await notifications.followers_of(session, suggestion_id)]


def membership(h: Harness, who: Person, old: str, new: str) -> Any:
    return h.updates.my_chat_member(who, private_chat(who), old, new)


async def test_a_follower_who_unblocks_the_bot_is_told_again(
    bot_harness: Harness, sessionmaker: Sessions, org: Any
) -> None:
    h = bot_harness
    council_ = await make_council(
        sessionmaker, org.xinsha_id, size=1, council_chat=False, community_chat=False
    )
    [suggestion_id] = await add_candidates(council_, ["修路灯"])
    assert await followers(sessionmaker, suggestion_id) == [PROPOSER.id]

    await h.feed(membership(h, PROPOSER, "member", "kicked"))
    assert await blocked_at(sessionmaker, PROPOSER.id) is not None
    assert await followers(sessionmaker, suggestion_id) == []  # left out while blocked

    assert await h.feed(membership(h, PROPOSER, "kicked", "member")) == []
    assert await blocked_at(sessionmaker, PROPOSER.id) is None
    assert await followers(sessionmaker, suggestion_id) == [PROPOSER.id]


async def test_marked_by_a_failed_send_and_back_with_a_restart(
    bot_harness: Harness, sessionmaker: Sessions, org: Any
) -> None:
    """The outbox's 403 marks the person (no update of theirs said so); the restart's update
    clears it all the same."""
    h = bot_harness
    async with sessionmaker() as session:
        await people.ensure_person(session, TelegramIdentity(PROPOSER.id, PROPOSER.first_name))
        await session.commit()
        await people.mark_blocked(session, PROPOSER.id)
    assert await blocked_at(sessionmaker, PROPOSER.id) is not None
    await h.feed(membership(h, PROPOSER, "kicked", "member"))
    assert await blocked_at(sessionmaker, PROPOSER.id) is None


async def test_a_person_who_never_started_the_bot_is_reachable_once_they_write(
    bot_harness: Harness, sessionmaker: Sessions
) -> None:
    """A 403 also comes for someone who never started the bot (granted a role by an official,
    say). Starting it sends no membership update: their first message clears the mark."""
    who = Person(7_310_002, "新委员")
    async with sessionmaker() as session:
        await people.ensure_person(session, TelegramIdentity(who.id, who.first_name))
        await session.commit()
        await people.mark_blocked(session, who.id)
    assert await blocked_at(sessionmaker, who.id) is not None
    await bot_harness.say(who, "/start")
    assert await blocked_at(sessionmaker, who.id) is None


async def test_seen_in_a_group_first_and_then_starting_the_bot(
    bot_settings: Settings, sessionmaker: Sessions, fsm_redis: Redis
) -> None:
    """Someone the bot saw in a group (their language cached, no Person row) who then starts
    it is made known; someone known, marked after a 403 (never started the bot) and seen in a
    group, is cleared by their /start, which Telegram accompanies with no other update."""
    h = make_harness(bot_settings, sessionmaker, fsm_redis)
    group = Group(-100_777, "楼栋群")
    newcomer, marked = Person(7_310_003, "群友"), Person(7_310_004, "新委员")
    for who in (newcomer, marked):
        await fsm_redis.delete(f"minsheng:locale:{who.id}")
    async with sessionmaker() as session:
        await people.ensure_person(session, TelegramIdentity(marked.id, marked.first_name))
        await session.commit()
        await people.mark_blocked(session, marked.id)
    for who in (newcomer, marked):
        await h.say(who, "/help", group)
        assert await fsm_redis.get(f"minsheng:locale:{who.id}") is not None  # cached there
        await h.say(who, "/start")
    async with sessionmaker() as session:
        known = await session.scalar(select(PersonRow).where(PersonRow.telegram_id == newcomer.id))
        assert known is not None and known.first_name == "群友"
    assert await blocked_at(sessionmaker, marked.id) is None


async def test_cleared_when_the_language_is_cached(
    bot_settings: Settings, sessionmaker: Sessions, fsm_redis: Redis
) -> None:
    """With Redis, a known person's updates need no SQL on the way in (their language is
    cached with their conversation): the unblock update still clears the mark."""
    h = make_harness(bot_settings, sessionmaker, fsm_redis)
    who = Person(7_310_001, "回来的人")
    await fsm_redis.delete(f"minsheng:locale:{who.id}")
    await h.say(who, "/lang")
    await h.press(who, "English", exact=True)
    assert await fsm_redis.get(f"minsheng:locale:{who.id}") == b"en"
    await h.feed(membership(h, who, "member", "kicked"))
    assert await blocked_at(sessionmaker, who.id) is not None
    await h.feed(membership(h, who, "kicked", "member"))
    assert await blocked_at(sessionmaker, who.id) is None


async def test_mark_reachable(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        assert await people.mark_reachable(session, 404) is False  # nobody known
        person = await people.ensure_person(session, TelegramIdentity(405, "小明"))
        await session.commit()
        assert await people.mark_reachable(session, 405) is False  # not marked
        await people.mark_blocked(session, 405)
        assert person.blocked_bot_at is not None
        assert await people.mark_reachable(session, 405) is True
        assert person.blocked_bot_at is None  # the loaded person sees it too
        assert await people.mark_reachable(session, 405) is False  # once
    assert await blocked_at(sessionmaker, 405) is None


async def test_a_council_member_who_unblocks_the_bot_is_sent_the_polls_refused_meanwhile(
    bot_settings: Settings, sessionmaker: Sessions, fsm_redis: Redis, org: Any, pending_i18n: I18n
) -> None:
    """A member who had chosen English, then blocked the bot: the vote's polls to him were
    refused. His unblocking comes with his language cached (no SQL on the way in), so the
    handler clears his mark and owes him those polls (with no poll sender in this process,
    the scheduler's resume sends them), once, in his language."""
    double = TelegramDouble()
    h = make_harness(bot_settings, sessionmaker, fsm_redis, session=double)
    council_ = await make_council(sessionmaker, org.xinsha_id, size=2, council_chat=False)
    who = Person(member_tid(1), "议事1")
    await fsm_redis.delete(f"minsheng:locale:{who.id}")
    await h.say(who, "/lang")
    await h.press(who, "English", exact=True)
    await h.feed(membership(h, who, "member", "kicked"))
    assert await blocked_at(sessionmaker, who.id) is not None

    runtime = FakePollRuntime(bot_settings, h.bot, sessionmaker, i18n=pending_i18n)
    runtime.limiter = MemorySendLimiter(Limits(chat_interval=0.001))
    now = datetime.now(UTC)
    ids = await add_candidates(council_, ["修路灯", "装座椅"])
    vote = await convene(council_, ids, closes_at=now + timedelta(days=2), now=now)
    double.fail_in_chat(who.id, forbidden("bot was blocked by the user"), times=None)
    await send_claimed_vote_polls(runtime, vote.id)
    assert [r.chat_id for r in double.delivered(name="SendPoll")] == [member_tid(0)] * 2
    # While he is away, the scheduler leaves the vote alone.
    assert await resume_poll_sending(runtime) == []  # type: ignore[arg-type]

    double.rules.clear()
    assert await fsm_redis.get(f"minsheng:locale:{who.id}") == b"en"
    await h.feed(membership(h, who, "kicked", "member"))
    assert await blocked_at(sessionmaker, who.id) is None
    async with sessionmaker() as session:
        stored = await session.get(CouncilVote, vote.id)
        assert stored is not None and stored.polls_sent_at is None  # owed again
    assert await resume_poll_sending(runtime) == [vote.id]  # type: ignore[arg-type]
    await wait_background(runtime)
    assert len(double.delivered(who.id, "SendPoll")) == 2
    headers = [t for t in double.texts_in(who.id) if t.startswith("Residents' council vote")]
    assert len(headers) == 1  # in English, once
    assert len(double.delivered(member_tid(0), "SendPoll")) == 2
    assert await resume_poll_sending(runtime) == []  # type: ignore[arg-type]
