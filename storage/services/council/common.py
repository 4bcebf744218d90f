"""What the council's votes share: who may convene a vote and see its ballots, loading a vote,
the tally of counted ballots, and the audit events and followers' notices of a vote.

The rest of storage.services.council builds on this module, which imports none of it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage import rules
from storage.models import Ballot, CouncilVote, CouncilVoteItem, NotificationKind, Suggestion
from storage.rules import Action, Choice, State
from storage.services import audit, notifications
from storage.services.audit import Actor

CONVENE_ROLES = rules.roles_for(Action.CONVENE_VOTE, State.CANDIDATE)
# Who may see who voted how: the officials who may convene, within their scope.
DETAIL_ROLES = CONVENE_ROLES


# A ballot that counts towards the tally: a member's answer in time, not retracted.
_COUNTED_CHOICE = and_(Ballot.counted.is_(True), Ballot.choice.is_not(None))


def _vote_options() -> Any:
    return (
        selectinload(CouncilVote.items).selectinload(CouncilVoteItem.suggestion),
        selectinload(CouncilVote.members),
        selectinload(CouncilVote.community),
    )


def lease_free(now: datetime) -> ColumnElement[bool]:
    """No replica holds the vote's polls lease at `now` (sending its polls while it is open,
    stopping them once closed): none was taken, or the last one ran out."""
    return CouncilVote.polls_lease_until.is_(None) | (CouncilVote.polls_lease_until < now)


async def get_vote(session: AsyncSession, vote_id: int) -> CouncilVote | None:
    """The vote with its items, their suggestions, the member snapshot and the community."""
    query = (
        select(CouncilVote)
        .where(CouncilVote.id == vote_id)
        .options(*_vote_options())
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(query)).first()


async def _tally(session: AsyncSession, item_ids: list[int]) -> dict[int, dict[Choice, int]]:
    counts: dict[int, dict[Choice, int]] = {i: dict.fromkeys(Choice, 0) for i in item_ids}
    rows = await session.execute(
        select(Ballot.item_id, Ballot.choice, func.count())
        .where(Ballot.item_id.in_(item_ids), _COUNTED_CHOICE)
        .group_by(Ballot.item_id, Ballot.choice)
    )
    for item_id, choice, count in rows.all():
        counts[item_id][Choice(choice)] = int(count)
    return counts


def _record_vote_event(
    session: AsyncSession,
    vote: CouncilVote,
    action: str,
    *,
    details: dict[str, Any],
    actor: Actor | None = None,
    public: bool = True,
) -> None:
    """The audit event of something that happened to the vote itself (convened, a poll
    refused, closed); by the system unless an `actor` is named."""
    audit.record(
        session,
        actor=actor or Actor.system(),
        entity_type="council_vote",
        entity_id=vote.id,
        community_id=vote.community_id,
        action=action,
        public=public,
        details=details,
    )


async def _tell_followers(
    session: AsyncSession,
    vote: CouncilVote,
    suggestion: Suggestion,
    stage: str,
    params: dict[str, Any],
) -> None:
    """`suggestion_status` to the suggestion's followers: where it stands now that the vote
    has reached `stage` (convened, closed), with the stage's `params`."""
    await notifications.notify_followers(
        session,
        suggestion,
        NotificationKind.SUGGESTION_STATUS,
        notifications.about(suggestion)
        | {"status": suggestion.status.value, "vote_id": vote.id}
        | params,
        dedupe_prefix=f"vote:{vote.id}:{stage}:{suggestion.id}",
    )
