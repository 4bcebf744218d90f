"""What the dialog tests share: where a person's conversation stands (as the FSM storage holds
it), and a staff member with a role. Test modules import it by name, as they import
telegram_fakes (`from dialog_helpers import fsm`), and load the `staff` fixture with
`pytest_plugins = ["telegram_fakes", "dialog_helpers"]`; pytest may not rewrite the asserts
of a module already imported, hence: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiogram.fsm.storage.base import StorageKey
from conftest import OrgTree
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import BOT_ID, Harness, Person

from storage.rules import Role, ScopeLevel
from storage.services import access
from storage.services.access import Principal, Scope
from storage.services.people import TelegramIdentity, ensure_person

Sessions = async_sessionmaker[AsyncSession]
STAFF = Person(2001, "王社工")


def fsm_key(person: Person, chat_id: int | None = None) -> StorageKey:
    """The key of the person's conversation in a chat (their private chat by default)."""
    return StorageKey(bot_id=BOT_ID, chat_id=chat_id or person.id, user_id=person.id)


async def fsm(
    h: Harness, person: Person, chat_id: int | None = None
) -> tuple[str | None, dict[str, Any]]:
    """The conversation's state and data."""
    key = fsm_key(person, chat_id)
    return await h.dispatcher.storage.get_state(key), await h.dispatcher.storage.get_data(key)


async def grant(sessionmaker: Sessions, person: Person, role: Role, scope: Scope) -> Principal:
    async with sessionmaker() as session:
        row = await ensure_person(session, TelegramIdentity(person.id, person.first_name))
        await access.grant_role(session, row.id, role, scope)
        await session.commit()
        return Principal(role, scope, row.id)


@pytest.fixture
async def staff(sessionmaker: Sessions, org: OrgTree) -> Principal:
    """STAFF, the community staff of 新沙社区."""
    return await grant(
        sessionmaker, STAFF, Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    )
