"""The whole resident flow in a browser, through the full app in sandbox mode.

`create_app` with no BOT_TOKEN serves the built-in Bot API emulator; the real bot (handlers,
dialogs, store) answers through the webhook route. Debian's chromium, driven by Playwright,
plays a resident on /sandbox: from the community group's "我要提建议" deep-link button to the
private dialog, the acknowledgement with its number, /my, and the public board.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

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
async def service(tmp_path: Path) -> AsyncIterator[str]:
    async with serve_sandbox(tmp_path / "t.db") as (base, _app):
        yield base


async def test_resident_suggests_a_project_from_the_group(
    service: str, chromium_path: str, tmp_path: Path
) -> None:
    viewport = {"width": 1200, "height": 900}
    async with browser_page(chromium_path, tmp_path, viewport=viewport) as page:
        await _resident_flow(page, service)


async def _resident_flow(page: Page, base: str) -> None:
    await page.goto(f"{base}/sandbox")
    await play(page, ZHANG_WEI)

    # The community group: its bot posts the "我要提建议" deep link (/suggest asks for it).
    await open_chat(page, XINSHA_GROUP, "新沙社区居民群")
    link = inline_button(page, "我要提建议")
    if await link.count() == 0:
        await send(page, "/suggest")
    await expect(link.last).to_be_visible()
    await link.last.click()

    # Telegram opens the private chat and sends "/start <payload>"; the dialog begins.
    await expect(page.locator("#chat-title")).to_have_text("民生微实事")
    await expect(page.locator("#messages .row.out").last).to_contain_text("/start")
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
    await kind_question.locator(".inline-button", has_text="跳过").click()

    await expect(bot_said(page, TITLE)).to_be_visible()  # the summary repeats the title
    await press(page, "确认提交")
    acknowledgement = bot_said(page, NUMBER)
    await expect(acknowledgement).to_be_visible()
    found = NUMBER.search(await acknowledgement.inner_text())
    assert found is not None
    number = found.group(0)

    await send(page, "/my")
    listing = bot_said(page, "我的建议")
    await expect(listing).to_contain_text(number)
    await expect(listing).to_contain_text(TITLE)

    await page.goto(f"{base}/board")
    await expect(page.locator("body")).to_contain_text(number)
    await expect(page.locator("body")).to_contain_text(TITLE)
