"""The web's own translations (gettext domain "board"): catalogues, labels for the programme's
terms, and the Babel tooling that keeps `locales/*/LC_MESSAGES/board.po` in step with the code.

Simplified Chinese first, English second. `python -m webhook.i18n_web` re-extracts the board's
strings and merges them into both catalogues, keeping the translations already made.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiogram.utils.i18n import I18n
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po
from babel.support import Translations

from bot import texts
from bot.i18n import compile_catalog, create_i18n, ensure_compiled
from storage.rules import Action, Category, ExclusionReason, Kind, Role, SourceType, State
from storage.services.public import MERGED_IN, RESIDENTS_COUNCIL, UNKNOWN_ACTOR

# `locales/`, beside the packages in the repository and in an install (see pyproject.toml).
LOCALES_DIR = Path(__file__).resolve().parents[1] / "locales"
DOMAIN = "board"
LOCALES = ("zh", "en")
DEFAULT_LOCALE = "zh"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# Python files whose gettext calls belong to the board's domain.
PYTHON_SOURCES = (Path(__file__).resolve(),)


def normalise_locale(value: str | None, default: str = DEFAULT_LOCALE) -> str:
    """'en', 'en-US', 'zh_CN', 'zh-Hans' -> a shipped locale; anything else -> the default."""
    if value:
        base = value.replace("_", "-").split("-")[0].strip().lower()
        if base in LOCALES:
            return base
    return default if default in LOCALES else DEFAULT_LOCALE


@lru_cache(maxsize=len(LOCALES))
def translations(locale: str) -> Translations:
    """The board's catalogue for a shipped locale, compiled first if needed."""
    locale = normalise_locale(locale)
    po_path = LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    try:
        ensure_compiled(LOCALES_DIR, DOMAIN)
    except OSError:
        # A read-only install: compile in memory instead of beside the .po.
        return Translations(io.BytesIO(compile_catalog(po_path)), domain=DOMAIN)
    loaded = Translations.load(str(LOCALES_DIR), [locale], DOMAIN)
    if not isinstance(loaded, Translations):
        raise FileNotFoundError(f"no {DOMAIN} catalogue for {locale!r} under {LOCALES_DIR}")
    return loaded


PGettext = Callable[[str, str], str]


def _pgettext(locale: str) -> PGettext:
    catalogue = translations(normalise_locale(locale))

    def pgettext(context: str, message: str) -> str:
        return str(catalogue.pgettext(context, message))

    return pgettext


# Labels for the programme's terms: the bot's own words for them (bot.texts, gettext domain
# "messages"), so a resident reads the same term in the chat and on the board.
_TABLES: dict[str, tuple[type[StrEnum], Callable[[Any], str]]] = {
    "state": (State, texts.status_label),
    "category": (Category, texts.category_label),
    "kind": (Kind, texts.kind_label),
    "source_type": (SourceType, texts.source_type_label),
    "exclusion": (ExclusionReason, texts.exclusion_reason_label),
}


@lru_cache(maxsize=1)
def _vocabulary() -> I18n:
    return create_i18n(DEFAULT_LOCALE)


@lru_cache(maxsize=len(_TABLES) * len(LOCALES))
def _labels(table: str, locale: str) -> dict[str, str]:
    terms, label = _TABLES[table]
    i18n = _vocabulary()
    with i18n.context(), i18n.use_locale(normalise_locale(locale)):
        return {str(term): label(term) for term in terms}


@lru_cache(maxsize=16)
def zone_label(timezone: str, locale: str) -> str:
    """The programme's time zone as the bot names it (bot.texts.zone_name): 北京时间."""
    i18n = _vocabulary()
    with i18n.context(), i18n.use_locale(normalise_locale(locale)):
        return texts.zone_name(timezone)


def _label(table: str, value: str, locale: str) -> str:
    # An unknown value (a state added to rules.py before its label) shows as itself.
    return _labels(table, locale).get(str(value), str(value))


def state_label(value: State | str, locale: str) -> str:
    return _label("state", value, locale)


def category_label(value: Category | str, locale: str) -> str:
    return _label("category", value, locale)


def kind_label(value: Kind | str, locale: str) -> str:
    return _label("kind", value, locale)


def source_type_label(value: SourceType | str, locale: str) -> str:
    return _label("source_type", value, locale)


def exclusion_label(value: ExclusionReason | str, locale: str) -> str:
    return _label("exclusion", value, locale)


def proposer_label(source_type: SourceType | str, locale: str) -> str:
    """Who proposed, as the public may see it: a resident is only ever "居民" / "resident";
    units, organisations and representatives by their kind, never by name."""
    if str(source_type) == SourceType.RESIDENT:
        pgettext = _pgettext(locale)
        return pgettext("proposer", "Resident")
    return source_type_label(source_type, locale)


# The public timeline (storage.services.public.PublicEvent): who acted and what happened, in
# the board's own words (the bot has none for them). The programme's terms inside them (the
# states, the exclusion reasons) stay the bot's: the templates show those beside these.


@lru_cache(maxsize=len(LOCALES))
def _role_labels(locale: str) -> dict[str, str]:
    """Officials (and the others who act on a suggestion) by role, never by name."""
    pgettext = _pgettext(locale)
    return {
        Role.COMMUNITY_STAFF: pgettext("role", "Community staff"),
        Role.COUNCIL_MEMBER: pgettext("role", "Residents' council member"),
        Role.STREET_OFFICIAL: pgettext("role", "Street office"),
        Role.DISTRICT_ADMIN: pgettext("role", "District office"),
        Role.CITY_ADMIN: pgettext("role", "City office"),
        Role.IMPLEMENTER: pgettext("role", "Implementer"),
        Role.GROUP_ADMIN: pgettext("role", "Group admin"),
        Role.SYSTEM: pgettext("role", "System (automatic)"),
        RESIDENTS_COUNCIL: pgettext("role", "Residents' council"),
        UNKNOWN_ACTOR: pgettext("role", "Not recorded"),
    }


