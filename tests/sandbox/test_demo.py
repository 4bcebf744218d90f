"""The demo world: data-driven personas and chats, and its idempotent seed of the store."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Chat, Community, District, Person, Street
from webhook.sandbox.demo import (
    CHATS,
    DIRECTOR_CHEN,
    PERSONAS,
    TIANAN_GROUP,
    XINSHA_GROUP,
    persona,
    seed_demo,
)
from webhook.sandbox.emulator import Emulator


async def test_seed_is_idempotent_and_binds_only_the_first_group(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    for _ in range(2):
        async with sessionmaker() as session:
            await seed_demo(session)
    async with sessionmaker() as session:
        assert [d.name for d in (await session.scalars(select(District))).all()] == ["福田区"]
        assert [s.name for s in (await session.scalars(select(Street))).all()] == ["沙头街道"]
        names = sorted(c.name for c in (await session.scalars(select(Community))).all())
        assert names == ["天安社区", "新沙社区"]
        bound = await session.get(Chat, XINSHA_GROUP)
        assert bound is not None and bound.title == "新沙社区居民群" and bound.bot_is_member
        community = await session.get(Community, bound.community_id)
        assert community is not None and community.name == "新沙社区"
        owner = await session.get(Person, bound.bound_by_id)
        assert owner is not None and owner.telegram_id == DIRECTOR_CHEN
        assert await session.get(Chat, TIANAN_GROUP) is None
        assert await session.scalar(select(func.count()).select_from(Person)) == 1


def test_personas_and_chats_are_data() -> None:
    ids = [p.user_id for p in PERSONAS]
    assert len(ids) == len(set(ids)) and persona(DIRECTOR_CHEN).first_name == "陈主任"
    assert {p.language_code for p in PERSONAS} == {"zh", "en"}
    for chat in CHATS:
        assert set(chat.members) <= set(ids)
        assert chat.chat_id < -1000000000000  # supergroup ids
    # The emulator is built from the same rows.
    emulator = Emulator(token="1:x", bot_id=1, bot_username="b")
    assert set(emulator.users) == set(ids)
    assert emulator.chats[XINSHA_GROUP].members[1] == "administrator"
    assert emulator.chats[TIANAN_GROUP].members[1] == "left"
