"""The demo world: data-driven personas and chats, and its idempotent seed of the store."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import (
    Chat,
    ChatPurpose,
    Community,
    District,
    Person,
    RoleGrant,
    Street,
    Suggestion,
)
from storage.rules import Role, ScopeLevel, State
from storage.services.access import council_members, principal_for
from storage.services.people import TelegramIdentity
from storage.services.suggestions import Draft, submit
from webhook.sandbox.demo import (
    CHATS,
    COUNCIL,
    DEMO_TZ,
    DIRECTOR_CHEN,
    LIU_MIN,
    PERSONA_GROUPS,
    PERSONAS,
    QIAN_DUODUO,
    SUGGESTIONS,
    TIANAN_GROUP,
    XINSHA_COUNCIL_GROUP,
    XINSHA_GROUP,
    persona,
    seed_demo,
)
from webhook.sandbox.emulator import Emulator


async def test_seed_is_idempotent_and_binds_the_groups_of_xinsha(
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
        assert bound.purpose is ChatPurpose.COMMUNITY
        community = await session.get(Community, bound.community_id)
        assert community is not None and community.name == "新沙社区"
        owner = await session.get(Person, bound.bound_by_id)
        assert owner is not None and owner.telegram_id == DIRECTOR_CHEN
        assert await session.get(Chat, TIANAN_GROUP) is None
        council_chat = await session.get(Chat, XINSHA_COUNCIL_GROUP)
        assert council_chat is not None and council_chat.title == "新沙社区居民议事会"
        assert council_chat.purpose is ChatPurpose.COUNCIL
        assert council_chat.community_id == community.id
        chair = await session.get(Person, council_chat.bound_by_id)
        assert chair is not None and chair.telegram_id == LIU_MIN

        # Roles, once each however often the seed runs.
        members = await council_members(session, community.id)
        assert sorted(p.telegram_id for p in members) == sorted(COUNCIL)
        grants = (await session.scalars(select(RoleGrant))).all()
        assert len(grants) == 6
        assert all(g.scope_level is ScopeLevel.COMMUNITY for g in grants)
        assert all(g.scope_id == community.id for g in grants)
        staff = await principal_for(
            session, LIU_MIN, community.id, frozenset({Role.COMMUNITY_STAFF})
        )
        assert staff is not None
        not_council = await principal_for(
            session, QIAN_DUODUO, community.id, frozenset({Role.COUNCIL_MEMBER})
        )
        assert not_council is None

        # Three suggestions to screen, once.
        seeded = (await session.scalars(select(Suggestion).order_by(Suggestion.seq))).all()
        assert [s.title for s in seeded] == [s.title for s in SUGGESTIONS]
        assert {s.status for s in seeded} == {State.SUBMITTED}
        assert {s.community_id for s in seeded} == {community.id}
        assert [s.seq for s in seeded] == [1, 2, 3]
        people = await session.scalar(select(func.count()).select_from(Person))
        assert people == len({DIRECTOR_CHEN, LIU_MIN, *COUNCIL} | {s.proposer for s in SUGGESTIONS})


async def test_seed_leaves_a_used_community_alone(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        await seed_demo(session)
        await session.execute(delete(Suggestion))
        await session.commit()
    async with sessionmaker() as session:
        xinsha = (
            await session.scalars(select(Community).where(Community.name == "新沙社区"))
        ).one()
        draft = Draft(xinsha.id, SUGGESTIONS[0].category, "一条真实的建议", "有人用过沙盒。")
        await submit(
            session, TelegramIdentity(QIAN_DUODUO, "钱多多"), draft, tz=DEMO_TZ, daily_limit=5
        )
    async with sessionmaker() as session:
        await seed_demo(session)
        titles = (await session.scalars(select(Suggestion.title))).all()
        assert titles == ["一条真实的建议"]


def test_personas_and_chats_are_data() -> None:
    ids = [p.user_id for p in PERSONAS]
    assert len(ids) == len(set(ids)) and persona(DIRECTOR_CHEN).first_name == "陈主任"
    assert {p.language_code for p in PERSONAS} == {"zh", "en"}
    assert [g for g, _zh, _en in PERSONA_GROUPS] == ["resident", "staff", "council"]
    by_group = {g: [p.user_id for p in PERSONAS if p.group == g] for g, _zh, _en in PERSONA_GROUPS}
    assert by_group["staff"] == [LIU_MIN]
    assert sorted(by_group["council"]) == sorted(COUNCIL) and len(COUNCIL) == 5
    assert QIAN_DUODUO in by_group["resident"]
    assert sum(len(members) for members in by_group.values()) == len(PERSONAS) == 11
    for chat in CHATS:
        assert set(chat.members) <= set(ids)
        assert chat.chat_id < -1000000000000  # supergroup ids
    council = next(c for c in CHATS if c.chat_id == XINSHA_COUNCIL_GROUP)
    assert set(council.members) == {LIU_MIN, *COUNCIL}  # 钱多多 is not in it
    # The emulator is built from the same rows.
    emulator = Emulator(token="1:x", bot_id=1, bot_username="b")
    assert set(emulator.users) == set(ids)
    assert emulator.chats[XINSHA_GROUP].members[1] == "administrator"
    assert emulator.chats[TIANAN_GROUP].members[1] == "left"
    assert emulator.chats[XINSHA_COUNCIL_GROUP].members[1] == "administrator"
    assert {p["id"]: p["group"] for p in emulator.personas()}[LIU_MIN] == "staff"
