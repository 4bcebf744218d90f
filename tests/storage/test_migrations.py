"""Migrations: every revision goes up, down and up again (the "stairway"), and the schema
they build is exactly storage.models' metadata, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, inspect, text

from storage import migrate
from storage.db import create_engine
from storage.models import Base


def _revisions() -> list[Script]:
    """Oldest first."""
    return list(reversed(list(migrate.script_directory().walk_revisions("base", "heads"))))


def _down_target(revision: Script) -> str:
    down = revision.down_revision
    if down is None:
        return "base"
    return down if isinstance(down, str) else "-1"


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


def test_one_head() -> None:
    # Two engineers adding revisions in parallel make two heads; merge them before release.
    assert len(migrate.script_directory().get_heads()) == 1


def test_alembic_ini_finds_the_same_scripts() -> None:
    config = Config(str(migrate.ALEMBIC_INI))
    assert ScriptDirectory.from_config(config).get_current_head() == migrate.head_revision()


async def test_stairway(empty_url: str) -> None:
    for revision in _revisions():
        await migrate.upgrade(empty_url, revision.revision)
        await migrate.downgrade(empty_url, _down_target(revision))
        await migrate.upgrade(empty_url, revision.revision)
    assert await migrate.current(empty_url) == migrate.head_revision()


async def test_downgrade_to_base_leaves_nothing(empty_url: str) -> None:
    await migrate.upgrade(empty_url)
    assert {t.name for t in Base.metadata.sorted_tables} <= await _tables(empty_url)
    await migrate.downgrade(empty_url, "base")
    assert await _tables(empty_url) <= {"alembic_version"}
    assert await migrate.current(empty_url) is None


async def test_migrations_match_models(empty_url: str) -> None:
    await migrate.upgrade(empty_url)

    def diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, Base.metadata))

    engine = create_engine(empty_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


def test_offline_sql_for_postgresql() -> None:
    """`alembic upgrade --sql` (env.py's offline mode) renders without a database."""
    buffer = io.StringIO()
    config = Config(output_buffer=buffer)
    config.set_main_option("script_location", str(migrate.MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", "postgresql+asyncpg://nobody@localhost/none")
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    assert "CREATE TABLE suggestion (" in sql
    assert "CONSTRAINT uq_suggestion_number UNIQUE (number)" in sql


_BEFORE_0005 = [
    "INSERT INTO district (id, name) VALUES (1, '福田区')",
    "INSERT INTO street (id, district_id, name) VALUES (1, 1, '沙头街道')",
    "INSERT INTO community (id, street_id, name, number_prefix, council_quorum_pct, "
    "council_threshold_pct) VALUES (1, 1, '新沙社区', '新沙', 50, 50)",
    "INSERT INTO suggestion (id, number, community_id, year, seq, source_type, category, "
    "title, description, photo_file_ids, status, created_at, updated_at) VALUES (1, "
    "'新沙-2026-0001', 1, 2026, 1, 'resident', 'safety', '路灯', '说明', '[]', "
    "'council_vote', :at, :at)",
    "INSERT INTO council_vote (id, community_id, convened_at, closes_at, quorum_pct, "
    "threshold_pct, council_size, council_chat_id, status) VALUES (1, 1, :at, :closes, 50, 50, "
    "3, -100777, 'open')",
    "INSERT INTO council_vote_item (id, vote_id, suggestion_id, position, agree, against, "
    "abstain) VALUES (1, 1, 1, 1, 0, 0, 0)",
    "INSERT INTO council_poll (poll_id, item_id, chat_id, message_id) "
    "VALUES ('poll-1', 1, -100777, 700)",
]


async def test_0005_takes_the_polls_sent_for_sends_done(empty_url: str) -> None:
    """A poll recorded before 0005 is a send done (never sent again); a poll without a known
    message id survives a downgrade (0 stands for it) and the upgrade after it."""
    at = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    await migrate.upgrade(empty_url, "0004")
    engine = create_engine(empty_url)
    try:
        async with engine.begin() as conn:
            for sql in _BEFORE_0005:
                await conn.execute(text(sql), {"at": at, "closes": at + timedelta(days=3)})
        await migrate.upgrade(empty_url)
        async with engine.begin() as conn:
            sends = (await conn.execute(text("SELECT * FROM council_poll_send"))).mappings().all()
            assert [(s["item_id"], s["chat_id"], s["state"], s["error"]) for s in sends] == [
                (1, -100777, "sent", None)
            ]
            await conn.execute(text("UPDATE council_poll SET message_id = NULL"))
        await migrate.downgrade(empty_url, "0004")
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT message_id FROM council_poll")) == 0
        await migrate.upgrade(empty_url)
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT message_id FROM council_poll")) is None
    finally:
        await engine.dispose()


async def test_0007_owes_role_holders_their_menus(empty_url: str) -> None:
    """Everyone holding a role when 0007 runs (and not blocking the bot) is owed their own
    command menu, once; the sender then sets it (bot.outbox)."""
    at = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    await migrate.upgrade(empty_url, "0006")
    engine = create_engine(empty_url)
    try:
        async with engine.begin() as conn:
            for person_id, blocked in ((1, None), (2, None), (3, at), (4, None)):
                await conn.execute(
                    text(
                        "INSERT INTO person (id, telegram_id, first_name, blocked_bot_at, "
                        "created_at) VALUES (:id, :tid, 'x', :blocked, :at)"
                    ),
                    {"id": person_id, "tid": 9000 + person_id, "blocked": blocked, "at": at},
                )
            # 1 holds two roles, 2 had one revoked, 3 blocked the bot, 4 holds none.
            for person_id, role, revoked in (
                (1, "council_member", None),
                (1, "community_staff", None),
                (2, "council_member", at),
                (3, "council_member", None),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO role_grant (person_id, role, scope_level, scope_id, "
                        "granted_at, revoked_at) VALUES (:p, :role, 'community', 1, :at, :rev)"
                    ),
                    {"p": person_id, "role": role, "at": at, "rev": revoked},
                )
        await migrate.upgrade(empty_url)
        async with engine.connect() as conn:
            owed = (
                await conn.execute(
                    text("SELECT chat_id, person_id, kind, params, status FROM notification")
                )
            ).all()
        assert [(r[0], r[1], r[2], r[4]) for r in owed] == [(9001, 1, "command_menu", "pending")]
        assert owed[0][3] in ({}, "{}")
        await migrate.downgrade(empty_url, "0006")
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM notification")) == 0
    finally:
        await engine.dispose()


async def test_0009_reads_the_error_prefixes_into_columns_and_back(empty_url: str) -> None:
    """The prefixes 0009 replaces ("partial n/m; " on a notification, "Member not reachable: "
    on a poll's send) become its columns on the upgrade, leaving the error as told to people,
    and are written back on the downgrade."""
    at = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    await migrate.upgrade(empty_url, "0008")
    engine = create_engine(empty_url)
    errors = [
        "partial 2/3; Too Many Requests: retry after 3",
        "partial 1/2; ",
        "Bad Request: chat not found",
        "partial failure of the proxy",  # not the sender's prefix: left alone
        None,
    ]
    sends = [
        (1, 301, "refused", "Member not reachable: Forbidden: bot was blocked by the user"),
        (1, 302, "refused", "Bad Request: poll can't be sent"),
        # Recognised after the refusal: the error was left as it was, and nothing read it.
        (1, 303, "sent", "Member not reachable: Forbidden: user is deactivated"),
    ]
    try:
        async with engine.begin() as conn:
            for sql in _BEFORE_0005:
                await conn.execute(text(sql), {"at": at, "closes": at + timedelta(days=3)})
            for error in errors:
                await conn.execute(
                    text(
                        "INSERT INTO notification (chat_id, kind, params, status, attempts, "
                        "not_before, created_at, error) VALUES (-100777, 'vote_result', '{}', "
                        "'pending', 1, :at, :at, :error)"
                    ),
                    {"at": at, "error": error},
                )
            for item_id, chat_id, state, error in sends:
                await conn.execute(
                    text(
                        "INSERT INTO council_poll_send (item_id, chat_id, state, attempted_at, "
                        "error) VALUES (:item, :chat, :state, :at, :error)"
                    ),
                    {"item": item_id, "chat": chat_id, "state": state, "at": at, "error": error},
                )

        async def rows(query: str) -> list[tuple[object, ...]]:
            async with engine.connect() as conn:
                return [tuple(row) for row in (await conn.execute(text(query))).all()]

        notifications = "SELECT parts_sent, parts_total, error FROM notification ORDER BY id"
        # SQLite answers 0 or 1 for a boolean, equal to False and True.
        members = (
            "SELECT chat_id, unreachable, error FROM council_poll_send "
            "WHERE chat_id > 0 ORDER BY chat_id"
        )
        upgraded_notifications = [
            (2, 3, "Too Many Requests: retry after 3"),
            (1, 2, None),
            (0, 0, "Bad Request: chat not found"),
            (0, 0, "partial failure of the proxy"),
            (0, 0, None),
        ]
        upgraded_sends = [
            (301, True, "Forbidden: bot was blocked by the user"),
            (302, False, "Bad Request: poll can't be sent"),
            (303, False, "Forbidden: user is deactivated"),
        ]
        for _ in range(2):  # and again after the downgrade
            await migrate.upgrade(empty_url)
            assert await rows(notifications) == upgraded_notifications
            assert await rows(members) == upgraded_sends
            await migrate.downgrade(empty_url, "0008")
            assert await rows("SELECT error FROM notification ORDER BY id") == [
                (error,) for error in errors
            ]
            # The send recognised since keeps its error, without the prefix nothing read.
            assert await rows(
                "SELECT error FROM council_poll_send WHERE chat_id > 0 ORDER BY chat_id"
            ) == [(sends[0][3],), (sends[1][3],), ("Forbidden: user is deactivated",)]
    finally:
        await engine.dispose()
