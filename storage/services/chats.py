"""Group chats and the community each is bound to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, selectinload

from storage.models import (
    Chat,
    ChatPurpose,
    Community,
    CouncilPoll,
    CouncilVote,
    Notification,
    NotificationStatus,
    Person,
    VoteStatus,
    utcnow,
)
from storage.rules import Role
from storage.services.audit import Actor, record
from storage.services.people import find_person, pick_locale
from storage.services.public import PublicCommunity, community_query, first_community


async def get_chat(session: AsyncSession, chat_id: int) -> Chat | None:
    return await session.get(Chat, chat_id, options=[selectinload(Chat.community)])


_upgraded = aliased(Chat)
# Built once: building it costs more than running it, and every group's button runs it.
_SUGGESTING_COMMUNITY = (
    community_query()
    .join(Chat, Chat.community_id == Community.id)
    .where(
        or_(
            Chat.id == bindparam("chat_id"),
            Chat.id
            == select(_upgraded.migrated_to_id)
            .where(_upgraded.id == bindparam("chat_id"))
            .scalar_subquery(),
        )
    )
    .limit(1)
)


async def suggesting_community(session: AsyncSession, chat_id: int) -> PublicCommunity | None:
    """The community a group's "Suggest a project" buttons open the form for: the one the group
    is linked to now (as its residents' or its council's group), so that buttons posted before
    an admin changed the link follow it; None for a group linked to nothing. A group upgraded
    to a supergroup answers for the supergroup (its buttons moved there with its history).
    One statement."""
    return await first_community(session, _SUGGESTING_COMMUNITY, {"chat_id": chat_id})


async def note_membership(
    session: AsyncSession, chat_id: int, title: str, chat_type: str, *, is_member: bool
) -> Chat:
    """The bot was added to or removed from a group. Commits."""
    chat = await _chat_row(session, chat_id, chat_type, title)
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
    chat = await _chat_row(session, chat_id, chat_type, title)
    previous = chat.community_id
    chat.community_id = community.id
    chat.purpose = purpose
    chat.bound_by_id = bound_by_person_id
    chat.bound_at = utcnow()
    chat.bot_is_member = True
    await session.flush()
    _admins_choice(
        session,
        chat,
        bound_by_person_id,
        "bind_chat",
        {"previous_community_id": previous, "purpose": purpose.value},
    )
    await session.commit()
    return chat


async def _chat_row(session: AsyncSession, chat_id: int, chat_type: str, title: str) -> Chat:
    """The group's row (made if the bot has not kept one), with its title as it is now."""
    chat = await session.get(Chat, chat_id)
    if chat is None:
        chat = Chat(id=chat_id, type=chat_type)
        session.add(chat)
    chat.title = title[:255]
    return chat


def _admins_choice(
    session: AsyncSession, chat: Chat, person_id: int | None, action: str, details: dict[str, Any]
) -> None:
    """Audit what one of the group's admins chose for it (not public: it is the group's)."""
    record(
        session,
        actor=Actor(Role.GROUP_ADMIN, person_id),
        entity_type="chat",
        entity_id=chat.id,
        community_id=chat.community_id,
        action=action,
        public=False,
        details=details,
    )


@dataclass(frozen=True, slots=True)
class Reader:
    """Whom a message to a chat is written for: in which language, and the person behind a
    private chat (None for a group, or someone the store does not know)."""

    locale: str
    person: Person | None = None


async def reader_of(session: AsyncSession, chat_id: int, default_locale: str) -> Reader:
    """Who reads what the bot writes to `chat_id`, and in which language: a group in the one
    its admins chose (/lang), else the default; a person in their own choice, else their
    Telegram client's, else the default."""
    if chat_id < 0:
        return Reader(await chat_locale(session, chat_id) or default_locale)
    person = await find_person(session, chat_id)
    if person is None:
        return Reader(default_locale)
    return Reader(pick_locale(person.locale, person.language_code, default_locale), person)


_CHAT_LOCALE = select(Chat.locale).where(Chat.id == bindparam("chat_id"))


async def chat_locale(session: AsyncSession, chat_id: int) -> str | None:
    """The language one of the group's admins chose for it with /lang; None if none did."""
    locale: str | None = await session.scalar(_CHAT_LOCALE, {"chat_id": chat_id})
    return locale


async def set_chat_locale(
    session: AsyncSession,
    chat_id: int,
    locale: str,
    *,
    title: str,
    chat_type: str,
    chosen_by_person_id: int | None,
) -> None:
    """A group admin chose the language the bot speaks in the group (two admins choosing at
    once: the later choice stands). Commits with the update (the session middleware), like
    a person's own choice."""
    chat = await _chat_row(session, chat_id, chat_type, title)
    previous, chat.locale = chat.locale, locale
    await session.flush()
    _admins_choice(
        session,
        chat,
        chosen_by_person_id,
        "set_chat_locale",
        {"previous": previous, "locale": locale},
    )


