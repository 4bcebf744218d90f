"""Which officials' API token acted: every audit event written by a request through the
officials' API names the token's public prefix (`ms_1a2b3c4d`, never its secret or hash) in
its details, and the public side (board page, open data) never shows it. SQLite and
PostgreSQL via `sessionmaker`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_officials_api import (
    STAFF,
    STREET,
    Sent,
    World,
    api_client,
    build_world,
    candidate_in,
    council_member_in,
    submit_in,
)

from storage.models import AuditEvent, Suggestion
from storage.services import tokens
from storage.services.audit import TOKEN_DETAIL
from webhook import board

# The public side's `client` fixture.
pytest_plugins = ["public_data"]


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    return await build_world(sessionmaker)


@pytest.fixture
async def officials(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(sessionmaker, Sent()) as http:
        yield http


def public_name(plaintext: str) -> str:
    """`ms_<prefix>` of a token `ms_<prefix>_<secret>`."""
    return "_".join(plaintext.split("_")[:2])


async def events(
    sessionmaker: async_sessionmaker[AsyncSession], entity_type: str, entity_id: int
) -> list[AuditEvent]:
    async with sessionmaker() as session:
        query = (
            select(AuditEvent)
            .where(AuditEvent.entity_type == entity_type, AuditEvent.entity_id == entity_id)
            .order_by(AuditEvent.at, AuditEvent.id)
        )
        return list((await session.scalars(query)).all())


def tokens_of(found: list[AuditEvent]) -> dict[str, Any]:
    return {e.action: e.details.get(TOKEN_DETAIL) for e in found}


async def number_of(sessionmaker: async_sessionmaker[AsyncSession], suggestion_id: int) -> str:
    async with sessionmaker() as session:
        number = await session.scalar(
            select(Suggestion.number).where(Suggestion.id == suggestion_id)
        )
    assert number is not None
    return number


def assert_never_public(body: str, world: World) -> None:
    for plaintext in world.tokens.values():
        for secret in (
            public_name(plaintext),
            plaintext.split("_", 2)[2],
            tokens.hash_token(plaintext),
        ):
            assert secret not in body, secret
    assert TOKEN_DETAIL not in body


async def test_screening_through_the_api_names_the_token(
    world: World,
    sessionmaker: async_sessionmaker[AsyncSession],
    officials: httpx.AsyncClient,
    client: httpx.AsyncClient,
) -> None:
    xinsha = world.communities["新沙社区"]
    accepted = await submit_in(sessionmaker, xinsha, "楼道灯坏了")
    rejected = await submit_in(sessionmaker, xinsha, "井盖松动")
    duplicate = await submit_in(sessionmaker, xinsha, "12栋楼道灯不亮")
    staff, street = world.tokens[STAFF], world.tokens[STREET]

    for suggestion_id, body, token in (
        (accepted, {"action": "accept", "category": "safety", "note": "内部备注"}, staff),
        (rejected, {"action": "reject", "reason": "property_management", "note": "x"}, staff),
        (duplicate, {"action": "merge", "into_id": accepted}, street),
    ):
        response = await officials.post(
            f"/api/v1/suggestions/{suggestion_id}/screen",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text

    # Who submitted did so in the bot, not through the API: no token on that event.
    assert tokens_of(await events(sessionmaker, "suggestion", accepted)) == {
        "submit": None,
        "begin_review": public_name(staff),
        "accept": public_name(staff),
        "screening_note": public_name(staff),
        "merged_in": public_name(street),
    }
    assert tokens_of(await events(sessionmaker, "suggestion", rejected)) == {
        "submit": None,
        "begin_review": public_name(staff),
        "reject": public_name(staff),
    }
    assert tokens_of(await events(sessionmaker, "suggestion", duplicate)) == {
        "submit": None,
        "begin_review": public_name(street),
        "merge": public_name(street),
    }
    # The public prefix only: never the secret, nor its hash.
    for suggestion_id in (accepted, rejected, duplicate):
        for found in await events(sessionmaker, "suggestion", suggestion_id):
            text = repr(found.details)
            for plaintext in world.tokens.values():
                assert plaintext not in text and tokens.hash_token(plaintext) not in text
                assert plaintext.split("_", 2)[2] not in text
            if TOKEN_DETAIL in found.details:
                assert found.actor_person_id is None  # a token stands for no person

    # Nowhere public.
    for suggestion_id in (accepted, rejected, duplicate):
        number = await number_of(sessionmaker, suggestion_id)
        for lang in ("zh", "en"):
            page = await client.get(f"{board.suggestion_path(number)}?lang={lang}")
            assert page.status_code == 200
            assert_never_public(page.text, world)
        data = await client.get(board.events_path(number))
        assert data.status_code == 200 and data.json()["total"] >= 3
        assert_never_public(data.text, world)
    for path in ("/board", "/api/v1/public/suggestions"):
        assert_never_public((await client.get(path)).text, world)


async def test_convening_and_granting_through_the_api_name_the_token(
    world: World, sessionmaker: async_sessionmaker[AsyncSession], officials: httpx.AsyncClient
) -> None:
    xinsha = world.communities["新沙社区"]
    candidate = await candidate_in(sessionmaker, xinsha)
    await council_member_in(sessionmaker, xinsha, 7_000_001)
    staff, street = world.tokens[STAFF], world.tokens[STREET]
    response = await officials.post(
        "/api/v1/council-votes",
        json={
            "community_id": xinsha,
            "candidate_ids": [candidate],
            "closes_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
        },
        headers={"Authorization": f"Bearer {staff}"},
    )
    assert response.status_code == 201, response.text
    vote_id = response.json()["id"]
    convened = tokens_of(await events(sessionmaker, "suggestion", candidate))
    # Accepted directly through the service (no token), convened through the API.
    assert convened["accept"] is None and convened["convene_vote"] == public_name(staff)
    assert tokens_of(await events(sessionmaker, "council_vote", vote_id)) == {
        "convene": public_name(staff)
    }

    person = await council_member_in(sessionmaker, world.communities["天安社区"], 7_000_002)
    response = await officials.post(
        "/api/v1/roles",
        json={
            "role": "community_staff",
            "scope_level": "community",
            "scope_id": xinsha,
            "telegram_id": 7_000_002,
        },
        headers={"Authorization": f"Bearer {street}"},
    )
    assert response.status_code == 201, response.text
    granted = await events(sessionmaker, "person", person)
    assert [(e.action, e.details.get(TOKEN_DETAIL)) for e in granted] == [
        ("role_granted", public_name(street))
    ]


async def test_a_refused_request_records_nothing(
    world: World, sessionmaker: async_sessionmaker[AsyncSession], officials: httpx.AsyncClient
) -> None:
    outside = await submit_in(sessionmaker, world.communities["香蜜社区"])
    response = await officials.post(
        f"/api/v1/suggestions/{outside}/screen",
        json={"action": "accept"},
        headers={"Authorization": f"Bearer {world.tokens[STAFF]}"},
    )
    assert response.status_code == 403
    assert tokens_of(await events(sessionmaker, "suggestion", outside)) == {"submit": None}
