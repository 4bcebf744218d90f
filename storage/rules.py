"""The programme's rules (PROGRAMME.md) as pure data and functions: no I/O here.

Categories, kinds and their caps, exclusion reasons, the lifecycle as one explicit table of
transitions naming who may fire each, and the deadline arithmetic. Every front end reaches
these through the services, so a rule holds everywhere or nowhere.
"""

from __future__ import annotations

import calendar
import enum
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo


class Category(enum.StrEnum):
    """The four categories of 实施内容."""

    SAFETY = "safety"  # 消除安全隐患项目
    ENVIRONMENT = "environment"  # 社区环境整治项目
    CULTURE_SPORTS = "culture_sports"  # 文化体育娱乐项目
    CARE = "care"  # 居民生活关爱项目


class Kind(enum.StrEnum):
    SERVICE = "service"  # 服务项目
    PHYSICAL = "physical"  # 实物项目


class SourceType(enum.StrEnum):
    RESIDENT = "resident"  # 社区居民
    UNIT = "unit"  # 驻社区单位
    SOCIAL_ORGANISATION = "social_organisation"  # 社会组织
    REPRESENTATIVE = "representative"  # 两代表一委员


class ExclusionReason(enum.StrEnum):
    PROPERTY_MANAGEMENT = "property_management"  # 物业等其他社会主体应承担的职责
    GOVERNMENT_INVESTMENT = "government_investment"  # 与政府投资项目重复
    OUT_OF_SCOPE = "out_of_scope"  # 不属于四类实施内容
    OTHER = "other"  # 其他（须说明）


class Role(enum.StrEnum):
    """Roles held per scope, plus the two that are not granted: proposer and system."""

    COMMUNITY_STAFF = "community_staff"
    COUNCIL_MEMBER = "council_member"
    STREET_OFFICIAL = "street_official"
    DISTRICT_ADMIN = "district_admin"
    CITY_ADMIN = "city_admin"
    PROPOSER = "proposer"  # the resident who made the suggestion
    IMPLEMENTER = "implementer"  # 项目实施主体, reports progress
    GROUP_ADMIN = "group_admin"  # a Telegram group's admin binding the group to a community
    SYSTEM = "system"  # the scheduler: vote closing, deadlines


class ScopeLevel(enum.StrEnum):
    CITY = "city"
    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"


# Which scope level a granted role is held at.
ROLE_SCOPE: dict[Role, ScopeLevel] = {
    Role.COMMUNITY_STAFF: ScopeLevel.COMMUNITY,
    Role.COUNCIL_MEMBER: ScopeLevel.COMMUNITY,
    Role.STREET_OFFICIAL: ScopeLevel.STREET,
    Role.DISTRICT_ADMIN: ScopeLevel.DISTRICT,
    Role.CITY_ADMIN: ScopeLevel.CITY,
}


class State(enum.StrEnum):
    """Every state a suggestion, and the project made from it, can be in."""

    SUBMITTED = "submitted"  # 已提交
    UNDER_REVIEW = "under_review"  # 审核中
    CANDIDATE = "candidate"  # 待议事会讨论: accepted by the community, for the council
    REJECTED = "rejected"  # 不予采纳
    MERGED = "merged"  # 已合并
    COUNCIL_VOTE = "council_vote"  # 议事会表决中
    RESOLVED_CANDIDATE = "resolved_candidate"  # 社区备选项目: the council passed it (决议通过)
    NOT_PASSED = "not_passed"  # 未通过
    DETERMINED = "determined"  # 街道确定
    DEFERRED = "deferred"  # 暂缓
    PUBLISHED = "published"  # 已公示
    IMPLEMENTER_ASSIGNED = "implementer_assigned"  # 已确定实施主体
    STARTED = "started"  # 实施中
    COMPLETED = "completed"  # 已完工
    ACCOUNTS_PUBLISHED = "accounts_published"  # 决算已公开
    EVALUATED = "evaluated"  # 已评议
    WITHDRAWN = "withdrawn"  # 已撤回
    CANCELLED = "cancelled"  # 已取消


TERMINAL_STATES: frozenset[State] = frozenset(
    {
        State.REJECTED,
        State.MERGED,
        State.NOT_PASSED,
        State.EVALUATED,
        State.WITHDRAWN,
        State.CANCELLED,
    }
)
ACTIVE_STATES: frozenset[State] = frozenset(State) - TERMINAL_STATES

