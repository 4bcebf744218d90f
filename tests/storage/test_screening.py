"""Screening (storage.services.screening): the review queue, accept, reject and merge, with
scope checks, audit events, followers and the messages owed to them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC

import pytest
from conftest import OrgTree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import rules
from storage.models import COMMAND_MENU, AuditEvent, Follower, Notification, Person, Suggestion
from storage.rules import Category, ExclusionReason, Kind, Role, RuleViolation, ScopeLevel, State
from storage.services import access, invites, screening
from storage.services.access import Principal, Scope
from storage.services.org import OrgRow, import_rows
from storage.services.people import TelegramIdentity, ensure_person
from storage.services.suggestions import Draft, submit, withdraw

Sessions = async_sessionmaker[AsyncSession]


async def official(sessionmaker: Sessions, telegram_id: int, role: Role, scope: Scope) -> Principal:
    async with sessionmaker() as session:
        person = await ensure_person(session, TelegramIdentity(telegram_id, f"官{telegram_id}"))
        await access.grant_role(session, person.id, role, scope)
        await session.commit()
        return Principal(role, scope, person.id)


def staff_of(org: OrgTree, community_id: int | None = None) -> tuple[Role, Scope]:
    return Role.COMMUNITY_STAFF, Scope(ScopeLevel.COMMUNITY, community_id or org.xinsha_id)


async def suggest(
    sessionmaker: Sessions,
    community_id: int,
    proposer: int = 1,
    title: str = "3栋楼下路灯不亮",
    category: Category = Category.SAFETY,
    kind: Kind | None = Kind.SERVICE,
) -> Suggestion:
    async with sessionmaker() as session:
        return await submit(
            session,
            TelegramIdentity(10_000 + proposer, f"居民{proposer}", language_code="zh"),
            Draft(community_id, category, title, "晚上很黑，老人下楼容易摔倒。", kind=kind),
            tz=UTC,
            daily_limit=100,
        )


async def follow(sessionmaker: Sessions, suggestion_id: int, telegram_id: int) -> int:
    async with sessionmaker() as session:
        person = await ensure_person(session, TelegramIdentity(telegram_id))
        session.add(Follower(suggestion_id=suggestion_id, person_id=person.id))
        await session.commit()
        return person.id


async def events(session: AsyncSession, suggestion_id: int) -> list[AuditEvent]:
    query = (
        select(AuditEvent)
        .where(AuditEvent.entity_type == "suggestion", AuditEvent.entity_id == suggestion_id)
        .order_by(AuditEvent.id)
    )
    return list((await session.scalars(query)).all())


async def outbox(session: AsyncSession, kind: str | None = None) -> dict[int, Notification]:
    """The messages owed, by chat (not the command menus granting roles owes)."""
    query = select(Notification).where(Notification.kind != COMMAND_MENU).order_by(Notification.id)
    if kind is not None:
        query = query.where(Notification.kind == kind)
    found = list((await session.scalars(query)).all())
    by_chat = {n.chat_id: n for n in found}
    assert len(by_chat) == len(found), "one message per chat"
    return by_chat


async def refused(code: str, coro: object) -> None:
    with pytest.raises(RuleViolation) as raised:
        await coro  # type: ignore[misc]
    assert raised.value.code == code


# --- The queue ------------------------------------------------------------------------------


async def test_review_queue_by_scope(sessionmaker: Sessions, org: OrgTree) -> None:
    first = await suggest(sessionmaker, org.xinsha_id, title="一")
    other = await suggest(sessionmaker, org.tianan_id, title="天安")
    second = await suggest(sessionmaker, org.xinsha_id, title="二")
    done = await suggest(sessionmaker, org.xinsha_id, title="已受理")
    staff = await official(sessionmaker, 1, *staff_of(org))
    street = await official(
        sessionmaker, 2, Role.STREET_OFFICIAL, Scope(ScopeLevel.STREET, org.street_id)
    )
    async with sessionmaker() as session:
        await screening.accept(session, staff, done.id)
        await screening.begin_review(session, staff, second.id)
    async with sessionmaker() as session:
        queue = await screening.review_queue(session, staff)
        assert [s.id for s in queue] == [first.id, second.id]  # oldest first, both states
        assert queue[1].status is State.UNDER_REVIEW
        wide = await screening.review_queue(session, street)
        assert [s.id for s in wide] == [first.id, other.id, second.id]
        only = await screening.review_queue(session, street, community_id=org.tianan_id)
        assert [s.id for s in only] == [other.id]
        assert [s.id for s in await screening.review_queue(session, street, limit=1)] == [first.id]
        await refused(
            "out_of_scope", screening.review_queue(session, staff, community_id=org.tianan_id)
        )
        council = Principal(Role.COUNCIL_MEMBER, Scope(ScopeLevel.COMMUNITY, org.xinsha_id))
        await refused("role_not_allowed", screening.review_queue(session, council))


async def test_begin_review_once(sessionmaker: Sessions, org: OrgTree) -> None:
    suggestion = await suggest(sessionmaker, org.xinsha_id)
    staff = await official(sessionmaker, 1, *staff_of(org))
    async with sessionmaker() as session:
        moved = await screening.begin_review(session, staff, suggestion.id)
        assert moved.status is State.UNDER_REVIEW
        await screening.begin_review(session, staff, suggestion.id)  # a no-op
        actions = [(e.action, e.actor_role, e.actor_person_id) for e in await events(session, 1)]
        assert actions == [
            ("submit", Role.PROPOSER, suggestion.proposer_id),
            ("begin_review", Role.COMMUNITY_STAFF, staff.person_id),
        ]
        await refused("unknown_suggestion", screening.begin_review(session, staff, 999))


# --- Accept ---------------------------------------------------------------------------------


async def test_a_candidate_needs_its_kind(sessionmaker: Sessions, org: OrgTree) -> None:
    """Caps and deadlines depend on the kind: a suggestion without one is accepted only with
    the kind given, and a refusal changes nothing (it is not even put under review)."""
    suggestion = await suggest(sessionmaker, org.xinsha_id, kind=None)
    staff = await official(sessionmaker, 1, *staff_of(org))
    async with sessionmaker() as session:
        with pytest.raises(RuleViolation) as refused:
            await screening.accept(session, staff, suggestion.id)
        assert refused.value.code == "kind_required"
        await session.rollback()
        stored = await session.get(Suggestion, suggestion.id)
        assert stored is not None and stored.status is State.SUBMITTED
        accepted = await screening.accept(session, staff, suggestion.id, kind=Kind.PHYSICAL)
        assert (accepted.status, accepted.kind) == (State.CANDIDATE, Kind.PHYSICAL)


async def test_accept_with_corrections(sessionmaker: Sessions, org: OrgTree) -> None:
    suggestion = await suggest(sessionmaker, org.xinsha_id, kind=None)
    neighbour = await follow(sessionmaker, suggestion.id, 20_001)
    staff = await official(sessionmaker, 1, *staff_of(org))
    async with sessionmaker() as session:
        accepted = await screening.accept(
            session,
            staff,
            suggestion.id,
            category=Category.ENVIRONMENT,
            kind=Kind.PHYSICAL,
            note="  已请物业核实，\x00列入备选  ",
        )
    assert (accepted.status, accepted.category, accepted.kind) == (
        State.CANDIDATE,
        Category.ENVIRONMENT,
        Kind.PHYSICAL,
    )
    async with sessionmaker() as session:
        trail = await events(session, suggestion.id)
        assert [(e.action, e.from_state, e.to_state, e.public) for e in trail] == [
            ("submit", None, State.SUBMITTED, True),
            ("begin_review", State.SUBMITTED, State.UNDER_REVIEW, True),
            ("accept", State.UNDER_REVIEW, State.CANDIDATE, True),
            ("screening_note", None, None, False),
        ]
        assert trail[2].details == {
            "category": {"from": "safety", "to": "environment"},
            "kind": {"from": None, "to": "physical"},
        }
        assert trail[3].details == {"note": "已请物业核实，列入备选"}
        messages = await outbox(session, "suggestion_accepted")
        assert set(messages) == {10_001, 20_001}
        assert messages[20_001].person_id == neighbour
        assert messages[10_001].params == {
            "suggestion_id": suggestion.id,
            "number": suggestion.number,
            "title": suggestion.title,
            "category": "environment",
            "kind": "physical",
            "note": "已请物业核实，列入备选",
        }
        await refused("transition_not_allowed", screening.accept(session, staff, suggestion.id))


async def test_accept_without_corrections_records_none(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    suggestion = await suggest(sessionmaker, org.xinsha_id)
    staff = await official(sessionmaker, 1, *staff_of(org))
    async with sessionmaker() as session:
        await screening.begin_review(session, staff, suggestion.id)
        # The same category as before is not a correction.
        await screening.accept(session, staff, suggestion.id, category=Category.SAFETY)
        trail = await events(session, suggestion.id)
        assert [e.action for e in trail] == ["submit", "begin_review", "accept"]
        assert trail[-1].details == {}


async def test_two_staff_accept_at_once(sessionmaker: Sessions, org: OrgTree) -> None:
    suggestion = await suggest(sessionmaker, org.xinsha_id)
    staff = [await official(sessionmaker, n, *staff_of(org)) for n in (1, 2)]

    async def one(principal: Principal) -> str:
        async with sessionmaker() as session:
            try:
                await screening.accept(session, principal, suggestion.id)
            except RuleViolation as exc:
                return exc.code
            return "ok"

    results = await asyncio.gather(*(one(p) for p in staff))
    assert sorted(results) == ["ok", "transition_not_allowed"]
    async with sessionmaker() as session:
        actions = [e.action for e in await events(session, suggestion.id)]
        assert actions == ["submit", "begin_review", "accept"]
        assert len(await outbox(session)) == 1  # the proposer, told once


# --- Reject ---------------------------------------------------------------------------------


async def test_reject_tells_the_proposer_why(sessionmaker: Sessions, org: OrgTree) -> None:
    suggestion = await suggest(sessionmaker, org.xinsha_id)
    await follow(sessionmaker, suggestion.id, 20_001)
    staff = await official(sessionmaker, 1, *staff_of(org))
    note = "王先生：这属于物业公司的维修责任，已转告物业（电话 138xxxx）。"
    async with sessionmaker() as session:
        rejected = await screening.reject(
            session, staff, suggestion.id, ExclusionReason.PROPERTY_MANAGEMENT, note
        )
    assert rejected.status is State.REJECTED
    assert rejected.exclusion_reason is ExclusionReason.PROPERTY_MANAGEMENT
    assert rejected.exclusion_note == note
    async with sessionmaker() as session:
        trail = await events(session, suggestion.id)
        assert [(e.action, e.public) for e in trail][-1] == ("reject", True)
        assert trail[-1].details == {"reason": "property_management"}
        public = [e for e in (await session.scalars(select(AuditEvent))).all() if e.public]
        assert "王先生" not in json.dumps([e.details for e in public], ensure_ascii=False)
        messages = await outbox(session, "suggestion_rejected")
        assert messages[10_001].params["note"] == note
        assert messages[10_001].params["reason"] == "property_management"
        assert messages[20_001].params["note"] is None  # a follower hears the reason only
        assert messages[20_001].params["reason"] == "property_management"


async def test_reject_rules(sessionmaker: Sessions, org: OrgTree) -> None:
    suggestion = await suggest(sessionmaker, org.xinsha_id)
    staff = await official(sessionmaker, 1, *staff_of(org))
    other = ExclusionReason.OTHER
    async with sessionmaker() as session:
        await refused("note_required", screening.reject(session, staff, suggestion.id, other, None))
        await refused(
            "note_required", screening.reject(session, staff, suggestion.id, other, " \n ")
        )
        long_note = "很" * (rules.REJECTION_NOTE_MAX + 1)
        await refused(
            "note_too_long", screening.reject(session, staff, suggestion.id, other, long_note)
        )
        await refused(
            "unknown_reason",
            screening.reject(session, staff, suggestion.id, "weather", None),  # type: ignore[arg-type]
        )
        exact = "很" * rules.REJECTION_NOTE_MAX
        stored = await screening.reject(session, staff, suggestion.id, other, exact)
        assert stored.exclusion_note == exact
        # Without a note for a reason that speaks for itself.
        second = await suggest(sessionmaker, org.xinsha_id)
        stored = await screening.reject(
            session, staff, second.id, ExclusionReason.GOVERNMENT_INVESTMENT, None
        )
        assert stored.exclusion_note is None
        await refused(
            "transition_not_allowed",
            screening.reject(session, staff, second.id, ExclusionReason.OUT_OF_SCOPE, None),
        )


# --- Merge ----------------------------------------------------------------------------------


async def test_merge_moves_followers_and_tells_both(sessionmaker: Sessions, org: OrgTree) -> None:
    target = await suggest(sessionmaker, org.xinsha_id, proposer=1, title="路灯")
    source = await suggest(sessionmaker, org.xinsha_id, proposer=2, title="路灯坏了")
    only_target = await follow(sessionmaker, target.id, 20_001)
    both = await follow(sessionmaker, target.id, 20_002)
    async with sessionmaker() as session:
        person = await session.scalar(select(Person.id).where(Person.telegram_id == 20_002))
        session.add(Follower(suggestion_id=source.id, person_id=int(person or 0)))
        # The source's proposer stopped following; merged, they follow the target anyway.
        await session.delete(await session.get(Follower, (source.id, source.proposer_id)))
        await session.commit()
    staff = await official(sessionmaker, 1, *staff_of(org))
    async with sessionmaker() as session:
        merged = await screening.merge(session, staff, source.id, target.id)
    assert merged.status is State.MERGED and merged.merged_into_id == target.id
    async with sessionmaker() as session:
        followers = await session.scalars(
            select(Follower.person_id).where(Follower.suggestion_id == target.id)
        )
        assert set(followers.all()) == {target.proposer_id, source.proposer_id, only_target, both}
        source_trail = await events(session, source.id)
        assert [(e.action, e.public) for e in source_trail][-2:] == [
            ("begin_review", True),
            ("merge", True),
        ]
        assert source_trail[-1].details == {"into_id": target.id, "into_number": target.number}
        target_trail = await events(session, target.id)
        assert [(e.action, e.to_state, e.public) for e in target_trail][-1] == (
            "merged_in",
            None,
            True,
        )
        assert target_trail[-1].details == {"from_id": source.id, "from_number": source.number}
        # The target was looked at too: its proposer can no longer withdraw it from under
        # the residents whose duplicates it now stands for.
        assert [e.action for e in target_trail][-2:] == ["begin_review", "merged_in"]
        assert (await session.get_one(Suggestion, target.id)).status is State.UNDER_REVIEW
        messages = await outbox(session, "suggestion_merged")
        # The source's proposer and follower hear theirs was merged; the target's followers
        # hear a duplicate joined; someone following both hears once.
        roles = {chat: m.params["role"] for chat, m in messages.items()}
        assert roles == {10_002: "source", 20_002: "source", 10_001: "target", 20_001: "target"}
        assert messages[10_001].params["into_number"] == target.number
        assert messages[10_001].params["number"] == source.number


async def test_merge_rules(sessionmaker: Sessions, org: OrgTree) -> None:
    source = await suggest(sessionmaker, org.xinsha_id)
    elsewhere = await suggest(sessionmaker, org.tianan_id)
    gone = await suggest(sessionmaker, org.xinsha_id)
    staff = await official(sessionmaker, 1, *staff_of(org))
    async with sessionmaker() as session:
        await screening.reject(session, staff, gone.id, ExclusionReason.OUT_OF_SCOPE, None)
        await refused("merge_into_self", screening.merge(session, staff, source.id, source.id))
        await refused("unknown_suggestion", screening.merge(session, staff, source.id, 999))
        await refused("unknown_suggestion", screening.merge(session, staff, 999, source.id))
        await refused(
            "merge_other_community", screening.merge(session, staff, source.id, elsewhere.id)
        )
        await refused("merge_target_inactive", screening.merge(session, staff, source.id, gone.id))
        # Merged into something else, it cannot take merges itself.
        target = await suggest(sessionmaker, org.xinsha_id)
        third = await suggest(sessionmaker, org.xinsha_id)
        await screening.merge(session, staff, source.id, target.id)
        await refused("merge_target_inactive", screening.merge(session, staff, third.id, source.id))
        await refused(
            "transition_not_allowed", screening.merge(session, staff, source.id, third.id)
        )


# --- Scope ----------------------------------------------------------------------------------


async def test_who_may_screen_where(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        await import_rows(
            session,
            [
                OrgRow(2, "福田区", "沙头街道", "新沙社区"),
                OrgRow(3, "福田区", "沙头街道", "天安社区"),
                OrgRow(4, "南山区", "粤海街道", "科技园社区"),
            ],
        )
        names = ("新沙社区", "天安社区", "沙头街道", "福田区", "南山区")
        roles = (
            Role.COMMUNITY_STAFF,
            Role.COMMUNITY_STAFF,
            Role.STREET_OFFICIAL,
            Role.DISTRICT_ADMIN,
            Role.DISTRICT_ADMIN,
        )
        scopes = [
            await invites.resolve_scope_name(session, r, n)
            for r, n in zip(roles, names, strict=True)
        ]
    xinsha, tianan, shatou, futian, nanshan = scopes
    assert xinsha.id is not None
    principals = {
        "staff_other_community": await official(sessionmaker, 1, Role.COMMUNITY_STAFF, tianan),
        "council_member": Principal(Role.COUNCIL_MEMBER, xinsha),
        "district_admin_elsewhere": await official(sessionmaker, 2, Role.DISTRICT_ADMIN, nanshan),
        "street_official": await official(sessionmaker, 3, Role.STREET_OFFICIAL, shatou),
        "district_admin": await official(sessionmaker, 4, Role.DISTRICT_ADMIN, futian),
        "city_admin": await official(sessionmaker, 5, Role.CITY_ADMIN, Scope.city()),
    }
    expected = {
        "staff_other_community": "out_of_scope",
        "council_member": "role_not_allowed",
        "district_admin_elsewhere": "out_of_scope",
        "street_official": "ok",
        "district_admin": "ok",
        "city_admin": "ok",
    }
    reasons = ExclusionReason.OUT_OF_SCOPE
    for name, principal in principals.items():
        a, b, c, d = [await suggest(sessionmaker, xinsha.id) for _ in range(4)]
        async with sessionmaker() as session:
            attempts = {
                "begin_review": screening.begin_review(session, principal, a.id),
                "accept": screening.accept(session, principal, a.id),
                "reject": screening.reject(session, principal, b.id, reasons, None),
                "merge": screening.merge(session, principal, c.id, d.id),
            }
            for action, attempt in attempts.items():
                try:
                    await attempt
                    outcome = "ok"
                except RuleViolation as exc:
                    outcome = exc.code
                    await session.rollback()
                assert outcome == expected[name], (name, action)
        async with sessionmaker() as session:
            statuses = [(await session.get(Suggestion, s.id)) for s in (a, b, c)]
            if expected[name] == "ok":
                assert [s.status for s in statuses if s] == [
                    State.CANDIDATE,
                    State.REJECTED,
                    State.MERGED,
                ]
            else:
                assert {s.status for s in statuses if s} == {State.SUBMITTED}


# --- Withdrawal by the proposer -----------------------------------------------------------


async def test_the_proposer_withdraws_before_review(sessionmaker: Sessions, org: OrgTree) -> None:
    suggestion = await suggest(sessionmaker, org.xinsha_id)
    other = await follow(sessionmaker, suggestion.id, 20_001)
    async with sessionmaker() as session:
        withdrawn = await withdraw(session, 10_001, suggestion.id)
    assert withdrawn.status is State.WITHDRAWN
    async with sessionmaker() as session:
        last = (await events(session, suggestion.id))[-1]
        assert (last.action, last.from_state, last.to_state, last.public) == (
            "withdraw",
            State.SUBMITTED,
            State.WITHDRAWN,
            True,
        )
        assert (last.actor_role, last.actor_person_id) == (Role.PROPOSER, withdrawn.proposer_id)
        # Whoever else follows it hears; the proposer, who did it, does not.
        told = await outbox(session, "suggestion_status")
        assert set(told) == {20_001}
        assert told[20_001].person_id == other
        assert told[20_001].params["status"] == State.WITHDRAWN.value


async def test_only_the_proposer_withdraws_and_only_before_review(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    suggestion = await suggest(sessionmaker, org.xinsha_id, proposer=1)
    await suggest(sessionmaker, org.xinsha_id, proposer=2)  # 10_002 is known to the store
    staff = await official(sessionmaker, 1, *staff_of(org))
    async with sessionmaker() as session:
        for telegram_id, suggestion_id in ((10_002, suggestion.id), (10_001, 999), (555, 1)):
            await refused("not_proposer", withdraw(session, telegram_id, suggestion_id))
        await screening.begin_review(session, staff, suggestion.id)
    async with sessionmaker() as session:
        await refused("transition_not_allowed", withdraw(session, 10_001, suggestion.id))
        assert (await session.get_one(Suggestion, suggestion.id)).status is State.UNDER_REVIEW


async def test_withdrawal_and_review_at_once_make_one_change(
    sessionmaker: Sessions, org: OrgTree
) -> None:
    suggestion = await suggest(sessionmaker, org.xinsha_id)
    staff = await official(sessionmaker, 1, *staff_of(org))

    async def proposer() -> str:
        async with sessionmaker() as session:
            try:
                await withdraw(session, 10_001, suggestion.id)
            except RuleViolation as exc:
                return exc.code
            return "withdrawn"

    async def reviewer() -> str:
        async with sessionmaker() as session:
            try:
                await screening.accept(session, staff, suggestion.id)
            except RuleViolation as exc:
                return exc.code
            return "accepted"

    results = await asyncio.gather(proposer(), reviewer())
    assert sorted(results) in (
        ["transition_not_allowed", "withdrawn"],
        ["accepted", "transition_not_allowed"],
    )
    async with sessionmaker() as session:
        status = (await session.get_one(Suggestion, suggestion.id)).status
        actions = [e.action for e in await events(session, suggestion.id)]
    if "withdrawn" in results:
        assert status is State.WITHDRAWN and actions == ["submit", "withdraw"]
    else:
        assert status is State.CANDIDATE and actions == ["submit", "begin_review", "accept"]
