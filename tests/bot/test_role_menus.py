"""Command menus follow roles: everyone's private menu holds the residents' commands; a role
holder's own menu adds /votes, /review and /convene as their roles allow. A grant or a
revocation owes the person a menu (the outbox's command_menu); one by an official is also
told in a message, which an invite link answers in its own chat."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram.methods import DeleteMyCommands, SendMessage, SetMyCommands, TelegramMethod
from aiogram.types import BotCommandScopeChat
from aiogram.utils.i18n import I18n
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram_fakes import Harness, Person, RecordingSession, make_bot, private_chat
from test_outbox import Rig

from bot.commands_menu import RESIDENT_COMMANDS, private_commands, private_menu_calls
from bot.notify_texts import NotificationRenderer
from storage.models import COMMAND_MENU, Notification, NotificationStatus, utcnow
from storage.rules import Role, ScopeLevel
from storage.services import invites
from storage.services.access import Principal, Scope
from storage.services.people import (
    TelegramIdentity,
    ensure_person,
    mark_blocked,
    set_locale,
)

pytest_plugins = ["telegram_fakes", "sending_fakes"]

Sessions = async_sessionmaker[AsyncSession]
RESIDENT = ["start", "help", "suggest", "my", "cancel", "lang"]
LI = TelegramIdentity(601, "小李", language_code="zh-hans")


def names(commands: Any) -> list[str]:
    return [c[0] if isinstance(c, tuple) else c.command for c in commands]


@pytest.mark.parametrize(
    ("roles", "extra"),
    [
        ((), []),
        ((Role.PROPOSER, Role.IMPLEMENTER, Role.GROUP_ADMIN), []),
        ((Role.COUNCIL_MEMBER,), ["votes"]),
        ((Role.COMMUNITY_STAFF,), ["review", "convene"]),
        ((Role.STREET_OFFICIAL,), ["review", "convene"]),
        ((Role.CITY_ADMIN,), ["review", "convene"]),
        ((Role.COMMUNITY_STAFF, Role.COUNCIL_MEMBER), ["votes", "review", "convene"]),
    ],
)
def test_each_role_adds_the_commands_it_may_use(roles: tuple[Role, ...], extra: list[str]) -> None:
    assert names(private_commands(roles)) == RESIDENT + extra
    assert private_commands(()) == RESIDENT_COMMANDS


def menu_calls(session: RecordingSession) -> list[tuple[str, str | None, list[str]]]:
    """(set|delete, language_code, commands) of each menu call, all to the person's chat."""
    found: list[tuple[str, str | None, list[str]]] = []
    for call in session.calls:
        method: TelegramMethod[Any] = call.method
        if isinstance(method, SetMyCommands):
            assert method.scope == BotCommandScopeChat(chat_id=LI.telegram_id)
            found.append(("set", method.language_code, names(method.commands)))
        elif isinstance(method, DeleteMyCommands):
            assert method.scope == BotCommandScopeChat(chat_id=LI.telegram_id)
            found.append(("delete", method.language_code, []))
    return found


@pytest.mark.parametrize(
    ("roles", "chosen", "client", "expected"),
    [
        # A resident who chose nothing, or their client's language: the general lists apply.
        ((), None, "zh-hans", [("delete", None, []), ("delete", "en", [])]),
        ((), "en", "en-GB", [("delete", None, []), ("delete", "en", [])]),
        # A resident who chose English on a Chinese client: their own list, in English only.
        ((), "en", "zh-hans", [("set", None, RESIDENT), ("delete", "en", [])]),
        # A council member: their list in both languages, the client picks.
        (
            (Role.COUNCIL_MEMBER,),
            None,
            "zh-hans",
            [("set", None, [*RESIDENT, "votes"]), ("set", "en", [*RESIDENT, "votes"])],
        ),
        # Staff who chose Chinese on an English client: Chinese only.
        (
            (Role.COMMUNITY_STAFF,),
            "zh",
            "en",
            [("set", None, [*RESIDENT, "review", "convene"]), ("delete", "en", [])],
        ),
    ],
)
async def test_the_menu_a_person_gets(
    pending_i18n: I18n,
    roles: tuple[Role, ...],
    chosen: str | None,
    client: str,
    expected: list[tuple[str, str | None, list[str]]],
) -> None:
    session = RecordingSession()  # refuses invalid names and descriptions, as Telegram does
    bot = make_bot(session)
    for call in private_menu_calls(pending_i18n, LI.telegram_id, roles, chosen, client):
        await bot(call)
    assert menu_calls(session) == expected


async def test_the_menu_in_the_chosen_language(pending_i18n: I18n) -> None:
    session = RecordingSession()
    bot = make_bot(session)
    for call in private_menu_calls(pending_i18n, LI.telegram_id, [Role.COUNCIL_MEMBER], "en", "zh"):
        await bot(call)
    [menu] = [c.method for c in session.calls if isinstance(c.method, SetMyCommands)]
    assert menu.commands[-1].description == "Council votes open for you"


# --- through the outbox ------------------------------------------------------------------


@pytest.fixture
def rig(sessionmaker: Sessions, pending_i18n: I18n) -> Rig:
    rig = Rig(sessionmaker, NotificationRenderer(pending_i18n, ZoneInfo("Asia/Shanghai")))
    # The rig's clock starts in the past; what the services owe is due from now.
    rig.clock.advance((utcnow() - rig.clock.utc()).total_seconds() + 5)
    return rig