@lru_cache(maxsize=len(LOCALES))
def _event_labels(locale: str) -> dict[str, str]:
    """What each action of the transition table (and a merge's mark on its target) did."""
    pgettext = _pgettext(locale)
    return {
        "submit": pgettext("event", "Suggestion made"),
        Action.BEGIN_REVIEW: pgettext("event", "Review begun"),
        Action.ACCEPT: pgettext("event", "Accepted by the community"),
        Action.REJECT: pgettext("event", "Not accepted"),
        Action.MERGE: pgettext("event", "Merged into a suggestion on the same matter"),
        MERGED_IN: pgettext("event", "A suggestion on the same matter was merged into this one"),
        Action.WITHDRAW: pgettext("event", "Withdrawn by the proposer"),
        Action.CONVENE_VOTE: pgettext("event", "Put to the residents' council vote"),
        Action.RESOLVE: pgettext("event", "Passed by the residents' council"),
        Action.NOT_PASS: pgettext("event", "Not passed by the residents' council"),
        Action.NO_QUORUM: pgettext("event", "Council vote without quorum: awaits the council"),
        Action.DETERMINE: pgettext("event", "Determined by the street office"),
        Action.DEFER: pgettext("event", "Deferred by the street office"),
        Action.PUBLISH: pgettext("event", "Published in the community"),
        Action.ASSIGN_IMPLEMENTER: pgettext("event", "Implementer assigned"),
        Action.START: pgettext("event", "Work started"),
        Action.COMPLETE: pgettext("event", "Work completed"),
        Action.PUBLISH_ACCOUNTS: pgettext("event", "Audit and final accounts published"),
        Action.EVALUATE: pgettext("event", "Evaluated"),
        Action.CANCEL: pgettext("event", "Cancelled"),
    }


def role_label(role: Role | str, locale: str) -> str:
    labels = _role_labels(normalise_locale(locale))
    return labels.get(str(role), labels[UNKNOWN_ACTOR])


def actor_label(actor: str, locale: str) -> str:
    """Who acted on a suggestion, as its timeline names them (PublicEvent.actor): the
    proposer as the board names a proposer ("居民" for a resident), anyone else by role."""
    if actor in set(SourceType):
        return proposer_label(actor, locale)
    return role_label(actor, locale)


def event_label(action: str, locale: str) -> str:
    """What an event of the timeline did; an action added to rules.py before its label here
    reads as a change of status."""
    found = _event_labels(normalise_locale(locale)).get(str(action))
    if found is not None:
        return found
    pgettext = _pgettext(locale)  # a name Babel's extractor sees as a call of pgettext
    return pgettext("event", "Status changed")


# Babel tooling: what the code and templates ask to be translated.
Message = str | tuple[str, str]  # a msgid, or a singular and plural pair


def extract_messages() -> dict[tuple[str | None, Message], list[tuple[str, int]]]:
    """Every (context, msgid) the board uses, with where: templates and PYTHON_SOURCES."""
    found: dict[tuple[str | None, Message], list[tuple[str, int]]] = {}
    root = Path(__file__).resolve().parents[1]
    sources: list[tuple[Path, str, dict[str, str]]] = [
        (path, "python", {}) for path in PYTHON_SOURCES
    ]
    sources += [
        (path, "jinja2.ext:babel_extract", {"silent": "false", "trimmed": "true"})
        for path in sorted(TEMPLATES_DIR.rglob("*.html"))
    ]
    for path, method, options in sources:
        for lineno, message, _comments, context in extract_from_file(
            method, str(path), options=options
        ):
            msgid: Message = message if isinstance(message, str) else (message[0], message[1])
            where = str(path.relative_to(root))
            found.setdefault((context, msgid), []).append((where, lineno))
    return found


_HEADER_COMMENT = """\
# The public board's strings (gettext domain "board").
# Regenerate the entries with `python -m webhook.i18n_web`; translations are kept."""


def update_catalogs(locales_dir: Path = LOCALES_DIR) -> list[Path]:
    """Merge the extracted messages into each locale's board.po (new ones untranslated,
    vanished ones dropped, translations kept). Returns the files written."""
    template = Catalog(project="minsheng", domain=DOMAIN, charset="utf-8")
    for (context, msgid), locations in sorted(
        extract_messages().items(), key=lambda item: item[1][0]
    ):
        template.add(msgid, locations=locations, context=context)
    written = []
    for locale in LOCALES:
        po_path = locales_dir / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
        po_path.parent.mkdir(parents=True, exist_ok=True)
        if po_path.exists():
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file, locale=locale, domain=DOMAIN)
        else:
            catalog = Catalog(locale=locale, domain=DOMAIN, project="minsheng", charset="utf-8")
        created = catalog.creation_date
        catalog.update(template, no_fuzzy_matching=True, update_creation_date=False)
        catalog.creation_date = catalog.revision_date = created
        catalog.msgid_bugs_address = ""
        catalog.obsolete.clear()
        catalog.fuzzy = False
        catalog.header_comment = _HEADER_COMMENT
        catalog.language_team = catalog.last_translator = "minsheng"
        catalog.version = "1"
        with po_path.open("wb") as po_file:
            write_po(po_file, catalog, width=100, omit_header=False, include_previous=False)
        written.append(po_path)
    return written


if __name__ == "__main__":
    for path in update_catalogs():
        print(path)
