"""SQLAlchemy 2 typed models for the whole programme.

The shape is laid down for every stage (screening, votes, determination, delivery, evaluation)
so that later stages add behaviour and columns rather than reshuffle tables. Times are stored
in UTC; money in integer fen.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from storage.rules import (
    Category,
    ExclusionReason,
    Kind,
    Role,
    ScopeLevel,
    SourceType,
    State,
)

# The vote's enums live with the pure rules (rules.decide returns one); re-exported here.
from storage.rules import Choice as Choice
from storage.rules import VoteOutcome as VoteOutcome

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class db_now(FunctionElement[datetime]):
    """The database's clock, as an aware UTC datetime: for what replicas must agree on (is a
    vote due, is an answer late), which each replica's own clock may not (NTP not running,
    a VM resumed). PostgreSQL: statement_timestamp(), the start of the statement (now() would
    be the start of the transaction, which for a webhook update began before its answer was
    looked at). SQLite, whose clock is this host's anyway: the time in the very format the
    store keeps datetimes in ('YYYY-MM-DD HH:MM:SS.ffffff', which CURRENT_TIMESTAMP is not),
    so that it compares with stored ones as text and reads back as a datetime. Costs no round
    trip of its own: put it in a statement that is made anyway (a WHERE, a SET, a RETURNING).
    """

    type = UTCDateTime()
    inherit_cache = True
    name = "db_now"


@compiles(db_now)
def _db_now_default(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"  # other dialects, and str() of a statement


@compiles(db_now, "postgresql")
def _db_now_postgresql(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "statement_timestamp()"


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # %f is seconds with milliseconds: padded to the microseconds SQLAlchemy writes.
    return "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"


def str_enum(cls: type[enum.Enum]) -> Enum:
    """Enums stored as their values in VARCHAR: a new state is a code change, not ALTER TYPE."""
    return Enum(
        cls,
        native_enum=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012


class District(Base):
    __tablename__ = "district"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)

    streets: Mapped[list[Street]] = relationship(back_populates="district", order_by="Street.name")


class Street(Base):
    __tablename__ = "street"
    __table_args__ = (UniqueConstraint("district_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("district.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(64))

    district: Mapped[District] = relationship(back_populates="streets")
    communities: Mapped[list[Community]] = relationship(
        back_populates="street", order_by="Community.name"
    )


class Community(Base):
    __tablename__ = "community"
    __table_args__ = (UniqueConstraint("street_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    street_id: Mapped[int] = mapped_column(ForeignKey("street.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(64))
    # What suggestion numbers start with (新沙-2026-0007): the short name, or, where another
    # community in the city has the same name, the street's short name before it.
    number_prefix: Mapped[str] = mapped_column(String(64), unique=True)
    # The residents' council's rules (议事规则): percentages, strictly-more-than semantics.
    council_quorum_pct: Mapped[int] = mapped_column(Integer, default=50)
    council_threshold_pct: Mapped[int] = mapped_column(Integer, default=50)

    street: Mapped[Street] = relationship(back_populates="communities")


def short_name(name: str) -> str:
    """新沙社区 -> 新沙, 沙头街道 -> 沙头: what people say on the phone."""
    for suffix in ("社区", "街道", "街道办事处"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name.removesuffix(suffix)
    return name


class ChatPurpose(enum.StrEnum):
    COMMUNITY = "community"  # the residents' group of a community
    COUNCIL = "council"  # the residents' council's group


class Chat(Base):
    """A Telegram group chat, and the community it is bound to once an admin has said so."""

    __tablename__ = "chat"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(String(255), default="")
    type: Mapped[str] = mapped_column(String(16))
    community_id: Mapped[int | None] = mapped_column(
        ForeignKey("community.id", ondelete="SET NULL"), index=True
    )
    purpose: Mapped[ChatPurpose] = mapped_column(
        str_enum(ChatPurpose), default=ChatPurpose.COMMUNITY
    )
    bot_is_member: Mapped[bool] = mapped_column(Boolean, default=True)
    bound_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    bound_at: Mapped[datetime | None]
    # The supergroup this group was upgraded to (its binding moved there; see
    # storage.services.chats.migrate_chat).
    migrated_to_id: Mapped[int | None] = mapped_column(BigInteger)
    # The language the bot speaks in this group, chosen by one of its admins with /lang. None:
    # its posts in the default language, and its answers in the language of whom it answers.
    locale: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    community: Mapped[Community | None] = relationship()


class Person(Base):
    """Someone who has talked to the bot. Never shown publicly."""

    __tablename__ = "person"

    id: Mapped[int] = mapped_column(primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    first_name: Mapped[str] = mapped_column(String(255), default="")
    username: Mapped[str | None] = mapped_column(String(64))
    language_code: Mapped[str | None] = mapped_column(String(16))
    # Chosen with /lang; overrides language_code when set.
    locale: Mapped[str | None] = mapped_column(String(8))
    blocked_bot_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RoleGrant(Base):
    """A role held in a scope (community, street, district, or the city)."""

    __tablename__ = "role_grant"
    __table_args__ = (Index("ix_role_grant_scope", "role", "scope_level", "scope_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(str_enum(Role))
    scope_level: Mapped[ScopeLevel] = mapped_column(str_enum(ScopeLevel))
    scope_id: Mapped[int | None]
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class SuggestionCounter(Base):
    """The last number handed out per community and year; bumped atomically."""

    __tablename__ = "suggestion_counter"

    community_id: Mapped[int] = mapped_column(
        ForeignKey("community.id", ondelete="CASCADE"), primary_key=True
    )
    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(default=0)


class Suggestion(Base):
    __tablename__ = "suggestion"
    __table_args__ = (
        UniqueConstraint("community_id", "year", "seq"),
        CheckConstraint("estimated_cost_fen IS NULL OR estimated_cost_fen >= 0", name="cost"),
        Index("ix_suggestion_proposer_created", "proposer_id", "created_at"),
        Index("ix_suggestion_community_status", "community_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(48), unique=True)  # 新沙-2026-0007
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="RESTRICT"))
    year: Mapped[int]
    seq: Mapped[int]
    proposer_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    source_type: Mapped[SourceType] = mapped_column(
        str_enum(SourceType), default=SourceType.RESIDENT
    )
    category: Mapped[Category] = mapped_column(str_enum(Category))
    kind: Mapped[Kind | None] = mapped_column(str_enum(Kind))
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text)
    location_text: Mapped[str | None] = mapped_column(String(512))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    photo_file_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    estimated_cost_fen: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[State] = mapped_column(str_enum(State), default=State.SUBMITTED)
    exclusion_reason: Mapped[ExclusionReason | None] = mapped_column(str_enum(ExclusionReason))
    exclusion_note: Mapped[str | None] = mapped_column(Text)
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("suggestion.id", ondelete="SET NULL")
    )
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("project.id", ondelete="SET NULL"), index=True
    )
    # The key of the dialog's draft this came from: confirming the same draft again (Telegram
    # redelivering the update, a second press) finds this suggestion instead of storing another.
    draft_key: Mapped[str | None] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    community: Mapped[Community] = relationship()


class Project(Base):
    """What the street office determines, made from one or more resolved suggestions."""

    __tablename__ = "project"
    __table_args__ = (
        CheckConstraint("budget_fen >= 0", name="budget"),
        Index("ix_project_community_status", "community_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="RESTRICT"))
    title: Mapped[str] = mapped_column(String(255))
    category: Mapped[Category] = mapped_column(str_enum(Category))
    kind: Mapped[Kind] = mapped_column(str_enum(Kind))
    status: Mapped[State] = mapped_column(str_enum(State), default=State.DETERMINED)
    budget_fen: Mapped[int] = mapped_column(BigInteger)
    cap_justification: Mapped[str | None] = mapped_column(Text)
    batch: Mapped[str | None] = mapped_column(String(64))
    expected_benefit: Mapped[str | None] = mapped_column(Text)
    implementer: Mapped[str | None] = mapped_column(String(255))
    implementer_assigned_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    maintenance_unit: Mapped[str | None] = mapped_column(String(255))
    spent_fen: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    community: Mapped[Community] = relationship()
    suggestions: Mapped[list[Suggestion]] = relationship(foreign_keys=[Suggestion.project_id])


class Follower(Base):
    """Who hears of each status change of a suggestion (and so of its project)."""

    __tablename__ = "follower"

    suggestion_id: Mapped[int] = mapped_column(
        ForeignKey("suggestion.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    since: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """The trail of 三议三公开: every state change, who did it, when, and whether it is public."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_entity", "entity_type", "entity_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_person_id: Mapped[int | None] = mapped_column(
        ForeignKey("person.id", ondelete="SET NULL")
    )
    actor_role: Mapped[Role | None] = mapped_column(str_enum(Role))
    entity_type: Mapped[str] = mapped_column(String(32))
    # BIGINT: a Telegram supergroup's chat id (-100…) does not fit PostgreSQL's INTEGER.
    entity_id: Mapped[int] = mapped_column(BigInteger)
    community_id: Mapped[int | None] = mapped_column(
        ForeignKey("community.id", ondelete="SET NULL"), index=True
    )
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[State | None] = mapped_column(str_enum(State))
    to_state: Mapped[State | None] = mapped_column(str_enum(State))
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    # Public events' details are shown on the board: never put a resident's data here.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ProcessedUpdate(Base):
    """Telegram update ids already handled (de-duplication without Redis)."""

    __tablename__ = "processed_update"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class DeadLetter(Base):
    """An authenticated webhook body that could not be handled, kept with the reason."""

    __tablename__ = "dead_letter"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    update_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)


