"""The officials' API (`/api/v1/...` with bearer tokens): authentication, the OpenAPI security
scheme, screening, council votes, role grants, error bodies, and personal data kept minimal.
SQLite and PostgreSQL via `sessionmaker`.

`World`, `build_world`, `api_client` and the `submit_in`/`candidate_in` helpers are shared
with test_permissions.py.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.polls import PollSender
from storage.models import AuditEvent, Community, RoleGrant, Street, Suggestion
from storage.rules import Category, Kind, Role, ScopeLevel, State
from storage.services import access, council, screening, tokens
from storage.services.access import Principal, Scope
from storage.services.org import OrgRow, import_rows
from storage.services.people import TelegramIdentity, ensure_person
from storage.services.suggestions import Draft, submit
from storage.settings import Settings
from webhook.api.officials import create_officials_router

TZ = ZoneInfo("Asia/Shanghai")
CITY = Principal(Role.CITY_ADMIN, Scope.city())
RESIDENT_NAME = "Ouyang_Secretname_Q7"
RESIDENT_USERNAME = "secret_handle_z9"
RESIDENT_TELEGRAM_ID = 987_654_321_123

ORG_ROWS = [
    OrgRow(2, "福田区", "沙头街道", "新沙社区"),
    OrgRow(3, "福田区", "沙头街道", "天安社区"),
    OrgRow(4, "福田区", "香蜜湖街道", "香蜜社区"),
    OrgRow(5, "南山区", "粤海街道", "科技园社区"),
]


@dataclass
class World:
    """Two districts: 福田区 (沙头街道: 新沙社区, 天安社区; 香蜜湖街道: 香蜜社区) and 南山区
    (粤海街道: 科技园社区); a token per role, each scoped around 新沙社区."""

    communities: dict[str, int]
    streets: dict[str, int]
    districts: dict[str, int]
    tokens: dict[Role, str] = field(default_factory=dict)

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


TOKEN_SCOPES: dict[Role, tuple[ScopeLevel, str | None]] = {
    Role.COMMUNITY_STAFF: (ScopeLevel.COMMUNITY, "新沙社区"),
    Role.STREET_OFFICIAL: (ScopeLevel.STREET, "沙头街道"),
    Role.DISTRICT_ADMIN: (ScopeLevel.DISTRICT, "福田区"),
    Role.CITY_ADMIN: (ScopeLevel.CITY, None),
}


async def build_world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    async with sessionmaker() as session:
        await import_rows(session, ORG_ROWS)
        communities = {c.name: c.id for c in (await session.scalars(select(Community))).all()}
        street_rows = (await session.scalars(select(Street))).all()
        streets = {s.name: s.id for s in street_rows}
        districts = {
            "福田区": next(s.district_id for s in street_rows if s.name == "沙头街道"),
            "南山区": next(s.district_id for s in street_rows if s.name == "粤海街道"),
        }
        world = World(communities, streets, districts)
        ids = {
            ScopeLevel.COMMUNITY: communities,
            ScopeLevel.STREET: streets,
            ScopeLevel.DISTRICT: districts,
        }
        for role, (level, name) in TOKEN_SCOPES.items():
            scope = Scope(level, ids[level][name] if name else None)
            _, world.tokens[role] = await tokens.create_token(session, role, scope)
    return world


_residents = iter(range(5_000_000, 6_000_000))


async def submit_in(
    sessionmaker: async_sessionmaker[AsyncSession],
    community_id: int,
    title: str = "楼道灯坏了",
    who: TelegramIdentity | None = None,
) -> int:
    who = who or TelegramIdentity(next(_residents), "居民")
    draft = Draft(community_id, Category.ENVIRONMENT, title, "三楼到六楼不亮。", kind=Kind.SERVICE)
    async with sessionmaker() as session:
        made = await submit(session, who, draft, tz=TZ, daily_limit=1000)
    return made.id


async def candidate_in(sessionmaker: async_sessionmaker[AsyncSession], community_id: int) -> int:
    suggestion_id = await submit_in(sessionmaker, community_id, "长者饭堂")
    async with sessionmaker() as session:
        await screening.accept(session, CITY, suggestion_id, kind=Kind.SERVICE)
    return suggestion_id


async def council_member_in(
    sessionmaker: async_sessionmaker[AsyncSession], community_id: int, telegram_id: int
) -> int:
    async with sessionmaker() as session:
        person = await ensure_person(session, TelegramIdentity(telegram_id, "议事会成员"))
        await access.grant_role(
            session, person.id, Role.COUNCIL_MEMBER, Scope(ScopeLevel.COMMUNITY, community_id)
        )
        await session.commit()
        return person.id


async def vote_in(sessionmaker: async_sessionmaker[AsyncSession], community_id: int) -> int:
    candidate = await candidate_in(sessionmaker, community_id)
    await council_member_in(sessionmaker, community_id, next(_residents))
    async with sessionmaker() as session:
        vote = await council.convene(
            session,
            CITY,
            council.ConveneRequest(
                community_id, [candidate], datetime.now(UTC) + timedelta(days=1)
            ),
        )
    return vote.id


@functools.cache
def officials_router() -> APIRouter:
    """The officials' routes, built once for the module (some 40 ms a time, for hundreds of
    tests): a router holds no state, and each test's app takes its routes from it."""
    return create_officials_router()


