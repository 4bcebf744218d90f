"""Data only: owe a command menu to everyone whose menu was their own.

The menu for all private chats now holds the residents' commands only; /votes, /review and
/convene are in the menus of those whose roles use them, set by the outbox's `command_menu`
whenever a grant changes. People who held a role before this revision get theirs here, and so
do people who chose a language with /lang: that gave them a menu of their own holding every
command, staff commands included. Someone blocking the bot is owed one when they come back
(storage.services.people.mark_reachable).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# People holding a role or with a language of their own (and not blocking the bot), each
# owed one command_menu; once only, also when the revision runs again after a downgrade. A
# JSON column takes a string on SQLite; PostgreSQL needs the cast.
OWE_MENUS = (
    "INSERT INTO notification "
    "(chat_id, person_id, kind, params, dedupe_key, status, attempts, not_before, created_at) "
    "SELECT person.telegram_id, person.id, 'command_menu', PARAMS, "
    "'menu:0007:' || CAST(person.id AS VARCHAR), 'pending', 0, "
    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP "
    "FROM person WHERE person.blocked_bot_at IS NULL AND (person.locale IS NOT NULL OR "
    "person.id IN (SELECT person_id FROM role_grant WHERE revoked_at IS NULL)) "
    "ON CONFLICT (dedupe_key) DO NOTHING"
)
EMPTY_PARAMS = {"postgresql": "CAST('{}' AS JSON)"}


def upgrade() -> None:
    empty = EMPTY_PARAMS.get(op.get_context().dialect.name, "'{}'")
    op.execute(sa.text(OWE_MENUS.replace("PARAMS", empty)))


def downgrade() -> None:
    # Menus not yet set are simply not owed any more; the rows already sent stay as history.
    op.execute(
        sa.text(
            "DELETE FROM notification WHERE kind = 'command_menu' AND status = 'pending' "
            "AND dedupe_key LIKE 'menu:0007:%'"
        )
    )
