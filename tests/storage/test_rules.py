"""The programme's rules (storage.rules): the lifecycle table, money and deadlines."""

from __future__ import annotations

from collections import deque
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import rules
from storage.rules import (
    ACTIVE_STATES,
    CANCELLABLE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    Action,
    Kind,
    Role,
    RuleViolation,
    State,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
S = State
A = Action

# The lifecycle of PROGRAMME.md written out a second time, independently of rules.py.
EXPECTED_FORWARD = {
    (S.SUBMITTED, A.WITHDRAW, S.WITHDRAWN),
    (S.SUBMITTED, A.BEGIN_REVIEW, S.UNDER_REVIEW),
    (S.UNDER_REVIEW, A.ACCEPT, S.CANDIDATE),
    (S.UNDER_REVIEW, A.REJECT, S.REJECTED),
    (S.UNDER_REVIEW, A.MERGE, S.MERGED),
    (S.CANDIDATE, A.CONVENE_VOTE, S.COUNCIL_VOTE),
    (S.COUNCIL_VOTE, A.RESOLVE, S.RESOLVED_CANDIDATE),
    (S.COUNCIL_VOTE, A.NOT_PASS, S.NOT_PASSED),
    (S.COUNCIL_VOTE, A.NO_QUORUM, S.CANDIDATE),
    (S.RESOLVED_CANDIDATE, A.DETERMINE, S.DETERMINED),
    (S.RESOLVED_CANDIDATE, A.DEFER, S.DEFERRED),
    (S.DEFERRED, A.DETERMINE, S.DETERMINED),
    (S.DETERMINED, A.PUBLISH, S.PUBLISHED),
    (S.PUBLISHED, A.ASSIGN_IMPLEMENTER, S.IMPLEMENTER_ASSIGNED),
    (S.IMPLEMENTER_ASSIGNED, A.START, S.STARTED),
    (S.STARTED, A.COMPLETE, S.COMPLETED),
    (S.COMPLETED, A.PUBLISH_ACCOUNTS, S.ACCOUNTS_PUBLISHED),
    (S.ACCOUNTS_PUBLISHED, A.EVALUATE, S.EVALUATED),
}
TABLE = {(t.source, t.action, t.target) for t in TRANSITIONS}
ALLOWED = {(t.source, t.action, role) for t in TRANSITIONS for role in t.roles}


# --- The lifecycle --------------------------------------------------------------------------


def test_table_is_the_programme() -> None:
    cancels = {(s, A.CANCEL, S.CANCELLED) for s in CANCELLABLE_STATES}
    assert EXPECTED_FORWARD | cancels == TABLE


def test_states_partition() -> None:
    assert set(State) == TERMINAL_STATES | ACTIVE_STATES
    assert not TERMINAL_STATES & ACTIVE_STATES
    assert {S.REJECTED, S.MERGED, S.NOT_PASSED, S.EVALUATED, S.WITHDRAWN, S.CANCELLED} == (
        TERMINAL_STATES
    )


_ALLOWED_FROM = {state: sorted((a, r) for (s, a, r) in ALLOWED if s is state) for state in State}
_TARGET = {(t.source, t.action): t.target for t in TRANSITIONS}
_ANYTHING = st.tuples(st.sampled_from(Action), st.sampled_from(Role))


@st.composite
def walks(draw: st.DrawFn) -> list[tuple[State, Action, Role, bool]]:
    """A walk from SUBMITTED: each step is mostly an allowed (action, role), sometimes any."""
    state, steps = State.SUBMITTED, []
    for _ in range(draw(st.integers(0, 30))):
        allowed = _ALLOWED_FROM[state]  # empty once terminal
        pick = st.one_of(st.sampled_from(allowed), _ANYTHING) if allowed else _ANYTHING
        action, role = draw(pick)
        ok = (state, action, role) in ALLOWED
        steps.append((state, action, role, ok))
        if ok:
            state = _TARGET[(state, action)]
    return steps


@settings(max_examples=200)
@given(walks())
def test_no_walk_leaves_the_table(steps: list[tuple[State, Action, Role, bool]]) -> None:
    state = State.SUBMITTED
    for expected_source, action, role, ok in steps:
        assert state is expected_source
        if not ok:
            with pytest.raises(RuleViolation) as raised:
                rules.transition(state, action, role)
            assert raised.value.code in {"transition_not_allowed", "role_not_allowed"}
            continue
        step = rules.transition(state, action, role)
        assert step.source is state and step.action is action and role in step.roles
        assert (step.source, step.action, step.target) in TABLE
        state = step.target
    assert state in State


@given(st.sampled_from(State), st.sampled_from(Action), st.sampled_from(Role))
def test_transition_agrees_with_allowed_actions(state: State, action: Action, role: Role) -> None:
    permitted = action in rules.allowed_actions(state, role)
    try:
        rules.transition(state, action, role)
    except RuleViolation as exc:
        assert not permitted
        known_pair = any(t.source is state and t.action is action for t in TRANSITIONS)
        assert exc.code == ("role_not_allowed" if known_pair else "transition_not_allowed")
    else:
        assert permitted


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_terminal_states_are_final(state: State) -> None:
    for role in Role:
        assert rules.allowed_actions(state, role) == []
        for action in Action:
            with pytest.raises(RuleViolation, match="not allowed from"):
                rules.transition(state, action, role)


@pytest.mark.parametrize("state", sorted(CANCELLABLE_STATES))
def test_street_office_can_cancel_any_active_state_until_completion(state: State) -> None:
    for role in (Role.STREET_OFFICIAL, Role.DISTRICT_ADMIN):
        assert rules.transition(state, Action.CANCEL, role).target is State.CANCELLED


@pytest.mark.parametrize("role", [Role.STREET_OFFICIAL, Role.DISTRICT_ADMIN, Role.CITY_ADMIN])
@pytest.mark.parametrize("state", [S.COMPLETED, S.ACCOUNTS_PUBLISHED])
def test_a_completed_project_cannot_be_cancelled_out_of_its_evaluation(
    state: State, role: Role
) -> None:
    """Once carried out, a project's audit and accounts are published and it is evaluated
    (seed 四（四）, 六（二）"实施结果和评价公开"): no one may cancel it on the way."""
    assert Action.CANCEL not in rules.allowed_actions(state, role)
    with pytest.raises(RuleViolation, match="not allowed from"):
        rules.transition(state, Action.CANCEL, role)


def reachable_from(start: State) -> set[State]:
    """Every state some sequence of the table's transitions leads to from `start` (itself
    included)."""
    reached, queue = {start}, deque([start])
    while queue:
        for t in TRANSITIONS:
            if t.source is queue[0] and t.target not in reached:
                reached.add(t.target)
                queue.append(t.target)
        queue.popleft()
    return reached


def test_every_course_from_completion_ends_evaluated() -> None:
    assert reachable_from(S.COMPLETED) & TERMINAL_STATES == {S.EVALUATED}


def test_community_cancels_only_before_the_council_resolves() -> None:
    cancellable = {
        s for s in ACTIVE_STATES if Action.CANCEL in rules.allowed_actions(s, Role.COMMUNITY_STAFF)
    }
    assert cancellable == {S.UNDER_REVIEW, S.CANDIDATE}


def test_who_fires_what() -> None:
    assert {t.action for t in TRANSITIONS if Role.SYSTEM in t.roles} == {
        A.RESOLVE,
        A.NOT_PASS,
        A.NO_QUORUM,
    }
    assert {t.action for t in TRANSITIONS if Role.PROPOSER in t.roles} == {A.WITHDRAW}
    assert {t.action for t in TRANSITIONS if Role.IMPLEMENTER in t.roles} == {A.START, A.COMPLETE}
    assert not any(Role.COUNCIL_MEMBER in t.roles for t in TRANSITIONS)  # they vote by poll


def test_every_state_reachable_and_every_active_state_can_finish() -> None:
    assert reachable_from(S.SUBMITTED) == set(State)
    for state in ACTIVE_STATES:
        assert any(t.source is state for t in TRANSITIONS)


# --- Money ----------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**17))
def test_format_then_parse_is_identity(fen: int) -> None:
    assert rules.parse_yuan(rules.format_yuan(fen)) == fen


@given(st.integers(min_value=0, max_value=10**15))
def test_whole_yuan(yuan: int) -> None:
    assert rules.parse_yuan(str(yuan)) == yuan * 100


@given(st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False))
def test_more_than_two_places_rejected(amount: Decimal) -> None:
    text = f"{amount:f}"
    if amount == amount.quantize(Decimal("0.01")):
        assert rules.parse_yuan(text) == int(amount * 100)
    else:
        with pytest.raises(ValueError):
            rules.parse_yuan(text)


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("12000", 1_200_000),
        ("1.5万", 1_500_000),
        ("3,000.50", 300_050),
        ("3，000.5", 300_050),
        ("¥200", 20_000),
        ("￥200元", 20_000),
        ("200 CNY", 20_000),
        ("2k", 200_000),
        ("0.01", 1),
        ("0", 0),
        (" 12 000 ", 1_200_000),
        # 2**53 + 1 yuan: a float would lose the last digit.
        ("9007199254740993", 900_719_925_474_099_300),
        ("9007199254740993.07", 900_719_925_474_099_307),
        # What a Chinese input method types: full-width digits and point, full-width yen sign.
        ("１．５万", 1_500_000),
        ("１５０００", 1_500_000),
        ("￥１，２００．５", 120_050),
        ("1.5万元", 1_500_000),
        ("RMB 300", 30_000),
        ("2.5K", 250_000),
        ("1,000,000", 100_000_000),
        ("1.2345万", 1_234_500),
        # Everyday ways of writing yuan: 块 (块钱), 千 beside 万 and k, and "about" before a
        # rough estimate.
        ("5000块", 500_000),
        ("5000块钱", 500_000),
        ("5千", 500_000),
        ("5千元", 500_000),
        ("1.5千块", 150_000),
        ("1.5万块", 1_500_000),
        ("约5000元", 500_000),
        ("大约1.5万", 1_500_000),
        ("大概 3,000 块", 300_000),
        ("差不多２千", 200_000),
        ("约¥800", 80_000),
        ("5000元左右", 500_000),
        ("1.5万左右", 1_500_000),
        ("3千块上下", 300_000),
        ("约5000元左右", 500_000),
        ("5000 yuan", 500_000),
        ("5,000 Yuan", 500_000),
        ("人民币5000元", 500_000),
        ("3万元人民币", 3_000_000),
        # Chinese numerals, as many older residents write an amount.
        ("八千", 800_000),
        ("大概八千块", 800_000),
        ("一千", 100_000),
        ("三万", 3_000_000),
        ("一万五", 1_500_000),
        ("三千五", 350_000),
        ("两百五", 25_000),
        ("两千五百元", 250_000),
        ("一千零五", 100_500),
        ("十五", 1_500),
        ("十二万", 12_000_000),
        ("一百二十万", 120_000_000),
        ("五万零八百", 5_080_000),
        ("约两万块左右", 2_000_000),
        ("零", 0),
    ],
)
def test_parse_yuan(text: str, fen: int) -> None:
    assert rules.parse_yuan(text) == fen