def methods(rig: Rig) -> list[TelegramMethod[Any]]:
    return [r.method for r in rig.double.delivered()]


async def owed(sessionmaker: Sessions) -> list[tuple[str, NotificationStatus]]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(Notification).order_by(Notification.id))
        return [(n.kind, n.status) for n in rows]


async def test_an_officials_grant_and_revocation_are_told_and_change_the_menu(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    async with sessionmaker() as session:
        await ensure_person(session, LI)
        await session.commit()
    official = Principal(Role.STREET_OFFICIAL, Scope(ScopeLevel.STREET, org.street_id))
    council = Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    async with sessionmaker() as session:
        grant, _ = await invites.grant_by_official(
            session, official, Role.COUNCIL_MEMBER, council, telegram_id=LI.telegram_id
        )
    assert await rig.sender.run_once() == 2
    [told] = [m for m in methods(rig) if isinstance(m, SendMessage)]
    assert told.chat_id == LI.telegram_id
    assert "您已成为福田区 › 沙头街道 › 新沙社区的居民议事会成员。" in told.text
    assert "/votes" in told.text
    menus = [m for m in methods(rig) if not isinstance(m, SendMessage)]
    assert [(type(m), names(m.commands)) for m in menus if isinstance(m, SetMyCommands)] == [
        (SetMyCommands, [*RESIDENT, "votes"]),
        (SetMyCommands, [*RESIDENT, "votes"]),
    ]
    assert len(menus) == 2
    # Granting it again changes nothing, and owes nothing.
    async with sessionmaker() as session:
        await invites.grant_by_official(
            session, official, Role.COUNCIL_MEMBER, council, telegram_id=LI.telegram_id
        )
    assert await rig.sender.run_once() == 0

    rig.double.requests.clear()
    async with sessionmaker() as session:
        await invites.revoke_by_official(session, official, grant.id)
        await invites.revoke_by_official(session, official, grant.id)  # idempotent
    assert await rig.sender.run_once() == 2
    [told] = [m for m in methods(rig) if isinstance(m, SendMessage)]
    assert "您已不再是福田区 › 沙头街道 › 新沙社区的居民议事会成员。" in told.text
    menus = [m for m in methods(rig) if not isinstance(m, SendMessage)]
    assert [type(m) for m in menus] == [DeleteMyCommands, DeleteMyCommands]
    assert await owed(sessionmaker) == [
        (COMMAND_MENU, NotificationStatus.SENT),
        ("role_granted", NotificationStatus.SENT),
        (COMMAND_MENU, NotificationStatus.SENT),
        ("role_revoked", NotificationStatus.SENT),
    ]


async def test_the_menu_follows_the_roles_held_when_it_is_set(
    rig: Rig, sessionmaker: Sessions, org: Any
) -> None:
    """An invite is answered in its chat; the menu comes from the outbox, in the language
    the person chose, with every role they hold by then."""
    async with sessionmaker() as session:
        await set_locale(session, LI, "en")  # owes a menu too, committed with the invite
        staff = await invites.create_invite(
            session, Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
        )
        council = await invites.create_invite(
            session, Role.COUNCIL_MEMBER, Scope(ScopeLevel.COMMUNITY, org.tianan_id)
        )
    for invite in (staff, council):
        async with sessionmaker() as session:
            await invites.redeem(session, invite.code, LI)
    assert await owed(sessionmaker) == [(COMMAND_MENU, NotificationStatus.PENDING)] * 3
    assert await rig.sender.run_once() == 3
    sets = [m for m in methods(rig) if isinstance(m, SetMyCommands)]
    assert [(m.language_code, names(m.commands)) for m in sets] == [
        (None, [*RESIDENT, "votes", "review", "convene"])
    ] * 3
    assert sets[0].commands[0].description == "Start"
    assert not [m for m in methods(rig) if isinstance(m, SendMessage)]


async def test_someone_back_after_blocking_the_bot_is_owed_their_menu(
    bot_harness: Harness, sessionmaker: Sessions
) -> None:
    """What a refusal marked blocked is owed again once they are back: starting the bot
    again, or unblocking it, owes them the menu their roles and language call for."""
    person = Person(LI.telegram_id, LI.first_name)
    await bot_harness.say(person, "/start")
    for back in ("start", "unblock"):
        async with sessionmaker() as session:
            await mark_blocked(session, LI.telegram_id)
        assert await owed_menus(sessionmaker) == 0, back
        if back == "start":
            await bot_harness.say(person, "/start")
        else:
            chat = private_chat(person)
            await bot_harness.feed(
                bot_harness.updates.my_chat_member(person, chat, "kicked", "member")
            )
        assert await owed_menus(sessionmaker) == 1, back
        async with sessionmaker() as session:
            await session.execute(delete(Notification))
            await session.commit()


async def owed_menus(sessionmaker: Sessions) -> int:
    async with sessionmaker() as session:
        query = select(func.count()).where(
            Notification.kind == COMMAND_MENU, Notification.status == NotificationStatus.PENDING
        )
        return int(await session.scalar(query) or 0)
