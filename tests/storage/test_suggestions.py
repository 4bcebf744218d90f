"""Suggestions: numbering, the daily limit, followers, audit events and transitions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from conftest import OrgTree
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import (
    AuditEvent,
    Community,
    Follower,
    Person,
    Suggestion,
    SuggestionCounter,
)
from storage.rules import Action, Category, Kind, Role, RuleViolation, SourceType, State
from storage.services import public, suggestions
from storage.services.audit import Actor
from storage.services.people import TelegramIdentity
from storage.services.suggestions import DailyLimitReached, Draft, PublicFilter

TZ = ZoneInfo("Asia/Shanghai")
Sessions = async_sessionmaker[AsyncSession]


def resident(n: int = 1) -> TelegramIdentity:
    return TelegramIdentity(telegram_id=10_000 + n, first_name=f"居民{n}", language_code="zh-hans")


def draft(community_id: int, **changes: object) -> Draft:
    values: dict[str, object] = {
        "community_id": community_id,
        "category": Category.SAFETY,
        "title": "3栋楼下路灯不亮",
        "description": "晚上很黑，老人下楼容易摔倒。",
    }
    values.update(changes)
    return Draft(**values)  # type: ignore[arg-type]


async def submit(
    sessionmaker: Sessions, community_id: int, who: TelegramIdentity | None = None, **kw: object
) -> Suggestion:
    limit = kw.pop("daily_limit", 100)
    async with sessionmaker() as session:
        return await suggestions.submit(
            session, who or resident(), draft(community_id, **kw), tz=TZ, daily_limit=limit
        )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The services' clock: set `clock[0]` to move it."""
    now = [datetime(2026, 3, 1, 2, 0, tzinfo=UTC)]
    monkeypatch.setattr(suggestions, "utcnow", lambda: now[0])
    return now