@pytest.mark.parametrize(
    "text",
    ["", " ", "-1", "-0.01", "1.001", "0.005", "1.5.1", "abc", "NaN", "inf",
     "Infinity", "1e", "--1", "1/2", "万", "12345678901234567890123",
     # Decimal() would read these; a person typing them made a slip.
     "1e3", "1E5", "0e5", "1_000", "٣٠٠",
     # A comma is only a thousands separator: "1,5万" is not fifteen ten-thousands.
     "1,5万", "2,5", "1,00,0", ",100", "100,",
     # More fen than a BIGINT column holds.
     "99999999999999999999", "9e30万",
     # The everyday words around a number, still around a number in the strict format.
     "块", "千", "约", "约元", "5块5", "约约5000", "5000约", "约-5",
     # Chinese numerals that are not an amount as written.
     "万千", "千万", "一二三", "五万万", "百", "一百十", "万五",
     "五千五千", "一千一千", "五百三千", "三十五百", "三十五十", "一万五千五千",
     "约1e3", "1_000块", "2,5千", "大约1,00,0元",
     "左右", "5000左右左右", "约约5000左右"],
)  # fmt: skip
def test_parse_yuan_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        rules.parse_yuan(text)


@pytest.mark.parametrize(
    ("fen", "text"),
    [(0, "0"), (1, "0.01"), (10, "0.10"), (100, "1"), (123_456_789, "1,234,567.89"),
     (-150, "-1.50"), (-1, "-0.01"), (-200, "-2")],
)  # fmt: skip
def test_format_yuan(fen: int, text: str) -> None:
    assert rules.format_yuan(fen) == text


