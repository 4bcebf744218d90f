"""Council votes: a lease on sending their polls, and when a full pass was done.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("council_vote") as batch:
        batch.add_column(sa.Column("polls_lease_until", TIME, nullable=True))
        batch.add_column(sa.Column("polls_sent_at", TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("council_vote") as batch:
        batch.drop_column("polls_sent_at")
        batch.drop_column("polls_lease_until")