async def bound_chats(
    session: AsyncSession, community_id: int, purpose: ChatPurpose = ChatPurpose.COMMUNITY
) -> list[Chat]:
    query = select(Chat).where(
        Chat.community_id == community_id, Chat.purpose == purpose, Chat.bot_is_member.is_(True)
    )
    return list((await session.scalars(query)).all())


async def council_chat(session: AsyncSession, community_id: int) -> Chat | None:
    """The council's group a vote of `community_id` goes to: the one bound last, if any."""
    bound = await bound_chats(session, community_id, ChatPurpose.COUNCIL)
    return max(bound, key=lambda c: (c.bound_at or c.created_at, c.id), default=None)


@dataclass(frozen=True, slots=True)
class Migration:
    """What migrate_chat moved (nothing, on a repeat)."""

    binding_moved: bool = False
    notifications: int = 0  # pending messages now owed to the new chat
    votes: int = 0  # open council votes now in the new chat, their polls to be posted again
    polls_lost: int = 0  # polls left behind in the old group, no longer to be stopped


async def migrate_chat(
    session: AsyncSession,
    from_chat_id: int,
    to_chat_id: int,
    *,
    title: str | None = None,
    now: datetime | None = None,
) -> Migration:
    """Telegram upgraded the group `from_chat_id` to the supergroup `to_chat_id` (the service
    messages `migrate_to_chat_id` / `migrate_from_chat_id`, or a send refused with
    TelegramMigrateToChat). The old id is dead: nothing sent to it arrives any more. Moves to
    the new id, idempotently (both service messages come, in either order, and may come
    again; replicas may meet the refusal at once). Commits.

    - The binding (community and purpose): the new chat takes it unless it has one already (an
      admin bound the supergroup meanwhile: theirs is the newer decision); the old chat keeps
      no binding and counts as left, so nothing more is queued for it.
    - The outbox: whatever is still pending for the old id now goes to the new one.
    - Open council votes held in the old group: their results and any polls still to send
      go to the new group, and their polls are posted there again (the scheduler's
      resume_poll_sending sends every poll a chat does not have yet). Ballots already cast
      stay counted. The polls in the old group stay behind: they can no longer be answered
      nor stopped, so they are recorded as stopped and the close does not try.
    """
    if from_chat_id == to_chat_id:
        return Migration()
    now = now or utcnow()
    # A write first, so that on SQLite the transaction holds the write lock before it reads
    # (a read transaction cannot upgrade once another writer has committed). On PostgreSQL
    # a second migration of the chat at the same time waits on these rows, or on the old
    # chat's row below, and then finds everything moved. Rows the outbox has claimed move
    # too: its marks go by row id. Anything enqueued for the old id after this commits is
    # moved when its send is refused (bot.outbox follows TelegramMigrateToChat here).
    moved_notifications = await _move_rows(
        session,
        update(Notification)
        .where(
            Notification.chat_id == from_chat_id,
            Notification.status == NotificationStatus.PENDING,
        )
        .values(chat_id=to_chat_id),
    )
    old = await session.get(Chat, from_chat_id, with_for_update=True, populate_existing=True)
    new = await session.get(Chat, to_chat_id, with_for_update=True, populate_existing=True)
    binding_moved = False
    if old is not None:
        if old.community_id is not None:
            if new is None:
                new = Chat(id=to_chat_id, type="supergroup", title=(title or old.title)[:255])
                session.add(new)
            if new.community_id is None:
                new.community_id = old.community_id
                new.purpose = old.purpose
                new.bound_by_id = old.bound_by_id
                new.bound_at = old.bound_at
                new.locale = new.locale or old.locale
                new.type = "supergroup"
                new.bot_is_member = True  # it is there: Telegram moved it with the group
                binding_moved = True
            old.community_id = None
        old.bot_is_member = False
        old.migrated_to_id = to_chat_id
    await session.flush()
    votes = await _move_rows(
        session,
        update(CouncilVote)
        .where(CouncilVote.council_chat_id == from_chat_id, CouncilVote.status == VoteStatus.OPEN)
        # Sent in full to the old group, not to this one: resume_poll_sending takes it up.
        .values(council_chat_id=to_chat_id, polls_sent_at=None),
    )
    polls_lost = await _move_rows(
        session,
        update(CouncilPoll)
        .where(CouncilPoll.chat_id == from_chat_id, CouncilPoll.stopped_at.is_(None))
        .values(stopped_at=now),
    )
    if binding_moved or moved_notifications or votes or polls_lost:
        record(
            session,
            actor=Actor.system(),
            entity_type="chat",
            entity_id=to_chat_id,
            community_id=new.community_id if new is not None else None,
            action="migrate_chat",
            public=False,
            details={
                "from_chat_id": from_chat_id,
                "binding_moved": binding_moved,
                "notifications": moved_notifications,
                "votes": votes,
                "polls_lost": polls_lost,
            },
        )
    await session.commit()
    return Migration(binding_moved, moved_notifications, votes, polls_lost)


async def _move_rows(session: AsyncSession, statement: Any) -> int:
    result = await session.execute(statement.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