@pytest.mark.parametrize(("kind", "cap_yuan"), [(Kind.SERVICE, 200_000), (Kind.PHYSICAL, 500_000)])
def test_caps(kind: Kind, cap_yuan: int) -> None:
    cap = cap_yuan * 100
    rules.check_cost(kind, cap)
    assert not rules.exceeds_cap(kind, cap)
    with pytest.raises(RuleViolation) as raised:
        rules.check_cost(kind, cap + 1)
    assert raised.value.code == "cap_exceeded_without_justification"
    with pytest.raises(RuleViolation):
        rules.check_cost(kind, cap + 1, "  ")
    rules.check_cost(kind, cap + 1, "舞台需加固，经街道办会议同意")
    assert rules.exceeds_cap(kind, cap + 1)


@pytest.mark.parametrize("bad", [100.0, Decimal(100), True, "100", None])
def test_cost_must_be_integer_fen(bad: object) -> None:
    with pytest.raises(RuleViolation) as raised:
        rules.check_cost(Kind.SERVICE, bad)  # type: ignore[arg-type]
    assert raised.value.code == "cost_not_integer_fen"


def test_negative_cost() -> None:
    with pytest.raises(RuleViolation) as raised:
        rules.check_cost(Kind.PHYSICAL, -1, "justified")
    assert raised.value.code == "cost_negative"


