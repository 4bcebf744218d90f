"""Files the web pages share, under /assets (webhook/static): the fallback fonts and the CSS
that declares them (fonts.css).

The board and the sandbox name the fonts a system has for Chinese and emoji first. These come
last in their lists, for a system that has none, which would otherwise draw every Chinese
character as an empty box (a bare Linux box with a headless Chromium does). Browsers fetch a
font only for a character no font before it in the list can draw, so people whose systems
have the fonts never download these. tools/subset_fonts.py makes them.
"""

from __future__ import annotations

from starlette.staticfiles import StaticFiles

PREFIX = "/assets"


def static_files() -> StaticFiles:
    """webhook/static as installed (a wheel carries it: see pyproject's package data). It
    answers HEAD, and a request that names the file's ETag or date with a 304."""
    return StaticFiles(packages=[("webhook", "static")])


__all__ = ["PREFIX", "static_files"]
