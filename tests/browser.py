"""A page of Debian's chromium for the browser tests, wherever they live (tests/ is on
sys.path: `from browser import browser_page`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright, expect

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@asynccontextmanager
async def browser_page(
    chromium_path: str, tmp_path: Path, *, env: dict[str, str] | None = None, **options: Any
) -> AsyncIterator[Page]:
    """A chromium page; a screenshot in tmp_path when the test fails, and no script errors.
    `env`: chromium's environment, if not this process's."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True, env=env
        )
        page = await browser.new_page(locale="zh-CN", **options)
        page.set_default_timeout(15000)
        expect.set_options(timeout=15000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield page
        except Exception:
            await page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            await browser.close()
        assert errors == []
