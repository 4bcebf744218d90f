"""The bar chart PNG sent with a council vote's results: one group of three bars (agree,
against, abstain) per candidate, numbered as in the results' text, under a title and a legend
in the reader's language.

The type is bot/fonts/chart-sans.otf, a subset of Noto Sans CJK SC (SIL OFL, see
bot/fonts/OFL.txt) with the glyphs of the chart's own words in Chinese and English, ASCII and
digits: candidates' names, which could be any characters, are in the caption, not in the
picture. The same counts and words always give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

# Colour-blind-safe (ColorBrewer "Dark2"): teal, orange, purple.
AGREE_COLOUR = (27, 158, 119)
AGAINST_COLOUR = (217, 95, 2)
ABSTAIN_COLOUR = (117, 112, 179)
COLOURS = (AGREE_COLOUR, AGAINST_COLOUR, ABSTAIN_COLOUR)
DEFAULT_LEGEND = ("Agree", "Against", "Abstain")
FONT_PATH = Path(__file__).parent / "fonts" / "chart-sans.otf"

BACKGROUND = (255, 255, 255)
INK = (33, 33, 33)
GRID = (224, 224, 224)

HEIGHT = 600
MIN_WIDTH = 640
# Telegram scales a photo down to 2560 px on its longer side: wider would only blur.
MAX_WIDTH = 2560
MAX_CANDIDATES = 60  # rules.MAX_VOTE_CANDIDATES is 50; beyond this the bars are unreadable
# Telegram shows a photo a phone's width across (~360 points for a 640-pixel chart), so the
# type is large: a tick label at 22 pixels reads at about 12 points.
LEFT, RIGHT, TOP, BOTTOM = 60, 24, 112, 56
IDEAL_GROUP = 108  # pixels per candidate when there is room
TITLE_SIZE, LEGEND_SIZE, LABEL_SIZE, TICK_SIZE = 30, 24, 24, 20

Font = ImageFont.FreeTypeFont


@cache
def _font(size: int) -> Font:
    return ImageFont.truetype(str(FONT_PATH), size)


def missing_glyphs(text: str) -> set[str]:
    """The characters of `text` the chart's font cannot draw (bot/fonts/OFL.txt says how to
    add some)."""
    return glyphs_missing_from(_font(TICK_SIZE), text)


def glyphs_missing_from(font: Font, text: str) -> set[str]:
    """The characters of `text` that `font` draws as the empty box of a missing glyph (for a
    subset font: the chart's, and the web pages' in webhook/static/fonts). Drawn in colour,
    so that a colour emoji font is asked the same way."""
    size = int(font.size) * 2

    def drawn(character: str) -> bytes:
        image = Image.new("RGBA", (size, size))
        ImageDraw.Draw(image).text((0, 0), character, font=font, embedded_color=True)
        return image.tobytes()

    missing = drawn("\ue000")  # a private-use character: never in a font
    return {c for c in set(text) if not c.isspace() and drawn(c) == missing}


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: Font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return int(right - left), int(bottom - top)


def _nice_step(top: int, max_ticks: int = 8) -> int:
    """A tick step of 1, 2 or 5 × 10^k giving at most `max_ticks` steps up to `top`."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if math.ceil(top / step) <= max_ticks:
                return step
        magnitude *= 10


def vote_chart(
    items: Sequence[tuple[str, int, int, int]],
    *,
    title: str = "",
    legend: tuple[str, str, str] = DEFAULT_LEGEND,
) -> bytes:
    """PNG bytes: for each (label, agree, against, abstain), a group of three bars with its
    count above each bar and `label` (the candidate's position, "1".."N") below the group;
    `title` at the top left and the `legend` (agree, against, abstain) at the top right, in
    the reader's language. ValueError for no items, more than MAX_CANDIDATES, a negative count
    or words the font cannot draw (missing_glyphs)."""
    if not items:
        raise ValueError("a chart needs at least one candidate")
    if len(items) > MAX_CANDIDATES:
        raise ValueError(f"at most {MAX_CANDIDATES} candidates in one chart")
    if any(min(agree, against, abstain) < 0 for _, agree, against, abstain in items):
        raise ValueError("negative count")
    missing = missing_glyphs(title + "".join(legend) + "".join(label for label, *_ in items))
    if missing:
        raise ValueError(f"the chart's font has no {''.join(sorted(missing))!r}")

    count = len(items)
    group = min(IDEAL_GROUP, (MAX_WIDTH - LEFT - RIGHT) // count)
    # As wide as the groups need, or the widest Telegram shows once they must be narrower.
    width = max(MIN_WIDTH, LEFT + RIGHT + group * count if group == IDEAL_GROUP else MAX_WIDTH)
    # Centre the groups when the minimum width leaves room.
    x0 = LEFT + (width - LEFT - RIGHT - group * count) // 2
    bar = max(3, int(group * 0.26))
    plot_top, plot_bottom = TOP + 16, HEIGHT - BOTTOM

    highest = max(max(agree, against, abstain) for _, agree, against, abstain in items)
    step = _nice_step(max(highest, 1))
    scale_top = max(step, math.ceil(max(highest, 1) / step) * step)

    def y_of(value: int) -> int:
        return plot_bottom - round((plot_bottom - plot_top) * value / scale_top)

    image = Image.new("RGB", (width, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    tick_font, label_font, legend_font = _font(TICK_SIZE), _font(LABEL_SIZE), _font(LEGEND_SIZE)
    count_font = _font(max(12, min(LABEL_SIZE, bar)))

    # Grid and y-axis ticks.
    for value in range(0, scale_top + 1, step):
        y = y_of(value)
        draw.line([(LEFT, y), (width - RIGHT, y)], fill=GRID, width=1)
        draw.text((LEFT - 10, y), str(value), fill=INK, font=tick_font, anchor="rm")
    draw.line([(LEFT, plot_top), (LEFT, plot_bottom)], fill=INK, width=1)
    draw.line([(LEFT, plot_bottom), (width - RIGHT, plot_bottom)], fill=INK, width=1)

    # Bars, counts above them, the position below each group.
    for index, (label, *counts) in enumerate(items):
        left = x0 + index * group + (group - 3 * bar) // 2
        for series, value in enumerate(counts):
            x = left + series * bar
            y = y_of(value)
            if value > 0:
                draw.rectangle([(x, y), (x + bar - 2, plot_bottom - 1)], fill=COLOURS[series])
            centre = x + (bar - 1) / 2
            draw.text((centre, y - 6), str(value), fill=INK, font=count_font, anchor="mb")
        centre = x0 + index * group + group / 2
        draw.text((centre, plot_bottom + 10), label, fill=INK, font=label_font, anchor="mt")

    # The title on the first line; the legend, right-aligned, on the second.
    if title:
        draw.text((20, 36), title, fill=INK, font=_font(TITLE_SIZE), anchor="lm")
    x = width - RIGHT
    for name, colour in reversed(list(zip(legend, COLOURS, strict=True))):
        w, _ = _text_size(draw, name, legend_font)
        x -= w
        draw.text((x, 80), name, fill=INK, font=legend_font, anchor="lm")
        x -= 26
        draw.rectangle([(x, 71), (x + 18, 89)], fill=colour)
        x -= 22

    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


__all__ = ["MAX_CANDIDATES", "glyphs_missing_from", "missing_glyphs", "vote_chart"]
