"""What the outbox's messages say: each notification kind rendered from its params (see
storage.services.notifications) in the recipient's language, as HTML, with the bar chart for
a vote's results; and the cutting of long texts into what Telegram accepts.

Everything a person typed (titles, notes, names) is escaped. Params come from the database
and may be older than this code: renderers take what they find and fall back where a value
is missing, rather than lose the message.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from bot.charts import MAX_CANDIDATES, vote_chart
from bot.handlers.invites import overview_of_roles, role_text
from bot.texts import (
    category_label,
    choice_label,
    exclusion_reason_label,
    kind_label,
    local_datetime,
    local_deadline,
    quote,
    status_label,
)
from storage.models import NotificationKind
from storage.rules import Choice, ExclusionReason, Role, State, VoteOutcome, utf16_len

MESSAGE_MAX = 4096
CAPTION_MAX = 1024

_OUTCOME: dict[VoteOutcome, Any] = {
    VoteOutcome.RESOLVED: __("Passed"),
    VoteOutcome.NOT_PASSED: __("Not passed"),
    VoteOutcome.NO_QUORUM: __("No quorum"),
}

assert set(_OUTCOME) == set(VoteOutcome)


def outcome_label(outcome: VoteOutcome | str) -> str:
    return str(_OUTCOME[VoteOutcome(outcome)])


class RenderError(Exception):
    """A notification that cannot be rendered (unknown kind, unusable params): it is marked
    failed with this message, never retried."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """One notification, ready to send: HTML text and, for some kinds, a PNG to go with it.
    `short_caption` is the photo's caption when `text` is too long to be one."""

    text: str
    image: bytes | None = None
    short_caption: str | None = None


@dataclass(frozen=True, slots=True)
class Part:
    """One Telegram message: a text, or a photo with its caption."""

    text: str
    image: bytes | None = None


# --- Telegram's length limits, on the text as shown (tags and entities do not count) ------

_TAG = re.compile(r"<[^<>]*>")


def visible_length(text: str) -> int:
    """Length as Telegram counts a message or caption in HTML mode: UTF-16 units of the text
    as shown, without tags, entities decoded."""
    return utf16_len(html.unescape(_TAG.sub("", text)))


