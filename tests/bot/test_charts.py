"""The results' bar chart (bot.charts.vote_chart): a valid PNG of a sensible size, the same
bytes for the same counts, readable from one candidate to fifty."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.charts import (
    AGAINST_COLOUR,
    AGREE_COLOUR,
    MAX_WIDTH,
    MIN_WIDTH,
    missing_glyphs,
    vote_chart,
)
from bot.i18n import create_i18n
from bot.texts import choice_label
from storage.rules import Choice

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def open_png(data: bytes) -> Image.Image:
    assert data.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(data))
    image.verify()  # a complete, uncorrupted PNG
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


def items(n: int) -> list[tuple[str, int, int, int]]:
    return [(str(i + 1), (i * 7) % 13, (i * 5) % 11, i % 4) for i in range(n)]


@pytest.mark.parametrize("n", [1, 3, 13, 50])
def test_valid_png_of_sensible_size(n: int) -> None:
    data = vote_chart(items(n))
    image = open_png(data)
    width, height = image.size
    assert MIN_WIDTH <= width <= MAX_WIDTH
    assert height == 600
    # Telegram's photo rules: sides adding up to at most 10,000, a ratio of at most 20.
    assert width + height <= 10_000 and max(width, height) / min(width, height) <= 20
    assert len(data) < 10 * 1024 * 1024


def test_wider_for_more_candidates_up_to_a_cap() -> None:
    widths = [open_png(vote_chart(items(n))).size[0] for n in (1, 5, 13, 25, 50)]
    assert widths == sorted(widths)
    assert widths[0] == MIN_WIDTH and widths[-1] <= MAX_WIDTH


def test_deterministic() -> None:
    assert vote_chart(items(13)) == vote_chart(items(13))
    assert vote_chart(items(13)) != vote_chart(items(12))


def test_bars_carry_the_colours() -> None:
    image = open_png(vote_chart([("1", 10, 5, 0)])).convert("RGB")
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 16) or []}
    assert AGREE_COLOUR in colours and AGAINST_COLOUR in colours


def test_zero_votes_still_draws() -> None:
    open_png(vote_chart([("1", 0, 0, 0), ("2", 0, 0, 0)]))


def test_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        vote_chart([])
    with pytest.raises(ValueError):
        vote_chart([("1", -1, 0, 0)])
    with pytest.raises(ValueError):
        vote_chart(items(61))


def test_title_and_legend_in_the_readers_language() -> None:
    zh = vote_chart(items(3), title="议事会表决结果", legend=("同意", "反对", "弃权"))
    en = vote_chart(items(3), title="Council vote results")
    assert zh != en and open_png(zh).size == open_png(en).size
    assert vote_chart(items(3), title="议事会表决结果", legend=("同意", "反对", "弃权")) == zh


@pytest.mark.parametrize("locale", ["zh", "en"])
def test_the_font_draws_every_word_the_chart_uses(locale: str) -> None:
    """bot/fonts/chart-sans.otf is a subset: a new translation of the chart's words needs
    its characters added (bot/fonts/OFL.txt says how)."""
    i18n = create_i18n()
    with i18n.context(), i18n.use_locale(locale):
        words = [i18n.gettext("Council vote results")]
        words += [choice_label(choice) for choice in Choice]
    assert missing_glyphs("".join(words) + "0123456789") == set()


def test_words_the_font_cannot_draw_are_refused() -> None:
    assert missing_glyphs("新沙社区 Agree") == {"新", "沙", "社", "区"}
    with pytest.raises(ValueError, match="font"):
        vote_chart(items(1), title="新沙社区")
