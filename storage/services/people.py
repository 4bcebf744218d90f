"""People who talk to the bot: created when they first do something that needs a record."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import COMMAND_MENU, Notification, Person, utcnow

SUPPORTED_LOCALES = ("zh", "en")


@dataclass(frozen=True, slots=True)
class TelegramIdentity:
    """What storage needs of a Telegram user, without knowing Telegram."""

    telegram_id: int
    first_name: str = ""
    username: str | None = None
    language_code: str | None = None


async def find_person(session: AsyncSession, telegram_id: int) -> Person | None:
    return (await session.scalars(select(Person).where(Person.telegram_id == telegram_id))).first()


async def ensure_person(session: AsyncSession, who: TelegramIdentity) -> Person:
    """The person for this Telegram user, created or refreshed. Flushes, does not commit."""
    person = refresh_person(session, await find_person(session, who.telegram_id), who)
    await session.flush()
    return person


def refresh_person(session: AsyncSession, found: Person | None, who: TelegramIdentity) -> Person:
    """`found` (the person of `who`, looked up by the caller), or a new person added to the
    session, with what Telegram says of them now; someone who had blocked the bot is back
    (and owed their menu). Does not flush."""
    person = found
    if person is None:
        person = Person(telegram_id=who.telegram_id)
        session.add(person)
    person.first_name = who.first_name[:255]
    person.username = who.username
    person.language_code = (who.language_code or None) and who.language_code[:16]
    if person.blocked_bot_at is not None:
        person.blocked_bot_at = None
        owe_menu(session, person)
    return person


def owe_menu(session: AsyncSession, person: Person) -> None:
    """Owe the person their private command menu (COMMAND_MENU): the outbox sets it once this
    transaction commits, as their roles and chosen language are when it does, so several
    changes at once need one. Owed also to someone marked as blocking the bot (the mark may be
    stale by the time this commits, and a menu is not a message); what a refusal marks blocked
    is owed again when they come back (refresh_person, mark_reachable)."""
    _owe_menu_to(session, person.telegram_id, person.id)


def _owe_menu_to(session: AsyncSession, telegram_id: int, person_id: int | None) -> None:
    session.add(
        Notification(chat_id=telegram_id, person_id=person_id, kind=COMMAND_MENU, params={})
    )


async def set_locale(session: AsyncSession, who: TelegramIdentity, locale: str) -> Person:
    """The person's choice of language (/lang), with the command menu it calls for owed in the
    same transaction. Flushes; the caller commits (the update's session, for /lang)."""
    if locale not in SUPPORTED_LOCALES:
        raise ValueError(f"unsupported locale {locale!r}")
    person = await ensure_person(session, who)
    person.locale = locale
    owe_menu(session, person)
    await session.flush()
    return person


async def mark_blocked(session: AsyncSession, telegram_id: int) -> None:
    """Telegram said 403: the person blocked the bot, or never started it ("bot can't initiate
    conversation with a user"); stop writing to them until they return (mark_reachable, or
    refresh_person, which submitting, an invite or binding a group calls). Commits when it
    changes the person."""
    person = await find_person(session, telegram_id)
    if person is not None and person.blocked_bot_at is None:
        person.blocked_bot_at = utcnow()
        await session.commit()


async def mark_reachable(session: AsyncSession, telegram_id: int) -> bool:
    """The person can be written to again: they unblocked or restarted the bot (Telegram's
    `my_chat_member` with the status "member" in their private chat). Clears their blocked
    mark, and owes them their menu; True if they were marked (the caller then owes them the
    council polls Telegram refused them meanwhile: bot.polls.send_owed_polls). One UPDATE,
    which changes nothing for a person who was not marked (or is not known). Commits when it
    changes the person."""
    result = await session.execute(
        update(Person)
        .where(Person.telegram_id == telegram_id, Person.blocked_bot_at.is_not(None))
        .values(blocked_bot_at=None)
        .returning(Person.id)
        .execution_options(synchronize_session="fetch")
    )
    person_id = result.scalar()
    if person_id is None:
        return False
    _owe_menu_to(session, telegram_id, person_id)
    await session.commit()
    return True


def pick_locale(chosen: str | None, language_code: str | None, default: str = "zh") -> str:
    """/lang wins; otherwise the Telegram client's language; otherwise the default."""
    if chosen in SUPPORTED_LOCALES:
        return chosen
    if language_code:
        base = language_code.split("-")[0].lower()
        if base in SUPPORTED_LOCALES:
            return base
    return default
