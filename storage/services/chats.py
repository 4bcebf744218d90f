"""Group chats and the community each is bound to."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage.models import Chat, ChatPurpose, Community, utcnow
from storage.rules import Role
from storage.services.audit import Actor, record


async def get_chat(session: AsyncSession, chat_id: int) -> Chat | None:
    return await session.get(Chat, chat_id, options=[selectinload(Chat.community)])


async def note_membership(
    session: AsyncSession, chat_id: int, title: str, chat_type: str, *, is_member: bool
) -> Chat:
    """The bot was added to or removed from a group. Commits."""
    chat = await session.get(Chat, chat_id)
    if chat is None:
        chat = Chat(id=chat_id, type=chat_type)
        session.add(chat)
    chat.title = title[:255]
    chat.type = chat_type
    chat.bot_is_member = is_member
    await session.commit()
    return chat


async def bind_chat(
    session: AsyncSession,
    chat_id: int,
    community: Community,
    *,
    title: str,
    chat_type: str,
    bound_by_person_id: int | None,
    purpose: ChatPurpose = ChatPurpose.COMMUNITY,
) -> Chat:
    """Bind a group to a community (a group admin chose it). Commits."""
    chat = await session.get(Chat, chat_id)
    if chat is None:
        chat = Chat(id=chat_id, type=chat_type)
        session.add(chat)
    previous = chat.community_id
    chat.title = title[:255]
    chat.community_id = community.id
    chat.purpose = purpose
    chat.bound_by_id = bound_by_person_id
    chat.bound_at = utcnow()
    chat.bot_is_member = True
    await session.flush()
    record(
        session,
        actor=Actor(Role.GROUP_ADMIN, bound_by_person_id),
        entity_type="chat",
        entity_id=chat_id,
        community_id=community.id,
        action="bind_chat",
        public=False,
        details={"previous_community_id": previous, "purpose": purpose.value},
    )
    await session.commit()
    return chat


async def bound_chats(
    session: AsyncSession, community_id: int, purpose: ChatPurpose = ChatPurpose.COMMUNITY
) -> list[Chat]:
    query = select(Chat).where(
        Chat.community_id == community_id, Chat.purpose == purpose, Chat.bot_is_member.is_(True)
    )
    return list((await session.scalars(query)).all())
