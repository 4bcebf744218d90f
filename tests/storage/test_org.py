"""The administrative tree: CSV parsing with line numbers, idempotent import."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from conftest import OrgTree
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Community, District, Street
from storage.rules import Category
from storage.services import org as org_service
from storage.services import public, suggestions
from storage.services.org import ImportResult, OrgImportError, parse_org_csv
from storage.services.people import TelegramIdentity
from storage.services.suggestions import Draft

GOOD = """district,street,community
福田区,沙头街道,新沙社区
福田区,沙头街道,天安社区

福田区,华富街道,田面社区
南山区,沙河街道,华侨城社区
"""


def test_parse_good() -> None:
    rows = parse_org_csv("\ufeff" + GOOD)  # Excel writes a BOM
    assert [(r.line, r.community) for r in rows] == [
        (2, "新沙社区"),
        (3, "天安社区"),
        (5, "田面社区"),
        (6, "华侨城社区"),
    ]


def test_header_is_case_and_space_insensitive() -> None:
    assert len(parse_org_csv(" District , STREET,community\n福田区,沙头街道,新沙社区\n")) == 1


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "header"),
        ("区,街道,社区\n福田区,沙头街道,新沙社区\n", 1, "header"),
        ("district,street,community\n福田区,沙头街道,新沙社区\n福田区,沙头街道\n", 3, "3 columns"),
        ("district,street,community\n\n\n福田区,,新沙社区\n", 4, "street is empty"),
        ("district,street,community\n福田区,沙头街道,新沙社区,多余\n", 2, "found 4"),
        ("district,street,community\n福田区,沙头街道," + "长" * 65 + "\n", 2, "longer than 64"),
        ('district,street,community\n"福田区,沙头街道,新沙社区\n', 2, "found 1"),
    ],
)
def test_parse_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(OrgImportError, match=message) as raised:
        parse_org_csv(text)
    assert raised.value.line == line
    assert str(raised.value).startswith(f"line {line}: ")


async def _counts(session: AsyncSession) -> tuple[int, int, int]:
    return (
        int(await session.scalar(select(func.count(District.id))) or 0),
        int(await session.scalar(select(func.count(Street.id))) or 0),
        int(await session.scalar(select(func.count(Community.id))) or 0),
    )


async def test_import_is_idempotent(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    rows = parse_org_csv(GOOD)
    async with sessionmaker() as session:
        assert await org_service.import_rows(session, rows) == ImportResult(2, 3, 4)
    async with sessionmaker() as session:
        assert await org_service.import_rows(session, rows) == ImportResult(0, 0, 0)
        assert await _counts(session) == (2, 3, 4)
        # A later file adds only what is new.
        more = parse_org_csv(
            "district,street,community\n福田区,沙头街道,新沙社区\n福田区,沙头街道,金地社区\n"
        )
        assert await org_service.import_rows(session, more) == ImportResult(0, 0, 1)
        assert await _counts(session) == (2, 3, 5)


async def test_same_names_under_different_parents(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    text = (
        "district,street,community\n"
        "甲区,一街道,中心社区\n乙区,一街道,中心社区\n甲区,一街道,中心社区\n"
    )
    async with sessionmaker() as session:
        assert await org_service.import_rows(session, parse_org_csv(text)) == ImportResult(2, 2, 2)


async def test_listing_and_lookup(session: AsyncSession, org: OrgTree) -> None:
    districts = await org_service.list_districts(session)
    assert [d.name for d in districts] == ["福田区"]
    streets = await org_service.list_streets(session, districts[0].id)
    assert [s.name for s in streets] == ["沙头街道"]
    communities = await org_service.list_communities(session, streets[0].id)
    assert sorted(c.name for c in communities) == ["天安社区", "新沙社区"]
    found = await org_service.find_community(session, "新沙社区")
    assert found is not None and found.number_prefix == "新沙"
    full = await org_service.get_community(session, found.id)
    assert full is not None and full.street.district.name == "福田区"
    assert await org_service.find_community(session, "没有社区") is None


async def test_community_names_in_one_lookup(session: AsyncSession, org: OrgTree) -> None:
    names = await public.get_community(session, org.tianan_id)
    assert names == public.PublicCommunity(org.tianan_id, "天安社区", "沙头街道", "福田区")
    assert await public.get_community(session, 999) is None


async def test_long_names_make_numbers_that_fit(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Names of the longest allowed length give prefixes of at most PREFIX_MAX characters,
    still distinct, and a suggestion in each gets a number the store can hold (on PostgreSQL
    an over-long number would fail every submission)."""
    long = "长" * 60
    rows = parse_org_csv(
        "district,street,community\n"
        f"甲区,一街道,{long}A社区\n乙区,一街道,{long}A社区\n甲区,二街道,{long}A社区\n"
        f"甲区,一街道,{long}B社区\n甲区,一街道,{long}社区\n"
    )
    async with sessionmaker() as session:
        await org_service.import_rows(session, rows)
        communities = await org_service.list_communities(session)
    prefixes = [c.number_prefix for c in communities]
    assert len(set(prefixes)) == len(prefixes) == 5
    assert all(len(p) <= org_service.PREFIX_MAX for p in prefixes)
    for community in communities:
        async with sessionmaker() as session:
            stored = await suggestions.submit(
                session,
                TelegramIdentity(telegram_id=10_001, first_name="居民"),
                Draft(community.id, Category.SAFETY, "路灯不亮", "晚上很黑。"),
                tz=ZoneInfo("Asia/Shanghai"),
                daily_limit=100,
            )
        assert stored.number.startswith(f"{community.number_prefix}-")


async def test_prefixes_leave_out_spaces_and_url_separators(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A number is a path segment of its board page and the first word of a council poll's
    question: no "/", "?", "#", "%" or space in it."""
    rows = parse_org_csv(
        "district,street,community\n"
        "甲区,一街道,A/B社区\n甲区,一街道,东 门?#社区\n甲区,一街道,/社区\n"
    )
    async with sessionmaker() as session:
        await org_service.import_rows(session, rows)
        prefixes = sorted(c.number_prefix for c in await org_service.list_communities(session))
    assert prefixes == ["AB", "C", "东门"]