async def count(session: AsyncSession, model: type[object]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- Numbers --------------------------------------------------------------------------------


async def test_numbers_per_community_and_year(
    sessionmaker: Sessions, org: OrgTree, clock: list[datetime]
) -> None:
    numbers = [(await submit(sessionmaker, org.xinsha_id)).number for _ in range(3)]
    assert numbers == ["新沙-2026-0001", "新沙-2026-0002", "新沙-2026-0003"]
    other = await submit(sessionmaker, org.tianan_id)
    assert (other.number, other.year, other.seq) == ("天安-2026-0001", 2026, 1)
    assert other.community.name == "天安社区"


async def test_numbers_restart_with_the_local_year(
    sessionmaker: Sessions, org: OrgTree, clock: list[datetime]
) -> None:
    clock[0] = datetime(2026, 12, 31, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai
    assert (await submit(sessionmaker, org.xinsha_id)).number == "新沙-2026-0001"
    clock[0] = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)  # already 2027 in Shanghai
    late = await submit(sessionmaker, org.xinsha_id)
    assert (late.number, late.year) == ("新沙-2027-0001", 2027)
    assert (await submit(sessionmaker, org.xinsha_id)).number == "新沙-2027-0002"


async def test_next_number_is_per_year(session: AsyncSession, org: OrgTree) -> None:
    community = await session.get(Community, org.xinsha_id)
    assert community is not None
    assert await suggestions.next_number(session, community, 2026) == (1, "新沙-2026-0001")
    assert await suggestions.next_number(session, community, 2027) == (1, "新沙-2027-0001")
    assert await suggestions.next_number(session, community, 2026) == (2, "新沙-2026-0002")


async def test_numbers_unique_under_concurrency(sessionmaker: Sessions, org: OrgTree) -> None:
    year = datetime.now(TZ).year

    async def one(n: int) -> str:
        return (await submit(sessionmaker, org.xinsha_id, resident(n))).number

    numbers = await asyncio.gather(*(one(n) for n in range(20)))
    assert sorted(numbers) == [f"新沙-{year}-{seq:04d}" for seq in range(1, 21)]
    async with sessionmaker() as session:
        counter = await session.get(SuggestionCounter, (org.xinsha_id, year))
        assert counter is not None and counter.last_seq == 20


# --- Intake ---------------------------------------------------------------------------------


async def test_daily_limit_counts_the_local_day(
    sessionmaker: Sessions, org: OrgTree, clock: list[datetime]
) -> None:
    clock[0] = datetime(2026, 1, 31, 15, 0, tzinfo=UTC)  # 23:00 on 31 January in Shanghai
    for _ in range(2):
        await submit(sessionmaker, org.xinsha_id, daily_limit=2)
    with pytest.raises(DailyLimitReached) as raised:
        await submit(sessionmaker, org.xinsha_id, daily_limit=2)
    assert raised.value.code == "daily_limit" and raised.value.limit == 2
    # 16:00 UTC is still 31 January in UTC, but 1 February in Shanghai: a new day.
    clock[0] = datetime(2026, 1, 31, 16, 0, tzinfo=UTC)
    await submit(sessionmaker, org.xinsha_id, daily_limit=2)
    # Each resident has their own limit.
    await submit(sessionmaker, org.xinsha_id, resident(2), daily_limit=1)
    async with sessionmaker() as session:
        assert await count(session, Suggestion) == 4
        today = suggestions.count_today_by_telegram_id
        assert await today(session, 10_001, TZ, now=clock[0]) == 1
        late = datetime(2026, 2, 1, 15, 59, tzinfo=UTC)  # 23:59 on 1 February in Shanghai
        assert await today(session, 10_001, TZ, now=late) == 1
        next_day = datetime(2026, 2, 1, 16, 0, tzinfo=UTC)
        assert await today(session, 10_001, TZ, now=next_day) == 0


async def test_count_today_by_telegram_id(
    sessionmaker: Sessions, org: OrgTree, clock: list[datetime]
) -> None:
    clock[0] = datetime(2026, 1, 31, 15, 0, tzinfo=UTC)  # 23:00 on 31 January in Shanghai
    await submit(sessionmaker, org.xinsha_id)
    await submit(sessionmaker, org.tianan_id)
    await submit(sessionmaker, org.xinsha_id, resident(2))
    clock[0] = datetime(2026, 1, 31, 16, 0, tzinfo=UTC)  # 1 February in Shanghai
    await submit(sessionmaker, org.xinsha_id)
    telegram_id = resident(1).telegram_id
    async with sessionmaker() as session:
        count = suggestions.count_today_by_telegram_id
        assert await count(session, telegram_id, TZ, now=clock[0]) == 1
        before = datetime(2026, 1, 31, 15, 59, tzinfo=UTC)
        assert await count(session, telegram_id, TZ, now=before) == 3
        assert await count(session, resident(2).telegram_id, TZ, now=before) == 1
        assert await count(session, resident(3).telegram_id, TZ, now=before) == 0


async def test_submit_refreshes_a_known_proposer(sessionmaker: Sessions, org: OrgTree) -> None:
    first = await submit(sessionmaker, org.xinsha_id)
    renamed = TelegramIdentity(
        telegram_id=resident().telegram_id, first_name="新名字", username="xin", language_code="en"
    )
    second = await submit(sessionmaker, org.xinsha_id, renamed)
    assert second.proposer_id == first.proposer_id
    async with sessionmaker() as session:
        [person] = (await session.scalars(select(Person))).all()
        assert (person.first_name, person.username, person.language_code) == (
            "新名字",
            "xin",
            "en",
        )


async def test_submit_stores_follower_and_audit_event(sessionmaker: Sessions, org: OrgTree) -> None:
    stored = await submit(
        sessionmaker,
        org.xinsha_id,
        title="  小区门口加装减速带  ",
        location_text="  ",
        kind=Kind.PHYSICAL,
        estimated_cost_fen=80_000_000,  # over the cap: a resident's estimate may be
        photo_file_ids=["AgAC-1", "AgAC-2"],
        source_type=SourceType.REPRESENTATIVE,
    )
    async with sessionmaker() as session:
        suggestion = await session.get(Suggestion, stored.id)
        assert suggestion is not None
        assert suggestion.title == "小区门口加装减速带"
        assert suggestion.location_text is None
        assert suggestion.status is State.SUBMITTED
        assert suggestion.photo_file_ids == ["AgAC-1", "AgAC-2"]
        assert suggestion.source_type is SourceType.REPRESENTATIVE
        assert suggestion.created_at.tzinfo is not None
        assert await session.get(Follower, (stored.id, suggestion.proposer_id)) is not None
        events = (await session.scalars(select(AuditEvent))).all()
        assert len(events) == 1
        event = events[0]
        assert (event.entity_type, event.entity_id, event.action) == (
            "suggestion",
            stored.id,
            "submit",
        )
        assert (event.actor_role, event.actor_person_id) == (Role.PROPOSER, suggestion.proposer_id)
        assert (event.to_state, event.community_id, event.public) == (
            State.SUBMITTED,
            org.xinsha_id,
            True,
        )
        # Public details go on the board: the number, never the resident.
        assert event.details == {"number": stored.number}


async def test_a_draft_is_stored_once(sessionmaker: Sessions, org: OrgTree) -> None:
    """The same keyed draft submitted again (a redelivered confirm) returns what it made,
    takes no number, and is not held back by the daily limit it counted towards."""
    first = await submit(sessionmaker, org.xinsha_id, key="a" * 32, daily_limit=1)
    again = await submit(sessionmaker, org.xinsha_id, key="a" * 32, daily_limit=1)
    assert (again.id, again.number, again.community.id) == (first.id, first.number, org.xinsha_id)
    with pytest.raises(suggestions.DailyLimitReached):
        await submit(sessionmaker, org.xinsha_id, key="b" * 32, daily_limit=1)
    async with sessionmaker() as session:
        assert await count(session, Suggestion) == 1
        assert await count(session, Follower) == 1
        assert await count(session, AuditEvent) == 1


async def test_drafts_without_a_key_or_of_someone_else_are_new(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    unkeyed = [await submit(sessionmaker, org.xinsha_id) for _ in range(2)]
    assert unkeyed[0].number != unkeyed[1].number
    mine = await submit(sessionmaker, org.xinsha_id, key="c" * 32)
    # A key is the draft's, held in its proposer's conversation: another person's is theirs.
    with pytest.raises(IntegrityError):
        await submit(sessionmaker, org.xinsha_id, resident(2), key="c" * 32)
    async with sessionmaker() as session:
        assert await count(session, Suggestion) == 3
        assert (await session.get_one(Suggestion, mine.id)).draft_key == "c" * 32


async def test_submit_is_all_or_nothing(
    sessionmaker: Sessions, org: OrgTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_record(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit trail unavailable")

    monkeypatch.setattr(suggestions, "record", broken_record)
    with pytest.raises(RuntimeError):
        await submit(sessionmaker, org.xinsha_id)
    async with sessionmaker() as session:
        for model in (Suggestion, Follower, AuditEvent, SuggestionCounter, Person):
            assert await count(session, model) == 0, model.__name__
    monkeypatch.undo()
    assert (await submit(sessionmaker, org.xinsha_id)).seq == 1


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"title": " "}, "title_length"),
        ({"title": "路" * 61}, "title_length"),
        ({"description": ""}, "description_length"),
        ({"description": "长" * 1001}, "description_length"),
        ({"location_text": "楼" * 201}, "location_length"),
        ({"photo_file_ids": ["a", "b", "c", "d"]}, "too_many_photos"),
        ({"latitude": 91.0}, "bad_location"),
        ({"longitude": -180.5}, "bad_location"),
        ({"estimated_cost_fen": 100}, "cost_without_kind"),
        ({"estimated_cost_fen": -1, "kind": Kind.SERVICE}, "cost_negative"),
        ({"estimated_cost_fen": 5_000_000_01, "kind": Kind.PHYSICAL}, "estimate_too_large"),
        ({"estimated_cost_fen": 2**63, "kind": Kind.SERVICE}, "cost_too_large"),
    ],
)
def test_validate_draft(changes: dict[str, object], code: str) -> None:
    with pytest.raises(RuleViolation) as raised:
        suggestions.validate_draft(draft(1, **changes))
    assert raised.value.code == code


