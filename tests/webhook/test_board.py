"""The public board (`GET /board`): languages, filters, escaping, pagination, privacy, and the
completeness of its gettext catalogues. Database tests run on SQLite and PostgreSQL through the
shared `sessionmaker` fixture (tests/conftest.py)."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from babel.messages.pofile import read_po
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
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import texts
from bot.i18n import create_i18n
from storage.models import Suggestion, VoteOutcome
from storage.rules import Category, ExclusionReason, Kind, SourceType, State
from storage.services.suggestions import Draft
from webhook import i18n_web

pytest_plugins = ["public_data"]


async def seed(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Four suggestions in three communities, all from the same (secret) resident."""
    ids = await seed_org(sessionmaker)
    await add_suggestion(
        sessionmaker,
        Draft(
            ids["新沙社区"],
            Category.ENVIRONMENT,
            "楼道灯坏了需要维修",
            "三楼到六楼的楼道灯都不亮。",
            location_text="新沙村12栋",
            latitude=SECRET_LATITUDE,
            longitude=114.0412345,
            photo_file_ids=[SECRET_PHOTO],
        ),
        # 17:00 UTC is already the next day in Shanghai.
        created_at=datetime(2026, 3, 1, 17, 0, tzinfo=UTC),
    )
    await add_suggestion(
        sessionmaker,
        Draft(ids["新沙社区"], Category.SAFETY, "<script>alert(1)</script>", "<b>bold</b> & co"),
        created_at=datetime(2026, 3, 5, 2, 0, tzinfo=UTC),
    )
    await add_suggestion(
        sessionmaker,
        Draft(
            ids["上沙社区"],
            Category.CULTURE_SPORTS,
            "社区篮球场翻新",
            "篮球架生锈。",
            kind=Kind.SERVICE,
            estimated_cost_fen=1_234_500,
            source_type=SourceType.UNIT,
        ),
        status=State.CANDIDATE,
        created_at=datetime(2026, 3, 6, 2, 0, tzinfo=UTC),
    )
    await add_suggestion(
        sessionmaker,
        Draft(ids["香岭社区"], Category.CARE, "长者饭堂", "希望开设长者饭堂。"),
        status=State.REJECTED,
        exclusion_reason=ExclusionReason.PROPERTY_MANAGEMENT,
        exclusion_note=f"联系人 {SECRET_NAME}",  # staff notes are not published
        created_at=datetime(2026, 3, 7, 2, 0, tzinfo=UTC),
    )
    return ids


async def seed_numbered(sessionmaker: async_sessionmaker[AsyncSession], count: int) -> None:
    """`count` suggestions numbered P-2025-0001 onwards, an hour apart, in 新沙社区 (odd) and
    上沙社区 (even)."""
    ids = await seed_org(sessionmaker)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    async with sessionmaker() as session:
        for i in range(1, count + 1):
            community = ids["新沙社区"] if i % 2 else ids["上沙社区"]
            session.add(
                Suggestion(
                    number=f"P-2025-{i:04d}",
                    community_id=community,
                    year=2025,
                    seq=i,
                    category=Category.ENVIRONMENT,
                    title=f"第{i}号建议",
                    description="说明",
                    created_at=start + timedelta(hours=i),
                )
            )
        await session.commit()


def items(html: str) -> int:
    return html.count('<li class="item">')


