"""The catalogues outside a source checkout: shipped in the wheel beside the packages, and
compiled somewhere private when the installed locales/ cannot be written (an install owned by
another user, a read-only image), so that an installed bot speaks Chinese as well."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bot import i18n as bot_i18n
from bot.i18n import LOCALES_DIR, create_i18n

ROOT = Path(__file__).resolve().parents[2]
NOT_BUILT = (".venv", ".git", ".*cache", ".hypothesis", "tests", "bench", "docs", "build")
NOT_BUILT += ("*.egg-info", "*.db", "*.mo")


def test_a_read_only_locales_folder_is_compiled_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "site-packages" / "locales"
    shutil.copytree(LOCALES_DIR, installed, ignore=shutil.ignore_patterns("*.mo", ".*"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # Root may write anywhere, so the refusal is made here rather than by chmod.
    monkeypatch.setattr(bot_i18n.tempfile, "mkstemp", refuse)
    i18n = create_i18n("zh", locales_dir=installed)
    with i18n.context(), i18n.use_locale("zh"):
        assert i18n.gettext("Suggest a project") == "我要提建议"
    with i18n.context(), i18n.use_locale("en"):
        assert i18n.gettext("Suggest a project") == "Suggest a project"
    assert not list(installed.rglob("*.mo")), "nothing written into the install"
    assert Path(i18n.path) != installed


def test_the_wheel_carries_the_catalogues_and_the_web_fonts(tmp_path: Path) -> None:
    # Built from a copy: a build writes build/ and *.egg-info where it runs.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_BUILT))
    subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
            "--no-build-isolation", "--wheel-dir", str(tmp_path), str(source),
        ],
        check=True,
    )  # fmt: skip
    [wheel] = tmp_path.glob("minsheng-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for locale in ("zh", "en"):
        for domain in ("messages", "board"):
            assert f"locales/{locale}/LC_MESSAGES/{domain}.po" in names
    # Beside the packages, where bot.i18n and webhook.i18n_web look for it.
    assert "bot/i18n.py" in names and "webhook/i18n_web.py" in names
    # And the files the web pages share (webhook/assets.py), where StaticFiles looks.
    assert {
        "webhook/static/fonts.css",
        "webhook/static/fonts/minsheng-sans.woff2",
        "webhook/static/fonts/minsheng-emoji.woff2",
        "webhook/static/fonts/OFL.txt",
    } <= names