# States in which the item is a suggestion; from DETERMINED on it is (part of) a project.
SUGGESTION_STATES: frozenset[State] = frozenset(
    {
        State.SUBMITTED,
        State.UNDER_REVIEW,
        State.CANDIDATE,
        State.REJECTED,
        State.MERGED,
        State.COUNCIL_VOTE,
        State.RESOLVED_CANDIDATE,
        State.NOT_PASSED,
        State.DEFERRED,
        State.WITHDRAWN,
        State.CANCELLED,
        State.DETERMINED,
    }
)


class Action(enum.StrEnum):
    BEGIN_REVIEW = "begin_review"
    ACCEPT = "accept"
    REJECT = "reject"
    MERGE = "merge"
    WITHDRAW = "withdraw"
    CONVENE_VOTE = "convene_vote"
    RESOLVE = "resolve"
    NOT_PASS = "not_pass"
    NO_QUORUM = "no_quorum"
    DETERMINE = "determine"
    DEFER = "defer"
    PUBLISH = "publish"
    ASSIGN_IMPLEMENTER = "assign_implementer"
    START = "start"
    COMPLETE = "complete"
    PUBLISH_ACCOUNTS = "publish_accounts"
    EVALUATE = "evaluate"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Transition:
    action: Action
    source: State
    target: State
    roles: frozenset[Role]
    public: bool = True  # shown on the board (三议三公开)


# Officials of a wider scope may do what a narrower one may, within their scope (a street
# official in the communities of the street): the scope check is the access service's.
_STREET = frozenset({Role.STREET_OFFICIAL, Role.DISTRICT_ADMIN, Role.CITY_ADMIN})
_STAFF = _STREET | {Role.COMMUNITY_STAFF}
_DELIVERY = _STREET | {Role.IMPLEMENTER}
_SYSTEM = frozenset({Role.SYSTEM})


def _t(action: Action, source: State, target: State, roles: frozenset[Role]) -> Transition:
    return Transition(action, source, target, roles)


_FORWARD: tuple[Transition, ...] = (
    _t(Action.WITHDRAW, State.SUBMITTED, State.WITHDRAWN, frozenset({Role.PROPOSER})),
    _t(Action.BEGIN_REVIEW, State.SUBMITTED, State.UNDER_REVIEW, _STAFF),
    _t(Action.ACCEPT, State.UNDER_REVIEW, State.CANDIDATE, _STAFF),
    _t(Action.REJECT, State.UNDER_REVIEW, State.REJECTED, _STAFF),
    _t(Action.MERGE, State.UNDER_REVIEW, State.MERGED, _STAFF),
    _t(Action.CONVENE_VOTE, State.CANDIDATE, State.COUNCIL_VOTE, _STAFF),
    _t(Action.RESOLVE, State.COUNCIL_VOTE, State.RESOLVED_CANDIDATE, _SYSTEM),
    _t(Action.NOT_PASS, State.COUNCIL_VOTE, State.NOT_PASSED, _SYSTEM),
    # A vote without quorum decides nothing: the candidate may be put to the council again.
    _t(Action.NO_QUORUM, State.COUNCIL_VOTE, State.CANDIDATE, _SYSTEM),
    _t(Action.DETERMINE, State.RESOLVED_CANDIDATE, State.DETERMINED, _STREET),
    _t(Action.DEFER, State.RESOLVED_CANDIDATE, State.DEFERRED, _STREET),
    _t(Action.DETERMINE, State.DEFERRED, State.DETERMINED, _STREET),
    _t(Action.PUBLISH, State.DETERMINED, State.PUBLISHED, _STREET),
    _t(Action.ASSIGN_IMPLEMENTER, State.PUBLISHED, State.IMPLEMENTER_ASSIGNED, _STREET),
    _t(Action.START, State.IMPLEMENTER_ASSIGNED, State.STARTED, _DELIVERY),
    _t(Action.COMPLETE, State.STARTED, State.COMPLETED, _DELIVERY),
    _t(Action.PUBLISH_ACCOUNTS, State.COMPLETED, State.ACCOUNTS_PUBLISHED, _STREET),
    _t(Action.EVALUATE, State.ACCOUNTS_PUBLISHED, State.EVALUATED, _STREET),
)

