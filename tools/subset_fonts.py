"""Make the web pages' fallback fonts, webhook/static/fonts/*.woff2 (see OFL.txt there).

The board and the sandbox name the fonts people's systems have for Chinese and emoji first;
these two come last, for a system that has none (a bare Linux box with a headless Chromium
shows every Chinese character as an empty box otherwise). Each is a subset, so it stays small:

- minsheng-sans.woff2: Noto Sans CJK SC Regular, with the 3,755 characters of GB 2312's first
  level (the common ones) and every CJK character of the Chinese catalogues, the templates,
  the sandbox's page and demo data;
- minsheng-emoji.woff2: Noto Color Emoji, with the symbols and emoji the pages and the bot's
  messages use.

Both are renamed, as the licence asks of a modified font. Needs fontTools with brotli (not a
dependency of the service) and Debian's fonts-noto-cjk and fonts-noto-color-emoji:

    pip install 'fonttools[woff]' && python tools/subset_fonts.py

tests/webhook/test_web_fonts.py fails when the pages use a character a subset lacks: run this
again and commit the result.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "webhook" / "static" / "fonts"
NOTO_CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
NOTO_CJK_SC = 2  # the collection's Simplified Chinese face
NOTO_EMOJI = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")

# Where the pages' and the bot's own words are.
SOURCES = (
    "locales/*/LC_MESSAGES/*.po",
    "webhook/templates/*.html",
    "webhook/sandbox/static/*",
    "webhook/**/*.py",
    "bot/**/*.py",
    "dialogs/**/*.py",
    "storage/**/*.py",
)


# What each font is for, as webhook/static/fonts.css's `unicode-range`s say too (a test holds
# them equal): CJK ideographs, punctuation and full-width forms; arrows, technical symbols,
# dingbats and emoji.
CJK_RANGES = ((0x2E80, 0x9FFF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F), (0xFF00, 0xFFEF))
SYMBOL_RANGES = ((0x2190, 0x2BFF), (0x1F000, 0x1FAFF))


def _within(character: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    code = ord(character)
    return any(low <= code <= high for low, high in ranges)


def is_cjk(character: str) -> bool:
    return _within(character, CJK_RANGES)


def is_symbol(character: str) -> bool:
    """What the emoji subset may hold."""
    return _within(character, SYMBOL_RANGES)


def unicode_range(ranges: tuple[tuple[int, int], ...]) -> str:
    """`ranges` as CSS writes them: U+2E80-9FFF, ..."""
    return ", ".join(f"U+{low:X}-{high:X}" for low, high in ranges)


def used_characters() -> Iterator[str]:
    """Every character of the sources (tests/webhook/test_web_fonts.py reads them too)."""
    for pattern in SOURCES:
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file():
                yield from path.read_text(encoding="utf-8", errors="ignore")


def gb2312_level_one() -> set[str]:
    return {
        bytes([high, low]).decode("gb2312")
        for high in range(0xB0, 0xD8)
        for low in range(0xA1, 0xFF)
        if (high, low) < (0xD7, 0xFA)  # the level ends at D7F9
    }


def rename(font: Any, family: str) -> None:
    names = font["name"]
    postscript = family.replace(" ", "") + "-Regular"
    for record in list(names.names):
        if record.nameID in (1, 16):
            names.setName(family, record.nameID, record.platformID, record.platEncID, record.langID)
        elif record.nameID in (3, 4):
            names.setName(
                f"{family} Regular",
                record.nameID,
                record.platformID,
                record.platEncID,
                record.langID,
            )
        elif record.nameID == 6:
            names.setName(postscript, 6, record.platformID, record.platEncID, record.langID)
    if "CFF " in font:
        cff = font["CFF "].cff
        cff.fontNames = [postscript]


def save_subset(font: Any, text: str, family: str, name: str) -> None:
    from fontTools import subset

    options = subset.Options()
    options.flavor = "woff2"
    options.name_languages = [0x0409]  # English names only
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(font)
    rename(font, family)
    font.flavor = "woff2"
    font.save(OUT / name)
    print(f"{name}: {len(set(text))} characters, {(OUT / name).stat().st_size:,} bytes")


def main() -> int:
    from fontTools.ttLib import TTCollection, TTFont

    used = set(used_characters())
    cjk = {c for c in used if is_cjk(c)} | gb2312_level_one()
    cjk |= {chr(code) for code in range(0x3000, 0x3040)}  # CJK punctuation
    cjk |= {chr(code) for code in range(0xFF01, 0xFF5F)}  # full-width forms
    save_subset(
        TTCollection(NOTO_CJK).fonts[NOTO_CJK_SC],
        "".join(sorted(cjk)),
        "Minsheng Sans",
        "minsheng-sans.woff2",
    )
    emoji_font = TTFont(NOTO_EMOJI)
    drawable = emoji_font.getBestCmap()
    symbols = {c for c in used if is_symbol(c) and ord(c) in drawable}
    save_subset(emoji_font, "".join(sorted(symbols)), "Minsheng Emoji", "minsheng-emoji.woff2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
