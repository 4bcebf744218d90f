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
from typing import Any

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


# --- Access: API tokens and invites -----------------------------------------------------------

TOKEN_ROLE_CHOICES = ("community_staff", "street_official", "district_admin", "city_admin")
INVITE_ROLE_CHOICES = (*TOKEN_ROLE_CHOICES, "council_member")


class CliError(Exception):
    """A message for the operator; the command exits 1."""


def _run_store(settings: Settings, work: Callable[..., Any], *args: Any) -> Any:
    """Run `work(session, *args)` against the configured database, mapping the store's errors
    to messages: a rule violation says what is wrong, a database error suggests migrating."""
    from sqlalchemy.exc import SQLAlchemyError

    from storage.db import create_engine, create_sessionmaker
    from storage.rules import RuleViolation

    async def run() -> Any:
        engine = create_engine(settings.database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                return await work(session, *args)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except RuleViolation as exc:
        raise CliError(str(exc)) from exc
    except SQLAlchemyError as exc:
        raise CliError(
            f"database error: {exc.__class__.__name__}: {exc.args[0] if exc.args else ''}\n"
            "has `minsheng db upgrade` been run?"
        ) from exc


def _cli_errors(handler: Handler) -> Handler:
    def wrapped(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return handler(args, settings)
        except CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return wrapped


def _local(moment: Any, settings: Settings) -> str:
    if moment is None:
        return "-"
    from bot.texts import local_datetime

    return local_datetime(moment, settings.tz)


def _token_create(args: argparse.Namespace, settings: Settings) -> int:
    from storage.rules import Role
    from storage.services import invites, tokens

    async def work(session: Any) -> tuple[Any, str, str]:
        role = Role(args.role)
        scope = await invites.resolve_scope_name(session, role, args.scope)
        token, plaintext = await tokens.create_token(session, role, scope, args.label)
        where = await invites.scope_name(session, scope, full=True) or "the whole city"
        return token, plaintext, where

    token, plaintext, where = _run_store(settings, work)
    # The token alone on stdout, so `TOKEN=$(minsheng token create ...)` captures just it.
    print(plaintext)
    print(
        f"token {token.prefix}: {token.role.value} of {where}. It is shown only this once; "
        f"revoke it with `minsheng token revoke {token.prefix}`.",
        file=sys.stderr,
    )
    return 0


def _token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from storage.services import tokens

    async def work(session: Any) -> tuple[bool, bool]:
        existing = await tokens.find_token(session, args.prefix)
        already = existing is not None and existing.revoked_at is not None
        return await tokens.revoke(session, args.prefix), already

    found, already = _run_store(settings, work)
    if not found:
        raise CliError(f"no token with prefix {args.prefix!r} (see `minsheng token list`)")
    print(f"token {args.prefix} {'was already revoked' if already else 'revoked'}")
    return 0


def _token_list(args: argparse.Namespace, settings: Settings) -> int:
    from storage.services import invites, tokens
    from storage.services.access import Scope

    async def work(session: Any) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = []
        for token in await tokens.list_tokens(session):
            scope = Scope(token.scope_level, token.scope_id)
            rows.append(
                (
                    token.prefix,
                    token.role.value,
                    await invites.scope_name(session, scope, full=True) or "city",
                    _local(token.created_at, settings),
                    _local(token.last_used_at, settings),
                    _local(token.revoked_at, settings) if token.revoked_at else "active",
                    token.label or "",
                )
            )
        return rows

    rows = _run_store(settings, work)
    if not rows:
        print("no tokens")
        return 0
    header = ("prefix", "role", "scope", "created", "last used", "revoked", "label")
    print("\t".join(header))
    for row in rows:
        print("\t".join(row))
    return 0


GETME_TIMEOUT = 15  # seconds: an operator waits at the terminal


async def _bot_username(settings: Settings, given: str | None) -> str:
    """The bot's @username for deep links: as given, the sandbox's, or from getMe."""
    if given:
        return given.removeprefix("@")
    if settings.bot_token is None:
        return settings.sandbox_bot_username
    from bot.factory import create_bot
    from bot.session import redact_token

    token = settings.bot_token.get_secret_value()
    try:
        # The service's own Bot: its session keeps the token out of the errors it raises
        # (aiohttp names the request URL, /bot<token>/getMe, in some of them).
        async with create_bot(token, settings.telegram_api_base) as bot:
            bot.session.timeout = GETME_TIMEOUT
            me = await bot.get_me()
    except Exception as exc:  # any failure: network, a wrong token, a refusing server
        # Redacted here too: what the operator's terminal (or log) shows never carries it.
        detail = redact_token(f"{exc.__class__.__name__}: {exc}", token)
        raise CliError(
            f"could not ask Telegram for the bot's username (getMe at "
            f"{settings.telegram_api_base}: {detail}); pass --bot-username NAME"
        ) from exc
    if not me.username:
        raise CliError("the bot has no username; pass --bot-username NAME")
    return me.username


def _invite_create(args: argparse.Namespace, settings: Settings) -> int:
    from storage.rules import Role
    from storage.services import invites

    async def work(session: Any) -> tuple[Any, str, str]:
        role = Role(args.role)
        scope = await invites.resolve_scope_name(session, role, args.scope)
        # Before the invite exists, so a failing getMe leaves nothing behind.
        username = await _bot_username(settings, args.bot_username)
        invite = await invites.create_invite(
            session, role, scope, uses=args.uses, expires_days=args.expires_days
        )
        where = await invites.scope_name(session, scope, full=True) or "the whole city"
        return invite, invites.deep_link(username, invite.code), where

    invite, link, where = _run_store(settings, work)
    print(link)
    uses = _plural(invite.max_uses, "use", "uses")
    expires = (
        f"expires {_local(invite.expires_at, settings)} ({settings.timezone})"
        if invite.expires_at
        else "does not expire"
    )
    print(f"invite: {invite.role.value} of {where}; {uses}; {expires}", file=sys.stderr)
    return 0


def _invite_list(args: argparse.Namespace, settings: Settings) -> int:
    from storage.services import invites
    from storage.services.access import Scope

    async def work(session: Any) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = []
        for invite in await invites.list_invites(session):
            scope = Scope(invite.scope_level, invite.scope_id)
            rows.append(
                (
                    invite.code,
                    invite.role.value,
                    await invites.scope_name(session, scope, full=True) or "city",
                    f"{invite.used_count}/{invite.max_uses}",
                    _local(invite.expires_at, settings),
                    _local(invite.revoked_at, settings) if invite.revoked_at else "active",
                )
            )
        return rows

    rows = _run_store(settings, work)
    if not rows:
        print("no invites")
        return 0
    print("\t".join(("code", "role", "scope", "used", "expires", "revoked")))
    for row in rows:
        print("\t".join(row))
    return 0


def _invite_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from storage.services import invites

    async def work(session: Any) -> bool:
        return await invites.revoke_invite(session, args.code)

    if not _run_store(settings, work):
        raise CliError(f"no invite with code {args.code!r} (see `minsheng invite list`)")
    print(f"invite {args.code} revoked; roles it already granted stay")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


SCOPE_HELP = (
    "name of the community, street or district matching the role (city_admin: none); "
    "where names repeat, a path such as 沙头街道/新沙社区"
)


def _add_access_commands(commands: Any) -> None:
    token = commands.add_parser("token", help="bearer tokens of the officials' API").add_subparsers(
        dest="token_command", required=True, metavar="TOKEN_COMMAND"
    )
    create = token.add_parser("create", help="print a new token once (only its hash is stored)")
    create.add_argument("--role", required=True, choices=TOKEN_ROLE_CHOICES)
    create.add_argument("--scope", metavar="NAME", help=SCOPE_HELP)
    create.add_argument("--label", metavar="TEXT", help="what the token is for")
    create.set_defaults(handler=_cli_errors(_token_create))
    revoke = token.add_parser("revoke", help="revoke a token by its prefix")
    revoke.add_argument("prefix", metavar="PREFIX")
    revoke.set_defaults(handler=_cli_errors(_token_revoke))
    listing = token.add_parser("list", help="tokens by prefix (never the tokens themselves)")
    listing.set_defaults(handler=_cli_errors(_token_list))

    invite = commands.add_parser(
        "invite", help="deep links that grant a role in Telegram"
    ).add_subparsers(dest="invite_command", required=True, metavar="INVITE_COMMAND")
    create = invite.add_parser("create", help="print a t.me deep link granting a role")
    create.add_argument("--role", required=True, choices=INVITE_ROLE_CHOICES)
    create.add_argument("--scope", metavar="NAME", help=SCOPE_HELP)
    create.add_argument("--uses", type=_positive, default=1, metavar="N", help="default: 1")
    create.add_argument(
        "--expires-days", type=_positive, metavar="D", help="default: does not expire"
    )
    create.add_argument(
        "--bot-username", metavar="NAME", help="the bot's username, instead of asking getMe"
    )
    create.set_defaults(handler=_cli_errors(_invite_create))
    listing = invite.add_parser("list", help="invites and how much of each is used")
    listing.set_defaults(handler=_cli_errors(_invite_list))
    revoke = invite.add_parser("revoke", help="stop an invite from granting any more")
    revoke.add_argument("code", metavar="CODE")
    revoke.set_defaults(handler=_cli_errors(_invite_revoke))


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

    _add_access_commands(commands)
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