# Cancelling, with a reason, is possible from every active state up to completion, by the
# street office (or a wider scope). Not from completion on: a project carried out has its
# audit and final accounts published and is evaluated, whatever came of it (seed 四（四）; 三议三
# 公开's "实施结果和评价公开"), and cancelling would also take published accounts off the open
# data. The community may also cancel what it has screened and the council has not got before
# it: not a fresh suggestion (nobody has looked at it yet; its proposer may withdraw it), not
# a candidate while the council votes on it (the vote decides), and not what the council has
# resolved (a community may not undo its council's resolution; what comes of it is the street
# office's to determine, defer or cancel).
CANCELLABLE_STATES: frozenset[State] = ACTIVE_STATES - {State.COMPLETED, State.ACCOUNTS_PUBLISHED}
_CANCEL_BY_COMMUNITY = frozenset({State.UNDER_REVIEW, State.CANDIDATE})
_CANCEL: tuple[Transition, ...] = tuple(
    _t(
        Action.CANCEL,
        source,
        State.CANCELLED,
        _STAFF if source in _CANCEL_BY_COMMUNITY else _STREET,
    )
    for source in sorted(CANCELLABLE_STATES)
)

TRANSITIONS: tuple[Transition, ...] = _FORWARD + _CANCEL
_BY_KEY: dict[tuple[State, Action], Transition] = {(t.source, t.action): t for t in TRANSITIONS}
assert len(_BY_KEY) == len(TRANSITIONS), "one transition per (state, action)"


