"""The audit trail (三议三公开): one event per state change, written in the same transaction.

Who acted is the actor's role and, when known, their person. An action taken through the
officials' API is also attributed to the bearer token that asked: `attribute_to_token` marks
the request's session, and every event recorded in that session then carries the token's
public prefix (`ms_1a2b3c4d`, never its secret or hash) under `details["token"]`. That key is
for officials only: the public readers (storage.services.public) select the details they
publish by name, and this is not one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEvent
from storage.rules import Role, State

# The key of an event's details naming the officials' API token that acted.
TOKEN_DETAIL = "token"
# Where the acting token is kept on a session (Session.info, one request's unit of work).
_SESSION_TOKEN = "minsheng.audit.acting_token"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: a person acting in a role, or the system."""

    role: Role
    person_id: int | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(Role.SYSTEM)


def attribute_to_token(session: AsyncSession, token: str) -> None:
    """Everything `session` records from now on was asked for with the API token `token`
    (its public name, `ms_<prefix>`). The front end calls this once it has authenticated the
    request; the session is that request's own, so nothing else is attributed to it."""
    session.info[_SESSION_TOKEN] = token


def acting_token(session: AsyncSession) -> str | None:
    """The API token `session`'s events are attributed to, if any."""
    token = session.info.get(_SESSION_TOKEN)
    return token if isinstance(token, str) else None


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
    details = dict(details or {})
    token = acting_token(session)
    if token is not None:
        details[TOKEN_DETAIL] = token
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
        details=details,
    )
    session.add(event)
    return event


__all__ = ["TOKEN_DETAIL", "Actor", "acting_token", "attribute_to_token", "record"]
