"""A suggestion's public page (`/board/suggestions/{number}`) and its timeline as open data
(`/api/v1/public/suggestions/{number}/events`): the public side of the audit trail
(三议三公开), in order, in local time, in the programme's words, with who acted by role and
never by name; non-public events never shown. SQLite and PostgreSQL via `sessionmaker`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from public_data import (
    PASSED_STEPS,
    SECRET_NOTE,
    History,
    add_suggestion,
    assert_no_secrets,
    seed_history,
    seed_org,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AuditEvent, Suggestion
from storage.rules import Category, Role, SourceType, State
from storage.services.suggestions import Draft
from webhook import board, i18n_web

pytest_plugins = ["public_data"]

# What the passed suggestion went through, in order (its public events).
PASSED_ACTIONS = ["submit", "begin_review", "accept", "merged_in", "convene_vote", "resolve"]


@pytest.fixture
async def history(sessionmaker: async_sessionmaker[AsyncSession]) -> History:
    return await seed_history(sessionmaker)


def page(number: str, lang: str | None = None) -> str:
    path = board.suggestion_path(number)
    return f"{path}?lang={lang}" if lang else path


def events_of(number: str) -> str:
    return board.events_path(number)


def steps(html: str) -> list[str]:
    """The timeline's steps as shown: the event label of each, in order."""
    return re.findall(r'<li class="event">.*?<strong>(.*?)</strong>', html, re.S)


# --- The page -------------------------------------------------------------------------------


async def test_page_shows_the_public_timeline_in_chinese(
    history: History, client: httpx.AsyncClient
) -> None:
    number = history.numbers[history.passed]
    response = await client.get(page(number))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    html = response.text
    assert '<html lang="zh-Hans">' in html
    # The suggestion as the board shows it.
    assert number in html and "楼道灯坏了需要维修" in html and "新沙社区" in html
    assert "三楼到六楼的楼道灯都不亮。" in html
    assert "决议通过" in html and "同意 1 · 反对 0 · 弃权 0" in html
    # Each public step, in order, in the programme's words.
    assert steps(html) == PASSED_STEPS
    # The states reached, labelled as the bot labels them.
    for label in ("已提交", "审核中", "待议事会讨论", "议事会表决中", "社区备选项目"):
        assert f">{label}</span>" in html
    # Local time (Asia/Shanghai): 17:00 UTC on 1 March is 01:00 on 2 March.
    assert '<time datetime="2026-03-01T17:00:00+00:00">2026-03-02 01:00</time>' in html
    # Who acted, by role: the resident as 居民, the staff member as staff, and the vote's
    # outcome as the council's (决议), though the scheduler's count recorded it.
    assert '<div class="who">居民</div>' in html
    assert html.count('<div class="who">社区工作人员</div>') == 4
    assert '<div class="who">居民议事会</div>' in html and "系统（自动）" not in html
    # Public details: the corrections, the merged duplicate, the council's counts.
    assert "<dt>类别更正</dt><dd>社区环境整治 → 消除安全隐患</dd>" in html
    assert "<dt>项目类型更正</dt><dd>— → 实物项目</dd>" in html
    merged = history.numbers[history.merged]
    assert f'<dt>并入的建议</dt><dd><a class="num" href="{page(merged, "zh")}">' in html
    assert "议事会共 1 人" in html
    assert f'href="{events_of(number)}"' in html
    assert f'href="{page(number, "en")}"' in html
    # Never the staff's note, nor anyone's name, username or Telegram id.
    assert SECRET_NOTE not in html
    assert_no_secrets(html)


async def test_page_in_english(history: History, client: httpx.AsyncClient) -> None:
    number = history.numbers[history.passed]
    html = (await client.get(page(number, "en"))).text
    assert '<html lang="en">' in html
    assert steps(html) == [
        "Suggestion made",
        "Review begun",
        "Accepted by the community",
        "A suggestion on the same matter was merged into this one",
        "Put to the residents&#39; council vote",
        "Passed by the residents&#39; council",
    ]
    assert '<div class="who">Resident</div>' in html
    assert '<div class="who">Community staff</div>' in html
    assert '<div class="who">Residents&#39; council</div>' in html
    assert "Remove safety hazards" in html and "Physical project" in html
    assert "Agree 1 · Against 0 · Abstain 0" in html and "council of 1 member" in html
    assert "Times are in Beijing time." in html
    assert "公示栏" not in html and "居民" not in html
    assert f'href="{page(number, "zh")}"' in html
    assert SECRET_NOTE not in html
    assert_no_secrets(html)