class RuleViolation(Exception):
    """A request the programme's rules do not allow; `code` is stable for front ends."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def transition(source: State, action: Action, role: Role) -> Transition:
    """The transition `action` fires from `source` when `role` asks, or RuleViolation."""
    found = _BY_KEY.get((source, action))
    if found is None:
        raise RuleViolation(
            "transition_not_allowed", f"{action.value} is not allowed from {source.value}"
        )
    if role not in found.roles:
        raise RuleViolation("role_not_allowed", f"{role.value} may not {action.value}")
    return found


def allowed_actions(source: State, role: Role) -> list[Action]:
    return [t.action for t in TRANSITIONS if t.source is source and role in t.roles]


def withdrawable(state: State) -> bool:
    """Whether its proposer may still withdraw a suggestion in `state` (the table says)."""
    return Action.WITHDRAW in allowed_actions(state, Role.PROPOSER)


def reached_from(state: State) -> frozenset[State]:
    """`state` and every state the programme's course can go on to from it, by the forward
    transitions. Cancelling, possible from every active state, is no step of the course: a
    cancelled item may have stopped anywhere before it."""
    reached = {state}
    frontier = [state]
    while frontier:
        source = frontier.pop()
        for step in _FORWARD:
            if step.source is source and step.target not in reached:
                reached.add(step.target)
                frontier.append(step.target)
    return frozenset(reached)


# Money is integer fen (分) throughout: 1 CNY = 100 fen.
FEN_PER_YUAN = 100
KIND_CAP_FEN: dict[Kind, int] = {
    Kind.SERVICE: 200_000 * FEN_PER_YUAN,
    Kind.PHYSICAL: 500_000 * FEN_PER_YUAN,
}
MAX_JUSTIFICATION_LENGTH = 1000


# An estimate may pass its kind's cap "in principle" (原则上), but one ten times the cap is not
# a micro-project whatever the reason: it is refused rather than stored.
ESTIMATE_CAP_FACTOR = 10
# The most fen an amount may be: what the BIGINT columns that hold money can store. Plausible
# amounts are the rules' business (caps, estimates, budgets); this bound keeps the rest out of
# the database.
MAX_AMOUNT_FEN = 2**63 - 1


def check_cost(kind: Kind, cost_fen: int, justification: str | None = None) -> None:
    """Caps hold 'in principle' (原则上): exceeding one needs a recorded justification."""
    if not isinstance(cost_fen, int) or isinstance(cost_fen, bool):
        raise RuleViolation("cost_not_integer_fen", "money is integer fen")
    if cost_fen < 0:
        raise RuleViolation("cost_negative", "a cost cannot be negative")
    if cost_fen > MAX_AMOUNT_FEN:
        raise RuleViolation("cost_too_large", "more than any amount can be")
    if justification is not None and char_length(justification) > MAX_JUSTIFICATION_LENGTH:
        raise RuleViolation(
            "justification_length",
            f"a justification is at most {MAX_JUSTIFICATION_LENGTH} characters",
        )
    if cost_fen > KIND_CAP_FEN[kind] and not (justification and justification.strip()):
        raise RuleViolation(
            "cap_exceeded_without_justification",
            f"{kind.value} projects are capped at {KIND_CAP_FEN[kind] // FEN_PER_YUAN} CNY",
        )


def exceeds_cap(kind: Kind, cost_fen: int) -> bool:
    return cost_fen > KIND_CAP_FEN[kind]


def estimate_limit(kind: Kind) -> int:
    """The largest rough estimate, in fen, a suggestion of `kind` may carry."""
    return KIND_CAP_FEN[kind] * ESTIMATE_CAP_FACTOR


def check_estimate(kind: Kind, cost_fen: int) -> None:
    """A proposer's rough estimate: over the cap is noted for the street office to weigh
    (no justification is asked of a resident), over ten times the cap is refused."""
    check_cost(kind, cost_fen, justification="estimate")
    if cost_fen > estimate_limit(kind):
        raise RuleViolation(
            "estimate_too_large",
            f"an estimate for a {kind.value} project is at most "
            f"{estimate_limit(kind) // FEN_PER_YUAN} CNY",
        )


# A number as people write one: ASCII digits after NFKC (full-width １．５ → 1.5), commas only
# between groups of three. No exponents, underscores or other scripts' digits, which Decimal()
# would take: "1e3" is a typo, not a thousand yuan, and "1,5" is not fifteen.
_AMOUNT_RE = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", re.ASCII)
# The question asks for a rough estimate, so "about" (约5000元, 大约1.5万) is what people write.
_ABOUT_PREFIXES = ("差不多", "大约", "大概", "约")
_ABOUT_SUFFIXES = ("左右", "上下")
# 块 (块钱) is how most people say yuan; ¥, 人民币 and the codes may come either side of the
# number (人民币5000元, 3万元人民币, 5000 yuan). Longer words first (块钱 before 块, 人民币 before
# 元): each is taken off once, in this order.
_CURRENCY_AFFIXES = ("人民币", "块钱", "块", "元", "yuan", "rmb", "cny", "¥")
_MULTIPLIERS = {"万": Decimal(10_000), "千": Decimal(1_000), "k": Decimal(1_000)}


# Chinese numerals as people write an amount (八千, 一万五, 两千五百, 十二万): older residents
# often do. Integers only, up to 万 of 万 (more than any estimate may be).
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}  # fmt: skip
_CN_UNITS = {"十": 10, "百": 100, "千": 1_000}
_CN_CHARS = frozenset(_CN_DIGITS) | frozenset(_CN_UNITS) | {"万"}


def _chinese_integer(text: str) -> int:
    """一万五 = 15,000 (a digit after a unit, with nothing between, is of the next unit down:
    三千五 = 3,500), 一千零五 = 1,005, 十五 = 15. ValueError for what is not written so."""
    total = section = 0  # 万s done; the part below 万 so far
    digit: int | None = None
    last_unit = 0  # the unit just used, for the spoken tail (一万五); 0 after 零
    tens_start = True  # 十 with no digit before it is 一十 only at the very start of a section
    seen_wan = False
    smallest = 10_000  # units below 万 come largest first: each smaller than the one before
    for char in text:
        if char in _CN_DIGITS:
            if digit is not None:
                raise ValueError("two digits in a row")
            value = _CN_DIGITS[char]
            if value == 0:
                last_unit = 0
                continue
            digit = value
        elif char in _CN_UNITS:
            unit = _CN_UNITS[char]
            if digit is None and not (unit == 10 and tens_start and section == 0):
                raise ValueError("a unit without its digit")
            if section and unit >= smallest:
                raise ValueError("units out of order")  # 五千五千, 五百三千
            section += (1 if digit is None else digit) * unit
            digit, last_unit, smallest = None, unit, unit
        else:  # 万
            if seen_wan or (section == 0 and digit is None):
                raise ValueError("万 misplaced")
            total = (section + (digit or 0)) * 10_000
            section, digit, last_unit, seen_wan, smallest = 0, None, 10_000, True, 10_000
        tens_start = False
    if digit is not None:
        section += digit * (last_unit // 10 if last_unit >= 100 else 1)
    return total + section


def parse_yuan(text: str) -> int:
    """Parse an amount in yuan typed by a person ('12000', '1.5万', '3,000.50', '１．５万',
    '5000块', '5千元', '约5000元', '1.5万左右', '八千块', '一万五') into fen.

    Decimal arithmetic only; more than two decimal places of a yuan, negatives, anything that
    is not a number and anything above MAX_AMOUNT_FEN raise ValueError.
    """
    cleaned = unicodedata.normalize("NFKC", text).strip().lower().replace(" ", "")
    # One "about" at each end at most (约5000元左右 is said; 约约5000 is a slip).
    cleaned = cleaned.removeprefix(next((w for w in _ABOUT_PREFIXES if cleaned.startswith(w)), ""))
    cleaned = cleaned.removesuffix(next((w for w in _ABOUT_SUFFIXES if cleaned.endswith(w)), ""))
    for affix in _CURRENCY_AFFIXES:
        cleaned = cleaned.removesuffix(affix).removeprefix(affix)
    if cleaned and set(cleaned) <= _CN_CHARS and any(c not in "万千" for c in cleaned):
        fen = Decimal(_chinese_integer(cleaned)) * FEN_PER_YUAN
        if fen > MAX_AMOUNT_FEN:
            raise ValueError("too large")
        return int(fen)
    multiplier = Decimal(1)
    if cleaned[-1:] in _MULTIPLIERS:
        multiplier, cleaned = _MULTIPLIERS[cleaned[-1]], cleaned[:-1]
    if len(cleaned) > 24 or not _AMOUNT_RE.fullmatch(cleaned):
        raise ValueError("not an amount")
    fen = Decimal(cleaned.replace(",", "")) * multiplier * FEN_PER_YUAN
    if fen != fen.to_integral_value():
        raise ValueError("at most two decimal places")
    if fen > MAX_AMOUNT_FEN:
        raise ValueError("too large")
    return int(fen)


def format_yuan(fen: int) -> str:
    # On the magnitude: divmod floors, so -150 fen would read "-2.50" (a remaining budget can be
    # negative when a determination overruns).
    sign = "-" if fen < 0 else ""
    yuan, rest = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{yuan:,}" if rest == 0 else f"{sign}{yuan:,}.{rest:02d}"


# Deadlines (实施程序 3): counted in calendar months in the programme's time zone.
SERVICE_START_MONTHS = 1
PHYSICAL_COMPLETE_MONTHS = 6


def add_months(day: date, months: int) -> date:
    """Calendar months, clamped to the month's end: 31 Jan + 1 month = 28/29 Feb."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True, slots=True)