def test_limits_count_characters_not_bytes() -> None:
    suggestions.validate_draft(draft(1, title="路" * 60, description="长" * 1000))


async def test_an_absurd_estimate_is_refused_before_the_database(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    """More fen than a BIGINT holds is a rule's refusal the dialog can answer, not an overflow
    inside the driver."""
    with pytest.raises(RuleViolation) as raised:
        await submit(sessionmaker, org.xinsha_id, kind=Kind.PHYSICAL, estimated_cost_fen=10**20)
    assert raised.value.code == "cost_too_large"
    assert (await submit(sessionmaker, org.xinsha_id)).seq == 1, "nothing half-written"


async def test_unknown_community(sessionmaker: Sessions, org: OrgTree) -> None:
    with pytest.raises(RuleViolation) as raised:
        await submit(sessionmaker, org.xinsha_id + org.tianan_id + 100)
    assert raised.value.code == "unknown_community"


# --- Transitions ----------------------------------------------------------------------------


async def test_apply_moves_and_records(sessionmaker: Sessions, org: OrgTree) -> None:
    stored = await submit(sessionmaker, org.xinsha_id)
    staff = Actor(Role.COMMUNITY_STAFF, None)
    async with sessionmaker() as session:
        suggestion = await session.get(Suggestion, stored.id)
        assert suggestion is not None
        step = await suggestions.apply(session, suggestion, Action.BEGIN_REVIEW, staff)
        assert step.target is State.UNDER_REVIEW
        await suggestions.apply(
            session, suggestion, Action.ACCEPT, staff, details={"note": "纳入备选"}
        )
        await session.commit()
    async with sessionmaker() as session:
        suggestion = await session.get(Suggestion, stored.id)
        assert suggestion is not None and suggestion.status is State.CANDIDATE
        events = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action != "submit").order_by(AuditEvent.id)
            )
        ).all()
        assert [(e.action, e.from_state, e.to_state, e.actor_role) for e in events] == [
            ("begin_review", State.SUBMITTED, State.UNDER_REVIEW, Role.COMMUNITY_STAFF),
            ("accept", State.UNDER_REVIEW, State.CANDIDATE, Role.COMMUNITY_STAFF),
        ]
        assert events[1].details == {"note": "纳入备选"}


