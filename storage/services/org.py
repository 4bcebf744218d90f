"""The administrative tree: district › street › community."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from storage.models import Community, District, Street, short_name

CSV_HEADER = ("district", "street", "community")
NAME_MAX = 64


class OrgImportError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True, slots=True)
class OrgRow:
    line: int
    district: str
    street: str
    community: str


def parse_org_csv(text: str) -> list[OrgRow]:
    """Parse and validate the whole file first, so a bad row imports nothing."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    rows: list[OrgRow] = []
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header) != CSV_HEADER:
        raise OrgImportError(1, "the header must be: district,street,community")
    for record in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(CSV_HEADER):
            raise OrgImportError(line, f"expected 3 columns, found {len(record)}")
        names = [cell.strip() for cell in record]
        for column, name in zip(CSV_HEADER, names, strict=True):
            if not name:
                raise OrgImportError(line, f"{column} is empty")
            if len(name) > NAME_MAX:
                raise OrgImportError(line, f"{column} is longer than {NAME_MAX} characters")
        rows.append(OrgRow(line, *names))
    return rows


@dataclass(frozen=True, slots=True)
class ImportResult:
    districts: int
    streets: int
    communities: int


async def import_rows(session: AsyncSession, rows: Iterable[OrgRow]) -> ImportResult:
    """Create what is missing; what exists is left as it is (idempotent). Commits."""
    added = [0, 0, 0]
    districts = {d.name: d for d in (await session.scalars(select(District))).all()}
    streets = {(s.district_id, s.name): s for s in (await session.scalars(select(Street))).all()}
    communities = {
        (c.street_id, c.name): c for c in (await session.scalars(select(Community))).all()
    }
    prefixes = {c.number_prefix for c in communities.values()}
    for row in rows:
        district = districts.get(row.district)
        if district is None:
            district = districts[row.district] = District(name=row.district)
            session.add(district)
            await session.flush()
            added[0] += 1
        street = streets.get((district.id, row.street))
        if street is None:
            street = streets[(district.id, row.street)] = Street(
                district_id=district.id, name=row.street
            )
            session.add(street)
            await session.flush()
            added[1] += 1
        if (street.id, row.community) not in communities:
            prefix = _number_prefix(row, prefixes)
            prefixes.add(prefix)
            community = Community(street_id=street.id, name=row.community, number_prefix=prefix)
            communities[(street.id, row.community)] = community
            session.add(community)
            added[2] += 1
    await session.commit()
    return ImportResult(*added)


# Characters of a community's prefix in suggestion numbers (新沙-2026-0007): short enough to
# read out on the phone, and to fit Suggestion.number with the year and a sequence.
PREFIX_MAX = 20


# Not in a prefix: a number is a path segment of the board's page (/board/suggestions/…) and
# the first word of a council poll's question, so no separator of either.
_UNSAFE_IN_PREFIX = re.compile(r"[\s/\\?#%&+]")


def _safe(name: str) -> str:
    return _UNSAFE_IN_PREFIX.sub("", short_name(name))


def _number_prefix(row: OrgRow, taken: set[str]) -> str:
    """The community's short name, unless another community already has it: then the
    street's short name before it, then the district's (新沙, 沙头新沙, 福田沙头新沙); a
    name too long for a number is cut, and a number added if that is taken. Spaces and
    URL separators are left out (A/B社区 numbers as AB-2026-0001)."""
    community = _safe(row.community) or "C"
    candidates = [
        community,
        _safe(row.street) + community,
        _safe(row.district) + _safe(row.street) + community,
        community[:PREFIX_MAX],
    ]
    for candidate in candidates:
        if len(candidate) <= PREFIX_MAX and candidate not in taken:
            return candidate
    room = PREFIX_MAX - 3  # for a number up to 999
    stem = candidates[2] if len(candidates[2]) <= room else community[:room]
    n = 2
    while f"{stem}{n}" in taken:
        n += 1
    return f"{stem}{n}"


async def list_districts(session: AsyncSession) -> list[District]:
    return list((await session.scalars(select(District).order_by(District.name))).all())


async def list_streets(session: AsyncSession, district_id: int) -> list[Street]:
    query = select(Street).where(Street.district_id == district_id).order_by(Street.name)
    return list((await session.scalars(query)).all())


async def list_communities(session: AsyncSession, street_id: int | None = None) -> list[Community]:
    query = select(Community).options(selectinload(Community.street)).order_by(Community.name)
    if street_id is not None:
        query = query.where(Community.street_id == street_id)
    return list((await session.scalars(query)).all())


async def get_district(session: AsyncSession, district_id: int) -> District | None:
    return await session.get(District, district_id)


async def get_street(session: AsyncSession, street_id: int) -> Street | None:
    """The street, with its district."""
    return await session.get(Street, street_id, options=[selectinload(Street.district)])


async def get_community(session: AsyncSession, community_id: int) -> Community | None:
    return await session.get(
        Community,
        community_id,
        options=[selectinload(Community.street).selectinload(Street.district)],
    )


async def find_community(session: AsyncSession, name: str) -> Community | None:
    query = select(Community).where(Community.name == name).order_by(Community.id).limit(1)
    return (await session.scalars(query)).first()
