"""Screening (商议): the community looks at each suggestion and accepts it as a candidate,
rejects it with one of the programme's exclusion reasons, or merges it into a duplicate.

Every step checks the principal's role and scope (access.require, with the roles of the
transition table), moves the suggestion through suggestions.apply (which writes the audit
event), tells the people concerned through the outbox, and commits.

What is public: the transitions (board), the exclusion reason, category/kind corrections and
what was merged into what. What is not: a staff member's free note. A rejection note is
written to the proposer and may name them, their building or their neighbour, so it is kept
on the suggestion (`exclusion_note`, which the public queries never select) and sent to the
proposer only; an acceptance note goes to the followers and to a non-public audit event.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage import rules
from storage.db import operation
from storage.models import Community, NotificationKind, Street, Suggestion
from storage.rules import (
    ACTIVE_STATES,
    Action,
    Category,
    ExclusionReason,
    Kind,
    RuleViolation,
    ScopeLevel,
    State,
)
from storage.services import access, audit, notifications
from storage.services.audit import Actor
from storage.services.suggestions import add_follower, apply, lock_suggestions

# Who screens: the community's staff and wider officials, as the transition table says (each
# action checks its own transition's roles; this is for the queue and for front ends).
SCREENING_ROLES = rules.roles_for(Action.ACCEPT, State.UNDER_REVIEW)
QUEUE_STATES = (State.SUBMITTED, State.UNDER_REVIEW)


def actor_of(principal: access.Principal) -> Actor:
    return Actor(principal.role, principal.person_id)


def scope_condition(scope: access.Scope) -> ColumnElement[bool]:
    """Rows whose community lies in `scope`: the query joins Community and Street (the
    community of what it selects, and that community's street)."""
    match scope.level:
        case ScopeLevel.CITY:
            return true()
        case ScopeLevel.DISTRICT:
            return Street.district_id == scope.id
        case ScopeLevel.STREET:
            return Community.street_id == scope.id
        case ScopeLevel.COMMUNITY:
            return Community.id == scope.id
    raise AssertionError(scope.level)


async def _locked(
    session: AsyncSession, principal: access.Principal, suggestion_id: int, action: Action
) -> Suggestion:
    found = (await lock_suggestions(session, [suggestion_id])).get(suggestion_id)
    if found is None:
        raise RuleViolation("unknown_suggestion", "no such suggestion")
    source = State.SUBMITTED if action is Action.BEGIN_REVIEW else State.UNDER_REVIEW
    await access.require(session, principal, found.community_id, rules.roles_for(action, source))
    return found


async def _begin_if_submitted(session: AsyncSession, suggestion: Suggestion, actor: Actor) -> None:
    if suggestion.status is State.SUBMITTED:
        await apply(session, suggestion, Action.BEGIN_REVIEW, actor)


def _note(note: str | None) -> str | None:
    cleaned = rules.clean_text(note or "")
    if rules.char_length(cleaned) > rules.REJECTION_NOTE_MAX:
        raise RuleViolation(
            "note_too_long", f"a note is at most {rules.REJECTION_NOTE_MAX} characters"
        )
    return cleaned or None


async def review_queue(
    session: AsyncSession,
    principal: access.Principal,
    community_id: int | None = None,
    limit: int = 50,
) -> list[Suggestion]:
    """Suggestions waiting for screening (submitted or under review) within the principal's
    scope, oldest first; only one community's with `community_id` (which must be in scope)."""
    if principal.role not in SCREENING_ROLES:
        raise RuleViolation("role_not_allowed", f"{principal.role.value} does not screen")
    query = (
        select(Suggestion)
        .join(Community, Community.id == Suggestion.community_id)
        .join(Street, Street.id == Community.street_id)
        .where(Suggestion.status.in_(QUEUE_STATES), scope_condition(principal.scope))
        .options(selectinload(Suggestion.community))
        .order_by(Suggestion.created_at, Suggestion.id)
        .limit(max(0, min(limit, 500)))
    )
    if community_id is not None:
        await access.require(session, principal, community_id, SCREENING_ROLES)
        query = query.where(Suggestion.community_id == community_id)
    return list((await session.scalars(query)).all())


@operation
async def begin_review(
    session: AsyncSession, principal: access.Principal, suggestion_id: int
) -> Suggestion:
    """SUBMITTED → UNDER_REVIEW (nothing happens if it already is under review). Commits."""
    suggestion = await _locked(session, principal, suggestion_id, Action.BEGIN_REVIEW)
    if suggestion.status is not State.UNDER_REVIEW:
        await apply(session, suggestion, Action.BEGIN_REVIEW, actor_of(principal))
    await session.commit()
    return suggestion


@operation
async def accept(
    session: AsyncSession,
    principal: access.Principal,
    suggestion_id: int,
    *,
    category: Category | None = None,
    kind: Kind | None = None,
    note: str | None = None,
) -> Suggestion:
    """Accept it for the council (待议事会讨论), correcting category and kind if asked;
    the corrections are in the public audit event, the note in a non-public one and in the
    followers' message. Begins the review first if needed (both steps audited). Commits.

    A candidate has its kind (service or physical), given here if the resident left it out:
    each kind has its own cap and deadlines, which the street office applies to it."""
    suggestion = await _locked(session, principal, suggestion_id, Action.ACCEPT)
    note = _note(note)
    category = Category(category) if category is not None else None
    kind = Kind(kind) if kind is not None else None
    if kind is None and suggestion.kind is None:
        raise RuleViolation(
            "kind_required", "a candidate needs its kind (service or physical): each has its cap"
        )
    actor = actor_of(principal)
    await _begin_if_submitted(session, suggestion, actor)
    corrections: dict[str, Any] = {}
    if category is not None and category is not suggestion.category:
        corrections["category"] = {"from": suggestion.category.value, "to": category.value}
    if kind is not None and kind is not suggestion.kind:
        previous = suggestion.kind.value if suggestion.kind is not None else None
        corrections["kind"] = {"from": previous, "to": kind.value}
    await apply(session, suggestion, Action.ACCEPT, actor, details=corrections)
    if category is not None:
        suggestion.category = category
    if kind is not None:
        suggestion.kind = kind
    if note is not None:
        audit.record(
            session,
            actor=actor,
            entity_type="suggestion",
            entity_id=suggestion.id,
            community_id=suggestion.community_id,
            action="screening_note",
            public=False,
            details={"note": note},
        )
    await notifications.notify_followers(
        session,
        suggestion,
        NotificationKind.SUGGESTION_ACCEPTED,
        notifications.about(suggestion)
        | {
            "category": suggestion.category.value,
            "kind": suggestion.kind.value if suggestion.kind is not None else None,
            "note": note,
        },
        dedupe_prefix=f"accepted:{suggestion.id}",
    )
    await session.commit()
    return suggestion


@operation
async def reject(
    session: AsyncSession,
    principal: access.Principal,
    suggestion_id: int,
    reason: ExclusionReason,
    note: str | None,
) -> Suggestion:
    """Reject with one of the programme's exclusion reasons (OTHER needs a note). The reason
    is public; the note is kept on the suggestion and told to the proposer only (see the
    module's docstring). Begins the review first if needed. Commits."""
    try:
        reason = ExclusionReason(reason)
    except ValueError as exc:
        raise RuleViolation("unknown_reason", f"no exclusion reason {reason!r}") from exc
    note = _note(note)
    if reason is ExclusionReason.OTHER and note is None:
        raise RuleViolation("note_required", "'other' needs a note saying why")
    suggestion = await _locked(session, principal, suggestion_id, Action.REJECT)
    actor = actor_of(principal)
    await _begin_if_submitted(session, suggestion, actor)
    await apply(session, suggestion, Action.REJECT, actor, details={"reason": reason.value})
    suggestion.exclusion_reason = reason
    suggestion.exclusion_note = note
    await notifications.notify_followers(
        session,
        suggestion,
        NotificationKind.SUGGESTION_REJECTED,
        notifications.about(suggestion) | {"reason": reason.value, "note": None},
        dedupe_prefix=f"rejected:{suggestion.id}",
        proposer_params={"note": note},
    )
    await session.commit()
    return suggestion


def open_to_merge(target: Suggestion) -> bool:
    """Whether duplicates may still be merged into `target`: it is active, and not merged
    into another itself."""
    return target.status in ACTIVE_STATES and target.merged_into_id is None


@operation
async def merge(
    session: AsyncSession, principal: access.Principal, suggestion_id: int, into_id: int
) -> Suggestion:
    """Merge a duplicate into another suggestion of the same community that is still active.

    The source becomes MERGED (merged_into_id set); everyone following it, its proposer
    included, now follows the target; both sets of people are told. Public audit events on
    both. Begins the source's review first if needed. Returns the source. Commits.
    """
    if suggestion_id == into_id:
        raise RuleViolation("merge_into_self", "a suggestion cannot be merged into itself")
    locked = await lock_suggestions(session, [suggestion_id, into_id])
    source, target = locked.get(suggestion_id), locked.get(into_id)
    if source is None or target is None:
        raise RuleViolation("unknown_suggestion", "no such suggestion")
    roles = rules.roles_for(Action.MERGE, State.UNDER_REVIEW)
    await access.require(session, principal, source.community_id, roles)
    if target.community_id != source.community_id:
        raise RuleViolation("merge_other_community", "only within one community")
    if not open_to_merge(target):
        raise RuleViolation("merge_target_inactive", f"{target.number} is {target.status.value}")
    actor = actor_of(principal)
    await _begin_if_submitted(session, source, actor)
    # The community has looked at the target too; and its proposer may no longer withdraw it,
    # which would drop the residents' duplicates merged into it.
    await _begin_if_submitted(session, target, actor)
    link = {"into_id": target.id, "into_number": target.number}
    await apply(session, source, Action.MERGE, actor, details=link)
    source.merged_into_id = target.id
    audit.record(
        session,
        actor=actor,
        entity_type="suggestion",
        entity_id=target.id,
        community_id=target.community_id,
        action="merged_in",
        details={"from_id": source.id, "from_number": source.number},
    )
    # Who followed the target before hear that a duplicate joined; the source's people
    # (its proposer even if they stopped following) now follow the target and hear so.
    before = {p.id for p in await notifications.followers_of(session, target.id)}
    moving = {
        p.id for p in await notifications.followers_of(session, source.id, reachable_only=False)
    }
    if source.proposer_id is not None:
        moving.add(source.proposer_id)
    for person_id in sorted(moving):
        await add_follower(session, target.id, person_id)
    into = {"into_id": target.id, "into_number": target.number, "into_title": target.title}
    # Someone in both sets hears once, as one whose suggestion was merged.
    await notifications.notify_people(
        session,
        moving,
        NotificationKind.SUGGESTION_MERGED,
        notifications.about(source) | into | {"role": "source"},
        dedupe_prefix=f"merged:{source.id}:source",
    )
    await notifications.notify_people(
        session,
        before - moving,
        NotificationKind.SUGGESTION_MERGED,
        notifications.about(source) | into | {"role": "target"},
        dedupe_prefix=f"merged:{source.id}:target",
    )
    await session.commit()
    return source


__all__ = [
    "SCREENING_ROLES",
    "accept",
    "begin_review",
    "merge",
    "open_to_merge",
    "reject",
    "review_queue",
    "scope_condition",
]