async def test_board_is_chinese_by_default(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await seed(sessionmaker)
    response = await client.get("/board")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    html = response.text
    assert '<html lang="zh-Hans">' in html
    assert "民生微实事公示栏" in html
    assert items(html) == 4
    for expected in ("新沙社区", "上沙社区", "香岭社区", "沙头街道", "福田区"):
        assert expected in html
    for expected in ("已提交", "待议事会讨论", "不予采纳", "社区环境整治", "文化体育娱乐"):
        assert expected in html
    assert '<span class="badge open">待议事会讨论</span>' in html  # accepted, not yet resolved
    assert "新沙村12栋" in html
    assert "2026-03-02" in html  # the date in the programme's time zone, not UTC's
    assert "居民" in html and "驻社区单位" in html  # the unit is named by its kind only
    assert "12,345 元" in html and "服务项目" in html
    assert "属于物业等其他主体职责范围" in html
    assert 'href="/board?lang=en"' in html
    assert "科技园社区" in html  # offered in the filter, though it has nothing yet
    assert_no_secrets(html)


async def test_board_in_english(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await seed(sessionmaker)
    html = (await client.get("/board", params={"lang": "en"})).text
    assert '<html lang="en">' in html
    assert "Livelihood micro-projects — public board" in html
    assert "公示栏" not in html
    for expected in ("Submitted", "Awaiting the council", "Not accepted", "Community environment"):
        assert expected in html
    assert "Resident" in html and "Unit in the community" in html
    assert "4 suggestions" in html
    assert 'href="/board?lang=zh"' in html
    assert_no_secrets(html)
    # Regional tags fall back to their language; anything else to the default.
    assert "Livelihood micro-projects" in (await client.get("/board?lang=en-US")).text
    assert "民生微实事公示栏" in (await client.get("/board?lang=fr")).text


@pytest.mark.parametrize("path", ["/board", "/board/suggestions/P-2025-0001"])
@pytest.mark.parametrize(
    ("lang", "html_lang"),
    [
        ("zh-Hans-CN-u-ca-chinese", "zh-Hans"),  # a browser's tag, longer than most
        ("en-GB-oxendict-u-ca-gregory", "en"),
        ("x" * 300, "zh-Hans"),  # not a language: the default, as for any we do not ship
    ],
)
async def test_a_language_tag_of_any_length_is_read(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    path: str,
    lang: str,
    html_lang: str,
) -> None:
    """`lang` is read for its language whatever its length: the page, never a 422."""
    await seed_numbered(sessionmaker, 1)
    response = await client.get(path, params={"lang": lang})
    assert response.status_code == 200, response.text[:200]
    assert f'<html lang="{html_lang}">' in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/board",
        "/board?lang=en&page=2&category=environment",
        "/board/suggestions/P-2025-0001",
        "/board/suggestions/P-2025-9999",  # the polite 404
        "/board/no-such-page",
    ],
)
async def test_head_is_answered_like_get(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient, path: str
) -> None:
    """HEAD (uptime probes, link checkers): GET's status and headers, and no body."""
    await seed_numbered(sessionmaker, 60)
    get = await client.get(path)
    head = await client.head(path)
    assert head.status_code == get.status_code
    assert head.headers == get.headers
    assert head.content == b"" and get.content


