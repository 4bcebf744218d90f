"""What the tests of the public side (test_board.py, test_public_api.py) share: a resident and a
council member whose identities must never reach it, the org tree, and helpers that seed
suggestions and council votes.

Test modules of tests/webhook import these (`from public_data import ...`; their folder is on
sys.path, as the tests/ root is for conftest). Not a conftest.py: a second module of that name
would shadow the root one that other tests import (`from conftest import ORG_ROWS`).

- `public_app(sessionmaker)`: an app with the board and the open-data API;
  `public_client(sessionmaker)`: an HTTP client on it, in process; the fixture `client`
  gives one to a test module that names this module in its `pytest_plugins`, and the fixture
  `statements` the SQL statements run on `sessionmaker`'s engine during the test (clear it to
  count from a point on).
- `seed_org(sessionmaker)`: the tree of ORG_CSV; the communities' ids by name.
- `add_suggestion(sessionmaker, draft, **changes)`: the secret resident submits `draft`, then
  the columns in `changes` are set as if it had moved on.
- `put_to_vote(...)`: a council vote on some suggestions, open or closed, with the council
  member's ballots kept.
- `seed_history(sessionmaker)`: three suggestions of 新沙社区 taken through the real services
  by a named staff member and a named council member: one accepted with corrections, put to
  the council and passed; one (with HTML in its title) rejected; one merged into the first.
  Staff notes naming the resident go where the services keep them (non-public).
- `assert_no_secrets(body)`: none of PRIVATE is in `body`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import (
    AuditEvent,
    Ballot,
    Choice,
    Community,
    CouncilVote,
    CouncilVoteItem,
    CouncilVoteMember,
    Person,
    Suggestion,
    VoteOutcome,
    VoteStatus,
)
from storage.rules import Category, ExclusionReason, Kind, Role, ScopeLevel
from storage.services import access, council, screening
from storage.services.access import Principal, Scope
from storage.services.org import import_rows, parse_org_csv
from storage.services.people import TelegramIdentity, ensure_person
from storage.services.suggestions import Draft, submit
from storage.settings import Settings
from webhook.api.public import create_public_api_router
from webhook.board import create_board_router

# A resident whose identity must never reach the public side.
SECRET_NAME = "Ouyang_Secretname_Q7"
SECRET_USERNAME = "secret_handle_z9"
SECRET_TELEGRAM_ID = 987_654_321_123
SECRET_PHOTO = "AgACAgUAAxkBAAIBsecretPhotoFileId"
SECRET_LATITUDE = 22.5312345
# A council member: who voted how is never public.
VOTER_NAME = "Councillor_Secret_K3"
VOTER_TELEGRAM_ID = 555_444_333_222
# A community staff member: the public side names officials by role only.
STAFF_NAME = "Staffer_Secretname_W5"
STAFF_USERNAME = "staff_handle_m4"
STAFF_TELEGRAM_ID = 444_333_222_111
PRIVATE = (
    SECRET_NAME,
    SECRET_USERNAME,
    str(SECRET_TELEGRAM_ID),
    SECRET_PHOTO,
    "22.5312345",
    STAFF_NAME,
    STAFF_USERNAME,
    str(STAFF_TELEGRAM_ID),
    VOTER_NAME,
    str(VOTER_TELEGRAM_ID),
)
# What staff wrote in notes (kept on the suggestion, or in a non-public audit event).
SECRET_NOTE = "Private_note_J8"

ORG_CSV = """district,street,community
福田区,沙头街道,新沙社区
福田区,沙头街道,上沙社区
福田区,香蜜湖街道,香岭社区
南山区,粤海街道,科技园社区
"""

TZ = ZoneInfo("Asia/Shanghai")


def public_app(sessionmaker: async_sessionmaker[AsyncSession]) -> FastAPI:
    """An app with the board and the open-data API on `sessionmaker`."""
    app = FastAPI()
    app.include_router(create_board_router())
    app.include_router(create_public_api_router())
    settings = Settings(_env_file=None, timezone="Asia/Shanghai", default_locale="zh")
    app.state.runtime = SimpleNamespace(sessionmaker=sessionmaker, settings=settings)
    return app


def public_client(sessionmaker: async_sessionmaker[AsyncSession]) -> httpx.AsyncClient:
    """An HTTP client on the board and the open-data API, in process (to close)."""
    transport = httpx.ASGITransport(app=public_app(sessionmaker))
    return httpx.AsyncClient(transport=transport, base_url="http://public.test")


@pytest.fixture
async def client(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    """public_client for the test (a module that imports this as a plugin)."""
    async with public_client(sessionmaker) as http:
        yield http


@pytest.fixture
def statements(sessionmaker: async_sessionmaker[AsyncSession]) -> Iterator[list[str]]:
    engine = sessionmaker.kw["bind"]
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


async def seed_org(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessionmaker() as session:
        await import_rows(session, parse_org_csv(ORG_CSV))
        rows = (await session.execute(select(Community.id, Community.name))).all()
    return {name: id_ for id_, name in rows}


async def add_suggestion(
    sessionmaker: async_sessionmaker[AsyncSession], draft: Draft, **changes: object
) -> int:
    who = TelegramIdentity(SECRET_TELEGRAM_ID, SECRET_NAME, SECRET_USERNAME, "zh")
    async with sessionmaker() as session:
        made = await submit(session, who, draft, tz=TZ, daily_limit=100)
        if changes:
            await session.execute(
                update(Suggestion).where(Suggestion.id == made.id).values(**changes)
            )
            await session.commit()
    return made.id


async def put_to_vote(
    sessionmaker: async_sessionmaker[AsyncSession],
    community_id: int,
    tallies: dict[str, tuple[int, int, int, VoteOutcome] | None],
    *,
    closes_at: datetime,
    closed_at: datetime | None = None,
) -> None:
    """A council vote on the suggestions titled in `tallies`: closed with each item's
    (agree, against, abstain, outcome), or open (None for every item). A ballot of a named
    member is kept on each item, as the real vote keeps them."""
    async with sessionmaker() as session:
        voter = await session.scalar(
            Person.__table__.select().where(Person.telegram_id == VOTER_TELEGRAM_ID)
        )
        if voter is None:
            person = Person(telegram_id=VOTER_TELEGRAM_ID, first_name=VOTER_NAME)
            session.add(person)
            await session.flush()
            voter_id = person.id
        else:
            voter_id = voter
        vote = CouncilVote(
            community_id=community_id,
            closes_at=closes_at,
            convened_at=closes_at - timedelta(days=3),
            quorum_pct=50,
            threshold_pct=50,
            council_size=5,
            status=VoteStatus.OPEN if closed_at is None else VoteStatus.CLOSED,
            closed_at=closed_at,
        )
        session.add(vote)
        await session.flush()
        session.add(
            CouncilVoteMember(vote_id=vote.id, person_id=voter_id, telegram_id=VOTER_TELEGRAM_ID)
        )
        for position, (title, tally) in enumerate(tallies.items()):
            suggestion_id = await session.scalar(
                Suggestion.__table__.select()
                .with_only_columns(Suggestion.id)
                .where(Suggestion.title == title)
            )
            assert suggestion_id is not None, title
            item = CouncilVoteItem(vote_id=vote.id, suggestion_id=suggestion_id, position=position)
            if tally is not None:
                item.agree, item.against, item.abstain, item.outcome = tally
            session.add(item)
            await session.flush()
            session.add(
                Ballot(
                    item_id=item.id,
                    telegram_id=VOTER_TELEGRAM_ID,
                    person_id=voter_id,
                    choice=Choice.AGAINST,
                    counted=True,
                )
            )
        await session.commit()


@dataclass(frozen=True)
class History:
    """The suggestions of seed_history, by id and number."""

    communities: dict[str, int]
    passed: int  # accepted (category and kind corrected), put to the council, passed
    rejected: int  # rejected (property management); its title is HTML
    merged: int  # merged into `passed`
    numbers: dict[int, str]
    vote_id: int
    staff: Principal
    # When the first event (the passed one's submission) happened: 2026-03-02 01:00 local.
    first_at: datetime = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)


# The public steps seed_history's passed suggestion went through, in the board's words.
PASSED_STEPS = [
    "提出建议",
    "开始审核",
    "社区审核采纳",
    "同类建议并入本建议",
    "提交居民议事会表决",
    "居民议事会决议通过",
]


async def seed_history(sessionmaker: async_sessionmaker[AsyncSession]) -> History:
    ids = await seed_org(sessionmaker)
    xinsha = ids["新沙社区"]
    passed = await add_suggestion(
        sessionmaker,
        Draft(xinsha, Category.ENVIRONMENT, "楼道灯坏了需要维修", "三楼到六楼的楼道灯都不亮。"),
        created_at=datetime(2026, 3, 1, 17, 0, tzinfo=UTC),
    )
    rejected = await add_suggestion(
        sessionmaker, Draft(xinsha, Category.SAFETY, "<script>alert(1)</script>", "<b>x</b>")
    )
    merged = await add_suggestion(
        sessionmaker, Draft(xinsha, Category.ENVIRONMENT, "12栋楼道灯不亮", "同上。")
    )
    community = Scope(ScopeLevel.COMMUNITY, xinsha)
    async with sessionmaker() as session:
        staff_person = await ensure_person(
            session, TelegramIdentity(STAFF_TELEGRAM_ID, STAFF_NAME, STAFF_USERNAME, "zh")
        )
        voter = await ensure_person(session, TelegramIdentity(VOTER_TELEGRAM_ID, VOTER_NAME))
        await access.grant_role(session, staff_person.id, Role.COMMUNITY_STAFF, community)
        await access.grant_role(session, voter.id, Role.COUNCIL_MEMBER, community)
        await session.commit()
        staff = Principal(Role.COMMUNITY_STAFF, community, staff_person.id)
        # The resident's name in every staff note: notes are never public.
        note = f"{SECRET_NOTE} 联系 {SECRET_NAME} {SECRET_TELEGRAM_ID}"
        await screening.accept(
            session, staff, passed, category=Category.SAFETY, kind=Kind.PHYSICAL, note=note
        )
        await screening.reject(session, staff, rejected, ExclusionReason.PROPERTY_MANAGEMENT, note)
        await screening.merge(session, staff, merged, passed)
        vote = await council.convene(
            session,
            staff,
            council.ConveneRequest(xinsha, [passed], datetime.now(UTC) + timedelta(days=1)),
        )
        await council.record_poll(session, vote.items[0].id, "poll-history", VOTER_TELEGRAM_ID, 1)
        await council.record_answer(session, "poll-history", VOTER_TELEGRAM_ID, [0])
        await session.commit()
        closed = await council.close_vote(session, vote.id)  # everyone voted: closes early
        assert closed is not None
        await session.execute(
            update(AuditEvent)
            .where(
                AuditEvent.entity_type == "suggestion",
                AuditEvent.entity_id == passed,
                AuditEvent.action == "submit",
            )
            .values(at=History.first_at)
        )
        await session.commit()
        rows = await session.execute(
            select(Suggestion.id, Suggestion.number).where(
                Suggestion.id.in_([passed, rejected, merged])
            )
        )
        numbers = {id_: number for id_, number in rows.all()}
    return History(ids, passed, rejected, merged, numbers, vote.id, staff)


def assert_no_secrets(body: str) -> None:
    for secret in PRIVATE:
        assert secret not in body, secret
