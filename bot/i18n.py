"""aiogram's gettext i18n over the catalogues in locales/ (zh first, en second).

Compiled .mo files are build products, not sources: they are made from the .po files on
first use whenever missing or older, so a fresh clone needs no extra step.
"""

from __future__ import annotations

from pathlib import Path

from aiogram.utils.i18n import I18n
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parents[1] / "locales"
DOMAIN = "messages"
LOCALES = ("zh", "en")


def ensure_compiled(locales_dir: Path, domain: str) -> None:
    """Compile every `<locale>/LC_MESSAGES/<domain>.po` whose .mo is missing or stale."""
    for po_path in sorted(locales_dir.glob(f"*/LC_MESSAGES/{domain}.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=po_path.parents[1].name)
        tmp_path = mo_path.with_suffix(".mo.tmp")
        with tmp_path.open("wb") as mo_file:
            write_mo(mo_file, catalog)
        # Atomic, so that replicas starting together never read a half-written file.
        tmp_path.replace(mo_path)


def create_i18n(default_locale: str = "zh", locales_dir: Path = LOCALES_DIR) -> I18n:
    ensure_compiled(locales_dir, DOMAIN)
    return I18n(path=locales_dir, default_locale=default_locale, domain=DOMAIN)
