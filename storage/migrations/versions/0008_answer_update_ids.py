"""Poll answers: the Telegram update that carried each one (ballot, council_stray_answer), so
that an answer from an older update, handled after a newer one (updates may arrive out of
order, and several replicas handle them at once), does not replace it.

Nullable: answers recorded before this revision carry none, and count as unordered.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("ballot", "council_stray_answer")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("update_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("update_id")
