"""bot.texts.listing: one message's worth of a list, the rest counted; and the address of a
suggestion's page on the board."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.i18n import create_i18n
from bot.texts import LISTING_BUDGET, board_suggestion_url, listing


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    i18n = create_i18n("zh")
    with i18n.context(), i18n.use_locale("en"):
        yield


def test_everything_that_fits_is_listed() -> None:
    assert listing("Your suggestions", ["one", "two"]) == "<b>Your suggestions</b>\n\none\n\ntwo"


def test_what_does_not_fit_is_counted() -> None:
    blocks = [f"{n:03d} " + "x" * 96 for n in range(100)]  # 100 characters each
    text = listing("Votes", blocks)
    shown = [block for block in blocks if block in text]
    assert shown == blocks[: len(shown)] and 0 < len(shown) < 100
    assert text.endswith(f"…and {100 - len(shown)} more.")
    assert len(text) <= 4096
    assert len(text) - len(f"\n\n…and {100 - len(shown)} more.") <= LISTING_BUDGET


def test_nothing_to_list() -> None:
    assert listing("Your suggestions", []) == "<b>Your suggestions</b>"


def test_a_smaller_budget() -> None:
    assert listing("H", ["aaaa", "bbbb"], budget=16) == "<b>H</b>\n\naaaa\n\n…and 1 more."


@pytest.mark.parametrize(
    ("base", "number", "url"),
    [
        (
            "https://minsheng.example.org",
            "新沙-2026-0007",
            "https://minsheng.example.org/board/suggestions/%E6%96%B0%E6%B2%99-2026-0007",
        ),
        # A trailing slash is not doubled; the number stays one path segment, whatever it holds.
        ("https://x.example/", "a/b?c#d", "https://x.example/board/suggestions/a%2Fb%3Fc%23d"),
        ("https://x.example/city", "A 1", "https://x.example/city/board/suggestions/A%201"),
    ],
)
def test_board_suggestion_url(base: str, number: str, url: str) -> None:
    assert board_suggestion_url(base, number) == url
