"""The audit trail (三议三公开): one event per state change, written in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEvent
from storage.rules import Role, State


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: a person acting in a role, or the system."""

    role: Role
    person_id: int | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(Role.SYSTEM)


def record(
    session: AsyncSession,
    *,
    actor: Actor,
    entity_type: str,
    entity_id: int,
    action: str,
    community_id: int | None = None,
    from_state: State | None = None,
    to_state: State | None = None,
    public: bool = True,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        actor_person_id=actor.person_id,
        actor_role=actor.role,
        entity_type=entity_type,
        entity_id=entity_id,
        community_id=community_id,
        action=action,
        from_state=from_state,
        to_state=to_state,
        public=public,
        details=details or {},
    )
    session.add(event)
    return event
