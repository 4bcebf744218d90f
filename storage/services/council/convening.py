"""Convening a council vote: candidates put to the council as it stands, its members
snapshotted as the voters, the suggestions moved and their followers told."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from storage import rules
from storage.db import operation
from storage.models import (
    Community,
    CouncilVote,
    CouncilVoteItem,
    CouncilVoteMember,
    VoteStatus,
    utcnow,
)
from storage.rules import Action, RuleViolation, State
from storage.services import access
from storage.services.chats import council_chat
from storage.services.council.common import (
    CONVENE_ROLES,
    _record_vote_event,
    _tell_followers,
    get_vote,
)
from storage.services.screening import actor_of
from storage.services.suggestions import apply, lock_suggestions


@dataclass
class ConveneRequest:
    community_id: int
    suggestion_ids: list[int]
    closes_at: datetime
    quorum_pct: int | None = None  # None: the community's council_quorum_pct
    threshold_pct: int | None = None  # None: the community's council_threshold_pct


def _percentage(value: int | None, rule: int, name: str) -> int:
    """This vote's quorum or threshold: the council's own `rule`, or a stricter one asked for
    it (a large project may call for two thirds). Never a looser one: the council decides
    under its rules (按照议事制度进行决议), which its convener may not lower for one vote."""
    chosen = rule if value is None else value
    # Strictly more than 100 % can never be reached: such a vote would be decided in advance.
    if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen <= 99:
        raise RuleViolation(
            f"bad_{name}", "a percentage from 0 to 99 (strictly more than it is needed)"
        )
    if chosen < rule:
        raise RuleViolation(
            f"{name}_below_rules",
            f"the council's rules ask for more than {rule}%: a vote may be stricter, not looser",
        )
    return chosen


@operation
async def convene(
    session: AsyncSession,
    principal: access.Principal,
    request: ConveneRequest,
    *,
    now: datetime | None = None,
) -> CouncilVote:
    """Put candidates to the council: CANDIDATE → COUNCIL_VOTE for each (audited), the
    council as it stands snapshotted as the voters, polls to go to the council's group or
    each member privately (delivery_chats). Followers are told. Commits; returns the vote
    with items, suggestions, members and community loaded, items in the order asked."""
    now = now or utcnow()
    await access.require(session, principal, request.community_id, CONVENE_ROLES)
    ids = list(request.suggestion_ids)
    if not ids:
        raise RuleViolation("no_candidates", "a vote needs at least one candidate")
    if len(ids) > rules.MAX_VOTE_CANDIDATES:
        raise RuleViolation(
            "too_many_candidates", f"at most {rules.MAX_VOTE_CANDIDATES} candidates a vote"
        )
    if len(set(ids)) != len(ids):
        raise RuleViolation("duplicate_candidate", "a candidate is listed twice")
    closes_at = request.closes_at
    if closes_at.tzinfo is None:
        raise RuleViolation("closes_at_naive", "closes_at needs a time zone")
    if closes_at <= now:
        raise RuleViolation("closes_at_past", "closes_at must be in the future")
    if closes_at > now + timedelta(days=rules.MAX_VOTE_DAYS):
        raise RuleViolation("closes_at_too_far", f"a vote lasts at most {rules.MAX_VOTE_DAYS} days")
    community = await session.get(Community, request.community_id)
    assert community is not None  # access.require found its place
    quorum = _percentage(request.quorum_pct, community.council_quorum_pct, "quorum")
    threshold = _percentage(request.threshold_pct, community.council_threshold_pct, "threshold")
    members = await access.council_members(session, community.id)
    if not members:
        raise RuleViolation("council_empty", "the community's council has no members")
    found = await lock_suggestions(session, ids)
    for suggestion_id in ids:
        suggestion = found.get(suggestion_id)
        if suggestion is None:
            raise RuleViolation("unknown_suggestion", f"no suggestion {suggestion_id}")
        if suggestion.community_id != community.id:
            raise RuleViolation("candidate_other_community", f"{suggestion.number} is elsewhere")
        if suggestion.status is not State.CANDIDATE:
            raise RuleViolation(
                "not_a_candidate", f"{suggestion.number} is {suggestion.status.value}"
            )
    group = await council_chat(session, community.id)
    vote = CouncilVote(
        community_id=community.id,
        convened_by_id=principal.person_id,
        convened_at=now,
        closes_at=closes_at,
        quorum_pct=quorum,
        threshold_pct=threshold,
        council_size=len(members),
        council_chat_id=group.id if group is not None else None,
        status=VoteStatus.OPEN,
    )
    session.add(vote)
    await session.flush()
    for person in members:
        session.add(
            CouncilVoteMember(vote_id=vote.id, person_id=person.id, telegram_id=person.telegram_id)
        )
    actor = actor_of(principal)
    for position, suggestion_id in enumerate(ids, start=1):
        suggestion = found[suggestion_id]
        session.add(
            CouncilVoteItem(vote_id=vote.id, suggestion_id=suggestion.id, position=position)
        )
        await apply(session, suggestion, Action.CONVENE_VOTE, actor, details={"vote_id": vote.id})
        await _tell_followers(
            session, vote, suggestion, "convened", {"closes_at": closes_at.isoformat()}
        )
    _record_vote_event(
        session,
        vote,
        "convene",
        actor=actor,
        details={
            "numbers": [found[i].number for i in ids],
            "closes_at": closes_at.isoformat(),
            "quorum_pct": quorum,
            "threshold_pct": threshold,
            "council_size": len(members),
        },
    )
    await session.commit()
    loaded = await get_vote(session, vote.id)
    assert loaded is not None
    return loaded
