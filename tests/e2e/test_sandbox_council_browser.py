"""A whole council vote in a browser, through the full app in sandbox mode.

As in test_sandbox_browser.py, `create_app` with no BOT_TOKEN serves the Bot API emulator and
the real bot answers through the webhook route; Debian's chromium, driven by Playwright, plays
the demo's people on /sandbox. 刘敏 (community staff of 新沙) screens the three seeded
suggestions with /review and puts them to the council with /convene; the polls appear in the
council's group, where each of the five members votes by clicking; once all have voted the
vote closes early, and the results (text and chart) reach the council's group and the
residents' group. The public board then shows the counts and outcomes, never who voted how.

Button labels come from the bot's own keyboards in Chinese (the staff member's language), so
the test follows the wording of the catalogues rather than repeating it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect
from sandbox_ui import bot_said, browser_page, inline_button, open_chat, play, press, send
from servers import serve_sandbox

from bot import keyboards
from bot.i18n import create_i18n
from webhook.sandbox.demo import (
    COUNCIL,
    LIU_MIN,
    QIAN_DUODUO,
    SUGGESTIONS,
    XINSHA_COUNCIL_GROUP,
    XINSHA_GROUP,
    ZHANG_WEI,
    ZHAO_LEI,
)

pytestmark = pytest.mark.browser

AGREE, AGAINST, ABSTAIN = 0, 1, 2  # the options of every council poll, in this order
# How the five members vote on each seeded suggestion (by title), in COUNCIL's order.
PLAN: dict[str, tuple[int, int, int, int, int]] = {
    SUGGESTIONS[0].title: (AGREE, AGREE, AGREE, AGAINST, ABSTAIN),  # 3 · 1 · 1: passes
    SUGGESTIONS[1].title: (AGREE, AGAINST, AGAINST, AGAINST, AGREE),  # 2 · 3 · 0: fails
    SUGGESTIONS[2].title: (AGREE, AGREE, AGREE, AGREE, ABSTAIN),  # 4 · 0 · 1: passes
}
COUNTS = {
    title: tuple(choices.count(option) for option in (AGREE, AGAINST, ABSTAIN))
    for title, choices in PLAN.items()
}


@dataclass(frozen=True)
class Labels:
    """The bot's Chinese button labels."""

    accept: str
    select_all: str
    next_step: str
    deadline: str
    convene: str


def zh_labels() -> Labels:
    i18n = create_i18n()
    with i18n.context(), i18n.use_locale("zh"):
        return Labels(
            accept=keyboards.review_accept_label(),
            select_all=keyboards.select_all_label(),
            next_step=keyboards.convene_next_label(),
            deadline=keyboards.deadline_label(24),
            convene=keyboards.convene_confirm_label(),
        )


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[str]:
    async with serve_sandbox(tmp_path / "t.db") as (base, _app):
        yield base


def poll(page: Page, title: str) -> Locator:
    """The poll in the open chat whose question names this suggestion."""
    question = page.locator(".poll-question", has_text=title)
    return page.locator("#messages .poll", has=question).last


async def test_a_council_vote_by_clicking(service: str, chromium_path: str, tmp_path: Path) -> None:
    labels = zh_labels()
    viewport = {"width": 1200, "height": 900}
    async with browser_page(chromium_path, tmp_path, viewport=viewport) as page:
        await _council_flow(page, service, labels)


