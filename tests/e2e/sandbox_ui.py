"""Driving /sandbox in Debian's chromium, for the browser tests of this folder.

Test modules import these (`from sandbox_ui import ...`; pytest puts this folder on sys.path,
as it does for the test modules in it):

- `browser_page(chromium_path, tmp_path, **options)`: a chromium page (options as for
  `Browser.new_page`), a screenshot in tmp_path when the test fails, and no script errors;
- `play(page, persona)`, `open_chat(page, chat_id, title)`: act as a persona, open a chat;
- `bot_said(page, text)`, `inline_button(page, label)`, `press(page, label)`,
  `send(page, text)`: read and answer the open chat.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Locator, Page, async_playwright, expect

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@asynccontextmanager
async def browser_page(chromium_path: str, tmp_path: Path, **options: Any) -> AsyncIterator[Page]:
    """A chromium page; a screenshot in tmp_path when the test fails, and no script errors."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True
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


def bot_said(page: Page, text: str | re.Pattern[str]) -> Locator:
    """The bot's messages in the open chat that contain `text`, newest last."""
    return page.locator("#messages .row:not(.out) .bubble", has_text=text).last


def inline_button(page: Page, label: str) -> Locator:
    return page.locator("#messages .inline-button", has_text=label)


async def press(page: Page, label: str) -> None:
    """Press the newest inline button with this label."""
    await inline_button(page, label).last.click()


async def send(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def play(page: Page, persona: int) -> None:
    await page.click(f'#personas [data-persona-id="{persona}"]')
    await expect(page.locator(f'#personas [data-persona-id="{persona}"]')).to_have_class(
        re.compile("active")
    )


async def open_chat(page: Page, chat_id: int, title: str) -> None:
    await page.click(f'#chats [data-chat-id="{chat_id}"]')
    await expect(page.locator("#chat-title")).to_have_text(title)
