"""Initial schema: org tree, people and roles, suggestions, projects, audit, update bookkeeping.

Revision ID: 0001
Revises:
Create Date: 2026-02-01

Written without importing storage.models, so later model changes cannot rewrite history.
Enums are plain VARCHAR(32) (models.str_enum: a new state is a code change, not a migration);
times are DateTime(timezone=True), which models.UTCDateTime wraps.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENUM = sa.String(length=32)
TIME = sa.DateTime(timezone=True)


def _fk(column: str, target: str, table: str, ondelete: str) -> sa.ForeignKeyConstraint:
    referred = target.split(".")[0]
    return sa.ForeignKeyConstraint(
        [column], [target], name=op.f(f"fk_{table}_{column}_{referred}"), ondelete=ondelete
    )


def upgrade() -> None:
    op.create_table(
        "dead_letter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter")),
    )
    op.create_table(
        "district",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_district")),
        sa.UniqueConstraint("name", name=op.f("uq_district_name")),
    )
    op.create_table(
        "person",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("first_name", sa.String(length=255), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("language_code", sa.String(length=16), nullable=True),
        sa.Column("locale", sa.String(length=8), nullable=True),
        sa.Column("blocked_bot_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person")),
        sa.UniqueConstraint("telegram_id", name=op.f("uq_person_telegram_id")),
    )
    op.create_table(
        "processed_update",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("processed_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("update_id", name=op.f("pk_processed_update")),
    )
    op.create_index(op.f("ix_processed_update_processed_at"), "processed_update", ["processed_at"])
    op.create_table(
        "role_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("role", ENUM, nullable=False),
        sa.Column("scope_level", ENUM, nullable=False),
        sa.Column("scope_id", sa.Integer(), nullable=True),
        sa.Column("granted_by_id", sa.Integer(), nullable=True),
        sa.Column("granted_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
        _fk("granted_by_id", "person.id", "role_grant", "SET NULL"),
        _fk("person_id", "person.id", "role_grant", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_grant")),
    )
    op.create_index(op.f("ix_role_grant_person_id"), "role_grant", ["person_id"])
    op.create_index("ix_role_grant_scope", "role_grant", ["role", "scope_level", "scope_id"])
    op.create_table(
        "street",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        _fk("district_id", "district.id", "street", "RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_street")),
        sa.UniqueConstraint("district_id", "name", name=op.f("uq_street_district_id")),
    )
    op.create_table(
        "community",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("street_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("number_prefix", sa.String(length=64), nullable=False),
        sa.Column("council_quorum_pct", sa.Integer(), nullable=False),
        sa.Column("council_threshold_pct", sa.Integer(), nullable=False),
        _fk("street_id", "street.id", "community", "RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community")),
        sa.UniqueConstraint("street_id", "name", name=op.f("uq_community_street_id")),
        sa.UniqueConstraint("number_prefix", name=op.f("uq_community_number_prefix")),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("actor_person_id", sa.Integer(), nullable=True),
        sa.Column("actor_role", ENUM, nullable=True),
        sa.Column("entity_type", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_state", ENUM, nullable=True),
        sa.Column("to_state", ENUM, nullable=True),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        _fk("actor_person_id", "person.id", "audit_event", "SET NULL"),
        _fk("community_id", "community.id", "audit_event", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index(op.f("ix_audit_event_community_id"), "audit_event", ["community_id"])
    op.create_index("ix_audit_event_entity", "audit_event", ["entity_type", "entity_id", "at"])
    op.create_table(
        "chat",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=True),
        sa.Column("purpose", ENUM, nullable=False),
        sa.Column("bot_is_member", sa.Boolean(), nullable=False),
        sa.Column("bound_by_id", sa.Integer(), nullable=True),
        sa.Column("bound_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        _fk("bound_by_id", "person.id", "chat", "SET NULL"),
        _fk("community_id", "community.id", "chat", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat")),
    )
    op.create_index(op.f("ix_chat_community_id"), "chat", ["community_id"])
    op.create_table(
        "project",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("category", ENUM, nullable=False),
        sa.Column("kind", ENUM, nullable=False),
        sa.Column("status", ENUM, nullable=False),
        sa.Column("budget_fen", sa.BigInteger(), nullable=False),
        sa.Column("cap_justification", sa.Text(), nullable=True),
        sa.Column("batch", sa.String(length=64), nullable=True),
        sa.Column("expected_benefit", sa.Text(), nullable=True),
        sa.Column("implementer", sa.String(length=255), nullable=True),
        sa.Column("implementer_assigned_at", TIME, nullable=True),
        sa.Column("due_at", TIME, nullable=True),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("completed_at", TIME, nullable=True),
        sa.Column("maintenance_unit", sa.String(length=255), nullable=True),
        sa.Column("spent_fen", sa.BigInteger(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint("budget_fen >= 0", name=op.f("ck_project_budget")),
        _fk("community_id", "community.id", "project", "RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project")),
    )
    op.create_index("ix_project_community_status", "project", ["community_id", "status"])
    op.create_table(
        "suggestion_counter",
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        _fk("community_id", "community.id", "suggestion_counter", "CASCADE"),
        sa.PrimaryKeyConstraint("community_id", "year", name=op.f("pk_suggestion_counter")),
    )
    op.create_table(
        "suggestion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=48), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("proposer_id", sa.Integer(), nullable=True),
        sa.Column("source_type", ENUM, nullable=False),
        sa.Column("category", ENUM, nullable=False),
        sa.Column("kind", ENUM, nullable=True),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("location_text", sa.String(length=512), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("photo_file_ids", sa.JSON(), nullable=False),
        sa.Column("estimated_cost_fen", sa.BigInteger(), nullable=True),
        sa.Column("status", ENUM, nullable=False),
        sa.Column("exclusion_reason", ENUM, nullable=True),
        sa.Column("exclusion_note", sa.Text(), nullable=True),
        sa.Column("merged_into_id", sa.Integer(), nullable=True),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint(
            "estimated_cost_fen IS NULL OR estimated_cost_fen >= 0",
            name=op.f("ck_suggestion_cost"),
        ),
        _fk("community_id", "community.id", "suggestion", "RESTRICT"),
        _fk("merged_into_id", "suggestion.id", "suggestion", "SET NULL"),
        _fk("project_id", "project.id", "suggestion", "SET NULL"),
        _fk("proposer_id", "person.id", "suggestion", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suggestion")),
        sa.UniqueConstraint("community_id", "year", "seq", name=op.f("uq_suggestion_community_id")),
        sa.UniqueConstraint("number", name=op.f("uq_suggestion_number")),
    )
    op.create_index("ix_suggestion_community_status", "suggestion", ["community_id", "status"])
    op.create_index(op.f("ix_suggestion_project_id"), "suggestion", ["project_id"])
    op.create_index("ix_suggestion_proposer_created", "suggestion", ["proposer_id", "created_at"])
    op.create_table(
        "follower",
        sa.Column("suggestion_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("since", TIME, nullable=False),
        _fk("person_id", "person.id", "follower", "CASCADE"),
        _fk("suggestion_id", "suggestion.id", "follower", "CASCADE"),
        sa.PrimaryKeyConstraint("suggestion_id", "person_id", name=op.f("pk_follower")),
    )
    op.create_index(op.f("ix_follower_person_id"), "follower", ["person_id"])


def downgrade() -> None:
    # Children first; a table's indexes go with it.
    for table in (
        "follower",
        "suggestion",
        "suggestion_counter",
        "project",
        "chat",
        "audit_event",
        "community",
        "street",
        "role_grant",
        "processed_update",
        "person",
        "district",
        "dead_letter",
    ):
        op.drop_table(table)
