"""The public board (公示栏): every community's suggestions and their status, readable by anyone
on a phone, in Chinese by default and English with `?lang=en`. No resident is named on it; of
a council vote it shows the counts and the outcome (决议结果公开), never who voted how.

Each suggestion has a page of its own, `/board/suggestions/{number}` (the number a resident
reads out, e.g. 新沙-2026-0007, percent-encoded in the address): the suggestion as the board
shows it and its public timeline (三议三公开), every public step in order with its local time,
what happened, and who acted by role ("居民" for a resident, never a name).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from bot.texts import local_date, local_datetime
from storage.models import short_name
from storage.rules import Category, State, clean_text, format_yuan
from storage.services import public
from storage.services.suggestions import PublicFilter
from webhook import i18n_web
from webhook.deps import SessionDep, SettingsDep
from webhook.routing import GetHeadRouter

PAGE_SIZE = 50
# A suggestion's page lists at most this many steps (a real one has a few dozen); the open
# data pages through them all.
EVENT_LIMIT = 500
MAX_PAGE = 1_000_000  # keeps the offset within every backend's integer range
ECHO_MAX = 40  # how much of a bad filter value the polite note repeats
_E = TypeVar("_E", bound=Enum)

# Defence in depth behind autoescaping: the board runs no script and loads nothing foreign
# (its own fallback fonts only, webhook/assets.py).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; font-src 'self'; "
        "form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "public, max-age=30",
}

# Badge colour of each state on the board: under way, achieved, paused, or closed.
_TONES: dict[State, str] = {
    **{s: "open" for s in State},
    **dict.fromkeys(
        (
            State.RESOLVED_CANDIDATE,
            State.DETERMINED,
            State.PUBLISHED,
            State.IMPLEMENTER_ASSIGNED,
            State.STARTED,
            State.COMPLETED,
            State.ACCOUNTS_PUBLISHED,
            State.EVALUATED,
        ),
        "good",
    ),
    State.DEFERRED: "wait",
    **dict.fromkeys(
        (State.REJECTED, State.MERGED, State.NOT_PASSED, State.WITHDRAWN, State.CANCELLED),
        "closed",
    ),
}


@lru_cache(maxsize=len(i18n_web.LOCALES))
def environment(locale: str) -> Environment:
    """One Jinja environment per locale, its translations installed once: a request never
    switches the language of another that renders at the same time."""
    env = Environment(
        loader=FileSystemLoader(i18n_web.TEMPLATES_DIR),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(  # type: ignore[attr-defined]
        i18n_web.translations(locale), newstyle=True
    )
    env.globals.update(
        state_label=lambda value: i18n_web.state_label(value, locale),
        category_label=lambda value: i18n_web.category_label(value, locale),
        kind_label=lambda value: i18n_web.kind_label(value, locale),
        exclusion_label=lambda value: i18n_web.exclusion_label(value, locale),
        proposer_label=lambda value: i18n_web.proposer_label(value, locale),
        actor_label=lambda value: i18n_web.actor_label(value, locale),
        event_label=lambda value: i18n_web.event_label(value, locale),
        tone=lambda state: _TONES.get(state, "open"),
        yuan=format_yuan,
    )
    return env


@dataclass(slots=True)
class CommunityGroup:
    community: public.PublicCommunity
    suggestions: list[public.PublicSuggestion] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Note:
    """A filter that was not understood and so was ignored; the template words it."""

    field: str
    value: str


def _group(items: list[public.PublicSuggestion]) -> list[CommunityGroup]:
    groups: list[CommunityGroup] = []
    for item in items:
        if not groups or groups[-1].community.id != item.community.id:
            groups.append(CommunityGroup(item.community))
        groups[-1].suggestions.append(item)
    return groups


def _echo(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= ECHO_MAX else value[: ECHO_MAX - 1] + "…"


def _member(enum: type[_E], raw: str | None, name: str, notes: list[Note]) -> _E | None:
    """The member of `enum` whose value is `raw`; one that is not is noted and ignored."""
    if not raw:
        return None
    try:
        return enum(raw)
    except ValueError:
        notes.append(Note(name, _echo(raw)))
        return None


def _page_number(raw: str | None) -> int:
    try:
        page = int(raw or "1")
    except ValueError:
        return 1
    return min(max(page, 1), MAX_PAGE)


def _community_id(communities: list[public.PublicCommunity], value: str) -> int | None:
    """The community a filter names: by id (the board's own links), or by its name as a
    person writes it into the address, in full (新沙社区) or as people say it (新沙, what its
    numbers start with); where two streets have a community of that name, the first in the
    board's order (the filter shows which). None when none is so named."""
    with contextlib.suppress(ValueError):
        wanted = int(value)
        if any(c.id == wanted for c in communities):
            return wanted
    name = value.strip()
    found = next((c.id for c in communities if c.name == name), None)
    if found is None:
        found = next((c.id for c in communities if short_name(c.name) == name), None)
    return found


def suggestion_path(number: str) -> str:
    """The address of a suggestion's page (its number percent-encoded, every character that
    is not plainly safe in a path included)."""
    return f"/board/suggestions/{quote(number, safe='')}"


def events_path(number: str) -> str:
    """The address of a suggestion's timeline in the open data."""
    return f"/api/v1/public/suggestions/{quote(number, safe='')}/events"


def _headers(locale: str) -> dict[str, str]:
    return {**SECURITY_HEADERS, "Content-Language": "zh-Hans" if locale == "zh" else "en"}


# Any text, a language tag as long as a browser's (zh-Hans-CN-u-ca-chinese): its language is
# what counts (i18n_web.normalise_locale), and one we do not ship is the default, never a 422.
LangQuery = Annotated[str | None, Query()]


def _page(
    template: str,
    locale: str,
    page_url: Callable[[str], str],
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    """A page of the board in `locale`, whose language switch leads to `page_url(other)`."""
    html = (
        environment(locale)
        .get_template(template)
        .render(
            locale=locale,
            other_locale="en" if locale == "zh" else "zh",
            page_url=page_url,
            **values,
        )
    )
    return HTMLResponse(html, status_code=status_code, headers=_headers(locale))


def _not_found(locale: str, path: str, number: str | None) -> HTMLResponse:
    """The polite page for an address under /board that leads nowhere: a suggestion number we
    do not know (named on it), or no suggestion's address at all."""
    return _page(
        "not_found.html",
        locale,
        lambda to: f"{path}?lang={to}",
        status_code=404,
        board_url=f"/board?lang={locale}",
        number=number,
    )


def create_board_router() -> GetHeadRouter:
    """`GET /board`, `GET /board/suggestions/{number}`, and the polite 404 page for any other
    address under /board. Include it as is: its paths are complete."""
    router = GetHeadRouter(tags=["public"])
    # Compile the catalogues at start-up rather than on the first visitor's request.
    for locale in i18n_web.LOCALES:
        environment(locale)

    @router.get("/board", response_class=HTMLResponse, summary="The public board (公示栏)")
    async def board(
        session: SessionDep,
        settings: SettingsDep,
        lang: LangQuery = None,
        community: Annotated[str | None, Query()] = None,
        status: Annotated[str | None, Query()] = None,
        category: Annotated[str | None, Query()] = None,
        page: Annotated[str | None, Query()] = None,
    ) -> HTMLResponse:
        # Every parameter is read as text and checked here: a bad one is named and ignored,
        # never a 422 or a 500 for someone who edited the address by hand.
        locale = i18n_web.normalise_locale(lang, settings.default_locale)
        notes: list[Note] = []
        communities = await public.list_communities(session)
        community_id: int | None = None
        if community:
            community_id = _community_id(communities, community)
            if community_id is None:
                notes.append(Note("community", _echo(community)))
        state = _member(State, status, "status", notes)
        chosen_category = _member(Category, category, "category", notes)
        filters = PublicFilter(community_id, state, chosen_category)

        async def fetch(number: int) -> tuple[list[public.PublicSuggestion], int]:
            return await public.list_suggestions(
                session,
                filters,
                limit=PAGE_SIZE,
                offset=(number - 1) * PAGE_SIZE,
                by_community=True,
            )

        page_number = _page_number(page)
        items, total = await fetch(page_number)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        if page_number > pages:
            page_number = pages
            items, total = await fetch(page_number)

        query: dict[str, Any] = {
            "community": community_id,
            "status": state.value if state else None,
            "category": chosen_category.value if chosen_category else None,
        }

        def url(path: str = "/board", **changes: Any) -> str:
            params = {"lang": locale, **query, **changes}
            encoded = urlencode({k: v for k, v in params.items() if v not in (None, "")})
            return f"{path}?{encoded}" if encoded else path

        streets: dict[tuple[str, str], list[public.PublicCommunity]] = {}
        for c in communities:
            streets.setdefault((c.district, c.street), []).append(c)

        return _page(
            "board.html",
            locale,
            # This page in the other language: the same filters, and the same page.
            lambda to: url(lang=to, page=page_number if page_number > 1 else None),
            url=url,
            notes=notes,
            streets=streets,
            states=list(State),
            categories=list(Category),
            selected=query,
            groups=_group(items),
            total=total,
            page=page_number,
            pages=pages,
            filtered=any(v is not None for v in query.values()),
            local_date=lambda moment: local_date(moment, settings.tz),
            local_time=lambda moment: local_datetime(moment, settings.tz),
            suggestion_url=lambda number: f"{suggestion_path(number)}?lang={locale}",
            timezone=i18n_web.zone_label(settings.timezone, locale),
        )

    @router.get(
        "/board/suggestions/{number}",
        response_class=HTMLResponse,
        summary="One suggestion and its public timeline",
        responses={
            404: {"description": "There is no suggestion with this number (a polite page)."}
        },
    )
    async def suggestion(
        number: str,
        session: SessionDep,
        settings: SettingsDep,
        lang: LangQuery = None,
    ) -> HTMLResponse:
        locale = i18n_web.normalise_locale(lang, settings.default_locale)
        timeline = await public.suggestion_timeline(session, number, limit=EVENT_LIMIT)
        if timeline is None:
            return _not_found(locale, suggestion_path(number), _echo(clean_text(number)))
        found = timeline.suggestion
        return _page(
            "suggestion.html",
            locale,
            lambda to: f"{suggestion_path(found.number)}?lang={to}",
            board_url=f"/board?lang={locale}",
            events_url=events_path(found.number),
            s=found,
            events=timeline.events,
            more=timeline.more,
            local_date=lambda moment: local_date(moment, settings.tz),
            local_time=lambda moment: local_datetime(moment, settings.tz),
            suggestion_url=lambda other_number: f"{suggestion_path(other_number)}?lang={locale}",
            timezone=i18n_web.zone_label(settings.timezone, locale),
        )

    @router.get("/board/{path:path}", response_class=HTMLResponse, include_in_schema=False)
    async def elsewhere(
        path: str, request: Request, settings: SettingsDep, lang: LangQuery = None
    ) -> Response:
        # Registered last, so it answers only what no route above does: a mistyped or cut
        # address (/board/suggestions/ with no number, a number holding an encoded slash)
        # reads like the page of an unknown number rather than FastAPI's bare JSON 404.
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        if raw_path.endswith(b"/"):
            # "/board/", a page's address with a slash after it: where the router would have
            # sent it without this route, the same address without the slash (still encoded).
            target = raw_path.decode("latin-1").rstrip("/")
            query = request.url.query
            return RedirectResponse(f"{target}?{query}" if query else target)
        locale = i18n_web.normalise_locale(lang, settings.default_locale)
        return _not_found(locale, quote(request.url.path), None)

    return router