async def test_rejection_and_merge_show_their_public_details(
    history: History, client: httpx.AsyncClient
) -> None:
    rejected = (await client.get(page(history.numbers[history.rejected]))).text
    assert steps(rejected) == ["提出建议", "开始审核", "不予采纳"]
    assert "<dt>原因</dt><dd>属于物业等其他主体职责范围</dd>" in rejected
    assert SECRET_NOTE not in rejected
    assert_no_secrets(rejected)

    merged = (await client.get(page(history.numbers[history.merged], "en"))).text
    assert steps(merged) == [
        "Suggestion made",
        "Review begun",
        "Merged into a suggestion on the same matter",
    ]
    into = history.numbers[history.passed]
    assert f'<dt>Merged into</dt><dd><a class="num" href="{page(into, "en")}">{into}</a>' in merged
    assert_no_secrets(merged)


async def test_html_in_a_title_is_escaped_on_its_page(
    history: History, client: httpx.AsyncClient
) -> None:
    html = (await client.get(page(history.numbers[history.rejected]))).text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<script" not in html


async def test_each_row_of_the_board_links_to_its_page(
    history: History, client: httpx.AsyncClient
) -> None:
    for lang in ("zh", "en"):
        html = (await client.get("/board", params={"lang": lang})).text
        for number in history.numbers.values():
            href = f"/board/suggestions/{quote(number, safe='')}?lang={lang}"
            assert f'href="{href}"' in html, number
            assert "%" in href and number not in href  # the CJK prefix is percent-encoded
            assert (await client.get(href)).status_code == 200
    # The merged one links to the suggestion it was merged into.
    into = history.numbers[history.passed]
    html = (await client.get("/board")).text
    assert f'<dt>合并至</dt><dd><a class="num" href="{page(into, "zh")}">{into}</a></dd>' in html


async def test_numbers_as_residents_type_them(history: History, client: httpx.AsyncClient) -> None:
    number = history.numbers[history.passed]
    prefix, year, seq = number.rsplit("-", 2)
    wide = f"{prefix}－{year.translate(str.maketrans('0123456789', '０１２３４５６７８９'))}-{seq}"
    for typed in (f" {number} ", wide):
        response = await client.get(page(typed))
        assert response.status_code == 200, typed
        assert "楼道灯坏了需要维修" in response.text


async def test_unknown_number_is_a_polite_404(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await seed_org(sessionmaker)
    response = await client.get(page("新沙-2026-9999"))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-Hans">' in response.text
    assert "抱歉，没有找到编号为“新沙-2026-9999”的建议。" in response.text
    assert 'href="/board?lang=zh"' in response.text

    response = await client.get(page("新沙-2026-9999", "en"))
    assert response.status_code == 404
    assert '<html lang="en">' in response.text
    assert "Sorry, there is no suggestion numbered “新沙-2026-9999”." in response.text
    assert "Back to the board" in response.text

    # What is repeated back is escaped and shortened; nonsense is a 404 too, never a 500.
    response = await client.get(page("<img src=x onerror=alert(1)>"))
    assert response.status_code == 404
    assert "<img" not in response.text and "&lt;img src=x" in response.text
    for nonsense in ("x" * 500, " ", "%00", "0"):
        response = await client.get(f"/board/suggestions/{quote(nonsense, safe='%')}")
        assert response.status_code == 404, nonsense
        said = re.search(r"<p>抱歉，没有找到编号为“(.*?)”的建议。</p>", response.text)
        assert said is not None and len(said.group(1)) <= board.ECHO_MAX, nonsense


@pytest.mark.parametrize(
    "path",
    [
        "/board/suggestions",  # no number
        "/board/suggestions/a%2Fb",  # a slash in the number
        "/board/suggestion/新沙-2026-0001",
        "/board/%3Cscript%3E",
    ],
)
async def test_other_addresses_under_the_board_are_the_polite_404(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient, path: str
) -> None:
    """An address under /board that no page has (cut short, mistyped) is the polite page of
    an unknown number, without a number, in the language asked for."""
    await seed_org(sessionmaker)
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert '<html lang="zh-Hans">' in response.text
    assert "请核对编号" in response.text and "没有找到编号为" not in response.text
    assert 'href="/board?lang=zh"' in response.text
    assert "<script>" not in response.text

    response = await client.get(path, params={"lang": "en"})
    assert response.status_code == 404
    assert '<html lang="en">' in response.text and "Back to the board" in response.text


async def test_the_board_with_a_trailing_slash_is_the_board(client: httpx.AsyncClient) -> None:
    response = await client.get("/board/?lang=en")
    assert response.status_code == 307
    assert response.headers["location"] == "/board?lang=en"


async def test_a_page_with_a_trailing_slash_is_the_page(
    history: History, client: httpx.AsyncClient
) -> None:
    """A link written with a slash after the number leads to the page, as Starlette's own
    redirect did before the polite 404 caught every other address under /board."""
    number = history.numbers[history.passed]
    page = f"/board/suggestions/{quote(number, safe='')}"
    response = await client.get(page + "/", params={"lang": "en"})
    assert response.status_code == 307
    assert response.headers["location"] == f"{page}?lang=en"
    response = await client.get(page + "//", follow_redirects=True)
    assert response.status_code == 200 and number in response.text
    response = await client.get("/board/suggestions/", follow_redirects=True)
    assert response.status_code == 404 and "请核对编号" in response.text


async def test_unknown_open_data_addresses_stay_json(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/public/", "/api/v1/public/suggestions/a%2Fb/events", "/api/v1/x"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not Found"}


async def test_non_public_events_never_appear(
    history: History, sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    number = history.numbers[history.passed]
    async with sessionmaker() as session:
        # The services' own non-public event (the acceptance note) is there, with the note...
        notes = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.entity_id == history.passed, AuditEvent.public.is_(False)
                )
            )
        ).all()
        assert [e.action for e in notes] == ["screening_note"]
        assert SECRET_NOTE in notes[0].details["note"]
        # ...and one more, a state change, that must not show either.
        session.add(
            AuditEvent(
                actor_role=Role.COMMUNITY_STAFF,
                entity_type="suggestion",
                entity_id=history.passed,
                action="cancel",
                from_state=State.RESOLVED_CANDIDATE,
                to_state=State.CANCELLED,
                public=False,
                details={"reason": "Hidden_reason_V2"},
            )
        )
        await session.commit()
    for lang, hidden in (("zh", "已取消"), ("en", "Cancelled")):
        html = (await client.get(page(number, lang))).text
        assert len(steps(html)) == len(PASSED_ACTIONS)
        assert hidden not in html and "Hidden_reason_V2" not in html and SECRET_NOTE not in html
    body = (await client.get(events_of(number))).json()
    assert body["total"] == len(PASSED_ACTIONS)
    assert [e["action"] for e in body["items"]] == PASSED_ACTIONS
    text = str(body)
    assert "screening_note" not in text and "cancel" not in text and SECRET_NOTE not in text


