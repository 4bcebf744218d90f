"""Open data (`/api/v1/public/suggestions`, `/api/v1/public/projects`): shape, filters, paging,
validation, and no personal data of residents. SQLite and PostgreSQL via `sessionmaker`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from public_data import (
    SECRET_LATITUDE,
    SECRET_NAME,
    SECRET_PHOTO,
    VOTER_NAME,
    VOTER_TELEGRAM_ID,
    add_suggestion,
    assert_no_secrets,
    put_to_vote,
    seed_org,
)
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Project, Suggestion, VoteOutcome
from storage.rules import Category, ExclusionReason, Kind, SourceType, State
from storage.services.suggestions import Draft

pytest_plugins = ["public_data"]

SUGGESTION_FIELDS = {
    "number",
    "community",
    "category",
    "kind",
    "title",
    "description",
    "location_text",
    "status",
    "source_type",
    "estimated_cost_fen",
    "exclusion_reason",
    "merged_into",
    "council_vote",
    "created_at",
}


async def seed(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    ids = await seed_org(sessionmaker)
    await add_suggestion(
        sessionmaker,
        Draft(
            ids["新沙社区"],
            Category.ENVIRONMENT,
            "楼道灯坏了",
            "三楼到六楼不亮。",
            location_text="新沙村12栋",
            latitude=SECRET_LATITUDE,
            longitude=114.0412345,
            photo_file_ids=[SECRET_PHOTO],
            kind=Kind.PHYSICAL,
            estimated_cost_fen=1_234_505,
        ),
        created_at=datetime(2026, 3, 1, 17, 0, tzinfo=UTC),
    )
    await add_suggestion(
        sessionmaker,
        Draft(ids["新沙社区"], Category.SAFETY, "井盖松动", "路口井盖松动。"),
        created_at=datetime(2026, 3, 2, 1, 0, tzinfo=UTC),
        status=State.REJECTED,
        exclusion_reason=ExclusionReason.GOVERNMENT_INVESTMENT,
        exclusion_note=f"见 {SECRET_NAME} 来电",
    )
    await add_suggestion(
        sessionmaker,
        Draft(
            ids["上沙社区"],
            Category.CARE,
            "长者饭堂",
            "希望开设长者饭堂。",
            source_type=SourceType.SOCIAL_ORGANISATION,
        ),
        created_at=datetime(2026, 3, 3, 1, 0, tzinfo=UTC),
        status=State.CANDIDATE,
    )
    return ids


def assert_private(body: str) -> None:
    assert_no_secrets(body)
    for word in ("proposer", "telegram", "photo", "latitude", "longitude", "exclusion_note"):
        assert word not in body, word


async def test_suggestions_shape(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    ids = await seed(sessionmaker)
    response = await client.get("/api/v1/public/suggestions")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"items", "total", "page", "page_size"}
    assert (body["total"], body["page"], body["page_size"]) == (3, 1, 50)
    assert [item["title"] for item in body["items"]] == ["长者饭堂", "井盖松动", "楼道灯坏了"]
    lamp = body["items"][2]
    assert set(lamp) == SUGGESTION_FIELDS
    assert lamp["community"] == {
        "id": ids["新沙社区"],
        "name": "新沙社区",
        "street": "沙头街道",
        "district": "福田区",
    }
    assert lamp["number"].startswith("新沙-")
    assert (lamp["category"], lamp["kind"], lamp["status"]) == (
        "environment",
        "physical",
        "submitted",
    )
    assert lamp["source_type"] == "resident"
    assert lamp["location_text"] == "新沙村12栋"
    assert lamp["estimated_cost_fen"] == 1_234_505 and isinstance(lamp["estimated_cost_fen"], int)
    created = datetime.fromisoformat(lamp["created_at"].replace("Z", "+00:00"))
    assert created == datetime(2026, 3, 1, 17, 0, tzinfo=UTC)
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0
    cover = body["items"][1]
    assert cover["exclusion_reason"] == "government_investment" and cover["kind"] is None
    assert cover["estimated_cost_fen"] is None
    assert body["items"][0]["source_type"] == "social_organisation"
    assert all(
        item["council_vote"] is None and item["merged_into"] is None for item in body["items"]
    )
    assert_private(response.text)


async def test_council_votes_and_merges_in_open_data(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    ids = await seed(sessionmaker)
    closes = datetime(2026, 3, 20, 10, 0, tzinfo=UTC)
    # An earlier sitting without quorum, then the one that decided (early); one still open.
    earlier = closes - timedelta(days=9)
    await put_to_vote(
        sessionmaker,
        ids["新沙社区"],
        {"楼道灯坏了": (1, 0, 0, VoteOutcome.NO_QUORUM)},
        closes_at=earlier,
        closed_at=earlier,
    )
    await put_to_vote(
        sessionmaker,
        ids["新沙社区"],
        {"楼道灯坏了": (4, 1, 0, VoteOutcome.RESOLVED)},
        closes_at=closes,
        closed_at=closes - timedelta(hours=5),
    )
    await put_to_vote(sessionmaker, ids["上沙社区"], {"长者饭堂": None}, closes_at=closes)
    async with sessionmaker() as session:
        lamp = (
            await session.scalars(select(Suggestion).where(Suggestion.title == "楼道灯坏了"))
        ).one()
        await session.execute(
            update(Suggestion)
            .where(Suggestion.title == "井盖松动")
            .values(status=State.MERGED, merged_into_id=lamp.id, exclusion_reason=None)
        )
        await session.commit()
    response = await client.get("/api/v1/public/suggestions")
    by_title = {item["title"]: item for item in response.json()["items"]}

    decided = by_title["楼道灯坏了"]["council_vote"]
    assert decided == {
        "status": "closed",
        "closes_at": "2026-03-20T10:00:00Z",
        "closed_at": "2026-03-20T05:00:00Z",
        "agree": 4,
        "against": 1,
        "abstain": 0,
        "outcome": "resolved",
    }
    # An open vote publishes its deadline only.
    assert by_title["长者饭堂"]["council_vote"] == {
        "status": "open",
        "closes_at": "2026-03-20T10:00:00Z",
        "closed_at": None,
        "agree": None,
        "against": None,
        "abstain": None,
        "outcome": None,
    }
    assert by_title["井盖松动"]["merged_into"] == by_title["楼道灯坏了"]["number"]
    assert by_title["井盖松动"]["council_vote"] is None
    assert by_title["楼道灯坏了"]["merged_into"] is None
    assert VOTER_NAME not in response.text and str(VOTER_TELEGRAM_ID) not in response.text
    for word in ("ballot", "choice", "voter", "member"):
        assert word not in response.text, word
    assert_private(response.text)


async def test_suggestion_filters(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    ids = await seed(sessionmaker)

    async def titles(**params: object) -> list[str]:
        response = await client.get("/api/v1/public/suggestions", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(body["items"])
        return sorted(item["title"] for item in body["items"])

    assert await titles(community=ids["新沙社区"]) == ["井盖松动", "楼道灯坏了"]
    assert await titles(community=ids["科技园社区"]) == []
    assert await titles(status="candidate") == ["长者饭堂"]
    assert await titles(status="rejected", community=ids["新沙社区"]) == ["井盖松动"]
    assert await titles(category="environment") == ["楼道灯坏了"]
    assert await titles(category="care", community=ids["新沙社区"]) == []


@pytest.mark.parametrize(
    "params",
    [
        {"status": "bogus"},
        {"status": "SUBMITTED"},
        {"category": "food"},
        {"community": "abc"},
        {"community": "0"},
        {"community": str(2**40)},
        {"page": "0"},
        {"page": "x"},
        {"page_size": "0"},
        {"page_size": "101"},
    ],
)
async def test_bad_parameters_are_422(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    params: dict[str, str],
) -> None:
    for path in ("/api/v1/public/suggestions", "/api/v1/public/projects"):
        response = await client.get(path, params=params)
        assert response.status_code == 422, (path, params)
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", next(iter(params))]
        assert error["msg"]


async def test_unknown_community_is_422(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await seed(sessionmaker)
    for path in ("/api/v1/public/suggestions", "/api/v1/public/projects"):
        response = await client.get(path, params={"community": 999_999})
        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", "community"]
        assert "999999" in error["msg"]


async def test_pagination(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await seed(sessionmaker)
    seen = []
    for page in (1, 2):
        body = (
            await client.get("/api/v1/public/suggestions", params={"page": page, "page_size": 2})
        ).json()
        assert (body["total"], body["page"], body["page_size"]) == (3, page, 2)
        seen += [item["number"] for item in body["items"]]
    assert len(seen) == len(set(seen)) == 3
    body = (await client.get("/api/v1/public/suggestions", params={"page": 9})).json()
    assert body["items"] == [] and body["total"] == 3
    body = (await client.get("/api/v1/public/suggestions", params={"page_size": 100})).json()
    assert body["page_size"] == 100 and len(body["items"]) == 3


async def test_projects(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    empty = (await client.get("/api/v1/public/projects")).json()
    assert empty == {"items": [], "total": 0, "page": 1, "page_size": 50}

    ids = await seed(sessionmaker)
    async with sessionmaker() as session:
        project = Project(
            community_id=ids["新沙社区"],
            title="楼道照明改造",
            category=Category.ENVIRONMENT,
            kind=Kind.PHYSICAL,
            status=State.PUBLISHED,
            budget_fen=3_000_050,
            batch="2026-1",
            expected_benefit="三栋楼的居民夜间出行安全",
            implementer="深圳某照明工程有限公司",
            created_at=datetime(2026, 4, 1, tzinfo=UTC),
        )
        session.add(project)
        await session.flush()
        await session.execute(
            update(Suggestion)
            .where(Suggestion.title == "楼道灯坏了")
            .values(project_id=project.id, status=State.PUBLISHED)
        )
        await session.commit()

    response = await client.get("/api/v1/public/projects")
    body = response.json()
    assert body["total"] == 1
    [item] = body["items"]
    assert item["title"] == "楼道照明改造" and item["status"] == "published"
    assert item["budget_fen"] == 3_000_050 and isinstance(item["budget_fen"], int)
    assert item["spent_fen"] is None
    assert item["community"]["name"] == "新沙社区" and item["community"]["district"] == "福田区"
    assert len(item["suggestion_numbers"]) == 1 and item["suggestion_numbers"][0].startswith(
        "新沙-"
    )
    assert item["created_at"].startswith("2026-04-01T00:00:00")
    assert_private(response.text)

    async def count(**params: object) -> int:
        response = await client.get("/api/v1/public/projects", params=params)
        assert response.status_code == 200
        total: int = response.json()["total"]
        return total

    assert await count(status="published") == 1
    assert await count(status="started") == 0
    assert await count(category="environment", community=ids["新沙社区"]) == 1
    assert await count(community=ids["上沙社区"]) == 0


@pytest.mark.parametrize(
    ("status", "published"),
    [
        (State.STARTED, False),
        (State.COMPLETED, False),
        (State.CANCELLED, False),
        (State.ACCOUNTS_PUBLISHED, True),
        (State.EVALUATED, True),
    ],
)
async def test_spending_is_published_with_the_accounts(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    status: State,
    published: bool,
) -> None:
    """What a project has spent is open data once its audit and final accounts are published
    (审计决算), not while the work is under way."""
    ids = await seed_org(sessionmaker)
    async with sessionmaker() as session:
        session.add(
            Project(
                community_id=ids["新沙社区"],
                title="楼道灯更换",
                category=Category.SAFETY,
                kind=Kind.PHYSICAL,
                status=status,
                budget_fen=1_000_000,
                spent_fen=432_100,
            )
        )
        await session.commit()
    [item] = (await client.get("/api/v1/public/projects")).json()["items"]
    assert item["status"] == status.value
    assert item["spent_fen"] == (432_100 if published else None)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/public/suggestions",
        "/api/v1/public/suggestions?status=bogus",  # a 422
        "/api/v1/public/projects",
        "/api/v1/public/suggestions/{number}/events",
        "/api/v1/public/suggestions/P-2025-9999/events",  # a 404
    ],
)
async def test_head_is_answered_like_get(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient, path: str
) -> None:
    """HEAD (uptime probes, link checkers): GET's status and headers, and no body."""
    await seed(sessionmaker)
    async with sessionmaker() as session:
        number = await session.scalar(select(Suggestion.number).order_by(Suggestion.id))
    assert number is not None
    path = path.format(number=quote(number, safe=""))
    get = await client.get(path)
    head = await client.head(path)
    assert head.status_code == get.status_code
    assert head.headers == get.headers
    assert head.content == b"" and get.content


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    for path in ("/api/v1/public/suggestions", "/api/v1/public/projects"):
        operation = schema["paths"][path]["get"]
        names = {p["name"] for p in operation["parameters"]}
        assert names == {"community", "status", "category", "page", "page_size"}
        assert "422" in operation["responses"]
    components = schema["components"]["schemas"]
    assert set(components["SuggestionOut"]["properties"]) == SUGGESTION_FIELDS
    assert "proposer" not in str(components).lower()
    assert "/board" not in schema["paths"] or "get" in schema["paths"]["/board"]
    # HEAD is answered wherever GET is, without a second operation of the same name.
    assert all("head" not in operations for operations in schema["paths"].values())
