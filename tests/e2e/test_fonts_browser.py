"""On a system without Chinese or emoji fonts (a bare Linux box with a headless Chromium),
the board and the sandbox draw their text with their own fallback fonts (webhook/assets.py)
instead of empty boxes. Chromium is started with a fontconfig that knows only DejaVu."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from sandbox_ui import browser_page
from servers import serve_sandbox

pytestmark = pytest.mark.browser

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")  # what fontconfig itself brings


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[str]:
    async with serve_sandbox(tmp_path / "t.db") as (url, _app):
        yield url


def bare_system(tmp_path: Path) -> dict[str, str]:
    """An environment whose fontconfig knows DejaVu only: no Chinese, no emoji."""
    if not DEJAVU.is_dir():
        pytest.skip(f"needs DejaVu at {DEJAVU}")
    config = tmp_path / "fonts.conf"
    config.write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
        f"<dir>{DEJAVU}</dir><cachedir>{tmp_path / 'fc-cache'}</cachedir></fontconfig>"
    )
    return {**os.environ, "FONTCONFIG_FILE": str(config)}


async def faces(page: Page) -> dict[str, str]:
    """The page's own font faces and their status ("unloaded" until something needs one)."""
    found: dict[str, str] = await page.evaluate(
        "() => { const seen = {}; document.fonts.forEach((face) => {"
        " seen[face.family.replaceAll('\"', '')] = face.status; }); return seen; }"
    )
    return found


async def test_a_bare_system_draws_the_pages_with_their_own_fonts(
    base: str, chromium_path: str, tmp_path: Path
) -> None:
    async with browser_page(chromium_path, tmp_path, env=bare_system(tmp_path)) as page:
        await page.goto(f"{base}/board")
        await expect(page.locator("h1")).to_contain_text("民生微实事")
        await page.evaluate("() => document.fonts.ready")
        assert (await faces(page))["Minsheng Sans"] == "loaded"

        # The sandbox shows once both fonts are in, before it draws the personas.
        await page.goto(f"{base}/sandbox")
        await expect(page.locator("#personas .persona").first).to_be_visible()
        assert await faces(page) == {"Minsheng Sans": "loaded", "Minsheng Emoji": "loaded"}