async def test_filters(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    ids = await seed(sessionmaker)
    html = (await client.get("/board", params={"community": ids["新沙社区"]})).text
    assert items(html) == 2 and "楼道灯坏了需要维修" in html and "社区篮球场翻新" not in html
    assert f'<option value="{ids["新沙社区"]}" selected>' in html

    html = (await client.get("/board", params={"status": "candidate"})).text
    assert items(html) == 1 and "社区篮球场翻新" in html
    assert '<option value="candidate" selected>' in html

    html = (await client.get("/board", params={"category": "care", "lang": "en"})).text
    assert items(html) == 1 and "长者饭堂" in html

    html = (
        await client.get("/board", params={"community": ids["新沙社区"], "category": "safety"})
    ).text
    assert items(html) == 1 and "&lt;script&gt;" in html

    html = (await client.get("/board", params={"community": ids["科技园社区"]})).text
    assert items(html) == 0
    assert "没有符合筛选条件的建议。" in html
    assert "清除筛选" in html


async def test_a_community_is_found_by_its_name(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    statements: list[str],
) -> None:
    """Someone who writes the community into the address writes its name: the board filters
    by it as by its id, with the same statements."""
    ids = await seed(sessionmaker)

    async def load(community: object) -> tuple[str, int]:
        statements.clear()
        response = await client.get("/board", params={"community": community})
        assert response.status_code == 200
        return response.text, len(statements)

    by_id, by_id_statements = await load(ids["新沙社区"])
    for name in ("新沙社区", " 新沙社区 ", "新沙"):  # in full, or as people say it
        html, count = await load(name)
        assert "没有找到社区" not in html
        assert items(html) == 2 and "楼道灯坏了需要维修" in html and "社区篮球场翻新" not in html
        assert f'<option value="{ids["新沙社区"]}" selected>' in html
        assert count == by_id_statements
        assert html == by_id
    # A name that is not a community's, nor a part of one, is still named and ignored.
    for name in ("沙", "新沙社区新沙社区"):
        html, _ = await load(name)
        assert items(html) == 4 and f"没有找到社区“{name}”" in html


async def test_bad_filters_are_ignored_politely(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await seed(sessionmaker)
    for params, note in (
        ({"status": "bogus"}, "“bogus”不是有效的状态"),
        ({"category": "food"}, "“food”不是有效的类别"),
        ({"community": "abc"}, "没有找到社区“abc”"),
        ({"community": "999999"}, "没有找到社区“999999”"),
        ({"community": "99999999999999999999999"}, "没有找到社区“"),
        ({"page": "abc"}, None),
        ({"page": "-3"}, None),
        ({"page": "9" * 40}, None),
    ):
        response = await client.get("/board", params=params)
        assert response.status_code == 200, params
        assert items(response.text) == 4, params  # the bad filter was left out
        if note:
            assert note in response.text
    html = (await client.get("/board", params={"status": "bogus", "lang": "en"})).text
    assert "“bogus” is not a status we know, so that filter was left out." in html
    # What is repeated back is escaped and shortened.
    html = (await client.get("/board", params={"status": "<img src=x onerror=alert(1)>"})).text
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    html = (await client.get("/board", params={"category": "x" * 500})).text
    assert "x" * 100 not in html


async def test_a_shared_location_is_said_but_not_shown(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    """A suggestion located only by a shared location says so; where the resident stood when
    they shared it stays with the staff."""
    ids = await seed_org(sessionmaker)
    draft = Draft(ids["新沙社区"], Category.SAFETY, "井盖松动", "踩上去会翘起。")
    draft.latitude, draft.longitude = SECRET_LATITUDE, 114.0412345
    await add_suggestion(sessionmaker, draft)
    html = (await client.get("/board")).text
    assert "已在地图上定位（仅工作人员可见）" in html
    assert "22.531" not in html and "114.041" not in html
    assert "Shared on a map (shown to staff only)" in (await client.get("/board?lang=en")).text


async def test_titles_and_descriptions_are_escaped(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await seed(sessionmaker)
    html = (await client.get("/board")).text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in html
    assert "<script" not in html  # the board runs no script of its own either


async def test_empty_board(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    html = (await client.get("/board")).text
    assert items(html) == 0 and "暂无建议。" in html
    html = (await client.get("/board?lang=en")).text
    assert "No suggestions yet." in html


async def test_pagination(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await seed_numbered(sessionmaker, 60)

    first = (await client.get("/board")).text
    assert items(first) == 50
    assert "共 60 条建议" in first and "第 1 / 2 页" in first
    assert 'href="/board?lang=zh&amp;page=2" rel="next"' in first
    assert 'rel="prev"' not in first
    # Grouped per community: each community heads one section of the page.
    assert first.count("<h2>上沙社区</h2>") == 1 and first.count("<h2>新沙社区</h2>") == 1

    second = (await client.get("/board?page=2")).text
    assert items(second) == 10
    assert 'href="/board?lang=zh&amp;page=1" rel="prev"' in second
    numbers = set(re.findall(r"P-2025-\d{4}", first)) | set(re.findall(r"P-2025-\d{4}", second))
    assert len(numbers) == 60

    beyond = (await client.get("/board?page=7")).text  # past the end: the last page
    assert items(beyond) == 10 and "第 2 / 2 页" in beyond

    # Paging keeps the filters.
    filtered = (await client.get("/board", params={"category": "environment", "lang": "en"})).text
    assert "page=2" in filtered and "category=environment" in filtered


async def test_switching_language_keeps_the_page(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    """The 中文 / English switch leads to the same page of the same filters."""
    await seed_numbered(sessionmaker, 60)
    html = (await client.get("/board", params={"page": 2, "category": "environment"})).text
    assert "第 2 / 2 页" in html
    assert '<a class="lang" href="/board?lang=en&amp;category=environment&amp;page=2"' in html
    english = (await client.get("/board?lang=en&category=environment&page=2")).text
    assert "Page 2 of 2" in english
    assert '<a class="lang" href="/board?lang=zh&amp;category=environment&amp;page=2"' in english
    # Page 1 is the board's own address, without a page.
    first = (await client.get("/board", params={"page": 1})).text
    assert '<a class="lang" href="/board?lang=en"' in first


async def test_labels_cover_every_value() -> None:
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for enum, label in (
        (State, i18n_web.state_label),
        (Category, i18n_web.category_label),
        (Kind, i18n_web.kind_label),
        (SourceType, i18n_web.source_type_label),
        (ExclusionReason, i18n_web.exclusion_label),
    ):
        for value in enum:
            zh, en = label(value, "zh"), label(value, "en")
            assert cjk.search(zh), (value, zh)
            assert en and en != value.value and not cjk.search(en), (value, en)
    assert i18n_web.state_label(State.UNDER_REVIEW, "zh") == "审核中"
    assert i18n_web.state_label("accounts_published", "zh") == "决算已公开"
    assert i18n_web.category_label(Category.SAFETY, "zh") == "消除安全隐患"
    assert i18n_web.kind_label(Kind.PHYSICAL, "zh") == "实物项目"
    assert i18n_web.proposer_label(SourceType.RESIDENT, "zh") == "居民"
    assert i18n_web.proposer_label(SourceType.RESIDENT, "en") == "Resident"
    assert i18n_web.proposer_label(SourceType.REPRESENTATIVE, "zh") == "两代表一委员"


@pytest.mark.parametrize("locale", i18n_web.LOCALES)
def test_the_board_and_the_bot_use_the_same_words(locale: str) -> None:
    """A term reads the same on the board as in the chat (the bot's catalogue), in both
    languages: the board has no words of its own for the programme's terms."""
    i18n = create_i18n()
    with i18n.context(), i18n.use_locale(locale):
        for enum, board, bot in (
            (State, i18n_web.state_label, texts.status_label),
            (Category, i18n_web.category_label, texts.category_label),
            (Kind, i18n_web.kind_label, texts.kind_label),
            (SourceType, i18n_web.source_type_label, texts.source_type_label),
            (ExclusionReason, i18n_web.exclusion_label, texts.exclusion_reason_label),
        ):
            for value in enum:
                assert board(value, locale) == bot(value), (locale, value)


def _catalogue(locale: str) -> dict[tuple[str | None, object], object]:
    path = i18n_web.LOCALES_DIR / locale / "LC_MESSAGES" / f"{i18n_web.DOMAIN}.po"
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=locale)
    entries = {}
    for message in catalog:
        if not message.id:
            continue
        assert not message.fuzzy, (locale, message.id)
        key = message.id if isinstance(message.id, str) else tuple(message.id)
        entries[(message.context, key)] = message.string
    return entries


@pytest.mark.parametrize("locale", i18n_web.LOCALES)
def test_catalogue_is_complete(locale: str) -> None:
    entries = _catalogue(locale)
    for key, translation in entries.items():
        forms = [translation] if isinstance(translation, str) else list(translation)
        assert forms and all(forms), (locale, key)
    # Every string the templates and code use is in the catalogue, and nothing else is.
    used = set(i18n_web.extract_messages())
    assert used - set(entries) == set(), "run `python -m webhook.i18n_web` and translate"
    assert set(entries) - used == set(), "stale entries: run `python -m webhook.i18n_web`"


async def seed_council(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """新沙's two suggestions and 上沙's candidate went to the council; a third 新沙 one was
    merged into the first."""
    ids = await seed(sessionmaker)
    async with sessionmaker() as session:
        first = await session.scalar(
            Suggestion.__table__.select()
            .with_only_columns(Suggestion.id)
            .where(Suggestion.title == "楼道灯坏了需要维修")
        )
    await add_suggestion(
        sessionmaker,
        Draft(ids["新沙社区"], Category.ENVIRONMENT, "12栋楼道灯不亮", "同上。"),
        status=State.MERGED,
        merged_into_id=first,
    )
    # An earlier sitting without quorum, then the one that decided.
    await put_to_vote(
        sessionmaker,
        ids["新沙社区"],
        {"楼道灯坏了需要维修": (1, 0, 0, VoteOutcome.NO_QUORUM)},
        closes_at=datetime(2026, 3, 8, 10, 0, tzinfo=UTC),
        closed_at=datetime(2026, 3, 8, 10, 0, tzinfo=UTC),
    )
    await put_to_vote(
        sessionmaker,
        ids["新沙社区"],
        {
            "楼道灯坏了需要维修": (3, 1, 1, VoteOutcome.RESOLVED),
            "<script>alert(1)</script>": (1, 2, 0, VoteOutcome.NOT_PASSED),
        },
        closes_at=datetime(2026, 3, 20, 10, 0, tzinfo=UTC),
        # Everyone had voted: it closed early, late on the 14th in Shanghai.
        closed_at=datetime(2026, 3, 14, 17, 30, tzinfo=UTC),
    )
    await put_to_vote(
        sessionmaker,
        ids["上沙社区"],
        {"社区篮球场翻新": None},
        closes_at=datetime(2026, 3, 25, 10, 0, tzinfo=UTC),
    )
    return ids


async def test_council_results_show_counts_and_outcome_only(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    ids = await seed_council(sessionmaker)
    html = (await client.get("/board", params={"community": ids["新沙社区"]})).text
    assert items(html) == 3
    # The latest vote of each suggestion: the deciding one, not the earlier one without quorum.
    assert html.count("议事会表决</dt>") == 2
    assert "同意 3 · 反对 1 · 弃权 1" in html and "决议通过" in html
    assert "同意 1 · 反对 2 · 弃权 0" in html and "未通过" in html
    assert "同意 1 · 反对 0 · 弃权 0" not in html and "未达法定人数" not in html
    assert "2026-03-15 表决结束" in html  # closed early, dated in the programme's zone
    # The merged one names the suggestion it was merged into.
    number = re.search(r"新沙-\d{4}-0001", html)
    assert number is not None
    into = number.group(0)
    href = f"/board/suggestions/{quote(into, safe='')}?lang=zh"
    assert f'<dt>合并至</dt><dd><a class="num" href="{href}">{into}</a></dd>' in html
    assert VOTER_NAME not in html and str(VOTER_TELEGRAM_ID) not in html
    assert_no_secrets(html)

    # An open vote shows its deadline and no counts.
    html = (await client.get("/board", params={"community": ids["上沙社区"]})).text
    assert "表决中，截止 2026-03-25 18:00" in html
    assert "同意" not in html

    html = (await client.get("/board", params={"lang": "en"})).text
    assert "Agree 3 · Against 1 · Abstain 1" in html
    # One word for the outcome, the bot's: "Passed", never "Resolved".
    assert ">Passed</strong>" in html and "Resolved" not in html
    assert "Agree 1 · Against 2 · Abstain 0" in html and "Not passed" in html
    assert "Voting, closes 2026-03-25 18:00" in html and "closed on 2026-03-15" in html
    assert "Merged into" in html
    assert "never who voted how" in html
    assert VOTER_NAME not in html
    assert_no_secrets(html)


async def test_no_quorum_is_shown_as_such(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    ids = await seed(sessionmaker)
    await put_to_vote(
        sessionmaker,
        ids["上沙社区"],
        {"社区篮球场翻新": (2, 0, 0, VoteOutcome.NO_QUORUM)},
        closes_at=datetime(2026, 3, 9, 10, 0, tzinfo=UTC),
        closed_at=datetime(2026, 3, 9, 10, 0, tzinfo=UTC),
    )
    html = (await client.get("/board")).text
    assert "未达法定人数" in html and "同意 2 · 反对 0 · 弃权 0" in html
    assert "No quorum" in (await client.get("/board?lang=en")).text


def test_placeholders_survive_translation() -> None:
    placeholder = re.compile(r"%\((\w+)\)s")
    zh = _catalogue("zh")
    for (_context, msgid), translation in zh.items():
        source = msgid if isinstance(msgid, str) else msgid[0]
        forms = [translation] if isinstance(translation, str) else list(translation)
        for form in forms:
            assert set(placeholder.findall(form)) == set(placeholder.findall(source)), msgid


def test_ensure_compiled_only_when_stale(tmp_path: Path) -> None:
    for locale in i18n_web.LOCALES:
        target = tmp_path / locale / "LC_MESSAGES"
        target.mkdir(parents=True)
        shutil.copy(i18n_web.LOCALES_DIR / locale / "LC_MESSAGES" / "board.po", target)
    written = i18n_web.ensure_compiled(tmp_path, "board")
    assert sorted(p.parent.parent.name for p in written) == ["en", "zh"]
    assert i18n_web.ensure_compiled(tmp_path, "board") == []
    po = tmp_path / "zh" / "LC_MESSAGES" / "board.po"
    mo = po.with_suffix(".mo")
    os.utime(mo, (po.stat().st_mtime - 10, po.stat().st_mtime - 10))
    assert i18n_web.ensure_compiled(tmp_path, "board") == [mo]
    assert not list(tmp_path.rglob(".board-*"))  # no temporary files left behind
