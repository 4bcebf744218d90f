"""The bar chart PNG sent with a council vote's results: one group of three bars (agree,
against, abstain) per candidate, numbered as in the results' text.

Pillow's bundled font covers Latin only, so the picture carries numbers and an ASCII legend;
the candidates' names are in the caption. The same counts always give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

# Colour-blind-safe (ColorBrewer "Dark2"): teal, orange, purple.
AGREE_COLOUR = (27, 158, 119)
AGAINST_COLOUR = (217, 95, 2)
ABSTAIN_COLOUR = (117, 112, 179)
SERIES = (("Agree", AGREE_COLOUR), ("Against", AGAINST_COLOUR), ("Abstain", ABSTAIN_COLOUR))

BACKGROUND = (255, 255, 255)
INK = (33, 33, 33)
GRID = (224, 224, 224)

HEIGHT = 600
MIN_WIDTH = 640
# Telegram scales a photo down to 2560 px on its longer side: wider would only blur.
MAX_WIDTH = 2560
MAX_CANDIDATES = 60  # rules.MAX_VOTE_CANDIDATES is 50; beyond this the bars are unreadable
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 64, 48
IDEAL_GROUP = 108  # pixels per candidate when there is room

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> Font:
    """Pillow's bundled font at `size` (a fixed bitmap font where FreeType is missing)."""
    return ImageFont.load_default(size=size)


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


def vote_chart(items: Sequence[tuple[str, int, int, int]]) -> bytes:
    """PNG bytes: for each (label, agree, against, abstain), a group of three bars with its
    count above each bar and `label` (the candidate's position, "1".."N") below the group.
    ValueError for no items, more than MAX_CANDIDATES or a negative count."""
    if not items:
        raise ValueError("a chart needs at least one candidate")
    if len(items) > MAX_CANDIDATES:
        raise ValueError(f"at most {MAX_CANDIDATES} candidates in one chart")
    if any(min(agree, against, abstain) < 0 for _, agree, against, abstain in items):
        raise ValueError("negative count")

    count = len(items)
    group = min(IDEAL_GROUP, (MAX_WIDTH - LEFT - RIGHT) // count)
    width = max(MIN_WIDTH, LEFT + RIGHT + group * count)
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
    small, label_font = _font(13), _font(14)
    count_font = _font(max(9, min(15, bar)))

    # Grid and y-axis ticks.
    for value in range(0, scale_top + 1, step):
        y = y_of(value)
        draw.line([(LEFT, y), (width - RIGHT, y)], fill=GRID, width=1)
        text = str(value)
        w, h = _text_size(draw, text, small)
        draw.text((LEFT - 8 - w, y - h // 2 - 2), text, fill=INK, font=small)
    draw.line([(LEFT, plot_top), (LEFT, plot_bottom)], fill=INK, width=1)
    draw.line([(LEFT, plot_bottom), (width - RIGHT, plot_bottom)], fill=INK, width=1)

    # Bars, counts above them, the position below each group.
    for index, (label, *counts) in enumerate(items):
        left = x0 + index * group + (group - 3 * bar) // 2
        for series, value in enumerate(counts):
            x = left + series * bar
            y = y_of(value)
            if value > 0:
                draw.rectangle([(x, y), (x + bar - 2, plot_bottom - 1)], fill=SERIES[series][1])
            text = str(value)
            w, h = _text_size(draw, text, count_font)
            draw.text((x + (bar - 1 - w) / 2, y - h - 6), text, fill=INK, font=count_font)
        w, _ = _text_size(draw, label, label_font)
        centre = x0 + index * group + group / 2
        draw.text((centre - w / 2, plot_bottom + 10), label, fill=INK, font=label_font)

    # Legend, top right: "Agree / Against / Abstain" with their colours.
    x = width - RIGHT
    for name, colour in reversed(SERIES):
        w, h = _text_size(draw, name, label_font)
        x -= w
        draw.text((x, 20), name, fill=INK, font=label_font)
        x -= 20
        draw.rectangle([(x, 22), (x + 14, 36)], fill=colour)
        x -= 18

    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


__all__ = ["MAX_CANDIDATES", "vote_chart"]