@pytest.mark.parametrize(
    ("action", "role", "code"),
    [
        (Action.ACCEPT, Role.COMMUNITY_STAFF, "transition_not_allowed"),  # not yet under review
        (Action.BEGIN_REVIEW, Role.PROPOSER, "role_not_allowed"),
        (Action.DETERMINE, Role.STREET_OFFICIAL, "transition_not_allowed"),
        (Action.CANCEL, Role.COMMUNITY_STAFF, "role_not_allowed"),
    ],
)
async def test_apply_refuses_what_the_rules_refuse(
    sessionmaker: Sessions, org: OrgTree, action: Action, role: Role, code: str
) -> None:
    stored = await submit(sessionmaker, org.xinsha_id)
    async with sessionmaker() as session:
        suggestion = await session.get(Suggestion, stored.id)
        assert suggestion is not None
        with pytest.raises(RuleViolation) as raised:
            await suggestions.apply(session, suggestion, action, Actor(role))
        assert raised.value.code == code
        assert suggestion.status is State.SUBMITTED
        await session.commit()
        assert await count(session, AuditEvent) == 1  # only the submission


async def test_apply_rolls_back_with_its_event(sessionmaker: Sessions, org: OrgTree) -> None:
    stored = await submit(sessionmaker, org.xinsha_id)
    async with sessionmaker() as session:
        suggestion = await session.get(Suggestion, stored.id)
        assert suggestion is not None
        await suggestions.apply(
            session, suggestion, Action.WITHDRAW, Actor(Role.PROPOSER, stored.proposer_id)
        )
        await session.rollback()
    async with sessionmaker() as session:
        suggestion = await session.get(Suggestion, stored.id)
        assert suggestion is not None and suggestion.status is State.SUBMITTED
        assert await count(session, AuditEvent) == 1


# --- Listings and followers -----------------------------------------------------------------