# --- Deadlines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2025, 8, 31), 6, date(2026, 2, 28)),
        (date(2027, 8, 31), 6, date(2028, 2, 29)),
        (date(2099, 8, 31), 6, date(2100, 2, 28)),  # 2100 is not a leap year
        (date(1999, 8, 31), 6, date(2000, 2, 29)),  # 2000 is
        (date(2026, 3, 31), 1, date(2026, 4, 30)),
        (date(2026, 12, 15), 1, date(2027, 1, 15)),
        (date(2026, 7, 31), 6, date(2027, 1, 31)),
        (date(2026, 2, 28), 1, date(2026, 3, 28)),
        (date(2026, 3, 31), -1, date(2026, 2, 28)),
        (date(2026, 5, 17), 0, date(2026, 5, 17)),
    ],
)
def test_add_months(day: date, months: int, expected: date) -> None:
    assert rules.add_months(day, months) == expected


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(9000, 1, 1)), st.integers(0, 120))
def test_add_months_properties(day: date, months: int) -> None:
    result = rules.add_months(day, months)
    assert (result.year - day.year) * 12 + result.month - day.month == months
    assert result.day == day.day or (result.day < day.day and (result + timedelta(1)).day == 1)


def test_service_deadline_counts_the_local_day() -> None:
    # 17:00 UTC on 31 January is 01:00 on 1 February in Shanghai.
    assigned = datetime(2026, 1, 31, 17, 0, tzinfo=UTC)
    deadline = rules.implementation_deadline(Kind.SERVICE, assigned, SHANGHAI)
    assert deadline.milestone is State.STARTED
    assert deadline.due_date == date(2026, 3, 1)
    assert deadline.due_at == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # 2 March 00:00 local
    # Counted in UTC it would have been 31 January + 1 month = 28 February.
    in_utc = rules.implementation_deadline(Kind.SERVICE, assigned, ZoneInfo("UTC"))
    assert in_utc.due_date == date(2026, 2, 28)


