"""The audit trail's two readers-to-be and its token attribution: `audit.attribute_to_token`
marks one session's events with the API token that acted, and the public timeline
(`public.list_events`, `public.suggestion_timeline`) reads only public events, and of their
details only what is public by name. SQLite and PostgreSQL via `sessionmaker`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conftest import OrgTree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AuditEvent
from storage.rules import Action, Category, ExclusionReason, Role, ScopeLevel, SourceType, State
from storage.services import audit, public, tokens
from storage.services.access import Principal, Scope
from storage.services.audit import Actor
from storage.services.people import TelegramIdentity
from storage.services.suggestions import Draft, submit
from storage.settings import Settings

TZ = Settings(_env_file=None).tz
RESIDENT = TelegramIdentity(123_456_789, "Resident_Name_X1", "resident_user_x1")


async def a_suggestion(session: AsyncSession, org: OrgTree) -> tuple[int, str]:
    draft = Draft(org.xinsha_id, Category.ENVIRONMENT, "路灯不亮", "路口路灯坏了。")
    made = await submit(session, RESIDENT, draft, tz=TZ, daily_limit=100)
    return made.id, made.number


def add_event(session: AsyncSession, suggestion_id: int, **fields: object) -> None:
    values: dict[str, object] = {
        "entity_type": "suggestion",
        "entity_id": suggestion_id,
        "actor_role": Role.COMMUNITY_STAFF,
        "public": True,
        "details": {},
    }
    session.add(AuditEvent(**(values | fields)))


# --- Token attribution ----------------------------------------------------------------------


async def test_a_sessions_events_name_the_token_it_was_given(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as marked, sessionmaker() as other:
        assert audit.acting_token(marked) is None
        audit.attribute_to_token(marked, "ms_1a2b3c4d")
        assert audit.acting_token(marked) == "ms_1a2b3c4d"
        kept = {"reason": "property_management"}
        first = audit.record(
            marked,
            actor=Actor(Role.COMMUNITY_STAFF),
            entity_type="suggestion",
            entity_id=1,
            action="reject",
            details=kept,
        )
        plain = audit.record(
            other, actor=Actor(Role.SYSTEM), entity_type="suggestion", entity_id=1, action="x"
        )
        assert first.details == {"reason": "property_management", "token": "ms_1a2b3c4d"}
        assert kept == {"reason": "property_management"}  # the caller's dict is left alone
        assert plain.details == {}
        await marked.commit()
        # Still marked after a commit: the whole request is one token's.
        later = audit.record(
            marked, actor=Actor(Role.COMMUNITY_STAFF), entity_type="chat", entity_id=2, action="y"
        )
        assert later.details == {"token": "ms_1a2b3c4d"}
        await marked.commit()
        stored = (await marked.scalars(select(AuditEvent).order_by(AuditEvent.id))).all()
        assert [e.details.get(audit.TOKEN_DETAIL) for e in stored] == ["ms_1a2b3c4d"] * 2


async def test_authentication_gives_the_tokens_public_name(
    session: AsyncSession, org: OrgTree
) -> None:
    scope = Scope(ScopeLevel.COMMUNITY, org.xinsha_id)
    token, plaintext = await tokens.create_token(session, Role.COMMUNITY_STAFF, scope)
    found = await tokens.authenticate_token(session, plaintext)
    assert found is not None
    assert found.token == f"ms_{token.prefix}" == tokens.public_name(plaintext)
    assert found.principal == Principal(Role.COMMUNITY_STAFF, scope)
    assert plaintext.split("_", 2)[2] not in found.token
    assert tokens.public_name(token.prefix) == tokens.public_name(f"ms_{token.prefix.upper()}")
    await tokens.revoke(session, token.prefix)
    assert await tokens.authenticate_token(session, plaintext) is None


# --- The public timeline --------------------------------------------------------------------


async def test_only_public_events_and_public_details_are_read(
    session: AsyncSession, org: OrgTree
) -> None:
    suggestion_id, number = await a_suggestion(session, org)
    start = datetime.now(UTC) + timedelta(days=1)  # after the submission
    private = {
        "note": "Note_Secret_P1",
        "token": "ms_deadbeef",
        "person_id": 424_242_424_242,
        "telegram_id": 987654321,
        "name": "Name_Secret_P2",
    }
    add_event(
        session,
        suggestion_id,
        at=start + timedelta(hours=1),
        action=Action.REJECT.value,
        from_state=State.UNDER_REVIEW,
        to_state=State.REJECTED,
        details={"reason": ExclusionReason.OUT_OF_SCOPE.value} | private,
    )
    add_event(
        session,
        suggestion_id,
        at=start + timedelta(hours=2),
        action="screening_note",
        public=False,
        details={"note": "Hidden_Note_P3"},
    )
    add_event(  # another suggestion's event
        session, suggestion_id + 1000, at=start, action=Action.ACCEPT.value, details={}
    )
    add_event(  # the same id, another kind of entity
        session, suggestion_id, entity_type="chat", at=start, action="bind_chat", details={}
    )
    add_event(  # malformed details are read as far as they are valid, never failing
        session,
        suggestion_id,
        at=start + timedelta(hours=3),
        action=Action.RESOLVE.value,
        actor_role=Role.SYSTEM,
        details={"outcome": "resolved", "agree": "3", "against": 1, "abstain": True},
    )
    await session.commit()

    found = await public.list_events(session, number)
    assert found is not None
    items, total = found
    assert total == 3  # the submission, the rejection, the resolution
    assert [e.action for e in items] == ["submit", "reject", "resolve"]
    submitted, rejected, resolved = items
    assert submitted.actor == "resident" and submitted.to_state is State.SUBMITTED
    assert rejected.actor == "community_staff"
    assert rejected.exclusion_reason is ExclusionReason.OUT_OF_SCOPE
    assert resolved.actor == "residents_council" and resolved.vote is None
    text = repr(items)
    for secret in [*map(str, private.values()), "Hidden_Note_P3", RESIDENT.first_name]:
        assert secret not in text, secret
    assert str(RESIDENT.telegram_id) not in text

    timeline = await public.suggestion_timeline(session, number)
    assert timeline is not None and timeline.events == items and not timeline.more
    short = await public.suggestion_timeline(session, number, limit=2)
    assert short is not None and short.events == items[:2] and short.more

    page = await public.list_events(session, number, limit=1, offset=1)
    assert page == ([rejected], 3)


async def test_the_proposers_kind_stands_for_them(session: AsyncSession, org: OrgTree) -> None:
    draft = Draft(
        org.xinsha_id, Category.CARE, "长者饭堂", "开设长者饭堂。", source_type=SourceType.UNIT
    )
    made = await submit(session, RESIDENT, draft, tz=TZ, daily_limit=100)
    found = await public.list_events(session, made.number)
    assert found is not None
    assert [e.actor for e in found[0]] == ["unit"]
    assert public.public_actor(Role.PROPOSER, SourceType.RESIDENT) == "resident"
    assert public.public_actor(Role.STREET_OFFICIAL, SourceType.RESIDENT) == "street_official"
    assert public.public_actor(None, SourceType.RESIDENT) == public.UNKNOWN_ACTOR


async def test_unknown_numbers(session: AsyncSession, org: OrgTree) -> None:
    _, number = await a_suggestion(session, org)
    for missing in ("", "   ", "x" * 49, number + "0", "新沙-2026-9999"):
        assert await public.list_events(session, missing) is None, missing
        assert await public.suggestion_timeline(session, missing) is None, missing
    assert public.number_forms(" 新沙－２０２６-0001 ") == ["新沙－２０２６-0001", "新沙-2026-0001"]
    assert public.number_forms("新沙-2026-0001") == ["新沙-2026-0001"]
    assert public.number_forms(" ") == []
