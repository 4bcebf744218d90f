"""What the API's suggestion and project listings share: the query that filters and pages them
(`?community=&status=&category=&page=&page_size=`) and the shape of a page of results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Generic, Self, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from storage.rules import Category, State
from storage.services.suggestions import PublicFilter

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100

CommunityQuery = Annotated[int | None, Query(description="community id", ge=1, le=2**31 - 1)]
StatusQuery = Annotated[State | None, Query()]
CategoryQuery = Annotated[Category | None, Query()]
PageQuery = Annotated[int, Query(ge=1, le=1_000_000)]
PageSizeQuery = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The filters and the page a listing was asked for."""

    filters: PublicFilter
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


async def list_query(
    community: CommunityQuery = None,
    status: StatusQuery = None,
    category: CategoryQuery = None,
    page: PageQuery = 1,
    page_size: PageSizeQuery = DEFAULT_PAGE_SIZE,
) -> ListQuery:
    # async: FastAPI runs a sync dependency in a thread pool, a hop on every request.
    return ListQuery(PublicFilter(community, status, category), page, page_size)


# All five parameters in one dependency: they are validated together, in this order, before
# the route (or a dependency built on this one) runs.
ListQueryDep = Annotated[ListQuery, Depends(list_query)]

Item = TypeVar("Item", bound=BaseModel)


class Page(BaseModel, Generic[Item]):
    """One page of a listing; subclass it per item type so the schema has a name of its own."""

    items: list[Item]
    total: int
    page: int
    page_size: int

    @classmethod
    def of(cls, items: list[Item], total: int, query: ListQuery) -> Self:
        return cls(items=items, total=total, page=query.page, page_size=query.page_size)
