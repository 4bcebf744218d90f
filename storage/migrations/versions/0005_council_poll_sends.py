"""Council polls: each send claimed and its outcome kept, answers to polls not known yet kept,
and the message of a poll recognised from a `poll` update may be unknown.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)
STATE = sa.Enum(
    "sending", "sent", "refused", "uncertain", name="pollsendstate", native_enum=False, length=32
)


def upgrade() -> None:
    op.create_table(
        "council_poll_send",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("attempted_at", TIME, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["council_vote_item.id"],
            name=op.f("fk_council_poll_send_item_id_council_vote_item"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", "chat_id", name=op.f("pk_council_poll_send")),
    )
    # The polls sent so far: never to be sent again.
    op.execute(
        "INSERT INTO council_poll_send (item_id, chat_id, state, attempted_at) "
        "SELECT p.item_id, p.chat_id, 'sent', MIN(v.convened_at) FROM council_poll AS p "
        "JOIN council_vote_item AS i ON i.id = p.item_id "
        "JOIN council_vote AS v ON v.id = i.vote_id "
        "GROUP BY p.item_id, p.chat_id"
    )
    op.create_table(
        "council_stray_poll",
        sa.Column("poll_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("first_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["council_vote_item.id"],
            name=op.f("fk_council_stray_poll_item_id_council_vote_item"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("poll_id", name=op.f("pk_council_stray_poll")),
    )
    op.create_table(
        "council_stray_answer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("poll_id", sa.String(length=64), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("option_ids", sa.JSON(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["poll_id"],
            ["council_stray_poll.poll_id"],
            name=op.f("fk_council_stray_answer_poll_id_council_stray_poll"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_council_stray_answer")),
    )
    with op.batch_alter_table("council_stray_answer") as batch:
        batch.create_index(batch.f("ix_council_stray_answer_poll_id"), ["poll_id"], unique=False)
    with op.batch_alter_table("council_poll") as batch:
        batch.alter_column("message_id", existing_type=sa.BigInteger(), nullable=True)
    # No message is 0 (downgrade writes it for a poll whose message is not known).
    op.execute("UPDATE council_poll SET message_id = NULL WHERE message_id = 0")


def downgrade() -> None:
    # Before, a message id was required: 0 for the polls recognised without one (stopPoll on
    # it is refused as "not found", which stop_polls takes as done).
    op.execute("UPDATE council_poll SET message_id = 0 WHERE message_id IS NULL")
    with op.batch_alter_table("council_poll") as batch:
        batch.alter_column("message_id", existing_type=sa.BigInteger(), nullable=False)
    with op.batch_alter_table("council_stray_answer") as batch:
        batch.drop_index(batch.f("ix_council_stray_answer_poll_id"))
    op.drop_table("council_stray_answer")
    op.drop_table("council_stray_poll")
    op.drop_table("council_poll_send")
