"""People who talk to the bot: created when they first do something that needs a record."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Person, utcnow

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
    session, with what Telegram says of them now. Does not flush."""
    person = found
    if person is None:
        person = Person(telegram_id=who.telegram_id)
        session.add(person)
    person.first_name = who.first_name[:255]
    person.username = who.username
    person.language_code = (who.language_code or None) and who.language_code[:16]
    person.blocked_bot_at = None
    return person


async def set_locale(session: AsyncSession, who: TelegramIdentity, locale: str) -> Person:
    if locale not in SUPPORTED_LOCALES:
        raise ValueError(f"unsupported locale {locale!r}")
    person = await ensure_person(session, who)
    person.locale = locale
    await session.commit()
    return person


async def mark_blocked(session: AsyncSession, telegram_id: int) -> None:
    """Telegram said 403: the person blocked the bot; stop writing to them until they return."""
    person = await find_person(session, telegram_id)
    if person is not None and person.blocked_bot_at is None:
        person.blocked_bot_at = utcnow()
        await session.commit()


def pick_locale(chosen: str | None, language_code: str | None, default: str = "zh") -> str:
    """/lang wins; otherwise the Telegram client's language; otherwise the default."""
    if chosen in SUPPORTED_LOCALES:
        return chosen
    if language_code:
        base = language_code.split("-")[0].lower()
        if base in SUPPORTED_LOCALES:
            return base
    return default
