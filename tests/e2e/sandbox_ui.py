"""Driving /sandbox in Debian's chromium, for the browser tests of this folder.

Test modules import these (`from sandbox_ui import ...`; pytest puts this folder on sys.path,
as it does for the test modules in it):

- `browser_page(chromium_path, tmp_path, **options)` (tests/browser.py): a chromium page;
- `play(page, persona)`, `open_chat(page, chat_id, title)`: act as a persona, open a chat;
- `bot_said(page, text)`, `inline_button(page, label)`, `press(page, label)`,
  `send(page, text)`: read and answer the open chat.
"""

from __future__ import annotations

import re

from browser import browser_page as browser_page
from playwright.async_api import Locator, Page, expect


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
