"""Consultation and resolution: API tokens, invites, council votes and ballots, the outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENUM = sa.String(length=32)
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "role",
            ENUM,
            nullable=False,
        ),
        sa.Column(
            "scope_level",
            ENUM,
            nullable=False,
        ),
        sa.Column("scope_id", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(length=255), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_used_at", TIME, nullable=True),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_token_prefix")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    op.create_table(
        "invite",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column(
            "role",
            ENUM,
            nullable=False,
        ),
        sa.Column(
            "scope_level",
            ENUM,
            nullable=False,
        ),
        sa.Column("scope_id", sa.Integer(), nullable=True),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("used_count", sa.Integer(), nullable=False),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["person.id"],
            name=op.f("fk_invite_created_by_id_person"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invite")),
        sa.UniqueConstraint("code", name=op.f("uq_invite_code")),
    )
    op.create_table(
        "notification",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=160), nullable=True),
        sa.Column(
            "status",
            ENUM,
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", TIME, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("sent_at", TIME, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_notification_person_id_person"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notification_dedupe_key")),
    )
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.create_index("ix_notification_due", ["status", "not_before"], unique=False)

    op.create_table(
        "invite_redemption",
        sa.Column("invite_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("redeemed_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["invite_id"],
            ["invite.id"],
            name=op.f("fk_invite_redemption_invite_id_invite"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_invite_redemption_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("invite_id", "person_id", name=op.f("pk_invite_redemption")),
    )
    op.create_table(
        "council_vote",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.Column("convened_by_id", sa.Integer(), nullable=True),
        sa.Column("convened_at", TIME, nullable=False),
        sa.Column("closes_at", TIME, nullable=False),
        sa.Column("quorum_pct", sa.Integer(), nullable=False),
        sa.Column("threshold_pct", sa.Integer(), nullable=False),
        sa.Column("council_size", sa.Integer(), nullable=False),
        sa.Column("council_chat_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "status",
            sa.Enum("open", "closed", name="votestatus", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("closed_at", TIME, nullable=True),
        sa.CheckConstraint("quorum_pct BETWEEN 0 AND 100", name=op.f("ck_council_vote_quorum")),
        sa.CheckConstraint(
            "threshold_pct BETWEEN 0 AND 100", name=op.f("ck_council_vote_threshold")
        ),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["community.id"],
            name=op.f("fk_council_vote_community_id_community"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["convened_by_id"],
            ["person.id"],
            name=op.f("fk_council_vote_convened_by_id_person"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_council_vote")),
    )
    with op.batch_alter_table("council_vote", schema=None) as batch_op:
        batch_op.create_index("ix_council_vote_due", ["status", "closes_at"], unique=False)

    op.create_table(
        "council_vote_member",
        sa.Column("vote_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_council_vote_member_person_id_person"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vote_id"],
            ["council_vote.id"],
            name=op.f("fk_council_vote_member_vote_id_council_vote"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("vote_id", "person_id", name=op.f("pk_council_vote_member")),
    )
    with op.batch_alter_table("council_vote_member", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_council_vote_member_telegram_id"), ["telegram_id"], unique=False
        )

    op.create_table(
        "council_vote_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vote_id", sa.Integer(), nullable=False),
        sa.Column("suggestion_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("agree", sa.Integer(), nullable=False),
        sa.Column("against", sa.Integer(), nullable=False),
        sa.Column("abstain", sa.Integer(), nullable=False),
        sa.Column(
            "outcome",
            ENUM,
            nullable=True,
        ),
        sa.Column("send_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["suggestion_id"],
            ["suggestion.id"],
            name=op.f("fk_council_vote_item_suggestion_id_suggestion"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["vote_id"],
            ["council_vote.id"],
            name=op.f("fk_council_vote_item_vote_id_council_vote"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_council_vote_item")),
        sa.UniqueConstraint("vote_id", "suggestion_id", name=op.f("uq_council_vote_item_vote_id")),
    )
    op.create_table(
        "ballot",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column(
            "choice",
            sa.Enum("agree", "against", "abstain", name="choice", native_enum=False, length=32),
            nullable=True,
        ),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("ignored_reason", sa.String(length=16), nullable=True),
        sa.Column("at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["council_vote_item.id"],
            name=op.f("fk_ballot_item_id_council_vote_item"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
            name=op.f("fk_ballot_person_id_person"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("item_id", "telegram_id", name=op.f("pk_ballot")),
    )
    op.create_table(
        "council_poll",
        sa.Column("poll_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("stopped_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["council_vote_item.id"],
            name=op.f("fk_council_poll_item_id_council_vote_item"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("poll_id", name=op.f("pk_council_poll")),
    )
    with op.batch_alter_table("council_poll", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_council_poll_item_id"), ["item_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("council_poll", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_council_poll_item_id"))

    op.drop_table("council_poll")
    op.drop_table("ballot")
    op.drop_table("council_vote_item")
    with op.batch_alter_table("council_vote_member", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_council_vote_member_telegram_id"))

    op.drop_table("council_vote_member")
    with op.batch_alter_table("council_vote", schema=None) as batch_op:
        batch_op.drop_index("ix_council_vote_due")

    op.drop_table("council_vote")
    op.drop_table("invite_redemption")
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_due")

    op.drop_table("notification")
    op.drop_table("invite")
    op.drop_table("api_token")