def make_app(
    sessionmaker: async_sessionmaker[AsyncSession], poll_sender: PollSender | None = None
) -> FastAPI:
    app = FastAPI()
    app.include_router(officials_router())
    settings = Settings(_env_file=None, timezone="Asia/Shanghai")
    app.state.runtime = SimpleNamespace(
        sessionmaker=sessionmaker, settings=settings, poll_sender=poll_sender
    )
    return app


def api_client(
    sessionmaker: async_sessionmaker[AsyncSession], poll_sender: PollSender | None = None
) -> httpx.AsyncClient:
    """An HTTP client on `make_app(sessionmaker, poll_sender)`, in process (to close)."""
    transport = httpx.ASGITransport(app=make_app(sessionmaker, poll_sender))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


@dataclass
class Sent:
    vote_ids: list[int] = field(default_factory=list)

    async def __call__(self, vote_id: int) -> None:
        self.vote_ids.append(vote_id)


@pytest.fixture
def sender() -> Sent:
    return Sent()


@pytest.fixture
async def client(
    sessionmaker: async_sessionmaker[AsyncSession], sender: Sent
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(sessionmaker, sender) as http:
        yield http


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    return await build_world(sessionmaker)


STAFF, STREET, DISTRICT, CITY_ROLE = (
    Role.COMMUNITY_STAFF,
    Role.STREET_OFFICIAL,
    Role.DISTRICT_ADMIN,
    Role.CITY_ADMIN,
)


# --- Authentication and OpenAPI -------------------------------------------------------------


async def test_openapi_declares_the_bearer_scheme_on_every_route(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    schema = make_app(sessionmaker).openapi()
    scheme = schema["components"]["securitySchemes"]["bearerToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    operations = [
        (path, method, op) for path, item in schema["paths"].items() for method, op in item.items()
    ]
    assert {(path, method) for path, method, _ in operations} >= {
        ("/api/v1/me", "get"),
        ("/api/v1/suggestions", "get"),
        ("/api/v1/suggestions/{suggestion_id}", "get"),
        ("/api/v1/suggestions/{suggestion_id}/screen", "post"),
        ("/api/v1/council-votes", "post"),
        ("/api/v1/council-votes", "get"),
        ("/api/v1/council-votes/{vote_id}", "get"),
        ("/api/v1/roles", "post"),
        ("/api/v1/roles", "get"),
        ("/api/v1/roles/{grant_id}", "delete"),
    }
    for path, method, op in operations:
        assert op["security"] == [{"bearerToken": []}], (path, method)
        assert "401" in op["responses"], (path, method)


async def test_docs_page(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with api_client(sessionmaker) as http:
        response = await http.get("/docs")
    assert response.status_code == 200 and "swagger" in response.text.lower()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer ms_00000000_" + "a" * 43,
        "Bearer not-a-token",
    ],
)
async def test_unauthenticated_is_401_with_a_challenge(
    client: httpx.AsyncClient, world: World, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get("/api/v1/suggestions", headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    detail = response.json()["detail"]
    assert detail["code"] in {"not_authenticated", "invalid_token"} and detail["message"]


@pytest.mark.parametrize(
    "path", ["/api/v1/suggestions/{id}/screen", "/api/v1/roles", "/api/v1/council-votes"]
)
@pytest.mark.parametrize("authorization", [None, "Bearer ms_00000000_" + "a" * 43])
async def test_unauthenticated_is_401_whatever_the_body(
    client: httpx.AsyncClient,
    world: World,
    sessionmaker: async_sessionmaker[AsyncSession],
    path: str,
    authorization: str | None,
) -> None:
    """A body that is not even JSON is not looked at before the token: whoever has none (or
    a bad one) hears that; a caller with a good one hears about the body."""
    suggestion = await submit_in(sessionmaker, world.communities["新沙社区"])
    url = path.format(id=suggestion)
    headers = {"content-type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    for body in (b"{not json", b'{"unexpected": 1}', b""):
        response = await client.post(url, content=body, headers=headers)
        assert response.status_code == 401, (body, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"]["code"] in {"not_authenticated", "invalid_token"}
    headers |= world.auth(STREET)
    response = await client.post(url, content=b"{not json", headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("case", ["not json", "query", "body"])
async def test_an_authenticated_422_looks_the_token_up_once(
    client: httpx.AsyncClient,
    world: World,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    """Only a body that is not JSON is found before the principal (which is then looked up
    once, to answer 401 first); any other 422 comes after the token was checked, and must not
    check it again."""
    suggestion = await submit_in(sessionmaker, world.communities["新沙社区"])
    looked_up: list[str] = []
    authenticate = tokens.authenticate_token

    async def counting(session: AsyncSession, plaintext: str, **kw: Any) -> Any:
        looked_up.append(plaintext)
        return await authenticate(session, plaintext, **kw)

    monkeypatch.setattr(tokens, "authenticate_token", counting)
    headers = world.auth(STREET)
    if case == "query":
        response = await client.get(
            "/api/v1/suggestions", params={"page_size": "lots"}, headers=headers
        )
    else:
        body = b"{not json" if case == "not json" else b'{"unexpected": 1}'
        response = await client.post(
            f"/api/v1/suggestions/{suggestion}/screen",
            content=body,
            headers=headers | {"content-type": "application/json"},
        )
    assert response.status_code == 422, response.text
    assert len(looked_up) == 1


async def test_a_revoked_token_stops_working(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    assert (await client.get("/api/v1/me", headers=world.auth(STREET))).status_code == 200
    prefix = world.tokens[STREET].split("_")[1]
    async with sessionmaker() as session:
        assert await tokens.revoke(session, prefix)
    response = await client.get("/api/v1/me", headers=world.auth(STREET))
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "invalid_token"


async def test_me(client: httpx.AsyncClient, world: World) -> None:
    response = await client.get("/api/v1/me", headers=world.auth(STREET))
    assert response.json() == {
        "role": "street_official",
        "scope_level": "street",
        "scope_id": world.streets["沙头街道"],
        "scope_name": "福田区 › 沙头街道",
    }
    response = await client.get("/api/v1/me", headers=world.auth(CITY_ROLE))
    assert response.json()["scope_name"] is None


@pytest.mark.parametrize(
    ("method", "path", "authenticated", "status_code"),
    [
        ("GET", "/api/v1/me", True, 200),
        ("HEAD", "/api/v1/suggestions", True, 200),
        ("GET", "/api/v1/roles", False, 401),
        ("GET", "/api/v1/suggestions/2147483647", True, 404),
        ("GET", "/api/v1/suggestions/0", True, 422),
        ("POST", "/api/v1/council-votes", True, 422),
    ],
)
async def test_no_answer_is_kept_in_a_cache(
    client: httpx.AsyncClient,
    world: World,
    method: str,
    path: str,
    authenticated: bool,
    status_code: int,
) -> None:
    """What officials see is for the caller alone: every answer, an error too, tells browsers
    and proxies not to store it."""
    headers = world.auth(STAFF) if authenticated else {}
    response = await client.request(method, path, headers=headers)
    assert response.status_code == status_code, response.text
    assert response.headers.get_list("cache-control") == ["no-store"]


# --- Suggestions ----------------------------------------------------------------------------


async def test_listing_is_limited_to_the_scope(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    for name in ("新沙社区", "天安社区", "香蜜社区", "科技园社区"):
        await submit_in(sessionmaker, world.communities[name], f"{name}的建议")
    seen = {}
    for role in (STAFF, STREET, DISTRICT, CITY_ROLE):
        response = await client.get("/api/v1/suggestions", headers=world.auth(role))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(body["items"])
        seen[role] = sorted(item["community"]["name"] for item in body["items"])
    assert seen == {
        STAFF: ["新沙社区"],
        STREET: ["天安社区", "新沙社区"],
        DISTRICT: ["天安社区", "新沙社区", "香蜜社区"],
        CITY_ROLE: ["天安社区", "新沙社区", "科技园社区", "香蜜社区"],
    }


async def test_listing_filters_and_pages(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    xinsha, tianan = world.communities["新沙社区"], world.communities["天安社区"]
    ids = [await submit_in(sessionmaker, xinsha, f"建议{n}") for n in range(5)]
    await submit_in(sessionmaker, tianan, "天安的")
    async with sessionmaker() as session:
        await screening.accept(session, CITY, ids[0], category=Category.CARE)
    headers = world.auth(STREET)

    async def get(**params: Any) -> dict[str, Any]:
        response = await client.get("/api/v1/suggestions", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    page = await get(community=xinsha, page_size=2, page=2)
    assert (page["total"], page["page"], page["page_size"]) == (5, 2, 2)
    assert [item["title"] for item in page["items"]] == ["建议2", "建议1"]
    assert (await get(status="candidate"))["total"] == 1
    assert (await get(category="care"))["items"][0]["id"] == ids[0]
    assert (await get(status="submitted", community=tianan))["total"] == 1
    for params in ({"status": "bogus"}, {"page_size": 101}, {"community": 0}):
        response = await client.get("/api/v1/suggestions", params=params, headers=headers)
        assert response.status_code == 422


async def test_a_community_filter_outside_the_scope_is_403_and_unknown_is_404(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.get(
        "/api/v1/suggestions",
        params={"community": world.communities["科技园社区"]},
        headers=world.auth(DISTRICT),
    )
    assert response.status_code == 403
    assert response.json() == {
        "detail": {"code": "out_of_scope", "message": "this community is outside your scope"}
    }
    response = await client.get(
        "/api/v1/suggestions", params={"community": 99999}, headers=world.auth(DISTRICT)
    )
    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "unknown_community"


async def test_one_suggestion_as_officials_see_it(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    who = TelegramIdentity(RESIDENT_TELEGRAM_ID, RESIDENT_NAME, RESIDENT_USERNAME)
    suggestion_id = await submit_in(sessionmaker, world.communities["新沙社区"], who=who)
    response = await client.get(f"/api/v1/suggestions/{suggestion_id}", headers=world.auth(STAFF))
    assert response.status_code == 200
    body = response.json()
    async with sessionmaker() as session:
        stored = await session.get(Suggestion, suggestion_id)
        assert stored is not None
    assert body["proposer_id"] == stored.proposer_id
    assert body["community"] == {
        "id": world.communities["新沙社区"],
        "name": "新沙社区",
        "street": "沙头街道",
        "district": "福田区",
    }
    assert body["status"] == "submitted"
    assert body["allowed_actions"] == ["begin_review"]
    for secret in (RESIDENT_NAME, RESIDENT_USERNAME, str(RESIDENT_TELEGRAM_ID)):
        assert secret not in response.text
    assert "telegram" not in response.text and "photo_file_ids" not in response.text
    missing = await client.get("/api/v1/suggestions/99999", headers=world.auth(STAFF))
    assert missing.status_code == 404
    assert missing.json()["detail"]["code"] == "unknown_suggestion"


# --- Screening ------------------------------------------------------------------------------


async def screen(
    client: httpx.AsyncClient, world: World, suggestion_id: int, body: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        f"/api/v1/suggestions/{suggestion_id}/screen", json=body, headers=world.auth(STAFF)
    )


async def test_accept_with_corrections(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    suggestion_id = await submit_in(sessionmaker, world.communities["新沙社区"])
    response = await screen(
        client,
        world,
        suggestion_id,
        {"action": "accept", "category": "safety", "kind": "service", "note": "好建议"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["category"], body["kind"]) == ("candidate", "safety", "service")
    assert "convene_vote" in body["allowed_actions"]
    again = await screen(client, world, suggestion_id, {"action": "accept"})
    assert again.status_code == 409
    assert again.json()["detail"]["code"] == "transition_not_allowed"


async def test_reject(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    suggestion_id = await submit_in(sessionmaker, world.communities["新沙社区"])
    response = await screen(client, world, suggestion_id, {"action": "reject", "reason": "other"})
    assert response.status_code == 422
    assert response.json()["detail"]["code"] == "note_required"
    response = await screen(
        client,
        world,
        suggestion_id,
        {"action": "reject", "reason": "property_management", "note": "物业负责"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["exclusion_reason"], body["exclusion_note"]) == (
        "rejected",
        "property_management",
        "物业负责",
    )


async def test_merge(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    xinsha = world.communities["新沙社区"]
    source, target = await submit_in(sessionmaker, xinsha), await submit_in(sessionmaker, xinsha)
    elsewhere = await submit_in(sessionmaker, world.communities["天安社区"])
    response = await screen(client, world, source, {"action": "merge", "into_id": source})
    assert (response.status_code, response.json()["detail"]["code"]) == (422, "merge_into_self")
    response = await screen(client, world, source, {"action": "merge", "into_id": 99999})
    assert (response.status_code, response.json()["detail"]["code"]) == (
        404,
        "unknown_suggestion",
    )
    response = await screen(client, world, source, {"action": "merge", "into_id": target})
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["merged_into_id"]) == ("merged", target)
    response = await client.post(
        f"/api/v1/suggestions/{target}/screen",
        json={"action": "merge", "into_id": elsewhere},
        headers=world.auth(STREET),
    )
    assert (response.status_code, response.json()["detail"]["code"]) == (
        422,
        "merge_other_community",
    )


@pytest.mark.parametrize(
    "body",
    [
        {"action": "approve"},
        {},
        {"action": "reject"},
        {"action": "reject", "reason": "too_expensive"},
        {"action": "merge"},
        {"action": "merge", "into_id": "x"},
        {"action": "accept", "reason": "other"},
        {"action": "accept", "category": "food"},
        {"action": "accept", "note": "x" * 501},
    ],
)
async def test_screen_bodies_that_do_not_validate(
    client: httpx.AsyncClient,
    world: World,
    sessionmaker: async_sessionmaker[AsyncSession],
    body: dict[str, Any],
) -> None:
    suggestion_id = await submit_in(sessionmaker, world.communities["新沙社区"])
    response = await screen(client, world, suggestion_id, body)
    assert response.status_code == 422, response.text
    async with sessionmaker() as session:
        stored = await session.get(Suggestion, suggestion_id)
        assert stored is not None and stored.status is State.SUBMITTED


# --- Council votes --------------------------------------------------------------------------


def closes_in(days: float = 2) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def test_convene_sends_the_polls_and_shows_the_vote(
    client: httpx.AsyncClient,
    world: World,
    sessionmaker: async_sessionmaker[AsyncSession],
    sender: Sent,
) -> None:
    xinsha = world.communities["新沙社区"]
    first, second = (
        await candidate_in(sessionmaker, xinsha),
        await candidate_in(sessionmaker, xinsha),
    )
    members = [await council_member_in(sessionmaker, xinsha, 700 + n) for n in range(3)]
    response = await client.post(
        "/api/v1/council-votes",
        json={
            "community_id": xinsha,
            "candidate_ids": [second, first],
            "closes_at": closes_in(),
            "quorum_pct": 60,
        },
        headers=world.auth(STAFF),
    )
    assert response.status_code == 201, response.text
    vote = response.json()
    assert sender.vote_ids == [vote["id"]]
    assert (vote["status"], vote["council_size"], vote["quorum_pct"]) == ("open", 3, 60)
    assert vote["threshold_pct"] == 50  # the community's rules
    assert vote["delivery"] == "private"
    assert [item["suggestion_id"] for item in vote["items"]] == [second, first]
    assert all(item["status"] == "council_vote" for item in vote["items"])
    assert vote["items"][0]["not_voted"] == members

    # Two members answer (polls recorded as the bot would): officials see who voted how.
    async with sessionmaker() as session:
        stored = await council.get_vote(session, vote["id"])
        assert stored is not None
        item = stored.items[0]
        await council.record_poll(session, item.id, "poll-1", 700, 1)
        await council.record_answer(session, "poll-1", 700, [0])
        await council.record_answer(session, "poll-1", 701, [1])
        await council.record_answer(session, "poll-1", 999, [0])  # not a member
        await session.commit()
    response = await client.get(f"/api/v1/council-votes/{vote['id']}", headers=world.auth(STREET))
    assert response.status_code == 200
    item = response.json()["items"][0]
    assert (item["agree"], item["against"], item["abstain"], item["voters"]) == (1, 1, 0, 2)
    assert item["polls_sent"] == 1
    assert item["not_voted"] == [members[2]]
    ballots = {(b["person_id"], b["choice"], b["counted"]) for b in item["ballots"]}
    assert ballots == {
        (members[0], "agree", True),
        (members[1], "against", True),
        (None, "agree", False),
    }
    assert "telegram" not in response.text

    for role in (STAFF, STREET, DISTRICT, CITY_ROLE):
        listed = await client.get(
            "/api/v1/council-votes", params={"status": "open"}, headers=world.auth(role)
        )
        assert [v["id"] for v in listed.json()] == [vote["id"]], role


async def test_listing_votes_takes_the_same_queries_for_many_as_for_one(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Each listed vote carries its ballots and counts as its own page shows them, read for
    all the votes at once rather than vote by vote."""
    xinsha = world.communities["新沙社区"]
    member = await council_member_in(sessionmaker, xinsha, 700)
    engine = sessionmaker.kw["bind"]
    statements: list[str] = []

    def count(*args: Any) -> None:
        if "api_token" not in args[2]:  # the token's use is stamped at most once a minute
            statements.append(args[2])

    async def convene_one() -> int:
        response = await client.post(
            "/api/v1/council-votes",
            json={
                "community_id": xinsha,
                "candidate_ids": [await candidate_in(sessionmaker, xinsha)],
                "closes_at": closes_in(),
            },
            headers=world.auth(STAFF),
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    async def listing() -> tuple[list[dict[str, Any]], int]:
        statements.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            response = await client.get("/api/v1/council-votes", headers=world.auth(STREET))
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
        assert response.status_code == 200, response.text
        return response.json(), len(statements)

    first = await convene_one()
    async with sessionmaker() as session:
        stored = await council.get_vote(session, first)
        assert stored is not None
        await council.record_poll(session, stored.items[0].id, "poll-1", 700, 1)
        await council.record_answer(session, "poll-1", 700, [2])
        await session.commit()
    _, with_one = await listing()
    ids = [await convene_one() for _ in range(3)] + [first]
    listed, with_four = await listing()

    assert with_four == with_one
    assert [vote["id"] for vote in listed] == sorted(ids, reverse=True)  # newest first
    for vote in listed:
        alone = await client.get(f"/api/v1/council-votes/{vote['id']}", headers=world.auth(STREET))
        assert vote == alone.json()
    answered = next(vote for vote in listed if vote["id"] == first)["items"][0]
    assert (answered["abstain"], answered["voters"], answered["not_voted"]) == (1, 1, [])
    assert all(v["items"][0]["not_voted"] == [member] for v in listed if v["id"] != first)


async def convene_with(
    poll_sender: PollSender | None, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> httpx.Response:
    """新沙's staff convene its council (one member) on a new candidate, in a process whose
    runtime has this poll sender."""
    xinsha = world.communities["新沙社区"]
    candidate = await candidate_in(sessionmaker, xinsha)
    await council_member_in(sessionmaker, xinsha, 700)
    async with api_client(sessionmaker, poll_sender) as http:
        return await http.post(
            "/api/v1/council-votes",
            json={"community_id": xinsha, "candidate_ids": [candidate], "closes_at": closes_in()},
            headers=world.auth(STAFF),
        )


async def test_convene_without_a_poll_sender_still_stores_the_vote(
    world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await convene_with(None, world, sessionmaker)
    assert response.status_code == 201


async def test_a_failing_poll_sender_does_not_undo_the_vote(
    world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async def broken(vote_id: int) -> None:
        raise RuntimeError("Telegram is down")

    response = await convene_with(broken, world, sessionmaker)
    assert response.status_code == 201
    assert response.json()["items"][0]["status"] == "council_vote"


async def test_convene_errors(
    client: httpx.AsyncClient,
    world: World,
    sessionmaker: async_sessionmaker[AsyncSession],
    sender: Sent,
) -> None:
    xinsha = world.communities["新沙社区"]
    candidate = await candidate_in(sessionmaker, xinsha)
    submitted = await submit_in(sessionmaker, xinsha)
    headers = world.auth(STAFF)

    async def convene(**body: Any) -> tuple[int, Any]:
        payload = {"community_id": xinsha, "candidate_ids": [candidate], "closes_at": closes_in()}
        response = await client.post("/api/v1/council-votes", json=payload | body, headers=headers)
        detail = response.json()["detail"]
        return response.status_code, detail.get("code") if isinstance(detail, dict) else None

    assert await convene() == (409, "council_empty")
    await council_member_in(sessionmaker, xinsha, 700)
    naive = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None).isoformat()
    assert await convene(closes_at=naive) == (422, None)
    assert await convene(closes_at=closes_in(-1)) == (422, "closes_at_past")
    assert await convene(closes_at=closes_in(60)) == (422, "closes_at_too_far")
    assert await convene(candidate_ids=[]) == (422, None)
    assert await convene(candidate_ids=[candidate, candidate]) == (422, "duplicate_candidate")
    assert await convene(candidate_ids=[submitted]) == (409, "not_a_candidate")
    assert await convene(candidate_ids=[99999]) == (404, "unknown_suggestion")
    assert await convene(quorum_pct=100) == (422, None)
    # The council's own rules (50 % / 50 %) may be made stricter for a vote, not looser.
    assert await convene(quorum_pct=0, threshold_pct=0) == (422, "quorum_below_rules")
    assert await convene(threshold_pct=49) == (422, "threshold_below_rules")
    assert await convene(community_id=99999) == (404, "unknown_community")
    assert await convene(extra=1) == (422, None)
    assert sender.vote_ids == []
    async with sessionmaker() as session:
        stored = await session.get(Suggestion, candidate)
        assert stored is not None and stored.status is State.CANDIDATE
    missing = await client.get("/api/v1/council-votes/99999", headers=headers)
    assert (missing.status_code, missing.json()["detail"]["code"]) == (404, "unknown_vote")


# --- Roles ----------------------------------------------------------------------------------


async def test_grant_a_role(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        person = await ensure_person(session, TelegramIdentity(4242, "新委员"))
        await session.commit()
    body = {
        "telegram_id": 4242,
        "role": "council_member",
        "scope_level": "community",
        "scope_id": world.communities["天安社区"],
    }
    response = await client.post("/api/v1/roles", json=body, headers=world.auth(STREET))
    assert response.status_code == 201, response.text
    granted = response.json()
    assert (granted["person_id"], granted["role"], granted["scope_id"]) == (
        person.id,
        "council_member",
        world.communities["天安社区"],
    )
    again = await client.post("/api/v1/roles", json=body, headers=world.auth(STREET))
    assert again.status_code == 200 and again.json()["id"] == granted["id"]
    async with sessionmaker() as session:
        members = await access.council_members(session, world.communities["天安社区"])
        assert [m.id for m in members] == [person.id]

    cases = [
        (body | {"telegram_id": 1}, STREET, 404, "unknown_person"),
        (body | {"scope_level": "street"}, STREET, 422, "scope_mismatch"),
        (body | {"scope_id": 99999}, STREET, 404, "unknown_scope"),
        (body | {"role": "proposer"}, CITY_ROLE, 422, None),
        (body | {"role": "street_official", "scope_level": "street",
                 "scope_id": world.streets["沙头街道"]}, STREET, 403, "out_of_scope"),
        (body, STAFF, 403, "role_not_allowed"),
    ]  # fmt: skip
    for payload, role, status_code, code in cases:
        response = await client.post("/api/v1/roles", json=payload, headers=world.auth(role))
        assert response.status_code == status_code, (payload, response.text)
        if code is not None:
            assert response.json()["detail"]["code"] == code
    async with sessionmaker() as session:
        assert len((await session.scalars(select(RoleGrant))).all()) == 1


async def test_granting_a_role_held_already_is_200(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """201 Created only when a grant was made: a role the person holds already is their grant
    as it was, with 200."""
    xinsha = world.communities["新沙社区"]
    person = await council_member_in(sessionmaker, xinsha, 7_654_321)
    body = {
        "telegram_id": 7_654_321,
        "role": "council_member",
        "scope_level": "community",
        "scope_id": xinsha,
    }
    response = await client.post("/api/v1/roles", json=body, headers=world.auth(STREET))
    assert response.status_code == 200, response.text
    held = response.json()
    assert (held["person_id"], held["role"], held["revoked_at"]) == (
        person,
        "council_member",
        None,
    )
    async with sessionmaker() as session:
        [grant] = (await session.scalars(select(RoleGrant))).all()
    assert held["id"] == grant.id
    # Once revoked, granting it again makes a new grant.
    await client.delete(f"/api/v1/roles/{grant.id}", headers=world.auth(STREET))
    again = await client.post("/api/v1/roles", json=body, headers=world.auth(STREET))
    assert again.status_code == 201 and again.json()["id"] != grant.id
    schema = (await client.get("/openapi.json")).json()
    assert {"200", "201"} <= set(schema["paths"]["/api/v1/roles"]["post"]["responses"])


async def test_list_and_revoke_roles(
    client: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A street official sees the roles of its communities and revokes a council member's;
    the next vote's members leave them out. Another street's grants are neither listed nor
    revocable, and community staff may do neither."""
    xinsha, yuehai = world.communities["新沙社区"], world.communities["科技园社区"]
    leaving = await council_member_in(sessionmaker, xinsha, 7001)
    staying = await council_member_in(sessionmaker, xinsha, 7002)
    elsewhere = await council_member_in(sessionmaker, yuehai, 7003)

    listed = await client.get("/api/v1/roles", headers=world.auth(STREET))
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert page["total"] == 2 and (page["page"], page["page_size"]) == (1, 50)
    by_person = {item["person_id"]: item for item in page["items"]}
    assert set(by_person) == {leaving, staying}
    assert (by_person[leaving]["telegram_id"], by_person[leaving]["first_name"]) == (
        7001,
        "议事会成员",
    )
    revoked_id = by_person[leaving]["id"]

    response = await client.delete(f"/api/v1/roles/{revoked_id}", headers=world.auth(STREET))
    assert response.status_code == 200, response.text
    revoked = response.json()
    assert revoked["id"] == revoked_id and revoked["revoked_at"] is not None
    again = await client.delete(f"/api/v1/roles/{revoked_id}", headers=world.auth(STREET))
    assert again.json()["revoked_at"] == revoked["revoked_at"]
    async with sessionmaker() as session:
        members = await access.council_members(session, xinsha)
        assert [m.id for m in members] == [staying]
        [event] = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "role_revoked"))
        ).all()
        assert (event.entity_id, event.public, event.actor_role) == (leaving, False, STREET)
    remaining = await client.get("/api/v1/roles?role=council_member", headers=world.auth(STREET))
    assert [item["person_id"] for item in remaining.json()["items"]] == [staying]

    city = (await client.get("/api/v1/roles", headers=world.auth(CITY_ROLE))).json()
    assert {item["person_id"] for item in city["items"]} == {staying, elsewhere}
    async with sessionmaker() as session:
        grant_elsewhere = (
            await session.scalars(select(RoleGrant).where(RoleGrant.person_id == elsewhere))
        ).one()
    cases = [
        (f"/api/v1/roles/{grant_elsewhere.id}", STREET, 403, "out_of_scope"),
        ("/api/v1/roles/99999", STREET, 404, "unknown_grant"),
        (f"/api/v1/roles/{grant_elsewhere.id}", STAFF, 403, "role_not_allowed"),
    ]
    for url, role, status_code, code in cases:
        response = await client.delete(url, headers=world.auth(role))
        assert (response.status_code, response.json()["detail"]["code"]) == (status_code, code)
    assert (await client.get("/api/v1/roles", headers=world.auth(STAFF))).status_code == 403
    district = await client.get("/api/v1/roles", headers=world.auth(DISTRICT))
    assert {i["person_id"] for i in district.json()["items"]} == {staying}


async def test_council_members_get_no_token(session: AsyncSession, world: World) -> None:
    with pytest.raises(Exception) as caught:
        await tokens.create_token(
            session,
            Role.COUNCIL_MEMBER,
            Scope(ScopeLevel.COMMUNITY, world.communities["新沙社区"]),
        )
    assert getattr(caught.value, "code", None) == "token_role_not_allowed"