class Deadline:
    kind: Kind
    milestone: State  # the state that must be reached: STARTED or COMPLETED
    due_date: date  # the last local day on which it is on time
    due_at: datetime  # the instant (UTC) after which it is overdue


def implementation_deadline(kind: Kind, assigned_at: datetime, tz: ZoneInfo) -> Deadline:
    """A service project must start within one month of its implementer being assigned; a
    physical project must be completed within six. The whole due day counts, in `tz`."""
    if assigned_at.tzinfo is None:
        raise ValueError("assigned_at must be timezone-aware")
    local_day = assigned_at.astimezone(tz).date()
    if kind is Kind.SERVICE:
        months, milestone = SERVICE_START_MONTHS, State.STARTED
    else:
        months, milestone = PHYSICAL_COMPLETE_MONTHS, State.COMPLETED
    due = add_months(local_day, months)
    end_of_day = datetime.combine(due + timedelta(days=1), time.min, tzinfo=tz)
    return Deadline(kind, milestone, due, end_of_day.astimezone(UTC))


# Limits of what a resident types (characters, so CJK and emoji count one each).
TITLE_MAX = 60
DESCRIPTION_MAX = 1000
LOCATION_MAX = 200
MAX_PHOTOS = 3
REJECTION_NOTE_MAX = 500


def char_length(text: str) -> int:
    """Characters as a person counts them: one per code point, so a CJK character or an
    emoji counts one, not its three or four UTF-8 bytes."""
    return len(text)


_CONTROL = {c: None for c in range(32) if chr(c) not in "\n\t"} | {0x7F: None}


def clean_text(text: str) -> str:
    """What a person typed, without control characters (NUL cannot even be stored in
    PostgreSQL) and surrounding blanks; line breaks and tabs stay."""
    return text.translate(_CONTROL).strip()


# --- Council votes (决议) -------------------------------------------------------------------


class VoteOutcome(enum.StrEnum):
    RESOLVED = "resolved"  # 决议通过: a resolved candidate
    NOT_PASSED = "not_passed"  # 未通过
    NO_QUORUM = "no_quorum"  # 未达法定人数: decides nothing, may be put again


class Choice(enum.StrEnum):
    """The three options of every council poll, in this order (poll option ids 0, 1, 2)."""

    AGREE = "agree"  # 同意
    AGAINST = "against"  # 反对
    ABSTAIN = "abstain"  # 弃权


