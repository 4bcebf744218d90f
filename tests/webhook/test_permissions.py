"""Who may do what, where, through the officials' API: every role × every action × a community
in its scope and one just outside it (the sibling community, the neighbouring street, the
other district). In scope: the action's success status. Out of scope: 403, and nothing
changed. No token: 401. A council member has no token at all.

World (test_officials_api.build_world): 福田区 › 沙头街道 › 新沙社区, 天安社区; 福田区 ›
香蜜湖街道 › 香蜜社区; 南山区 › 粤海街道 › 科技园社区. Each token's scope contains 新沙社区.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_officials_api import (
    World,
    api_client,
    build_world,
    candidate_in,
    closes_in,
    council_member_in,
    submit_in,
    vote_in,
)

from storage.models import CouncilVote, RoleGrant, Suggestion
from storage.rules import Role, RuleViolation, ScopeLevel, State
from storage.services import tokens
from storage.services.access import Scope
from storage.services.people import TelegramIdentity, ensure_person

Maker = async_sessionmaker[AsyncSession]
Check = Callable[[], Awaitable[None]]

# The community each role's token covers, and the nearest one it does not.
IN_SCOPE = "新沙社区"
OUT_OF_SCOPE: dict[Role, str | None] = {
    Role.COMMUNITY_STAFF: "天安社区",  # same street
    Role.STREET_OFFICIAL: "香蜜社区",  # same district, other street
    Role.DISTRICT_ADMIN: "科技园社区",  # other district
    Role.CITY_ADMIN: None,  # the city covers everything
}
ROLES = list(OUT_OF_SCOPE)


@dataclass
class Call:
    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    unchanged: Check | None = None  # after a refusal: nothing was written


async def _nothing() -> None:
    return None


def _status_is(maker: Maker, suggestion_id: int, state: State) -> Check:
    async def check() -> None:
        async with maker() as session:
            stored = await session.get(Suggestion, suggestion_id)
            assert stored is not None and stored.status is state

    return check


async def list_suggestions(maker: Maker, world: World, community: int) -> Call:
    await submit_in(maker, community)
    return Call("GET", "/api/v1/suggestions", params={"community": community})


async def get_suggestion(maker: Maker, world: World, community: int) -> Call:
    suggestion_id = await submit_in(maker, community)
    return Call("GET", f"/api/v1/suggestions/{suggestion_id}")


def _screen(maker: Maker, suggestion_id: int, body: dict[str, Any]) -> Call:
    """Screening a submitted suggestion; after a refusal it is still submitted."""
    return Call(
        "POST",
        f"/api/v1/suggestions/{suggestion_id}/screen",
        body,
        unchanged=_status_is(maker, suggestion_id, State.SUBMITTED),
    )


async def screen_accept(maker: Maker, world: World, community: int) -> Call:
    suggestion_id = await submit_in(maker, community)
    return _screen(maker, suggestion_id, {"action": "accept", "category": "safety"})


async def screen_reject(maker: Maker, world: World, community: int) -> Call:
    suggestion_id = await submit_in(maker, community)
    return _screen(maker, suggestion_id, {"action": "reject", "reason": "property_management"})


async def screen_merge(maker: Maker, world: World, community: int) -> Call:
    source, target = await submit_in(maker, community), await submit_in(maker, community)
    return _screen(maker, source, {"action": "merge", "into_id": target})


async def convene_vote(maker: Maker, world: World, community: int) -> Call:
    candidate = await candidate_in(maker, community)
    await council_member_in(maker, community, 880_000 + community)

    async def no_vote() -> None:
        await _status_is(maker, candidate, State.CANDIDATE)()
        async with maker() as session:
            assert await session.scalar(select(func.count(CouncilVote.id))) == 0

    return Call(
        "POST",
        "/api/v1/council-votes",
        {"community_id": community, "candidate_ids": [candidate], "closes_at": closes_in()},
        unchanged=no_vote,
    )


async def get_vote(maker: Maker, world: World, community: int) -> Call:
    vote_id = await vote_in(maker, community)
    return Call("GET", f"/api/v1/council-votes/{vote_id}")


async def grant_role(maker: Maker, world: World, community: int) -> Call:
    async with maker() as session:
        person = await ensure_person(session, TelegramIdentity(990_001, "候选委员"))
        await session.commit()

    async def no_grant() -> None:
        async with maker() as session:
            grants = await session.scalars(
                select(RoleGrant).where(RoleGrant.person_id == person.id)
            )
            assert grants.first() is None

    return Call(
        "POST",
        "/api/v1/roles",
        {
            "telegram_id": 990_001,
            "role": "council_member",
            "scope_level": "community",
            "scope_id": community,
        },
        unchanged=no_grant,
    )


async def revoke_role(maker: Maker, world: World, community: int) -> Call:
    person_id = await council_member_in(maker, community, next(_members))

    async def still_granted() -> None:
        async with maker() as session:
            grant = (
                await session.scalars(select(RoleGrant).where(RoleGrant.person_id == person_id))
            ).one()
            assert grant.revoked_at is None

    async with maker() as session:
        grant_id = await session.scalar(
            select(RoleGrant.id).where(RoleGrant.person_id == person_id)
        )
    return Call("DELETE", f"/api/v1/roles/{grant_id}", unchanged=still_granted)


_members = iter(range(990_100, 999_999))


Prepare = Callable[[Maker, World, int], Awaitable[Call]]
# action → (prepare, success status, roles that may never do it, wherever)
ACTIONS: dict[str, tuple[Prepare, int, frozenset[Role]]] = {
    "list suggestions": (list_suggestions, 200, frozenset()),
    "get suggestion": (get_suggestion, 200, frozenset()),
    "screen accept": (screen_accept, 200, frozenset()),
    "screen reject": (screen_reject, 200, frozenset()),
    "screen merge": (screen_merge, 200, frozenset()),
    "convene vote": (convene_vote, 201, frozenset()),
    "get vote": (get_vote, 200, frozenset()),
    # Roles are handed out from a wider scope: a community's staff grants none.
    "grant role": (grant_role, 201, frozenset({Role.COMMUNITY_STAFF})),
    "revoke role": (revoke_role, 200, frozenset({Role.COMMUNITY_STAFF})),
}

CASES = [
    pytest.param(role, action, in_scope, id=f"{role.value}-{action.replace(' ', '_')}-{where}")
    for role in ROLES
    for action in ACTIONS
    for in_scope, where in ((True, "in"), (False, "out"))
    if in_scope or OUT_OF_SCOPE[role] is not None
]


@pytest.fixture
async def world(sessionmaker: Maker) -> World:
    return await build_world(sessionmaker)


@pytest.fixture
async def client(sessionmaker: Maker) -> AsyncIterator[httpx.AsyncClient]:
    async def sender(vote_id: int) -> None:
        return None

    async with api_client(sessionmaker, sender) as http:
        yield http


async def _send(client: httpx.AsyncClient, call: Call, headers: dict[str, str]) -> httpx.Response:
    return await client.request(
        call.method, call.path, json=call.json, params=call.params, headers=headers
    )


@pytest.mark.parametrize(("role", "action", "in_scope"), CASES)
async def test_permission(
    client: httpx.AsyncClient,
    sessionmaker: Maker,
    world: World,
    role: Role,
    action: str,
    in_scope: bool,
) -> None:
    prepare, success, never = ACTIONS[action]
    where = IN_SCOPE if in_scope else OUT_OF_SCOPE[role]
    assert where is not None
    call = await prepare(sessionmaker, world, world.communities[where])
    response = await _send(client, call, world.auth(role))
    if in_scope and role not in never:
        assert response.status_code == success, response.text
        return
    assert response.status_code == 403, response.text
    expected = "role_not_allowed" if role in never else "out_of_scope"
    assert response.json()["detail"]["code"] == expected
    await (call.unchanged or _nothing)()


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("token", [None, "revoked"])
async def test_no_valid_token_is_401(
    client: httpx.AsyncClient,
    sessionmaker: Maker,
    world: World,
    action: str,
    token: str | None,
) -> None:
    prepare, _, _ = ACTIONS[action]
    call = await prepare(sessionmaker, world, world.communities[IN_SCOPE])
    headers: dict[str, str] = {}
    if token == "revoked":
        async with sessionmaker() as session:
            assert await tokens.revoke(session, world.tokens[Role.CITY_ADMIN].split("_")[1])
        headers = world.auth(Role.CITY_ADMIN)
    response = await _send(client, call, headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    await (call.unchanged or _nothing)()


async def test_a_council_member_cannot_have_a_token(sessionmaker: Maker, world: World) -> None:
    async with sessionmaker() as session:
        with pytest.raises(RuleViolation) as caught:
            await tokens.create_token(
                session,
                Role.COUNCIL_MEMBER,
                Scope(ScopeLevel.COMMUNITY, world.communities[IN_SCOPE]),
            )
    assert caught.value.code == "token_role_not_allowed"


def test_the_table_is_complete() -> None:
    # Every token role, every action, in and out of scope (the city has no outside).
    assert len(CASES) == len(ROLES) * len(ACTIONS) * 2 - len(ACTIONS)
    assert set(ROLES) == tokens.TOKEN_ROLES
