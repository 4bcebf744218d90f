"""The outbox (storage.services.notifications): enqueue once, notify followers, claim with a
lease (skipping rows another replica holds), and mark each message's fate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from conftest import OrgTree
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.db import create_engine, create_sessionmaker
from storage.models import Follower, Notification, NotificationStatus, Person, Suggestion
from storage.rules import Category
from storage.services import notifications
from storage.services.people import TelegramIdentity, ensure_person
from storage.services.suggestions import Draft, submit

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


async def rows(session: AsyncSession) -> list[Notification]:
    result = await session.scalars(select(Notification).order_by(Notification.id))
    return list(result.all())


async def enqueue_many(sessionmaker: Sessions, n: int, *, at: datetime = NOW) -> None:
    async with sessionmaker() as session:
        for i in range(n):
            await notifications.enqueue(
                session, chat_id=1000 + i, kind="test", params={"i": i}, not_before=at
            )
        await session.commit()


async def test_enqueue_dedupes_by_key(session: AsyncSession) -> None:
    for _ in range(3):
        await notifications.enqueue(
            session, chat_id=5, kind="vote_result", params={"n": 1}, dedupe_key="k:1"
        )
    await notifications.enqueue(session, chat_id=5, kind="vote_result", params={"n": 2})
    await notifications.enqueue(session, chat_id=5, kind="vote_result", params={"n": 3})
    await session.commit()
    stored = await rows(session)
    assert [(n.params, n.dedupe_key) for n in stored] == [
        ({"n": 1}, "k:1"),
        ({"n": 2}, None),
        ({"n": 3}, None),
    ]
    first = stored[0]
    assert first.status is NotificationStatus.PENDING and first.attempts == 0
    assert first.not_before.tzinfo is not None


async def test_enqueue_many_in_chunks_skipping_known_keys(
    session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notifications, "ENQUEUE_CHUNK", 4)
    await notifications.enqueue(
        session, chat_id=1, kind="vote_result", params={"old": True}, dedupe_key="r:1"
    )
    owed = [
        notifications.Owed(i, "vote_result", {"i": i}, dedupe_key=f"r:{i}") for i in range(1, 11)
    ]
    # The same key twice in one batch, and one already stored: each kept once, the first.
    owed.append(notifications.Owed(3, "vote_result", {"again": True}, dedupe_key="r:3"))
    owed.append(notifications.Owed(99, "vote_result", {"no_key": True}))
    await notifications.enqueue_many(session, owed)
    await notifications.enqueue_many(session, [])
    await session.commit()
    stored = await rows(session)
    assert [(n.chat_id, n.params) for n in stored] == [
        (1, {"old": True}),
        *[(i, {"i": i}) for i in range(2, 11)],
        (99, {"no_key": True}),
    ]
    assert all(n.status is NotificationStatus.PENDING and n.attempts == 0 for n in stored)


async def test_notify_followers(sessionmaker: Sessions, org: OrgTree) -> None:
    async with sessionmaker() as session:
        suggestion = await submit(
            session,
            TelegramIdentity(501, "proposer"),
            Draft(org.xinsha_id, Category.CARE, "长者饭堂", "希望开设长者饭堂。"),
            tz=UTC,
            daily_limit=10,
        )
    async with sessionmaker() as session:
        follower = await ensure_person(session, TelegramIdentity(502))
        blocked = await ensure_person(session, TelegramIdentity(503))
        excluded = await ensure_person(session, TelegramIdentity(504))
        blocked.blocked_bot_at = NOW
        for someone in (follower, blocked, excluded):
            session.add(Follower(suggestion_id=suggestion.id, person_id=someone.id))
        await session.flush()
        stored = await session.get(Suggestion, suggestion.id)
        assert stored is not None
        for _ in range(2):  # the second time every key is taken
            sent = await notifications.notify_followers(
                session,
                stored,
                "suggestion_rejected",
                {"reason": "other", "note": None},
                dedupe_prefix="rejected:1",
                exclude={excluded.id},
                proposer_params={"note": "只给提议人看"},
            )
            assert sent == 2
        await session.commit()
        by_chat = {n.chat_id: n for n in await rows(session)}
    assert set(by_chat) == {501, 502}
    assert by_chat[501].params == {"reason": "other", "note": "只给提议人看"}
    assert by_chat[502].params == {"reason": "other", "note": None}
    assert by_chat[502].person_id == follower.id
    assert by_chat[502].dedupe_key == f"rejected:1:{follower.id}"


async def test_claim_due_leases_oldest_first(sessionmaker: Sessions) -> None:
    await enqueue_many(sessionmaker, 5)
    await enqueue_many(sessionmaker, 1, at=NOW + timedelta(hours=1))  # not due yet
    async with sessionmaker() as session:
        first = await notifications.claim_due(session, limit=3, now=NOW, lease_seconds=60)
        assert [n.chat_id for n in first] == [1000, 1001, 1002]
        assert all(n.attempts == 1 for n in first)
        assert all(n.not_before == NOW + timedelta(seconds=60) for n in first)
        second = await notifications.claim_due(session, limit=10, now=NOW)
        assert [n.chat_id for n in second] == [1003, 1004]
        assert await notifications.claim_due(session, limit=10, now=NOW) == []
        await notifications.mark_sent(session, first[0].id, NOW)
        # The lease runs out: what was claimed and not marked comes back (a replica died).
        later = NOW + timedelta(seconds=61)
        again = await notifications.claim_due(session, limit=10, now=later)
        assert [n.chat_id for n in again] == [1001, 1002, 1003, 1004]
        assert [n.attempts for n in again] == [2, 2, 2, 2]
        sent = await session.get(Notification, first[0].id, populate_existing=True)
        assert sent is not None and sent.status is NotificationStatus.SENT
        assert sent.sent_at == NOW


async def test_given_up_after_max_attempts(sessionmaker: Sessions) -> None:
    await enqueue_many(sessionmaker, 1)
    at = NOW
    async with sessionmaker() as session:
        for attempt in range(1, notifications.MAX_ATTEMPTS + 1):
            claimed = await notifications.claim_due(session, limit=1, now=at, lease_seconds=1)
            assert [n.attempts for n in claimed] == [attempt]
            at += timedelta(seconds=2)
        assert await notifications.claim_due(session, limit=1, now=at) == []
        (row,) = await rows(session)
        await session.refresh(row)
        assert row.status is NotificationStatus.FAILED and row.error == "out of attempts"


async def test_mark_retry_and_failed(sessionmaker: Sessions) -> None:
    await enqueue_many(sessionmaker, 2)
    async with sessionmaker() as session:
        one, two = await notifications.claim_due(session, limit=2, now=NOW)
        await notifications.mark_retry(session, one.id, 30, now=NOW, error="429")
        await notifications.mark_failed(session, two.id, "Bad Request: chat not found")
        early = NOW + timedelta(seconds=29)
        assert await notifications.claim_due(session, limit=5, now=early) == []
        back = await notifications.claim_due(session, limit=5, now=NOW + timedelta(seconds=30))
        assert [(n.id, n.attempts, n.error) for n in back] == [(one.id, 2, "429")]
        failed = await session.get(Notification, two.id, populate_existing=True)
        assert failed is not None and failed.status is NotificationStatus.FAILED
        assert failed.error == "Bad Request: chat not found"


async def test_a_deferral_by_our_own_pacing_does_not_count(sessionmaker: Sessions) -> None:
    """Held back by the rate limiter (nothing reached Telegram) as often as it takes: the
    message keeps its attempts and is never given up for that."""
    await enqueue_many(sessionmaker, 1)
    at = NOW
    async with sessionmaker() as session:
        for _ in range(notifications.MAX_ATTEMPTS + 3):
            (claimed,) = await notifications.claim_due(session, limit=1, now=at)
            assert claimed.attempts == 1
            await notifications.mark_retry(
                session, claimed.id, 1, now=at, error="waiting for the rate limit", attempted=False
            )
            at += timedelta(seconds=1)
        (claimed,) = await notifications.claim_due(session, limit=1, now=at)
        await notifications.mark_retry(session, claimed.id, 1, now=at, error="429")
        (again,) = await notifications.claim_due(session, limit=1, now=at + timedelta(seconds=1))
        assert again.attempts == 2 and again.status is NotificationStatus.PENDING


async def test_mark_blocked_stops_the_person(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        someone = await ensure_person(session, TelegramIdentity(777))
        for i in range(3):
            await notifications.enqueue(
                session, chat_id=777, kind="t", params={"i": i}, person_id=someone.id
            )
        await notifications.enqueue(session, chat_id=778, kind="t", params={})
        await session.commit()
    async with sessionmaker() as session:
        first, *_ = await notifications.claim_due(session, limit=1, now=datetime.now(UTC))
        await notifications.mark_blocked(session, first.id)
    async with sessionmaker() as session:
        statuses = {(n.chat_id, n.status) for n in await rows(session)}
        assert statuses == {(777, NotificationStatus.BLOCKED), (778, NotificationStatus.PENDING)}
        person = await session.scalar(select(Person).where(Person.telegram_id == 777))
        assert person is not None and person.blocked_bot_at is not None


async def test_two_replicas_claim_disjoint_sets(database_url: str) -> None:
    """Two engines (two replicas) claiming at the same instant never take the same row."""
    engines = [create_engine(database_url) for _ in range(2)]
    try:
        makers = [create_sessionmaker(e) for e in engines]
        await enqueue_many(makers[0], 40)

        async def replica(maker: Sessions) -> list[int]:
            taken: list[int] = []
            while True:
                async with maker() as session:
                    claimed = await notifications.claim_due(session, limit=3, now=NOW)
                if not claimed:
                    return taken
                taken += [n.id for n in claimed]
                await asyncio.sleep(0)

        a, b = await asyncio.gather(replica(makers[0]), replica(makers[1]))
        assert not set(a) & set(b)
        assert sorted(a + b) == list(range(1, 41))
        async with makers[0]() as session:
            attempts = await session.scalar(select(func.sum(Notification.attempts)))
            assert attempts == 40
    finally:
        for e in engines:
            await e.dispose()


@pytest.mark.postgres
async def test_claim_skips_rows_locked_by_another_replica(postgres_url: str) -> None:
    engines = [create_engine(postgres_url) for _ in range(2)]
    try:
        makers = [create_sessionmaker(e) for e in engines]
        await enqueue_many(makers[0], 4)
        async with makers[1]() as holder:
            # Another replica in the middle of its claim holds the two oldest rows.
            held = await holder.scalars(
                select(Notification.id).order_by(Notification.id).limit(2).with_for_update()
            )
            assert list(held.all()) == [1, 2]
            async with makers[0]() as session:
                claimed = await asyncio.wait_for(
                    notifications.claim_due(session, limit=4, now=NOW), timeout=5
                )
            assert [n.id for n in claimed] == [3, 4]
            await holder.rollback()
    finally:
        for e in engines:
            await e.dispose()


async def test_settled_messages_are_pruned_after_the_retention(sessionmaker: Sessions) -> None:
    """What was sent, refused for good or kept from someone who blocked the bot goes once it
    is older than the retention; what is still owed stays, however old."""
    old, recent = NOW - timedelta(days=91), NOW - timedelta(days=89)
    fates = [
        (NotificationStatus.SENT, old),
        (NotificationStatus.FAILED, old),
        (NotificationStatus.BLOCKED, old),
        (NotificationStatus.PENDING, old),
        (NotificationStatus.SENT, recent),
    ]
    async with sessionmaker() as session:
        for i, (status, created) in enumerate(fates):
            session.add(
                Notification(
                    chat_id=7000 + i,
                    kind="vote_result",
                    params={},
                    image=b"\x89PNG" * 1000,
                    dedupe_key=f"vote:{i}",
                    status=status,
                    created_at=created,
                )
            )
        await session.commit()
        assert await notifications.prune_settled(session, 90, NOW) == 3
        left = [(n.status, n.dedupe_key) for n in await rows(session)]
    assert left == [(NotificationStatus.PENDING, "vote:3"), (NotificationStatus.SENT, "vote:4")]
