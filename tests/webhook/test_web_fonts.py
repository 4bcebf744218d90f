"""The web pages' fallback fonts (webhook/assets.py): served under /assets, allowed by the
pages' Content-Security-Policy, and drawing every character the pages and the bot's messages
use, so that a system without Chinese or emoji fonts shows them (tools/subset_fonts.py makes
the fonts; run it again when a test here names a character a subset lacks)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import ImageFont
from public_data import public_client

from bot.charts import glyphs_missing_from
from storage.db import create_engine, create_sessionmaker
from storage.settings import Settings
from tools import subset_fonts
from webhook.app import create_app

ROOT = Path(__file__).resolve().parents[2]
FONTS = ROOT / "webhook" / "static" / "fonts"


@pytest.fixture(scope="module")
def used() -> set[str]:
    return set(subset_fonts.used_characters())


@pytest.fixture
async def client(sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(_env_file=None, database_url=sqlite_url, bot_token=None))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://minsheng.test") as http:
        yield http


def test_the_chinese_font_draws_every_chinese_character_used(used: set[str]) -> None:
    font = ImageFont.truetype(FONTS / "minsheng-sans.woff2", 24)
    chinese = "".join(c for c in used if subset_fonts.is_cjk(c))
    assert len(chinese) > 500  # the catalogues, the templates, the sandbox were read
    assert glyphs_missing_from(font, chinese) == set()
    # Beyond the project's own words: GB 2312's common characters, for what people type.
    assert glyphs_missing_from(font, "啊阿埃挨哎") == set()


def test_the_emoji_font_draws_every_emoji_used(used: set[str]) -> None:
    """Pictographs (U+1F000 on) and the symbols of the bot's messages. Other symbols the pages
    use (arrows, check marks, ≥) are not emoji: the system's text font draws them (DejaVu
    comes with fontconfig), and Noto Color Emoji has none of them to give."""
    font = ImageFont.truetype(FONTS / "minsheng-emoji.woff2", 109)
    messages = "".join(
        path.read_text(encoding="utf-8") for path in ROOT.glob("locales/*/LC_MESSAGES/*.po")
    )
    emoji = {c for c in used if ord(c) >= 0x1F000}
    emoji |= {c for c in messages if subset_fonts.is_symbol(c)}
    assert {"📌", "🤖", "✅", "🎉"} <= emoji
    assert glyphs_missing_from(font, "".join(emoji)) == set()


def test_the_css_gives_each_font_the_characters_it_was_made_for() -> None:
    css = (ROOT / "webhook" / "static" / "fonts.css").read_text(encoding="utf-8")
    ranges = [" ".join(found.split()) for found in re.findall(r"unicode-range:([^;]*);", css)]
    assert ranges == [
        subset_fonts.unicode_range(subset_fonts.CJK_RANGES),
        subset_fonts.unicode_range(subset_fonts.SYMBOL_RANGES),
    ]


async def test_the_fonts_and_their_css_are_served(client: httpx.AsyncClient) -> None:
    css = await client.get("/assets/fonts.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    for name in ("minsheng-sans.woff2", "minsheng-emoji.woff2"):
        assert f"/assets/fonts/{name}" in css.text
        font = await client.get(f"/assets/fonts/{name}")
        assert font.status_code == 200
        assert font.headers["content-type"] == "font/woff2"
        assert font.content == (FONTS / name).read_bytes()
        # Revalidated, not fetched again.
        again = await client.get(
            f"/assets/fonts/{name}", headers={"if-none-match": font.headers["etag"]}
        )
        assert again.status_code == 304
    head = await client.head("/assets/fonts/minsheng-sans.woff2")
    assert head.status_code == 200 and head.content == b""


@pytest.mark.parametrize("path", ["/assets/nothing.woff2", "/assets/../pyproject.toml", "/assets/"])
async def test_nothing_else_is_served_from_assets(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 404


async def test_the_pages_load_the_fonts_and_may(client: httpx.AsyncClient, sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with public_client(create_sessionmaker(engine)) as board:
            pages = [await board.get("/board"), await client.get("/sandbox")]
    finally:
        await engine.dispose()
    for page in pages:
        assert page.status_code == 200
        assert '<link rel="stylesheet" href="/assets/fonts.css">' in page.text
        policy = page.headers["content-security-policy"]
        assert "font-src 'self'" in policy
        assert "style-src 'self'" in policy