async def test_a_suggestion_without_public_steps_says_so(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    ids = await seed_org(sessionmaker)
    made = await add_suggestion(
        sessionmaker, Draft(ids["上沙社区"], Category.CARE, "长者饭堂", "希望开设长者饭堂。")
    )
    async with sessionmaker() as session:
        await session.execute(AuditEvent.__table__.delete())
        await session.commit()
        number = await session.scalar(select(Suggestion.number).where(Suggestion.id == made))
    assert number is not None
    html = (await client.get(page(number))).text
    assert "暂无公开记录。" in html and steps(html) == []
    assert "No public steps recorded yet." in (await client.get(page(number, "en"))).text


async def test_a_unit_proposer_is_named_by_its_kind(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    ids = await seed_org(sessionmaker)
    made = await add_suggestion(
        sessionmaker,
        Draft(
            ids["上沙社区"],
            Category.CULTURE_SPORTS,
            "社区篮球场翻新",
            "篮球架生锈。",
            source_type=SourceType.UNIT,
        ),
    )
    async with sessionmaker() as session:
        number = await session.scalar(select(Suggestion.number).where(Suggestion.id == made))
    assert number is not None
    html = (await client.get(page(number))).text
    assert '<div class="who">驻社区单位</div>' in html
    body = (await client.get(events_of(number))).json()
    assert body["items"][0]["actor"] == "unit"
    assert_no_secrets(html + str(body))


async def test_the_page_reads_its_events_in_one_query(
    history: History,
    sessionmaker: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    statements: list[str],
) -> None:
    """The page takes the same statements with 6 events as with 46: the suggestion, its
    latest vote, and all of its events in one query."""
    number = history.numbers[history.passed]

    async def load() -> tuple[str, list[str]]:
        statements.clear()
        response = await client.get(page(number))
        assert response.status_code == 200
        return response.text, list(statements)

    html, few = await load()
    assert len(steps(html)) == len(PASSED_ACTIONS)
    async with sessionmaker() as session:
        start = datetime.now(UTC) + timedelta(days=1)
        for i in range(40):
            session.add(
                AuditEvent(
                    at=start + timedelta(minutes=i),
                    actor_role=Role.STREET_OFFICIAL,
                    entity_type="suggestion",
                    entity_id=history.passed,
                    action="publish",
                    public=True,
                )
            )
        await session.commit()
    html, many = await load()
    assert len(steps(html)) == len(PASSED_ACTIONS) + 40
    assert len(many) == len(few) <= 3
    assert sum("audit_event" in sql for sql in many) == 1


# --- Open data ------------------------------------------------------------------------------

EVENT_FIELDS = {
    "at",
    "action",
    "actor",
    "from_status",
    "to_status",
    "exclusion_reason",
    "merged_into",
    "merged_from",
    "category_change",
    "kind_change",
    "council_vote",
}


async def test_events_as_open_data(history: History, client: httpx.AsyncClient) -> None:
    number = history.numbers[history.passed]
    response = await client.get(events_of(number))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "total", "page", "page_size"}
    assert (body["total"], body["page"], body["page_size"]) == (len(PASSED_ACTIONS), 1, 50)
    items = body["items"]
    assert all(set(item) == EVENT_FIELDS for item in items)
    assert [e["action"] for e in items] == PASSED_ACTIONS
    assert [e["actor"] for e in items] == [
        "resident",
        "community_staff",
        "community_staff",
        "community_staff",
        "community_staff",
        "residents_council",
    ]
    assert [(e["from_status"], e["to_status"]) for e in items] == [
        (None, "submitted"),
        ("submitted", "under_review"),
        ("under_review", "candidate"),
        (None, None),
        ("candidate", "council_vote"),
        ("council_vote", "resolved_candidate"),
    ]
    assert datetime.fromisoformat(items[0]["at"]) == history.first_at
    accepted = items[2]
    assert accepted["category_change"] == {"before": "environment", "after": "safety"}
    assert accepted["kind_change"] == {"before": None, "after": "physical"}
    assert items[3]["merged_from"] == history.numbers[history.merged]
    assert items[5]["council_vote"] == {
        "outcome": "resolved",
        "agree": 1,
        "against": 0,
        "abstain": 0,
        "council_size": 1,
        "quorum_pct": 50,
        "threshold_pct": 50,
    }
    text = response.text
    assert SECRET_NOTE not in text and "person" not in text and "token" not in text
    assert_no_secrets(text)

    rejected = (await client.get(events_of(history.numbers[history.rejected]))).json()
    assert rejected["items"][-1]["exclusion_reason"] == "property_management"
    merged = (await client.get(events_of(history.numbers[history.merged]))).json()
    assert merged["items"][-1]["merged_into"] == number
    assert_no_secrets(str(rejected) + str(merged))


async def test_events_are_paged(history: History, client: httpx.AsyncClient) -> None:
    number = history.numbers[history.passed]
    first = (await client.get(events_of(number), params={"page_size": 4})).json()
    second = (await client.get(events_of(number), params={"page_size": 4, "page": 2})).json()
    beyond = (await client.get(events_of(number), params={"page_size": 4, "page": 9})).json()
    assert (first["total"], second["total"], beyond["total"]) == (6, 6, 6)
    assert [e["action"] for e in first["items"] + second["items"]] == PASSED_ACTIONS
    assert beyond["items"] == []
    for params in ({"page": 0}, {"page_size": 101}, {"page": "x"}):
        response = await client.get(events_of(number), params=params)
        assert response.status_code == 422, params


async def test_events_of_an_unknown_number_are_404(
    history: History, client: httpx.AsyncClient
) -> None:
    for number in ("新沙-2026-9999", "x" * 200, " "):
        response = await client.get(events_of(number))
        assert response.status_code == 404, number
        assert response.json()["detail"]["code"] == "unknown_suggestion"


async def test_openapi_documents_the_timeline(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    route = schema["paths"]["/api/v1/public/suggestions/{number}/events"]["get"]
    assert {"200", "404", "422"} <= set(route["responses"])
    assert "security" not in route
    event_schema = schema["components"]["schemas"]["EventOut"]
    assert set(event_schema["properties"]) == EVENT_FIELDS


def test_every_action_has_words_of_its_own() -> None:
    """Each action of the lifecycle, and each role that acts, reads in both languages in
    words of its own (not the fallback)."""
    from storage.rules import Action

    cjk = re.compile(r"[\u4e00-\u9fff]")
    for locale in i18n_web.LOCALES:
        fallback = i18n_web.event_label("no_such_action", locale)
        labels = [i18n_web.event_label(a, locale) for a in [*Action, "submit", "merged_in"]]
        assert fallback not in labels and len(set(labels)) == len(labels), locale
        roles = [i18n_web.role_label(r, locale) for r in Role if r is not Role.PROPOSER]
        assert len(set(roles)) == len(roles), locale
        for text in labels + roles:
            assert bool(cjk.search(text)) == (locale == "zh"), (locale, text)
    assert i18n_web.actor_label("resident", "zh") == "居民"
    assert i18n_web.actor_label("resident", "en") == "Resident"
    assert i18n_web.actor_label("community_staff", "zh") == "社区工作人员"
    assert i18n_web.actor_label("nobody", "en") == "Not recorded"
