"""A resident's way to a suggestion's timeline in a real browser (Debian's chromium, driven
by Playwright): from a row of the board to the suggestion's page by its percent-encoded
number, to English and back, and on to the duplicate merged into it; no script runs and
nothing personal shows. The board and open data served by uvicorn on `sessionmaker`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from browser import browser_page
from playwright.async_api import Page, expect
from public_data import PASSED_STEPS, PRIVATE, SECRET_NOTE, History, public_app, seed_history
from servers import serve
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytestmark = pytest.mark.browser


@pytest.fixture
async def history(sessionmaker: async_sessionmaker[AsyncSession]) -> History:
    return await seed_history(sessionmaker)


@pytest.fixture
async def base(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[str]:
    async with serve(public_app(sessionmaker), lifespan="off") as url:
        yield url


@pytest.fixture
async def page(chromium_path: str, tmp_path: Path) -> AsyncIterator[Page]:
    async with browser_page(
        chromium_path, tmp_path, viewport={"width": 390, "height": 844}
    ) as page:
        yield page


async def assert_nothing_private(page: Page) -> None:
    text = await page.content()
    for secret in (*PRIVATE, SECRET_NOTE):
        assert secret not in text, secret


async def test_from_the_board_to_a_timeline(page: Page, base: str, history: History) -> None:
    number = history.numbers[history.passed]
    await page.goto(f"{base}/board")
    await page.locator("li.item h3 a", has_text="楼道灯坏了需要维修").click()
    await expect(page).to_have_url(re.compile(r"/board/suggestions/%E6%96%B0%E6%B2%99-"))
    await expect(page.locator("main")).to_contain_text(number)
    steps = page.locator("li.event .what strong")
    await expect(steps).to_have_text(PASSED_STEPS)
    await expect(page.locator("li.event").first).to_contain_text("2026-03-02 01:00")
    await assert_nothing_private(page)

    await page.locator("a.lang").click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(steps.first).to_have_text("Suggestion made")
    await expect(page.locator("li.event .who").first).to_have_text("Resident")

    merged = history.numbers[history.merged]
    await page.locator("li.event a.num", has_text=merged).click()
    await expect(page.locator("li.item .head .num")).to_have_text(merged)
    await expect(steps.last).to_have_text("Merged into a suggestion on the same matter")
    await page.locator("a.back").click()
    await expect(page).to_have_url(re.compile(r"/board\?lang=en$"))
    await assert_nothing_private(page)
