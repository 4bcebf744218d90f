"""Group chats bound to communities, with their (non-public) audit event."""

from __future__ import annotations

from conftest import OrgTree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AuditEvent, ChatPurpose, Community, Notification, NotificationStatus
from storage.rules import Role
from storage.services import chats, notifications

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


# --- a group upgraded to a supergroup ---------------------------------------------------------

OLD_GROUP = -4_012_345  # a basic group's id
NEW_SUPERGROUP = -1_009_876_543_210  # the supergroup Telegram made of it


async def _bind(
    session: AsyncSession,
    chat_id: int,
    community_id: int,
    *,
    chat_type: str = "group",
    purpose: ChatPurpose = ChatPurpose.COMMUNITY,
) -> None:
    community = await session.get(Community, community_id)
    assert community is not None
    await chats.bind_chat(
        session,
        chat_id,
        community,
        title="新沙居民群",
        chat_type=chat_type,
        bound_by_person_id=None,
        purpose=purpose,
    )


async def _owe(session: AsyncSession, chat_id: int, key: str) -> None:
    await notifications.enqueue(
        session, chat_id=chat_id, kind="suggestion_status", params={"n": key}, dedupe_key=key
    )
    await session.commit()


async def _owed(session: AsyncSession) -> dict[str, tuple[int, NotificationStatus]]:
    rows = (await session.scalars(select(Notification).order_by(Notification.id))).all()
    return {r.dedupe_key or "": (r.chat_id, r.status) for r in rows}


async def test_an_upgraded_group_keeps_its_binding_and_what_it_is_owed(
    sessionmaker: async_sessionmaker[AsyncSession], org: OrgTree
) -> None:
    async with sessionmaker() as session:
        await _bind(session, OLD_GROUP, org.xinsha_id)
        await _owe(session, OLD_GROUP, "pending-1")
        await _owe(session, OLD_GROUP, "pending-2")
        await _owe(session, OLD_GROUP, "sent")
        sent = await session.scalar(
            select(Notification.id).where(Notification.dedupe_key == "sent")
        )
        assert sent is not None
        await notifications.mark_sent(session, sent)
        await _owe(session, -100_777, "elsewhere")
        bound_at = (await chats.get_chat(session, OLD_GROUP)).bound_at  # type: ignore[union-attr]

    async with sessionmaker() as session:
        moved = await chats.migrate_chat(session, OLD_GROUP, NEW_SUPERGROUP, title="新沙居民群")
    assert moved == chats.Migration(binding_moved=True, notifications=2)

    async with sessionmaker() as session:
        new = await chats.get_chat(session, NEW_SUPERGROUP)
        assert new is not None and new.community_id == org.xinsha_id
        assert (new.type, new.purpose, new.bot_is_member) == (
            "supergroup",
            ChatPurpose.COMMUNITY,
            True,
        )
        assert new.bound_at == bound_at and new.title == "新沙居民群"
        old = await chats.get_chat(session, OLD_GROUP)
        assert old is not None and old.community_id is None and not old.bot_is_member
        assert [c.id for c in await chats.bound_chats(session, org.xinsha_id)] == [NEW_SUPERGROUP]
        assert await _owed(session) == {
            "pending-1": (NEW_SUPERGROUP, NotificationStatus.PENDING),
            "pending-2": (NEW_SUPERGROUP, NotificationStatus.PENDING),
            "sent": (OLD_GROUP, NotificationStatus.SENT),  # history stays where it happened
            "elsewhere": (-100_777, NotificationStatus.PENDING),
        }
        [event] = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "migrate_chat"))
        ).all()
        assert (event.entity_id, event.community_id, event.actor_role, event.public) == (
            NEW_SUPERGROUP,
            org.xinsha_id,
            Role.SYSTEM,
            False,
        )
        assert event.details["from_chat_id"] == OLD_GROUP

    # Told again (the other service message, a redelivery, the outbox's refusal): nothing.
    for _ in range(2):
        async with sessionmaker() as session:
            assert await chats.migrate_chat(session, OLD_GROUP, NEW_SUPERGROUP) == (
                chats.Migration()
            )
    async with sessionmaker() as session:
        new = await chats.get_chat(session, NEW_SUPERGROUP)
        assert new is not None and new.community_id == org.xinsha_id
        events = await session.scalars(
            select(AuditEvent).where(AuditEvent.action == "migrate_chat")
        )
        assert len(events.all()) == 1


async def test_a_council_group_upgraded_stays_the_council_s(
    sessionmaker: async_sessionmaker[AsyncSession], org: OrgTree
) -> None:
    async with sessionmaker() as session:
        await _bind(session, OLD_GROUP, org.xinsha_id, purpose=ChatPurpose.COUNCIL)
        await chats.migrate_chat(session, OLD_GROUP, NEW_SUPERGROUP)
        council_chats = await chats.bound_chats(session, org.xinsha_id, ChatPurpose.COUNCIL)
        assert [c.id for c in council_chats] == [NEW_SUPERGROUP]
        assert await chats.bound_chats(session, org.xinsha_id) == []


async def test_a_supergroup_bound_meanwhile_keeps_its_own_binding(
    sessionmaker: async_sessionmaker[AsyncSession], org: OrgTree
) -> None:
    """An admin bound the new supergroup before the upgrade's message was handled: that is
    the newer decision. The old group keeps no binding either way."""
    async with sessionmaker() as session:
        await _bind(session, OLD_GROUP, org.xinsha_id)
        await _bind(session, NEW_SUPERGROUP, org.tianan_id, chat_type="supergroup")
        moved = await chats.migrate_chat(session, OLD_GROUP, NEW_SUPERGROUP)
        assert not moved.binding_moved
    async with sessionmaker() as session:
        new = await chats.get_chat(session, NEW_SUPERGROUP)
        assert new is not None and new.community_id == org.tianan_id
        assert await chats.bound_chats(session, org.xinsha_id) == []


async def test_an_unknown_group_upgraded_changes_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], org: OrgTree
) -> None:
    async with sessionmaker() as session:
        assert await chats.migrate_chat(session, OLD_GROUP, NEW_SUPERGROUP) == chats.Migration()
        assert await chats.get_chat(session, NEW_SUPERGROUP) is None
        assert await chats.migrate_chat(session, NEW_SUPERGROUP, NEW_SUPERGROUP) == (
            chats.Migration()
        )
