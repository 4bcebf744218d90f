"""Callback data stays within Telegram's 64 bytes, for the largest ids, and round-trips."""

from __future__ import annotations

import pytest
from aiogram.filters.callback_data import CallbackData
from aiogram.utils.i18n import I18n
from telegram_fakes import CALLBACK_DATA_MAX

from bot import keyboards
from bot.callbacks import (
    BindCb,
    CategoryCb,
    DraftField,
    EditCb,
    KindCb,
    KindChoice,
    LangCb,
    OrgLevel,
    PickCb,
    Step,
    StepCb,
)
from bot.i18n import create_i18n
from storage.rules import Category

BIGINT = 2**63 - 1  # the largest id a PostgreSQL BIGINT (or SQLite INTEGER) can hold
LARGEST: list[CallbackData] = [
    *(BindCb(level=level, id=BIGINT, page=10**6) for level in OrgLevel),
    *(PickCb(level=level, id=BIGINT, page=10**6) for level in OrgLevel),
    *(CategoryCb(category=c) for c in Category),
    *(KindCb(kind=k) for k in KindChoice),
    *(StepCb(step=s) for s in Step),
    *(EditCb(field=f) for f in DraftField),
    *(LangCb(locale=code) for code in ("zh", "en")),
]


@pytest.mark.parametrize("data", LARGEST, ids=lambda d: d.pack())
def test_packed_within_64_bytes_and_round_trips(data: CallbackData) -> None:
    packed = data.pack()
    assert len(packed.encode()) <= CALLBACK_DATA_MAX
    assert type(data).unpack(packed) == data


def test_prefixes_are_distinct() -> None:
    prefixes = [
        cls.__prefix__ for cls in (BindCb, PickCb, CategoryCb, KindCb, StepCb, EditCb, LangCb)
    ]
    assert len(set(prefixes)) == len(prefixes)
    # No prefix is the start of another's packed data, so no filter takes another's button.
    for a in prefixes:
        for b in prefixes:
            assert a == b or not b.startswith(a + ":")


@pytest.fixture
def i18n() -> I18n:
    return create_i18n()


@pytest.mark.parametrize("locale", ["zh", "en"])
def test_every_keyboard_is_valid(i18n: I18n, locale: str) -> None:
    items = [(BIGINT - i, "社区" * 32) for i in range(20)]
    with i18n.context(), i18n.use_locale(locale):
        markups = [
            keyboards.language_keyboard(),
            keyboards.category_keyboard(),
            keyboards.photos_keyboard(True),
            keyboards.photos_keyboard(False),
            keyboards.photos_keyboard(True, keep=True),
            keyboards.kind_keyboard(),
            keyboards.cost_keyboard(),
            keyboards.summary_keyboard(),
            keyboards.edit_keyboard(list(DraftField)),
            keyboards.suggest_link_keyboard("https://t.me/x?start=s_1"),
            *(
                keyboards.org_keyboard(factory, level, BIGINT, items, page, (OrgLevel.DISTRICTS, 0))
                for factory in (BindCb, PickCb)
                for level in (OrgLevel.DISTRICTS, OrgLevel.STREETS, OrgLevel.COMMUNITIES)
                for page in (0, 1, 2, 99)
            ),
        ]
    for markup in markups:
        for row in markup.inline_keyboard:
            assert 1 <= len(row) <= 2
            for button in row:
                assert button.text
                assert (button.callback_data is None) != (button.url is None)
                if button.callback_data is not None:
                    assert len(button.callback_data.encode()) <= CALLBACK_DATA_MAX


def test_org_pages_hold_eight(i18n: I18n) -> None:
    items = [(i, f"社区{i}") for i in range(1, 18)]
    with i18n.context():
        pages = [
            keyboards.org_keyboard(PickCb, OrgLevel.COMMUNITIES, 7, items, page, None)
            for page in range(3)
        ]
    counts = [
        sum(1 for row in p.inline_keyboard for b in row if b.text.startswith("社区")) for p in pages
    ]
    assert counts == [8, 8, 1]
