"""The whole resident flow in a browser, through the full app in sandbox mode.

`create_app` with no BOT_TOKEN serves the built-in Bot API emulator; the real bot (handlers,
dialogs, store) answers through the webhook route. Debian's chromium, driven by Playwright,
plays a resident on /sandbox: from the community group's "我要提建议" deep-link button to the
private dialog, the acknowledgement with its number, /my, and the public board. The browser is
in New York; the page shows times in the programme's zone (TIMEZONE) all the same.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Page, expect
from sandbox_ui import bot_said, browser_page, inline_button, open_chat, play, press, send
from servers import png, serve_sandbox

from webhook.sandbox.demo import XINSHA_GROUP, ZHANG_WEI

pytestmark = pytest.mark.browser

NUMBER = re.compile(r"新沙-\d{4}-\d{4}")
TITLE = "修复3栋楼道照明灯"
DESCRIPTION = "3栋楼道的灯坏了两个月，晚上老人上下楼很危险，希望更换为声控灯。"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[str, ZoneInfo]]:
    """The base URL, and the programme's time zone."""
    async with serve_sandbox(tmp_path / "t.db") as (base, app):
        yield base, app.state.runtime.settings.tz


async def test_resident_suggests_a_project_from_the_group(
    service: tuple[str, ZoneInfo], chromium_path: str, tmp_path: Path
) -> None:
    base, zone = service
    viewport = {"width": 1200, "height": 900}
    browser_zone = "America/New_York"
    assert datetime.now(zone).utcoffset() != datetime.now(ZoneInfo(browser_zone)).utcoffset()
    async with browser_page(
        chromium_path, tmp_path, viewport=viewport, timezone_id=browser_zone
    ) as page:
        await _resident_flow(page, base, zone)


def _minutes(start: datetime, end: datetime) -> set[str]:
    """Every "HH:MM" from start to end."""
    minute = start.replace(second=0, microsecond=0)
    shown = set()
    while minute <= end:
        shown.add(f"{minute:%H:%M}")
        minute += timedelta(minutes=1)
    return shown


async def _resident_flow(page: Page, base: str, zone: ZoneInfo) -> None:
    await page.goto(f"{base}/sandbox")
    await play(page, ZHANG_WEI)

    # The community group: its bot posts the "我要提建议" deep link (/suggest asks for it).
    await open_chat(page, XINSHA_GROUP, "新沙社区居民群")
    link = inline_button(page, "我要提建议")
    if await link.count() == 0:
        await send(page, "/suggest")
    await expect(link.last).to_be_visible()
    before = datetime.now(zone)
    await link.last.click()

    # Telegram opens the private chat and sends "/start <payload>"; the dialog begins.
    await expect(page.locator("#chat-title")).to_have_text("民生微实事")
    await expect(page.locator("#messages .row.out").last).to_contain_text("/start")
    # Its time is the programme's, on a 24-hour clock (not New York's); the tooltip says so.
    sent_at = page.locator("#messages .row.out").last.locator(".meta time")
    shown = await sent_at.inner_text()
    assert shown in _minutes(before, datetime.now(zone))
    await expect(sent_at).to_have_attribute("title", re.compile(rf"\({zone.key}\)$"))
    await expect(bot_said(page, "新沙社区")).to_be_visible()
    await press(page, "社区环境整治")

    await expect(bot_said(page, "标题")).to_be_visible()
    await send(page, TITLE)
    await expect(bot_said(page, "请具体描述")).to_be_visible()
    await send(page, DESCRIPTION)

    # The location step offers a reply keyboard with a request_location button.
    await expect(bot_said(page, "地点在哪里")).to_be_visible()
    await page.locator("#reply-keyboard .kb-button", has_text="发送位置").click()
    await expect(page.locator("#messages .row.out .location-card").last).to_contain_text(
        "22.5204, 114.0262"
    )
    await expect(bot_said(page, "地点已记录")).to_be_visible()

    await expect(bot_said(page, "照片")).to_be_visible()
    await page.set_input_files(
        "#photo-input",
        files=[{"name": "light.png", "mimeType": "image/png", "buffer": png(32, 24)}],
    )
    await expect(page.locator("#messages .row.out .photo img").last).to_be_visible()
    await expect(bot_said(page, "已收到第 1 张照片")).to_be_visible()
    await press(page, "完成")

    # Kind and cost: not sure, so skip (the skip button of the kind question).
    kind_question = page.locator("#messages .row", has_text="服务项目").last
    await expect(kind_question).to_be_visible()
    # As in Telegram, the buttons of a row share its width equally, each label whole.
    pair = kind_question.locator(".inline-row").first.locator(".inline-button")
    widths = await pair.evaluate_all("all => all.map((b) => b.getBoundingClientRect().width)")
    assert len(widths) == 2 and abs(widths[0] - widths[1]) < 1
    labels = pair.locator(".label")
    clipped = await labels.evaluate_all("all => all.filter((l) => l.scrollWidth > l.clientWidth)")
    assert clipped == []
    await kind_question.locator(".inline-button", has_text="跳过").click()

    await expect(bot_said(page, TITLE)).to_be_visible()  # the summary repeats the title
    await press(page, "确认提交")
    acknowledgement = bot_said(page, NUMBER)
    await expect(acknowledgement).to_be_visible()
    found = NUMBER.search(await acknowledgement.inner_text())
    assert found is not None
    number = found.group(0)
    # The thanks and /my link the suggestion's page on the sandbox's own board.
    page_url = f"{base}/board/suggestions/{quote(number, safe='')}"
    link = acknowledgement.locator("a", has_text="在公示栏查看")
    assert await link.get_attribute("href") == page_url

    await send(page, "/my")
    listing = bot_said(page, "我的建议")
    await expect(listing).to_contain_text(number)
    await expect(listing).to_contain_text(TITLE)
    assert await listing.locator("a", has_text=number).get_attribute("href") == page_url

    await page.goto(page_url)
    await expect(page.locator("body")).to_contain_text(TITLE)
    await page.goto(f"{base}/board")
    await expect(page.locator("body")).to_contain_text(number)
    await expect(page.locator("body")).to_contain_text(TITLE)