async def _council_flow(page: Page, base: str, labels: Labels) -> None:
    await page.goto(f"{base}/sandbox")

    # 刘敏, community staff of 新沙: /review accepts the three seeded suggestions.
    await play(page, LIU_MIN)
    await open_chat(page, LIU_MIN, "民生微实事")
    await page.click("#start-button")
    await expect(page.locator("#messages .row.out").last).to_contain_text("/start")
    await send(page, "/review")
    for seeded in SUGGESTIONS:
        card = page.locator("#messages .row", has=page.locator(".inline-button")).filter(
            has_text=seeded.title
        )
        await expect(card.last).to_be_visible()
        await card.last.locator(".inline-button", has_text=labels.accept).click()
        # Accepted: the card's buttons go, and the next card (or the end) follows.
        await expect(card).to_have_count(0)
    await expect(inline_button(page, labels.accept)).to_have_count(0)

    # /convene: every candidate, a deadline a day away, and convene.
    await send(page, "/convene")
    await press(page, labels.select_all)
    for seeded in SUGGESTIONS:
        await expect(inline_button(page, "☑ ").filter(has_text=seeded.title[:8])).to_have_count(1)
    await press(page, labels.next_step)
    await press(page, labels.deadline)
    summary = bot_said(page, SUGGESTIONS[0].title[:8])
    await expect(summary).to_be_visible()
    await press(page, labels.convene)
    await expect(bot_said(page, "新沙社区居民议事会")).to_be_visible()

    # A resident who is not on the council does not see its group.
    await play(page, QIAN_DUODUO)
    await expect(page.locator(f'#chats [data-chat-id="{XINSHA_GROUP}"]')).to_be_visible()
    await expect(page.locator(f'#chats [data-chat-id="{XINSHA_COUNCIL_GROUP}"]')).to_have_count(0)

    # Each member votes on each candidate by clicking; each sees their own choice.
    await play(page, ZHAO_LEI)
    await open_chat(page, XINSHA_COUNCIL_GROUP, "新沙社区居民议事会")
    for title in PLAN:
        await expect(poll(page, title)).to_be_visible()
    for index, member in enumerate(COUNCIL):
        await play(page, member)
        await expect(page.locator("#chat-title")).to_have_text("新沙社区居民议事会")
        for title, choices in PLAN.items():
            options = poll(page, title).locator(".poll-option")
            await expect(options).to_have_count(3)
            await options.nth(choices[index]).click()
            mine = poll(page, title).locator(".poll-result", has_text="✓")
            await expect(mine).to_have_count(1)

    # Everyone has voted: the vote closes early; the polls end and the results follow.
    for title, (agree, against, abstain) in COUNTS.items():
        final = poll(page, title)
        await expect(final.locator(".poll-kind")).to_contain_text("投票已结束")
        counts = final.locator(".poll-result b")
        await expect(counts.nth(AGREE)).to_contain_text(f"({agree})")
        await expect(counts.nth(AGAINST)).to_contain_text(f"({against})")
        await expect(counts.nth(ABSTAIN)).to_contain_text(f"({abstain})")
    await _expect_results(page)

    # The residents' group hears the result too.
    await play(page, ZHANG_WEI)
    await open_chat(page, XINSHA_GROUP, "新沙社区居民群")
    await _expect_results(page)

    # The public board: counts and outcomes, not who voted how.
    await page.goto(f"{base}/board")
    body = page.locator("body")
    for title, (agree, against, abstain) in COUNTS.items():
        item = page.locator("li.item", has_text=title)
        await expect(item).to_contain_text(f"同意 {agree} · 反对 {against} · 弃权 {abstain}")
        outcome = "决议通过" if agree > against else "未通过"
        await expect(item.locator(".outcome")).to_have_text(outcome)
        await expect(item).to_contain_text("表决结束")
    for name in ("赵磊", "孙丽", "周强", "吴芳", "郑浩", "刘敏"):
        await expect(body).not_to_contain_text(name)


async def _expect_results(page: Page) -> None:
    """The results of the vote in the open group: the chart, captioned with each candidate."""
    chart = page.locator("#messages .row:not(.out) .bubble", has=page.locator(".photo img"))
    await expect(chart.last).to_be_visible()
    for position, title in enumerate(PLAN, start=1):
        await expect(chart.last).to_contain_text(re.compile(rf"新沙-\d{{4}}-{position:04d}"))
        await expect(chart.last).to_contain_text(title)


async def test_personas_fold_on_a_phone(service: str, chromium_path: str, tmp_path: Path) -> None:
    """Eleven personas on a phone: the list folds to the one being played, so the chats stay
    in view, and unfolds by group (residents, staff, council) to switch."""
    phone: dict[str, Any] = {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
    }
    async with browser_page(chromium_path, tmp_path, **phone) as page:
        await page.goto(f"{service}/sandbox")
        await expect(page.locator("#personas .persona")).to_have_count(11)
        await expect(page.locator("#personas .persona:visible")).to_have_count(1)
        await expect(page.locator("#chats .chat-item").first).to_be_in_viewport()
        await page.click("#personas-toggle")
        await expect(page.locator("#personas .persona:visible")).to_have_count(11)
        for heading in ("居民", "社区工作人员", "议事会成员"):
            title = page.locator(".persona-group-title", has_text=heading).first
            await expect(title).to_be_visible()
        await page.click(f'#personas [data-persona-id="{ZHAO_LEI}"]')
        await expect(page.locator("#personas .persona:visible")).to_have_count(1)
        await expect(page.locator("#personas .persona.active")).to_contain_text("赵磊")
        council = page.locator(f'#chats [data-chat-id="{XINSHA_COUNCIL_GROUP}"]')
        await expect(council).to_be_in_viewport()
