"""Suggestions: the key of the draft each came from, so that a draft is stored once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("suggestion") as batch:
        batch.add_column(sa.Column("draft_key", sa.String(length=32), nullable=True))
        batch.create_unique_constraint("uq_suggestion_draft_key", ["draft_key"])


def downgrade() -> None:
    with op.batch_alter_table("suggestion") as batch:
        batch.drop_constraint("uq_suggestion_draft_key", type_="unique")
        batch.drop_column("draft_key")
