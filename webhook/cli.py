"""The `minsheng` command line: serve, polling, database migrations, the administrative tree.

Each subcommand imports what it needs when it runs, so `minsheng db upgrade` works even where
the web and bot parts cannot start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from storage.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from webhook.server import serve

    serve(settings, args.host, args.port)
    return 0


def _polling(args: argparse.Namespace, settings: Settings) -> int:
    from webhook.server import polling

    polling(settings)
    return 0


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from storage import migrate

    # Alembic reports each revision it runs through the logging module.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(migrate.upgrade(settings.database_url, args.revision))
    print(f"database migrated to {args.revision}")
    return 0


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


async def _import_org(database_url: str, text: str) -> str:
    from storage.db import create_engine, create_sessionmaker
    from storage.services.org import import_rows, parse_org_csv

    # Parse the whole file before touching the database: a bad row imports nothing.
    rows = parse_org_csv(text)
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            added = await import_rows(session, rows)
    finally:
        await engine.dispose()
    districts = len({r.district for r in rows})
    streets = len({(r.district, r.street) for r in rows})
    communities = len({(r.district, r.street, r.community) for r in rows})
    return (
        f"imported: {_plural(added.districts, 'district', 'districts')}, "
        f"{_plural(added.streets, 'street', 'streets')}, "
        f"{_plural(added.communities, 'community', 'communities')} "
        f"({districts - added.districts} districts, {streets - added.streets} streets, "
        f"{communities - added.communities} communities already present)"
    )


def _org_import(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from storage.services.org import OrgImportError

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        print(f"{path}: not a UTF-8 file", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        print(asyncio.run(_import_org(settings.database_url, text)))
    except OrgImportError as exc:
        print(f"{path}: {exc}; nothing was imported", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(
            f"database error: {exc.__class__.__name__}: {exc.args[0] if exc.args else ''}\n"
            "has `minsheng db upgrade` been run?",
            file=sys.stderr,
        )
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minsheng", description="民生微实事 (livelihood micro-projects): bot and service"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the webhook service (sandbox without BOT_TOKEN)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_serve)

    polling = commands.add_parser("polling", help="development: long polling, no public URL")
    polling.set_defaults(handler=_polling)

    db = commands.add_parser("db", help="the database").add_subparsers(
        dest="db_command", required=True, metavar="DB_COMMAND"
    )
    upgrade = db.add_parser("upgrade", help="apply Alembic migrations")
    upgrade.add_argument("revision", nargs="?", default="head", help="default: head")
    upgrade.set_defaults(handler=_db_upgrade)

    org = commands.add_parser("org", help="the administrative tree").add_subparsers(
        dest="org_command", required=True, metavar="ORG_COMMAND"
    )
    org_import = org.add_parser(
        "import", help="load district,street,community rows from a UTF-8 CSV (idempotent)"
    )
    org_import.add_argument("file", metavar="FILE.csv")
    org_import.set_defaults(handler=_org_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