POLL_CHOICES: tuple[Choice, ...] = (Choice.AGREE, Choice.AGAINST, Choice.ABSTAIN)
OUTCOME_ACTION: dict[VoteOutcome, Action] = {
    VoteOutcome.RESOLVED: Action.RESOLVE,
    VoteOutcome.NOT_PASSED: Action.NOT_PASS,
    VoteOutcome.NO_QUORUM: Action.NO_QUORUM,
}
MAX_VOTE_CANDIDATES = 50
MAX_VOTE_DAYS = 30


def decide(
    agree: int, against: int, abstain: int, council_size: int, quorum_pct: int, threshold_pct: int
) -> VoteOutcome:
    """The council's resolution on one candidate, by its rules (议事规则).

    Quorum: strictly more than `quorum_pct` % of the council voted (abstaining is voting).
    Threshold: strictly more than `threshold_pct` % of the votes cast agree; an abstention is
    a vote cast that never agrees. Exactly half is not more than half. Integers only, so
    30 members at 50 % need 16 voters, never a rounding question.
    """
    counts = (agree, against, abstain, council_size, quorum_pct, threshold_pct)
    if any(not isinstance(n, int) or isinstance(n, bool) for n in counts):
        raise TypeError("decide counts whole votes")
    if min(agree, against, abstain) < 0:
        raise ValueError("negative votes")
    if not 0 <= quorum_pct <= 100 or not 0 <= threshold_pct <= 100:
        raise ValueError("percentages are 0..100")
    voters = agree + against + abstain
    if voters > council_size:
        raise ValueError("more voters than council members")
    if voters * 100 <= council_size * quorum_pct:
        return VoteOutcome.NO_QUORUM
    if agree * 100 > voters * threshold_pct:
        return VoteOutcome.RESOLVED
    return VoteOutcome.NOT_PASSED


def choice_of(option_ids: list[int]) -> Choice | None:
    """A poll answer as Telegram sends it: [] retracts, [0|1|2] chooses; else ValueError."""
    if not option_ids:
        return None
    if len(option_ids) != 1 or not 0 <= option_ids[0] < len(POLL_CHOICES):
        raise ValueError(f"not an answer of a council poll: {option_ids!r}")
    return POLL_CHOICES[option_ids[0]]


def roles_for(action: Action, source: State) -> frozenset[Role]:
    """Who may fire `action` from `source` (empty when the table has no such transition)."""
    found = _BY_KEY.get((source, action))
    return found.roles if found is not None else frozenset()


# Telegram's limits on a poll, counted as Telegram counts: UTF-16 code units.
POLL_QUESTION_MAX = 300
POLL_OPTION_MAX = 100
ELLIPSIS = "…"
# Characters that only make sense attached to the one before: never end a cut on them.
_JOINERS = frozenset({"\u200d", "\ufe0e", "\ufe0f", "\u20e3"})


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: an emoji outside the BMP (😀) counts two, 中 one."""
    return len(text.encode("utf-16-le")) // 2


def fit_utf16(text: str, limit: int) -> str:
    """`text` if it fits in `limit` UTF-16 units, else cut to fit with '…' at the end.

    Cuts between code points (never half a surrogate pair) and drops a dangling joiner or
    variation selector, so a cut emoji sequence does not leave a broken glyph.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    if utf16_len(text) <= limit:
        return text
    budget = limit - utf16_len(ELLIPSIS)
    kept: list[str] = []
    used = 0
    for char in text:
        size = 2 if ord(char) > 0xFFFF else 1
        if used + size > budget:
            break
        kept.append(char)
        used += size
    while kept and (kept[-1] in _JOINERS or kept[-1].isspace()):
        kept.pop()
    return "".join(kept) + ELLIPSIS


def poll_question(number: str, title: str) -> str:
    """The question of a candidate's council poll: its number, then its title, in at most
    POLL_QUESTION_MAX UTF-16 units (the title is shortened with '…' when needed)."""
    number, title = clean_text(number), " ".join(clean_text(title).split())
    prefix = f"{number} "
    room = POLL_QUESTION_MAX - utf16_len(prefix)
    if not number or room < utf16_len(ELLIPSIS) + 1:
        raise ValueError("a poll question needs a number of reasonable length")
    return prefix + fit_utf16(title or "-", room)


def poll_option(text: str) -> str:
    """A poll option (同意 / 反对 / 弃权 in the council's language) within Telegram's limit."""
    return fit_utf16(" ".join(clean_text(text).split()) or "-", POLL_OPTION_MAX)