def test_physical_deadline_six_months() -> None:
    assigned = datetime(2025, 8, 31, 3, 0, tzinfo=UTC)
    deadline = rules.implementation_deadline(Kind.PHYSICAL, assigned, SHANGHAI)
    assert deadline.milestone is State.COMPLETED
    assert deadline.due_date == date(2026, 2, 28)
    assert deadline.due_at == datetime(2026, 2, 28, 16, 0, tzinfo=UTC)


def test_deadline_needs_aware_time() -> None:
    with pytest.raises(ValueError):
        rules.implementation_deadline(Kind.SERVICE, datetime(2026, 1, 1), SHANGHAI)


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from(Kind),
)
def test_deadline_is_the_end_of_a_local_day(assigned: datetime, kind: Kind) -> None:
    deadline = rules.implementation_deadline(kind, assigned, SHANGHAI)
    local_end = deadline.due_at.astimezone(SHANGHAI)
    assert local_end.time() == time(0, 0)
    assert local_end.date() == deadline.due_date + timedelta(days=1)
    assert deadline.due_at.tzinfo is UTC
    assert deadline.due_at > assigned


def test_wider_officials_may_do_what_narrower_ones_may() -> None:
    """Scope is checked elsewhere; by role, a street official screens like community staff,
    and the district and the city like the street office."""
    for t in TRANSITIONS:
        if Role.COMMUNITY_STAFF in t.roles:
            assert {Role.STREET_OFFICIAL, Role.DISTRICT_ADMIN, Role.CITY_ADMIN} <= t.roles
        if Role.STREET_OFFICIAL in t.roles:
            assert {Role.DISTRICT_ADMIN, Role.CITY_ADMIN} <= t.roles


@pytest.mark.parametrize("kind", list(Kind))
def test_estimates_may_pass_the_cap_but_not_tenfold(kind: Kind) -> None:
    cap = rules.KIND_CAP_FEN[kind]
    rules.check_estimate(kind, cap + 1)  # noted for the street office, not refused
    rules.check_estimate(kind, cap * rules.ESTIMATE_CAP_FACTOR)
    with pytest.raises(RuleViolation) as raised:
        rules.check_estimate(kind, cap * rules.ESTIMATE_CAP_FACTOR + 1)
    assert raised.value.code == "estimate_too_large"


def test_amounts_beyond_a_bigint_are_refused() -> None:
    with pytest.raises(RuleViolation) as raised:
        rules.check_cost(Kind.SERVICE, rules.MAX_AMOUNT_FEN + 1, justification="a reason")
    assert raised.value.code == "cost_too_large"


def test_justification_length_is_enforced() -> None:
    over = rules.KIND_CAP_FEN[Kind.SERVICE] + 1
    rules.check_cost(Kind.SERVICE, over, "理" * rules.MAX_JUSTIFICATION_LENGTH)
    with pytest.raises(RuleViolation) as raised:
        rules.check_cost(Kind.SERVICE, over, "理" * (rules.MAX_JUSTIFICATION_LENGTH + 1))
    assert raised.value.code == "justification_length"