# --- Consultation and resolution (商议、决议): access, screening, council votes -------------


class ApiToken(Base):
    """A bearer token of the officials' API. Only its hash is kept; the prefix identifies it."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(str_enum(Role))
    scope_level: Mapped[ScopeLevel] = mapped_column(str_enum(ScopeLevel))
    scope_id: Mapped[int | None]
    label: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Invite(Base):
    """A deep link that grants a role in a scope to whoever opens it (N uses, may expire)."""

    __tablename__ = "invite"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(str_enum(Role))
    scope_level: Mapped[ScopeLevel] = mapped_column(str_enum(ScopeLevel))
    scope_id: Mapped[int | None]
    max_uses: Mapped[int] = mapped_column(Integer, default=1)
    used_count: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class InviteRedemption(Base):
    __tablename__ = "invite_redemption"

    invite_id: Mapped[int] = mapped_column(
        ForeignKey("invite.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True
    )
    redeemed_at: Mapped[datetime] = mapped_column(default=utcnow)


class VoteStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class CouncilVote(Base):
    """One sitting of the residents' council on one or more candidates (决议)."""

    __tablename__ = "council_vote"
    __table_args__ = (
        CheckConstraint("quorum_pct BETWEEN 0 AND 100", name="quorum"),
        CheckConstraint("threshold_pct BETWEEN 0 AND 100", name="threshold"),
        Index("ix_council_vote_due", "status", "closes_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="RESTRICT"))
    convened_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    convened_at: Mapped[datetime] = mapped_column(default=utcnow)
    closes_at: Mapped[datetime]
    # Strictly more than these percentages: of the council voting, of the votes cast agreeing.
    quorum_pct: Mapped[int] = mapped_column(Integer)
    threshold_pct: Mapped[int] = mapped_column(Integer)
    council_size: Mapped[int] = mapped_column(Integer)
    # Where the polls went: the council's group, or each member's private chat.
    council_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[VoteStatus] = mapped_column(str_enum(VoteStatus), default=VoteStatus.OPEN)
    closed_at: Mapped[datetime | None]
    # Sending the polls is claimed with a lease, so one replica sends them and, if it dies
    # half-way, another finishes once the lease has run out; `polls_sent_at` marks a full pass.
    polls_lease_until: Mapped[datetime | None]
    polls_sent_at: Mapped[datetime | None]

    community: Mapped[Community] = relationship()
    items: Mapped[list[CouncilVoteItem]] = relationship(
        back_populates="vote", order_by="CouncilVoteItem.position"
    )
    members: Mapped[list[CouncilVoteMember]] = relationship(
        order_by="CouncilVoteMember.person_id", viewonly=True
    )


class CouncilVoteMember(Base):
    """Who may vote: the community's council as it stood when the vote was convened."""

    __tablename__ = "council_vote_member"

    vote_id: Mapped[int] = mapped_column(
        ForeignKey("council_vote.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True
    )
    telegram_id: Mapped[int] = mapped_column(BigInteger, index=True)


class CouncilVoteItem(Base):
    """One candidate put to the council, and, once closed, its tally and outcome."""

    __tablename__ = "council_vote_item"
    __table_args__ = (UniqueConstraint("vote_id", "suggestion_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    vote_id: Mapped[int] = mapped_column(ForeignKey("council_vote.id", ondelete="CASCADE"))
    suggestion_id: Mapped[int] = mapped_column(ForeignKey("suggestion.id", ondelete="RESTRICT"))
    position: Mapped[int] = mapped_column(Integer)
    agree: Mapped[int] = mapped_column(Integer, default=0)
    against: Mapped[int] = mapped_column(Integer, default=0)
    abstain: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[VoteOutcome | None] = mapped_column(str_enum(VoteOutcome))
    # What Telegram said when it refused the poll, or why it is not known whether it was
    # posted (council.UNCERTAIN_PREFIX): surfaced to the staff member.
    send_error: Mapped[str | None] = mapped_column(Text)

    vote: Mapped[CouncilVote] = relationship(back_populates="items")
    suggestion: Mapped[Suggestion] = relationship()


class CouncilPoll(Base):
    """A native Telegram poll carrying one item: in the council's group, or one per member."""

    __tablename__ = "council_poll"

    poll_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    item_id: Mapped[int] = mapped_column(
        ForeignKey("council_vote_item.id", ondelete="CASCADE"), index=True
    )
    chat_id: Mapped[int] = mapped_column(BigInteger)
    # None: a poll recognised from a `poll` update (Telegram did not say its message), which
    # cannot be stopped; its close_date closes it, and answers after the close are late.
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    stopped_at: Mapped[datetime | None]


class PollSendState(enum.StrEnum):
    SENDING = "sending"  # claimed, sendPoll being made (or its sender stopped before the answer)
    SENT = "sent"  # the poll is recorded (council_poll)
    REFUSED = "refused"  # Telegram refused it: nothing was posted, it may be sent again
    UNCERTAIN = "uncertain"  # its answer was lost: whether the poll exists is not known


class CouncilPollSend(Base):
    """An item's poll to one chat: claimed before its sendPoll is made (inserting this row, or
    taking back a REFUSED one, is the claim), then what came of it. sendPoll is not idempotent,
    so a send that may have posted a poll (SENDING, UNCERTAIN, SENT) is never made again."""

    __tablename__ = "council_poll_send"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("council_vote_item.id", ondelete="CASCADE"), primary_key=True
    )
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    state: Mapped[PollSendState] = mapped_column(str_enum(PollSendState))
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What went wrong with this attempt (Telegram's refusal, the error that lost its answer).
    error: Mapped[str | None] = mapped_column(Text)
    # REFUSED because the bot may not write to the member's private chat (a 403: they never
    # started it, or blocked it): made again once they can be written to
    # (council.reopen_polls_owed_to). False in every other state.
    unreachable: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class CouncilStrayPoll(Base):
    """A poll id answered or shown to the bot (a `poll` update) before it is known as a council
    poll: its record_poll has not committed yet, or it is the orphan of an uncertain send.
    Its answers are kept (CouncilStrayAnswer) and counted when it is recorded, which deletes
    this row. Everything done about an unknown poll id first takes this row (an upsert), so
    keeping an answer and recording the poll are serialised and no kept answer is missed.
    `item_id`: its candidate, when a `poll` update has named it but not which chat it is in."""

    __tablename__ = "council_stray_poll"

    poll_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    item_id: Mapped[int | None] = mapped_column(
        ForeignKey("council_vote_item.id", ondelete="CASCADE")
    )
    first_at: Mapped[datetime] = mapped_column(default=utcnow)


class CouncilStrayAnswer(Base):
    """An answer to a stray poll, as it came; counted as of `at` when its poll is recorded."""

    __tablename__ = "council_stray_answer"

    id: Mapped[int] = mapped_column(primary_key=True)
    poll_id: Mapped[str] = mapped_column(
        ForeignKey("council_stray_poll.poll_id", ondelete="CASCADE"), index=True
    )
    telegram_id: Mapped[int] = mapped_column(BigInteger)
    option_ids: Mapped[list[int]] = mapped_column(JSON)
    at: Mapped[datetime]
    # The Telegram update that carried it (see Ballot.update_id); None from before 0008.
    update_id: Mapped[int | None] = mapped_column(BigInteger)


class Ballot(Base):
    """A person's current answer on one item; a change replaces it, a retraction clears it.

    Answers of people outside the council, or after the close, are kept but never counted.
    `update_id` is the Telegram update that carried the answer: updates may arrive out of
    order (a redelivery, another replica), and an answer from an older update than the one
    recorded changes nothing (council.record_answer). None: an answer whose update is not
    known (recorded before revision 0008, or by a caller that has none).
    """

    __tablename__ = "ballot"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("council_vote_item.id", ondelete="CASCADE"), primary_key=True
    )
    telegram_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    choice: Mapped[Choice | None] = mapped_column(str_enum(Choice))
    counted: Mapped[bool] = mapped_column(Boolean)
    ignored_reason: Mapped[str | None] = mapped_column(String(16))  # not_member | late
    at: Mapped[datetime] = mapped_column(default=utcnow)
    update_id: Mapped[int | None] = mapped_column(BigInteger)


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # refused by Telegram (400) or out of attempts
    BLOCKED = "blocked"  # the person blocked the bot (403)


class NotificationKind(enum.StrEnum):
    """What the outbox owes a chat: each kind has its renderer (bot.notify_texts.RENDERERS)
    and its params (storage.services.notifications)."""

    SUGGESTION_ACCEPTED = "suggestion_accepted"
    SUGGESTION_REJECTED = "suggestion_rejected"
    SUGGESTION_MERGED = "suggestion_merged"
    SUGGESTION_STATUS = "suggestion_status"
    VOTE_RESULT = "vote_result"
    POLL_SEND_FAILED = "poll_send_failed"
    POLL_SEND_UNCERTAIN = "poll_send_uncertain"
    ROLE_GRANTED = "role_granted"
    ROLE_REVOKED = "role_revoked"
    # Not a message: the person's private command menu, brought in line with their roles and
    # chosen language when it is "sent" (bot.outbox).
    COMMAND_MENU = "command_menu"


COMMAND_MENU = NotificationKind.COMMAND_MENU


class Notification(Base):
    """The outbox: a message owed to a chat, written in the transaction of what caused it and
    sent by the scheduler within Telegram's limits, so nothing is lost and nothing doubled.

    `kind` and `params` are rendered in the recipient's language when sent."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_due", "status", "not_before"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(48))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    image: Mapped[bytes | None] = mapped_column(LargeBinary)
    dedupe_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    status: Mapped[NotificationStatus] = mapped_column(
        str_enum(NotificationStatus), default=NotificationStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    # A message of several parts whose sending stopped midway: `parts_sent` of its
    # `parts_total` went out, and a retry sends only the rest, as long as the message still
    # renders into that many parts (else it is sent whole again). 0 and 0 when no attempt
    # stopped midway.
    parts_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    parts_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
