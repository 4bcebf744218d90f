"""The sandbox's demo world: who can be played, which chats exist, and the store's seed for it.

Personas and chats are plain data, so a later stage adds a council member or a council group by
adding a row here; the emulator builds its users and chats from these tuples, and `seed_demo`
puts the administrative tree and the bound groups into the store (sandbox mode only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChatPurpose
from storage.services.chats import bind_chat, get_chat
from storage.services.org import OrgRow, find_community, import_rows
from storage.services.people import TelegramIdentity, ensure_person

__all__ = [
    "CHATS",
    "DISTRICT",
    "ORG",
    "PERSONAS",
    "STREET",
    "DemoChat",
    "Persona",
    "persona",
    "seed_demo",
]

DISTRICT = "福田区"
STREET = "沙头街道"
# (district, street, community): the rows of an `org import` file.
ORG: tuple[tuple[str, str, str], ...] = (
    (DISTRICT, STREET, "新沙社区"),
    (DISTRICT, STREET, "天安社区"),
)

# A spot in 新沙 (Futian, Shenzhen) to prefill the location form with.
DEMO_LOCATION = (22.5204, 114.0262)


@dataclass(frozen=True, slots=True)
class Persona:
    """A person the sandbox user can play; `user_id` is their Telegram user id."""

    user_id: int
    first_name: str
    language_code: str
    role_zh: str
    role_en: str
    last_name: str | None = None
    username: str | None = None


@dataclass(frozen=True, slots=True)
class DemoChat:
    """A group chat of the demo. `members` maps a persona's user id to its Telegram status."""

    chat_id: int
    title: str
    members: dict[int, str] = field(default_factory=dict)
    # The bot's status in the group at start: "administrator", "member" or "left".
    bot_status: str = "left"
    # The community the group is bound to at start (seeded into the store), if any.
    community: str | None = None
    purpose: ChatPurpose = ChatPurpose.COMMUNITY
    about_zh: str = ""
    about_en: str = ""


ZHANG_WEI = 10001
LI_NA = 10002
WANG_FANG = 10003
DIRECTOR_CHEN = 10004

PERSONAS: tuple[Persona, ...] = (
    Persona(ZHANG_WEI, "张伟", "zh", "新沙社区居民", "Resident of 新沙"),
    Persona(LI_NA, "李娜", "zh", "新沙社区居民", "Resident of 新沙", username="lina_xinsha"),
    Persona(WANG_FANG, "王芳", "en", "新沙社区居民（英文界面）", "Resident of 新沙 (English)"),
    Persona(DIRECTOR_CHEN, "陈主任", "zh", "两个居民群的群主", "Owner of both groups"),
)

XINSHA_GROUP = -1001000000001
TIANAN_GROUP = -1001000000002

CHATS: tuple[DemoChat, ...] = (
    DemoChat(
        XINSHA_GROUP,
        "新沙社区居民群",
        members={
            DIRECTOR_CHEN: "creator",
            ZHANG_WEI: "member",
            LI_NA: "member",
            WANG_FANG: "member",
        },
        bot_status="administrator",
        community="新沙社区",
        about_zh="已绑定新沙社区，机器人是管理员",
        about_en="bound to 新沙社区; the bot is an admin",
    ),
    DemoChat(
        TIANAN_GROUP,
        "天安社区邻里群",
        members={DIRECTOR_CHEN: "creator", LI_NA: "member", WANG_FANG: "member"},
        bot_status="left",
        community=None,
        about_zh="演示：由群主把机器人加进群，再绑定社区",
        about_en="demo: the owner adds the bot, then binds the group",
    ),
)


def persona(user_id: int) -> Persona:
    for candidate in PERSONAS:
        if candidate.user_id == user_id:
            return candidate
    raise KeyError(user_id)


async def seed_demo(session: AsyncSession) -> None:
    """Create the demo district, street, communities and bound groups. Idempotent; commits."""
    rows = [OrgRow(line, *names) for line, names in enumerate(ORG, start=2)]
    await import_rows(session, rows)
    for chat in CHATS:
        if chat.community is None:
            continue
        existing = await get_chat(session, chat.chat_id)
        if existing is not None and existing.community_id is not None:
            continue  # bound already (by an earlier start, or rebound by a person): leave it
        community = await find_community(session, chat.community)
        if community is None:  # pragma: no cover - ORG lists every community of CHATS
            raise LookupError(f"demo community {chat.community!r} is missing")
        owner = next((uid for uid, status in chat.members.items() if status == "creator"), None)
        owner_id: int | None = None
        if owner is not None:
            who = persona(owner)
            person = await ensure_person(
                session,
                TelegramIdentity(
                    telegram_id=who.user_id,
                    first_name=who.first_name,
                    username=who.username,
                    language_code=who.language_code,
                ),
            )
            owner_id = person.id
        await bind_chat(
            session,
            chat.chat_id,
            community,
            title=chat.title,
            chat_type="supergroup",
            bound_by_person_id=owner_id,
            purpose=chat.purpose,
        )
