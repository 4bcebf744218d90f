"""Group chats bound to communities, with their (non-public) audit event."""

from __future__ import annotations

from conftest import OrgTree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AuditEvent, ChatPurpose, Community
from storage.rules import Role
from storage.services import chats

SUPERGROUP = -1_001_234_567_890  # Telegram supergroup ids exceed 32 bits


async def test_bind_supergroup(
    sessionmaker: async_sessionmaker[AsyncSession], org: OrgTree
) -> None:
    async with sessionmaker() as session:
        await chats.note_membership(session, SUPERGROUP, "新沙居民群", "supergroup", is_member=True)
        community = await session.get(Community, org.xinsha_id)
        assert community is not None
        await chats.bind_chat(
            session,
            SUPERGROUP,
            community,
            title="新沙居民群",
            chat_type="supergroup",
            bound_by_person_id=None,
        )
    async with sessionmaker() as session:
        chat = await chats.get_chat(session, SUPERGROUP)
        assert chat is not None and chat.community is not None
        assert chat.community.name == "新沙社区" and chat.bound_at is not None
        assert [c.id for c in await chats.bound_chats(session, org.xinsha_id)] == [SUPERGROUP]
        assert await chats.bound_chats(session, org.xinsha_id, ChatPurpose.COUNCIL) == []
        event = await session.scalar(select(AuditEvent))
        assert event is not None
        assert (event.entity_type, event.entity_id, event.actor_role, event.public) == (
            "chat",
            SUPERGROUP,
            Role.GROUP_ADMIN,
            False,
        )
        await chats.note_membership(
            session, SUPERGROUP, "新沙居民群", "supergroup", is_member=False
        )
        assert await chats.bound_chats(session, org.xinsha_id) == []
