"""The sandbox's demo world: who can be played, which chats exist, and the store's seed for it.

Personas and chats are plain data: the emulator builds its users and chats from these tuples,
and `seed_demo` puts the administrative tree, the bound groups, the roles (a community staff
member and five council members of 新沙) and a few suggestions to screen into the store
(sandbox mode only), so that a person can run a whole council vote by clicking.
`suggest_groups` names the residents' groups where each start of the sandbox has the bot post
its pinned "Suggest a project" message (the emulator's chat history lives in memory only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChatPurpose, Community, Person, RoleGrant, Suggestion
from storage.rules import Category, Kind, Role, ScopeLevel
from storage.services.access import Scope, grant_role
from storage.services.chats import bind_chat, get_chat
from storage.services.org import OrgRow, find_community, import_rows
from storage.services.people import TelegramIdentity, ensure_person, owe_menu
from storage.services.suggestions import Draft, submit

__all__ = [
    "CHATS",
    "DISTRICT",
    "ORG",
    "PERSONAS",
    "PERSONA_GROUPS",
    "ROLES",
    "SEEDED_PROPOSERS",
    "STREET",
    "SUGGESTIONS",
    "DemoChat",
    "DemoSuggestion",
    "Persona",
    "persona",
    "seed_demo",
    "suggest_groups",
]

DISTRICT = "福田区"
STREET = "沙头街道"
XINSHA = "新沙社区"
# (district, street, community): the rows of an `org import` file.
ORG: tuple[tuple[str, str, str], ...] = (
    (DISTRICT, STREET, XINSHA),
    (DISTRICT, STREET, "天安社区"),
)

# A spot in 新沙 (Futian, Shenzhen) to prefill the location form with.
DEMO_LOCATION = (22.5204, 114.0262)

PersonaGroup = Literal["resident", "staff", "council"]
# The statuses of a member of a group (the bot's, at start, in DemoChat.bot_status).
BOT_IN_GROUP = frozenset({"creator", "administrator", "member"})

# How the page groups the personas, in this order: (group, Chinese heading, English heading).
PERSONA_GROUPS: tuple[tuple[PersonaGroup, str, str], ...] = (
    ("resident", "居民", "Residents"),
    ("staff", "社区工作人员", "Community staff"),
    ("council", "议事会成员", "Council members"),
)


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
    group: PersonaGroup = "resident"


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


@dataclass(frozen=True, slots=True)
class DemoSuggestion:
    """A suggestion seeded for the staff member to screen (/review) and put to the council."""

    proposer: int
    category: Category
    title: str
    description: str
    location_text: str
    kind: Kind | None = None
    estimated_cost_fen: int | None = None


ZHANG_WEI = 10001
LI_NA = 10002
WANG_FANG = 10003
DIRECTOR_CHEN = 10004
LIU_MIN = 10005  # community staff (社区工作站) of 新沙
QIAN_DUODUO = 10006  # a resident of 新沙 who is not on the council
ZHAO_LEI = 10011  # the five members of 新沙's residents' council
SUN_LI = 10012
ZHOU_QIANG = 10013
WU_FANG = 10014
ZHENG_HAO = 10015
COUNCIL = (ZHAO_LEI, SUN_LI, ZHOU_QIANG, WU_FANG, ZHENG_HAO)

PERSONAS: tuple[Persona, ...] = (
    Persona(ZHANG_WEI, "张伟", "zh", "新沙社区居民", "Resident of 新沙"),
    Persona(LI_NA, "李娜", "zh", "新沙社区居民", "Resident of 新沙", username="lina_xinsha"),
    Persona(WANG_FANG, "王芳", "en", "新沙社区居民（英文界面）", "Resident of 新沙 (English)"),
    Persona(
        QIAN_DUODUO, "钱多多", "zh", "新沙居民，不是议事会成员", "Resident, not on the council"
    ),
    Persona(DIRECTOR_CHEN, "陈主任", "zh", "两个居民群的群主", "Owner of both groups"),
    Persona(LIU_MIN, "刘敏", "zh", "新沙社区工作站", "Community staff of 新沙", group="staff"),
    Persona(ZHAO_LEI, "赵磊", "zh", "新沙议事会成员", "Council member of 新沙", group="council"),
    Persona(SUN_LI, "孙丽", "zh", "新沙议事会成员", "Council member of 新沙", group="council"),
    Persona(ZHOU_QIANG, "周强", "zh", "新沙议事会成员", "Council member of 新沙", group="council"),
    Persona(WU_FANG, "吴芳", "zh", "新沙议事会成员", "Council member of 新沙", group="council"),
    Persona(
        ZHENG_HAO,
        "郑浩",
        "en",
        "新沙议事会成员（英文界面）",
        "Council member of 新沙 (English)",
        group="council",
    ),
)

# The roles seed_demo grants, all in 新沙: (persona, role).
ROLES: tuple[tuple[int, Role], ...] = (
    (LIU_MIN, Role.COMMUNITY_STAFF),
    *((member, Role.COUNCIL_MEMBER) for member in COUNCIL),
)

XINSHA_GROUP = -1001000000001
TIANAN_GROUP = -1001000000002
XINSHA_COUNCIL_GROUP = -1001000000003

CHATS: tuple[DemoChat, ...] = (
    DemoChat(
        XINSHA_GROUP,
        "新沙社区居民群",
        members={
            DIRECTOR_CHEN: "creator",
            ZHANG_WEI: "member",
            LI_NA: "member",
            WANG_FANG: "member",
            QIAN_DUODUO: "member",
            LIU_MIN: "administrator",
            **dict.fromkeys(COUNCIL, "member"),
        },
        bot_status="administrator",
        community=XINSHA,
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
    DemoChat(
        XINSHA_COUNCIL_GROUP,
        "新沙社区居民议事会",
        members={LIU_MIN: "creator", **dict.fromkeys(COUNCIL, "member")},
        bot_status="administrator",
        community=XINSHA,
        purpose=ChatPurpose.COUNCIL,
        about_zh="新沙社区的议事会群：表决在这里以投票进行",
        about_en="新沙's residents' council: votes are polls here",
    ),
)

# Waiting for 刘敏's /review when the sandbox starts with an empty 新沙.
SUGGESTIONS: tuple[DemoSuggestion, ...] = (
    DemoSuggestion(
        LI_NA,
        Category.SAFETY,
        "新沙路人行道井盖松动",
        "新沙路12号门口人行道上的井盖松动，踩上去会翘起，晚上看不清，老人小孩容易绊倒。",
        "新沙路12号门口",
        kind=Kind.PHYSICAL,
        estimated_cost_fen=800_000,
    ),
    DemoSuggestion(
        QIAN_DUODUO,
        Category.CULTURE_SPORTS,
        "小广场增设一组健身器材",
        "新沙小广场只有两件健身器材，早晚排队，希望再增设一组适合老年人的器材。",
        "新沙小广场",
        kind=Kind.PHYSICAL,
        estimated_cost_fen=6_000_000,
    ),
    DemoSuggestion(
        WANG_FANG,
        Category.CARE,
        "长者饭堂增加送餐上门",
        "行动不便的独居老人去不了长者饭堂，希望每周三次为他们送餐上门，由志愿者配送。",
        "新沙社区长者饭堂",
        kind=Kind.SERVICE,
        estimated_cost_fen=3_600_000,
    ),
)
# Who suggested those went through the bot's private chat: the bot may write to them (their
# suggestions' news), as it may to anyone who has started it.
SEEDED_PROPOSERS: frozenset[int] = frozenset(s.proposer for s in SUGGESTIONS)
DEMO_TZ = ZoneInfo("Asia/Shanghai")


def persona(user_id: int) -> Persona:
    for candidate in PERSONAS:
        if candidate.user_id == user_id:
            return candidate
    raise KeyError(user_id)


def _identity(user_id: int) -> TelegramIdentity:
    who = persona(user_id)
    return TelegramIdentity(
        telegram_id=who.user_id,
        first_name=who.first_name,
        username=who.username,
        language_code=who.language_code,
    )


async def _community(session: AsyncSession, name: str) -> Community:
    community = await find_community(session, name)
    if community is None:  # pragma: no cover - ORG lists every community the demo names
        raise LookupError(f"demo community {name!r} is missing")
    return community


async def seed_demo(session: AsyncSession, *, tz: ZoneInfo = DEMO_TZ) -> None:
    """Create the demo district, street, communities, bound groups, roles in 新沙, and (when
    新沙 has no suggestion yet) a few suggestions to screen. Idempotent; commits."""
    rows = [OrgRow(line, *names) for line, names in enumerate(ORG, start=2)]
    await import_rows(session, rows)
    for chat in CHATS:
        if chat.community is None:
            continue
        existing = await get_chat(session, chat.chat_id)
        if existing is not None and existing.community_id is not None:
            continue  # bound already (by an earlier start, or rebound by a person): leave it
        community = await _community(session, chat.community)
        owner = next((uid for uid, status in chat.members.items() if status == "creator"), None)
        owner_id: int | None = None
        if owner is not None:
            owner_id = (await ensure_person(session, _identity(owner))).id
        await bind_chat(
            session,
            chat.chat_id,
            community,
            title=chat.title,
            chat_type="supergroup",
            bound_by_person_id=owner_id,
            purpose=chat.purpose,
        )
    xinsha = await _community(session, XINSHA)
    scope = Scope(ScopeLevel.COMMUNITY, xinsha.id)
    for user_id, role in ROLES:
        person = await ensure_person(session, _identity(user_id))
        await grant_role(session, person.id, role, scope)  # idempotent
    await session.commit()
    count = select(func.count(Suggestion.id)).where(Suggestion.community_id == xinsha.id)
    if await session.scalar(count):
        return  # people have used the sandbox (or an earlier start seeded): leave it
    for seeded in SUGGESTIONS:
        draft = Draft(
            xinsha.id,
            seeded.category,
            seeded.title,
            seeded.description,
            location_text=seeded.location_text,
            kind=seeded.kind,
            estimated_cost_fen=seeded.estimated_cost_fen,
        )
        await submit(session, _identity(seeded.proposer), draft, tz=tz, daily_limit=1_000)


async def suggest_groups(session: AsyncSession) -> list[tuple[int, Community]]:
    """(chat id, community) of each demo residents' group that the bot is in when the sandbox
    starts (the emulator's chats are built from CHATS) and that the store has bound to a
    community: where a fresh start posts the bot's pinned "Suggest a project" message. The
    community is the store's, so a group a person rebound in an earlier run keeps its new
    one; council groups and groups the bot is not in are left out."""
    found: list[tuple[int, Community]] = []
    for chat in CHATS:
        if chat.purpose is not ChatPurpose.COMMUNITY or chat.bot_status not in BOT_IN_GROUP:
            continue
        row = await get_chat(session, chat.chat_id)
        if row is None or row.community is None or row.purpose is not ChatPurpose.COMMUNITY:
            continue
        found.append((chat.chat_id, row.community))
    return found


async def owe_role_holders_menus(session: AsyncSession) -> int:
    """Owe everyone holding a role their command menu (the outbox sets it): the emulator keeps
    menus in memory only, and grants made in an earlier run owe nothing any more. Commits;
    returns how many were owed."""
    holders = (
        await session.scalars(
            select(Person)
            .where(Person.id.in_(select(RoleGrant.person_id).where(RoleGrant.revoked_at.is_(None))))
            .order_by(Person.telegram_id)
        )
    ).all()
    for person in holders:
        owe_menu(session, person)
    await session.commit()
    return len(holders)
