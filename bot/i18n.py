"""aiogram's gettext i18n over the catalogues in locales/ (zh first, en second).

Compiled .mo files are build products, not sources: they are made from the .po files on
first use whenever missing or older, so a fresh clone needs no extra step. Where locales/
cannot be written (an install owned by another user, a read-only image), they are compiled
into a private temporary folder instead, once per process.
"""

from __future__ import annotations

import atexit
import functools
import io
import os
import shutil
import tempfile
from pathlib import Path

from aiogram.utils.i18n import I18n
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parents[1] / "locales"
DOMAIN = "messages"
LOCALES = ("zh", "en")


def compile_catalog(po_path: Path) -> bytes:
    """A .po file compiled to .mo bytes (for a read-only folder, used in memory)."""
    with po_path.open("rb") as po_file:
        catalog = read_po(po_file, abort_invalid=True)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    return buffer.getvalue()


def ensure_compiled(locales_dir: Path, domain: str) -> list[Path]:
    """Compile every `<locale>/LC_MESSAGES/<domain>.po` whose `.mo` is missing or older.

    The .mo files are build products (not committed). Each is written to a temporary file and
    renamed, so replicas starting together never read half a catalogue. Returns what it wrote.
    """
    written: list[Path] = []
    for po_path in sorted(locales_dir.glob(f"*/LC_MESSAGES/{domain}.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        data = compile_catalog(po_path)
        fd, tmp_name = tempfile.mkstemp(dir=po_path.parent, prefix=f".{domain}-", suffix=".mo")
        try:
            with os.fdopen(fd, "wb") as tmp_file:
                tmp_file.write(data)
            os.replace(tmp_name, mo_path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        written.append(mo_path)
    return written


def compiled_catalogues(locales_dir: Path, domain: str) -> Path:
    """The folder holding `domain`'s compiled catalogues: `locales_dir` itself (compiled
    there when needed), or a private copy when `locales_dir` cannot be written."""
    try:
        ensure_compiled(locales_dir, domain)
    except OSError:
        return _private_catalogues(locales_dir, domain)
    return locales_dir


@functools.cache
def _private_catalogues(locales_dir: Path, domain: str) -> Path:
    target = Path(tempfile.mkdtemp(prefix="minsheng-locales-"))
    atexit.register(shutil.rmtree, target, True)
    for po_path in sorted(locales_dir.glob(f"*/LC_MESSAGES/{domain}.po")):
        mo_path = target / po_path.relative_to(locales_dir).with_suffix(".mo")
        mo_path.parent.mkdir(parents=True, exist_ok=True)
        mo_path.write_bytes(compile_catalog(po_path))
    return target


def create_i18n(default_locale: str = "zh", locales_dir: Path = LOCALES_DIR) -> I18n:
    path = compiled_catalogues(locales_dir, DOMAIN)
    return I18n(path=path, default_locale=default_locale, domain=DOMAIN)