def _cut_line(line: str, limit: int) -> list[str]:
    """A single line longer than `limit`: cut between words where possible, never inside a
    tag or an entity. (The renderers never produce such lines; this is a safety net.)"""
    pieces: list[str] = []
    rest = line
    while visible_length(rest) > limit:
        tokens = re.findall(r"<[^<>]*>|&[#\w]+;|\s+|[^\s<&]+|.", rest)
        taken: list[str] = []
        cut = 0
        for token in tokens:
            if visible_length("".join([*taken, token])) > limit:
                break
            taken.append(token)
            if token.isspace():
                cut = len(taken)
        if cut == 0:
            cut = max(1, len(taken))
        head = "".join(taken[:cut]).rstrip()
        if not head:  # one unbreakable token longer than the limit
            head = rest[: max(1, limit // 2)]
            rest = rest[len(head) :]
        else:
            rest = "".join(tokens[cut:]).lstrip()
        pieces.append(head)
    if rest:
        pieces.append(rest)
    return pieces


def split_text(text: str, limit: int = MESSAGE_MAX) -> list[str]:
    """`text` in as few messages as fit `limit`, cut at line boundaries (tags never span a
    line in these texts, so each piece is valid HTML on its own)."""
    if visible_length(text) <= limit:
        return [text]
    chunks: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        for piece in _cut_line(line, limit) if visible_length(line) > limit else [line]:
            candidate = "\n".join([*current, piece])
            if current and visible_length(candidate) > limit:
                chunks.append("\n".join(current).strip("\n"))
                current = [piece]
            else:
                current.append(piece)
    if current:
        chunks.append("\n".join(current).strip("\n"))
    return [chunk for chunk in chunks if chunk.strip()]


def plan_parts(rendered: Rendered) -> list[Part]:
    """The messages a rendered notification takes: the photo with the whole text as its
    caption when it fits; else the photo with the short caption, then the text in pieces."""
    if rendered.image is None:
        return [Part(piece) for piece in split_text(rendered.text)]
    if visible_length(rendered.text) <= CAPTION_MAX:
        return [Part(rendered.text, rendered.image)]
    caption = rendered.short_caption or ""
    if visible_length(caption) > CAPTION_MAX:
        caption = split_text(caption, CAPTION_MAX)[0]
    return [Part(caption, rendered.image), *(Part(p) for p in split_text(rendered.text))]


# --- params, tolerantly ------------------------------------------------------------------


def _str(params: Mapping[str, Any], key: str, default: str = "?") -> str:
    value = params.get(key)
    return default if value is None or value == "" else str(value)


def _int(params: Mapping[str, Any], key: str) -> int:
    value = params.get(key)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return 0


def _moment(value: Any, tz: ZoneInfo, *, with_zone: bool = False) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return local_deadline(moment, tz) if with_zone else local_datetime(moment, tz)


def _status(value: Any) -> str:
    try:
        return status_label(State(value))
    except ValueError:
        return quote(str(value))


def _outcome(value: Any) -> str:
    try:
        return outcome_label(VoteOutcome(value))
    except ValueError:
        return "—"


def _subject(params: Mapping[str, Any]) -> dict[str, str]:
    return {"number": quote(_str(params, "number")), "title": quote(_str(params, "title", ""))}


def rules_line(size: int, quorum_pct: int, threshold_pct: int) -> str:
    """The council's size and a vote's quorum and threshold, as the council's header
    (bot.polls) and the result say them: the size as a count ("members: 1"), which reads
    right in either language whatever the number."""
    return _(
        "Council members: {size}. A suggestion passes when more than {quorum} of them vote "
        "and more than {threshold} of the votes cast agree."
    ).format(size=size, quorum=f"{quorum_pct}%", threshold=f"{threshold_pct}%")


# --- the kinds -----------------------------------------------------------------------------


Renderer = Callable[["NotificationRenderer", Mapping[str, Any]], Rendered]


def _suggestion_accepted(self: NotificationRenderer, p: Mapping[str, Any]) -> Rendered:
    lines = [
        _(
            "Good news: the community has accepted suggestion {number} “{title}” and will "
            "put it to the residents' council."
        ).format(**_subject(p))
    ]
    if p.get("category"):
        with contextlib.suppress(ValueError):
            lines.append(_("Category: {value}").format(value=category_label(p["category"])))
    if p.get("kind"):
        with contextlib.suppress(ValueError):
            lines.append(_("Kind: {value}").format(value=kind_label(p["kind"])))
    if p.get("note"):
        lines.append(_("Note from the community: {note}").format(note=quote(str(p["note"]))))
    lines.append(
        _(
            "Next, the residents' council will discuss it and vote on it. "
            "I will tell you how it goes."
        )
    )
    return Rendered("\n".join(lines))


def _suggestion_rejected(self: NotificationRenderer, p: Mapping[str, Any]) -> Rendered:
    lines = [_("Suggestion {number} “{title}” was not accepted.").format(**_subject(p))]
    try:
        reason = exclusion_reason_label(p.get("reason") or ExclusionReason.OTHER)
    except ValueError:
        reason = quote(str(p.get("reason")))
    lines.append(_("Reason: {reason}").format(reason=reason))
    if p.get("note"):
        lines.append(_("Note from the community: {note}").format(note=quote(str(p["note"]))))
    lines.append(
        _("Thank you for taking part. You are welcome to suggest another project with /suggest.")
    )
    return Rendered("\n".join(lines))


def _suggestion_merged(self: NotificationRenderer, p: Mapping[str, Any]) -> Rendered:
    values = _subject(p) | {
        "into_number": quote(_str(p, "into_number")),
        "into_title": quote(_str(p, "into_title", "")),
    }
    if p.get("role") == "target":
        text = _(
            "A similar suggestion, {number} “{title}”, has been merged into {into_number} "
            "“{into_title}”, which you follow."
        )
    else:
        text = _(
            "Suggestion {number} “{title}” asks for the same as {into_number} “{into_title}” "
            "and has been merged into it. You now follow {into_number} and will hear how it "
            "goes."
        )
    return Rendered(text.format(**values))


def _suggestion_status(self: NotificationRenderer, p: Mapping[str, Any]) -> Rendered:
    lines = [
        _("Suggestion {number} “{title}” is now: <b>{status}</b>").format(
            status=_status(p.get("status")), **_subject(p)
        )
    ]
    outcome = p.get("outcome")
    if outcome:
        lines.append(
            _(
                "Council vote: {agree} agree, {against} against, {abstain} abstain ({outcome})."
            ).format(
                agree=_int(p, "agree"),
                against=_int(p, "against"),
                abstain=_int(p, "abstain"),
                outcome=_outcome(outcome),
            )
        )
        if outcome == VoteOutcome.NO_QUORUM.value:
            lines.append(
                _(
                    "Too few council members voted, so nothing was decided; it may be put to "
                    "the council again."
                )
            )
    elif p.get("status") == State.COUNCIL_VOTE.value:
        deadline = _moment(p.get("closes_at"), self.tz, with_zone=True)
        if deadline:
            lines.append(
                _("The residents' council votes on it until {deadline}.").format(deadline=deadline)
            )
    return Rendered("\n".join(lines))


def _vote_result(self: NotificationRenderer, p: Mapping[str, Any]) -> Rendered:
    raw_items = p.get("items")
    items = [i for i in raw_items if isinstance(i, Mapping)] if isinstance(raw_items, list) else []
    items.sort(key=lambda i: _int(i, "position"))
    community = quote(_str(p, "community", ""))
    closed = _moment(p.get("closed_at"), self.tz) or _moment(p.get("closes_at"), self.tz)
    title = _("<b>Residents' council vote: results</b>")
    lines = [title]
    if closed:
        lines.append(
            _("{community}, voting closed {closed_at}").format(
                community=community, closed_at=closed
            )
        )
    else:
        lines.append(community)
    lines.append(
        rules_line(_int(p, "council_size"), _int(p, "quorum_pct"), _int(p, "threshold_pct"))
    )
    lines.append("")
    for item in items:
        position = _int(item, "position")
        lines.append(
            f"{position}. {quote(_str(item, 'number'))} {quote(_str(item, 'title', ''))}".rstrip()
        )
        lines.append(
            _("Agree {agree} · Against {against} · Abstain {abstain}: <b>{outcome}</b>").format(
                agree=_int(item, "agree"),
                against=_int(item, "against"),
                abstain=_int(item, "abstain"),
                outcome=_outcome(item.get("outcome")),
            )
        )
    not_counted = _int(p, "not_counted")
    if not_counted:
        lines += [""]
        lines.append(
            _(
                "Answers the polls show but the result does not count (from people not on "
                "the council, or given after the deadline): {count}."
            ).format(count=not_counted)
        )
    lines.append("")
    if p.get("audience") == "council":
        lines.append(_("Thank you to every council member who voted."))
    else:
        lines.append(
            _(
                "The suggestions that passed are now community candidate projects: they go to "
                "the street office, which decides which projects to fund and carry out."
            )
        )
    image = None
    if items and len(items) <= MAX_CANDIDATES:
        image = vote_chart(
            [
                (str(_int(i, "position")), _int(i, "agree"), _int(i, "against"), _int(i, "abstain"))
                for i in items
            ],
            title=_("Council vote results"),
            legend=(
                choice_label(Choice.AGREE),
                choice_label(Choice.AGAINST),
                choice_label(Choice.ABSTAIN),
            ),
        )
    short = "\n".join(
        [
            title,
            _("{community}: the numbers in the chart are the suggestions in the next message.")
            .format(community=community)
            .strip(),
        ]
    )
    return Rendered("\n".join(lines), image, short)


# Telegram's refusals and network errors come in English: what the usual ones mean, said in
# the reader's language before the original (kept for whoever looks into it).
_ERROR_REASONS: tuple[tuple[re.Pattern[str], Any], ...] = (
    (
        re.compile(r"kicked|not a member|bot was removed", re.I),
        __("The bot is no longer in that chat."),
    ),
    (
        re.compile(r"not enough rights|have no rights|need administrator rights", re.I),
        __("The bot is not allowed to send polls there: a group admin can allow it."),
    ),
    (
        re.compile(r"blocked by the user|user is deactivated", re.I),
        __("The council member has blocked the bot, or left Telegram."),
    ),
    (
        re.compile(r"can't initiate conversation", re.I),
        __("The council member has not started a chat with the bot yet."),
    ),
    (re.compile(r"chat not found", re.I), __("Telegram no longer knows that chat.")),
    (
        re.compile(r"timeout|timed out", re.I),
        __("Telegram did not answer in time."),
    ),
    (
        re.compile(r"connect|network|server disconnected", re.I),
        __("The connection to Telegram failed."),
    ),
    (
        re.compile(r"stopped while sending", re.I),  # bot.polls.SENDER_STOPPED
        __("The bot stopped while it was sending this poll, before Telegram answered."),
    ),
)


def _error_lines(label: str, error: str) -> list[str]:
    """What went wrong in the reader's language (where it is a known case), then `label`
    with Telegram's own words."""
    lines = [str(reason) for pattern, reason in _ERROR_REASONS if pattern.search(error)][:1]
    return [*lines, label.format(error=quote(error))]


# A refusal of a member's private chat as a whole (a 403): the bot may not write to them.
_UNREACHABLE = re.compile(r"^Forbidden\b", re.I)


def _member(p: Mapping[str, Any], chat_id: int) -> str:
    """The council member a private poll was for, as the store named them (older params
    name nobody: then their Telegram id)."""
    return quote(_str(p, "member", str(chat_id)))


def _poll_send_failed(self: NotificationRenderer, p: Mapping[str, Any]) -> Rendered:
    """To the convener. A member's private chat that refuses the bot has one cause and one
    remedy, said once, with the member's name: they have not started a chat with the bot or
    have blocked it, and they get the polls once they open it (bot.polls)."""
    chat_id = p.get("chat_id")
    error = _str(p, "error")
    if isinstance(chat_id, int) and chat_id > 0 and _UNREACHABLE.search(error):
        member = _member(p, chat_id)
        lines = [
            _(
                "⚠️ The council poll for {number} “{title}” could not be delivered to council "
                "member {member}: Telegram does not let the bot write to someone who has not "
                "started a private chat with it, or who has blocked it."
            ).format(member=member, **_subject(p)),
            _(
                "Please ask {member} to open a private chat with the bot and send /votes: the "
                "bot then sends them the polls of this vote that they are missing."
            ).format(member=member),
            _("Telegram said: {error}").format(error=quote(error)),
        ]
        return Rendered("\n".join(lines))
    lines = [
        _("⚠️ Telegram refused the council poll for {number} “{title}” (vote {vote}).").format(
            vote=quote(_str(p, "vote_id")), **_subject(p)
        ),
        *_error_lines(_("Telegram said: {error}"), error),
    ]
    if isinstance(chat_id, int) and chat_id > 0:
        lines.append(
            _("It was for the private chat of council member {member}.").format(
                member=_member(p, chat_id)
            )
        )
    else:
        lines.append(
            _("Please check that the bot is still in the council group and may send polls there.")
        )
    return Rendered("\n".join(lines))


def _poll_send_uncertain(self: NotificationRenderer, p: Mapping[str, Any]) -> Rendered:
    """To the convener: which poll may be missing, where to look, what to do either way."""
    lines = [
        _(
            "⚠️ The council poll for {number} “{title}” (vote {vote}) may or may not have been "
            "posted: Telegram's answer to the bot was lost."
        ).format(vote=quote(_str(p, "vote_id")), **_subject(p)),
        *_error_lines(_("Details: {error}"), _str(p, "error")),
        _("The bot has not sent it again, so that there are never two polls for one suggestion."),
    ]
    chat_id = p.get("chat_id")
    if isinstance(chat_id, int) and chat_id > 0:
        lines.append(
            _(
                "It was for the private chat of council member {member}: please ask them "
                "whether they received this poll."
            ).format(member=_member(p, chat_id))
        )
    else:
        lines.append(_("Please look in the council group for this poll."))
    lines += [
        _(
            "If it is there, nothing needs doing: council members answer it as usual and "
            "their answers are counted."
        ),
        _(
            "If it is not there, this suggestion cannot be voted on in this vote: when the "
            "vote closes it will have no quorum and wait for the council again, and you can "
            "put it to the council in a new vote (/convene)."
        ),
    ]
    return Rendered("\n".join(lines))


def _role(p: Mapping[str, Any]) -> tuple[Role, str]:
    place = p.get("place")
    return Role(_str(p, "role")), place if isinstance(place, str) and place else "—"


def _role_granted(self: NotificationRenderer, p: Mapping[str, Any]) -> Rendered:
    role, place = _role(p)
    lines = ["✅ " + role_text(role, place)]
    overview = overview_of_roles({role})
    if overview:
        lines += ["", overview]
    lines += ["", _("Send /help to see everything I can do.")]
    return Rendered("\n".join(lines))


def _role_revoked(self: NotificationRenderer, p: Mapping[str, Any]) -> Rendered:
    role, place = _role(p)
    return Rendered(
        role_text(role, place, withdrawn=True)
        + "\n"
        + _("If you think this is a mistake, please ask the official who manages the roles.")
    )


RENDERERS: dict[str, Renderer] = {
    NotificationKind.SUGGESTION_ACCEPTED: _suggestion_accepted,
    NotificationKind.SUGGESTION_REJECTED: _suggestion_rejected,
    NotificationKind.SUGGESTION_MERGED: _suggestion_merged,
    NotificationKind.SUGGESTION_STATUS: _suggestion_status,
    NotificationKind.VOTE_RESULT: _vote_result,
    NotificationKind.POLL_SEND_FAILED: _poll_send_failed,
    NotificationKind.POLL_SEND_UNCERTAIN: _poll_send_uncertain,
    NotificationKind.ROLE_GRANTED: _role_granted,
    NotificationKind.ROLE_REVOKED: _role_revoked,
}


class NotificationRenderer:
    """Renders the outbox's kinds in a locale, with the programme's time zone for times."""

    def __init__(self, i18n: I18n, tz: ZoneInfo) -> None:
        self.i18n = i18n
        self.tz = tz

    def render(self, kind: str, params: Mapping[str, Any], locale: str) -> Rendered:
        renderer = RENDERERS.get(kind)
        if renderer is None:
            raise RenderError(f"no renderer for notification kind {kind!r}")
        if not isinstance(params, Mapping):
            raise RenderError(f"params of {kind!r} are not an object")
        with self.i18n.context(), self.i18n.use_locale(locale):
            try:
                return renderer(self, params)
            except (KeyError, ValueError, TypeError, AttributeError) as error:
                raise RenderError(f"cannot render {kind!r}: {error!r}") from error


__all__ = [
    "CAPTION_MAX",
    "MESSAGE_MAX",
    "RENDERERS",
    "NotificationRenderer",
    "Part",
    "RenderError",
    "Rendered",
    "outcome_label",
    "plan_parts",
    "rules_line",
    "split_text",
    "visible_length",
]
