"""Two facts the senders kept inside free-text error columns become columns of their own.

- notification.parts_sent, parts_total: how far a message of several parts got before its
  sending stopped (a 429 after the chart went out, say), so that the retry sends only the
  rest. It was the prefix "partial n/m; " of `error`, parsed back with a regular expression.
- council_poll_send.unreachable: a poll refused because the bot may not write to the
  member's private chat (a 403), made again once they can be written to. It was the prefix
  "Member not reachable: " of `error`, which every query of those sends matched with LIKE.

`error` now holds only the error as told to people. The data moves both ways: the upgrade
reads the prefixes into the columns and strips them, the downgrade writes them back.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The prefixes as the code before this revision wrote them (bot.outbox, council.sending).
PARTIAL = "partial "  # then "{sent}/{total}; " and the error
UNREACHABLE = "Member not reachable: "
ERROR_MAX = 1000  # what the services keep of an error

notification = sa.table(
    "notification",
    sa.column("error", sa.Text()),
    sa.column("parts_sent", sa.Integer()),
    sa.column("parts_total", sa.Integer()),
)
poll_send = sa.table(
    "council_poll_send",
    sa.column("state", sa.String()),
    sa.column("error", sa.Text()),
    sa.column("unreachable", sa.Boolean()),
)


def _partial_progress() -> sa.Update:
    """Reads the notifications' "partial 2/3; Too Many Requests" as parts 2 of 3 and the
    error "Too Many Requests". The databases name the function that finds a character
    differently (SQLite's instr is PostgreSQL's strpos, with the same arguments); only a
    prefix of digits is read (GLOB on SQLite, a regular expression on PostgreSQL), so that
    the casts never meet anything else."""
    dialect = op.get_context().dialect.name
    error = notification.c.error
    find = sa.func.instr if dialect == "sqlite" else sa.func.strpos
    slash, semicolon = find(error, "/"), find(error, ";")
    ours: sa.ColumnElement[Any]
    if dialect == "sqlite":
        ours = error.op("GLOB")(PARTIAL + "[0-9]*/[0-9]*;*")
    else:
        ours = error.regexp_match("^" + PARTIAL + "[0-9]+/[0-9]+;")
    start = len(PARTIAL) + 1  # SQL counts characters from 1
    return (
        notification.update()
        .where(ours)
        .values(
            parts_sent=sa.cast(sa.func.substr(error, start, slash - start), sa.Integer),
            parts_total=sa.cast(
                sa.func.substr(error, slash + 1, semicolon - slash - 1), sa.Integer
            ),
            # What followed "; ", None when nothing did.
            error=sa.func.nullif(sa.func.substr(error, semicolon + 2), ""),
        )
    )


def upgrade() -> None:
    with op.batch_alter_table("notification") as batch:
        batch.add_column(sa.Column("parts_sent", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("parts_total", sa.Integer(), server_default="0", nullable=False))
    op.execute(_partial_progress())
    with op.batch_alter_table("council_poll_send") as batch:
        batch.add_column(
            sa.Column("unreachable", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    # Only a refused send is unreachable; another (a poll recognised since) loses the prefix,
    # which nothing read there.
    op.execute(
        poll_send.update()
        .where(poll_send.c.error.startswith(UNREACHABLE, autoescape=True))
        .values(
            unreachable=poll_send.c.state == "refused",
            error=sa.func.substr(poll_send.c.error, len(UNREACHABLE) + 1),
        )
    )


def _prefixed(prefix: sa.ColumnElement[str], error: sa.ColumnElement[str]) -> sa.Function[str]:
    return sa.func.substr(prefix + sa.func.coalesce(error, ""), 1, ERROR_MAX)


def downgrade() -> None:
    op.execute(
        poll_send.update()
        .where(poll_send.c.unreachable)
        .values(error=_prefixed(sa.literal(UNREACHABLE), poll_send.c.error))
    )
    with op.batch_alter_table("council_poll_send") as batch:
        batch.drop_column("unreachable")
    sent = sa.cast(notification.c.parts_sent, sa.String)
    total = sa.cast(notification.c.parts_total, sa.String)
    prefix = sa.literal(PARTIAL) + sent + "/" + total + "; "
    op.execute(
        notification.update()
        .where(notification.c.parts_sent > 0)
        .values(error=_prefixed(prefix, notification.c.error))
    )
    with op.batch_alter_table("notification") as batch:
        batch.drop_column("parts_total")
        batch.drop_column("parts_sent")
