"""`periodya admin create-user EMAIL --password-stdin [--role ROLE]...`: prints the new user's id.
`periodya admin revoke-sessions EMAIL`: ends every live session of that user at once (recorded in the log).

The password only ever comes from stdin (never argv, which other local users can read in ps)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from periodya.admin import users
from periodya.admin.passwords import check_new_password
from periodya.config import Settings
from periodya.deps import open_pool
from periodya.errors import ConfigError
from periodya.eventstore import EventStore
from periodya.handlers.unit_of_work import Meta


def add_parser(sub: Any) -> None:
    """Add `admin` (with its `create-user` subcommand) to periodya's subparsers."""
    admin = sub.add_parser("admin", help="manage platform administrators")
    actions = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    create = actions.add_parser("create-user", help="create an admin user; prints its id")
    create.add_argument("email")
    create.add_argument("--password-stdin", action="store_true", required=True,
                        help="read the password from stdin (one trailing newline is stripped)")
    create.add_argument("--role", action="append", dest="roles", metavar="ROLE",
                        help=f"grant ROLE (repeatable; default: {users.PLATFORM_ADMIN})")
    revoke = actions.add_parser("revoke-sessions", help="revoke every live session of an admin user at once")
    revoke.add_argument("email")


def read_password(stream: Any) -> str:
    text: str = stream.read()
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            return text[: -len(ending)]
    return text


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


async def cmd_admin(args: argparse.Namespace, settings: Settings) -> int:
    if args.admin_command == "revoke-sessions":
        return await _revoke_sessions(args, settings)
    if args.admin_command != "create-user":
        raise ConfigError(f"unknown admin action {args.admin_command!r}")
    email = users.check_email(args.email)
    password = check_new_password(read_password(sys.stdin))
    roles = users.check_roles(args.roles or [users.PLATFORM_ADMIN])
    pool = await open_pool(settings, min_size=1, max_size=1)
    try:
        user_id = await users.create_user(EventStore(pool), email, password, roles,
                                          meta=Meta(actor=f"cli:{_os_user()}"))
    finally:
        await pool.close()
    print(user_id)
    return 0


async def _revoke_sessions(args: argparse.Namespace, settings: Settings) -> int:
    email = users.check_email(args.email)
    pool = await open_pool(settings, min_size=1, max_size=1)
    try:
        _, revoked = await users.revoke_sessions(EventStore(pool), email, meta=Meta(actor=f"cli:{_os_user()}"))
    finally:
        await pool.close()
    print(f"revoked {revoked} session(s) of {email}")
    return 0
