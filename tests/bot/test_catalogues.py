"""The gettext catalogues of the bot (domain "messages"): complete in zh and en, with the same
placeholders and tags as the English source, and the programme's own Chinese terms."""

from __future__ import annotations

import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
from aiogram.utils.i18n import I18n
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from bot import texts
from bot.i18n import LOCALES_DIR, create_i18n
from storage.rules import TRANSITIONS, Action, Category, Kind, SourceType, State

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ("zh", "en")


def load(locale: str) -> Catalog:
    with (LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po, locale=locale)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """What the code asks gettext for, extracted as the README says (babel.cfg)."""
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    subprocess.run(
        [
            sys.executable, "-m", "babel.messages.frontend", "--quiet", "extract",
            "-F", "babel.cfg", "-k", "_", "-k", "__", "-k", "lazy_gettext",
            "-o", str(pot), "bot", "dialogs",
        ],
        cwd=ROOT,
        check=True,
    )  # fmt: skip
    with pot.open("rb") as file:
        return read_po(file)


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def tags(text: str) -> list[str]:
    return sorted(re.findall(r"</?[a-z-]+>", text))


def test_the_code_asks_for_something(extracted: Catalog) -> None:
    ids = {m.id for m in extracted if m.id}
    assert len(ids) > 100
    assert "Suggest a project" in ids
    assert "Submitted" in ids


@pytest.mark.parametrize("locale", LOCALES)
def test_every_extracted_string_is_translated(extracted: Catalog, locale: str) -> None:
    catalog = load(locale)
    missing = [m.id for m in extracted if m.id and (catalog.get(m.id) is None)]
    assert missing == [], f"not in {locale}/messages.po; run pybabel update (see babel.cfg)"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_entry_has_a_translation(locale: str) -> None:
    catalog = load(locale)
    for message in catalog:
        if not message.id:
            continue
        assert isinstance(message.id, str) and isinstance(message.string, str)
        assert message.string.strip(), f"{locale}: empty msgstr for {message.id!r}"
        assert not message.fuzzy, f"{locale}: fuzzy {message.id!r}"


@pytest.mark.parametrize("locale", LOCALES)
def test_placeholders_and_tags_match(locale: str) -> None:
    for message in load(locale):
        if not message.id:
            continue
        assert isinstance(message.id, str) and isinstance(message.string, str)
        assert placeholders(message.string) == placeholders(message.id), message.id
        assert tags(message.string) == tags(message.id), message.id
        # Every command the English names is named in the translation too.
        for word in message.id.split():
            if word.startswith("/") and word[1:].isalpha():
                assert word in message.string, (locale, message.id, word)


def test_no_translation_is_left_over_from_removed_code(extracted: Catalog) -> None:
    ids = {m.id for m in extracted if m.id}
    for locale in LOCALES:
        stale = [m.id for m in load(locale) if m.id and m.id not in ids]
        assert stale == [], f"{locale}: entries no code asks for"


@pytest.fixture(scope="module")
def i18n() -> I18n:
    return create_i18n()


ZH_STATES = {
    State.SUBMITTED: "已提交",
    State.UNDER_REVIEW: "审核中",
    State.CANDIDATE: "待议事会讨论",
    State.REJECTED: "不予采纳",
    State.MERGED: "已合并",
    State.COUNCIL_VOTE: "议事会表决中",
    State.RESOLVED_CANDIDATE: "社区备选项目",
    State.NOT_PASSED: "未通过",
    State.DETERMINED: "街道确定",
    State.DEFERRED: "暂缓",
    State.PUBLISHED: "已公示",
    State.IMPLEMENTER_ASSIGNED: "已确定实施主体",
    State.STARTED: "实施中",
    State.COMPLETED: "已完工",
    State.ACCOUNTS_PUBLISHED: "决算已公开",
    State.EVALUATED: "已评议",
    State.WITHDRAWN: "已撤回",
    State.CANCELLED: "已取消",
}


def test_the_programmes_chinese_terms(i18n: I18n) -> None:
    with i18n.context(), i18n.use_locale("zh"):
        assert {s: texts.status_label(s) for s in State} == ZH_STATES
        assert [texts.category_label(c) for c in Category] == [
            "消除安全隐患",
            "社区环境整治",
            "文化体育娱乐",
            "居民生活关爱",
        ]
        assert [texts.kind_label(k) for k in Kind] == ["服务项目", "实物项目"]
        assert [texts.source_type_label(s) for s in SourceType] == [
            "社区居民",
            "驻社区单位",
            "社会组织",
            "两代表一委员",
        ]


def test_only_the_council_makes_a_community_candidate_project(i18n: I18n) -> None:
    """PROGRAMME.md, "The lifecycle", step 1: the community classifies the suggestions and
    rejects what is out of scope; "the residents' council discusses and screens them into
    community candidate projects (社区备选项目)". Seed 四（一）: "进行分类整理后，组织社区居民
    议事会充分讨论并筛选社区备选项目"; 四（二）: the street office determines "根据各社区提交的
    备选项目". So the state read as 社区备选项目 is the one the council's resolution (RESOLVE)
    leads into, and no other: the staff's acceptance (ACCEPT, into CANDIDATE) and a vote
    without quorum (NO_QUORUM, back to CANDIDATE) leave a suggestion awaiting the council."""
    with i18n.context(), i18n.use_locale("zh"):
        wrong = sorted(
            f"{step.action.value}: {step.source.value} → {step.target.value} "
            f"({texts.status_label(step.target)})"
            for step in TRANSITIONS
            if "社区备选项目" in texts.status_label(step.target)
            and step.action is not Action.RESOLVE
        )
        assert wrong == []
        assert texts.status_label(State.RESOLVED_CANDIDATE) == "社区备选项目"
    with i18n.context(), i18n.use_locale("en"):
        assert texts.status_label(State.CANDIDATE) == "Awaiting the council"
        assert texts.status_label(State.RESOLVED_CANDIDATE) == "Community candidate project"


# The council said to do the 商议 (consultation): 议事会 … 商议 within one clause.
COUNCIL_CONSULTS = re.compile(r"议事会[^。；！？\n]*商议")


def test_the_council_resolves_it_does_not_consult() -> None:
    """Seed 六（二）保障民意, "三议三公开": "项目由'两代表一委员'和社区党员、居民提议，街道办事处
    组织社区党组织、工作站、居委会对提议项目进行商议，社区居民议事会按照议事制度进行决议".
    PROGRAMME.md, Transparency: consulted (商议) by the community organisations; resolved (决议)
    by the residents' council. What residents read in Chinese gives the council its own step:
    it discusses and votes (讨论、表决), it does not 商议. (The /start introduction, the thanks
    after submitting and the notice of acceptance used to say it did.)"""
    wrong = [
        message.string
        for message in load("zh")
        if message.id
        and isinstance(message.string, str)
        and COUNCIL_CONSULTS.search(message.string)
    ]
    assert wrong == []


def test_labels_are_distinct_in_english(i18n: I18n) -> None:
    with i18n.context(), i18n.use_locale("en"):
        labels = [texts.status_label(s) for s in State]
        assert len(set(labels)) == len(State)
        assert texts.status_label("submitted") == "Submitted"
        assert texts.category_label("culture_sports") == "Culture, sports and recreation"