async def test_public_listing_filters_and_pages(
    sessionmaker: Sessions, org: OrgTree, clock: list[datetime]
) -> None:
    made = []
    for minute in range(5):
        clock[0] = datetime(2026, 3, 1, 2, minute, tzinfo=UTC)
        made.append(await submit(sessionmaker, org.xinsha_id, resident(minute)))
    clock[0] = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    made.append(await submit(sessionmaker, org.tianan_id, resident(9), category=Category.CARE))
    async with sessionmaker() as session:
        rejected = await session.get(Suggestion, made[0].id)
        assert rejected is not None
        staff = Actor(Role.COMMUNITY_STAFF)
        await suggestions.apply(session, rejected, Action.BEGIN_REVIEW, staff)
        await suggestions.apply(session, rejected, Action.REJECT, staff)
        await session.commit()

        ids = {m.number: m.id for m in made}

        def numbers(page: list[public.PublicSuggestion]) -> list[int]:
            return [ids[s.number] for s in page]

        page, total = await public.list_suggestions(session, PublicFilter(), limit=4)
        assert total == 6
        assert numbers(page) == [m.id for m in reversed(made)][:4]  # newest first
        page, total = await public.list_suggestions(session, PublicFilter(), limit=4, offset=4)
        assert (total, numbers(page)) == (6, [made[1].id, made[0].id])
        assert page[0].community.street == "沙头街道"

        only = await public.list_suggestions(session, PublicFilter(community_id=org.tianan_id))
        assert (only[1], [s.number for s in only[0]]) == (1, ["天安-2026-0001"])
        care = await public.list_suggestions(session, PublicFilter(category=Category.CARE))
        assert care[1] == 1
        status = await public.list_suggestions(session, PublicFilter(status=State.REJECTED))
        assert numbers(status[0]) == [made[0].id]
        both = PublicFilter(community_id=org.xinsha_id, status=State.SUBMITTED)
        assert (await public.list_suggestions(session, both))[1] == 4
        none = PublicFilter(community_id=org.tianan_id, category=Category.SAFETY)
        assert await public.list_suggestions(session, none) == ([], 0)


async def test_list_for_proposer(sessionmaker: Sessions, org: OrgTree) -> None:
    first = await submit(sessionmaker, org.xinsha_id, resident(1))
    await submit(sessionmaker, org.xinsha_id, resident(2))
    second = await submit(sessionmaker, org.tianan_id, resident(1))
    async with sessionmaker() as session:
        mine = await suggestions.list_for_proposer(session, resident(1).telegram_id)
        assert [s.id for s in mine] == [second.id, first.id]
        assert [s.number for s in mine] == [second.number, first.number]
        assert mine[0].number.startswith("天安-")
        assert mine[0].title == second.title and mine[0].status is second.status
        assert await suggestions.list_for_proposer(session, 1) == []


async def test_add_follower_is_idempotent(sessionmaker: Sessions, org: OrgTree) -> None:
    stored = await submit(sessionmaker, org.xinsha_id, resident(1))
    other = await submit(sessionmaker, org.xinsha_id, resident(2))
    async with sessionmaker() as session:
        assert other.proposer_id is not None
        await suggestions.add_follower(session, stored.id, other.proposer_id)
        await suggestions.add_follower(session, stored.id, other.proposer_id)
        assert stored.proposer_id is not None
        await suggestions.add_follower(session, stored.id, stored.proposer_id)
        await session.commit()
        followers = await session.scalars(
            select(Follower.person_id).where(Follower.suggestion_id == stored.id)
        )
        assert sorted(followers) == sorted([stored.proposer_id, other.proposer_id])


async def test_same_named_communities_can_both_take_suggestions(sessionmaker: Sessions) -> None:
    from storage.services.org import import_rows, parse_org_csv

    text = "district,street,community\n甲区,一街道,中心社区\n乙区,二街道,中心社区\n"
    async with sessionmaker() as session:
        await import_rows(session, parse_org_csv(text))
        ids = sorted(await session.scalars(select(Community.id)))
    for n, community_id in enumerate(ids):
        await submit(sessionmaker, community_id, resident(n))
    async with sessionmaker() as session:
        numbers = sorted(await session.scalars(select(Suggestion.number)))
    year = numbers[0].split("-")[1]
    assert numbers == sorted([f"中心-{year}-0001", f"二中心-{year}-0001"])
