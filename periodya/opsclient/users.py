"""`periodya ops users` and `periodya ops user disable|enable|role|reset-password|unlock ...`.

Every change names the user (read from the list first: email, roles, state, last login), says what will
happen and asks for confirmation; `--yes` skips the question, and without it the command refuses when
stdin is not a terminal. Each needs `--reason` (recorded with the event). The API's guard rails answer
409 (exit 1): an admin cannot disable or demote themselves or the last active platform_admin.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from periodya.opsclient import render
from periodya.opsclient.client import ApiClient
from periodya.opsclient.errors import EXIT_ATTENTION, EXIT_OK, EXIT_USAGE, OpsError
from periodya.opsclient.payouts import _confirm as confirm

ACTIONS = {
    "disable": "disable the user: every session of theirs ends at once and they cannot log in",
    "enable": "re-enable the user: they can log in again (their old sessions stay ended)",
    "role": "make ROLE the user's console role (effective on their next request)",
    "reset-password": "set a new password (from stdin with --password-stdin, else a generated one-time password "
                      "printed once) and end every session of theirs",
    "unlock": "clear the failed-login throttle of EMAIL (from every address), of --address, or of both together",
}
ROLES = ("platform_admin", "ops_viewer")
_HEAD = ["email", "roles", "state", "last login", "last seen", "sessions", "created"]


def add_parser(add: Any) -> None:
    """`users` and `user ACTION` on the ops subparsers; `add(name, help)` is commands.add_parser's helper."""
    add("users", "list admin users: roles, disabled or active, last login")
    user = add("user", "change an admin user (platform_admin only); asks for confirmation")
    actions = user.add_subparsers(dest="user_action", required=True, metavar="ACTION")
    for name, text in ACTIONS.items():
        act = actions.add_parser(name, help=text, description=text)
        act.add_argument("email", nargs="?" if name == "unlock" else None, help="the user's email")
        if name == "role":
            act.add_argument("role", choices=ROLES)
        if name == "reset-password":
            act.add_argument("--password-stdin", action="store_true", help="read the new password from stdin")
        if name == "unlock":
            act.add_argument("--address", help="the client address the throttle saw (IPv4 or IPv6)")
        act.add_argument("--reason", required=True, help="why (recorded with the event)")
        act.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
        # also after ACTION; SUPPRESS keeps a value given before it (`ops user --json disable ...`)
        act.add_argument("--url", default=argparse.SUPPRESS, help="the deployment (as for every ops command)")
        act.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON")


def _state(u: dict[str, Any]) -> str:
    return "DISABLED" if u["disabled"] else "active"


async def list_users(api: ApiClient, args: argparse.Namespace) -> int:
    body = await api.get("/api/admin/users")
    if args.json:
        render.emit_json(body)
        return EXIT_OK
    render.out(render.table(_HEAD, [(u["email"], ",".join(u["roles"]) or "-", _state(u), u["lastLoginAt"],
                                     render.age(u["lastSeenAt"]), u["liveSessions"], u["createdAt"])
                                    for u in body["users"]]))
    return EXIT_OK


async def _find(api: ApiClient, email: str) -> dict[str, Any]:
    wanted = email.strip().lower()
    for u in (await api.get("/api/admin/users"))["users"]:
        if u["email"] == wanted:
            return dict(u)
    raise OpsError(EXIT_ATTENTION, f"refused: no admin user with email {wanted}")


def _password() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise OpsError(EXIT_USAGE, "the password on stdin is empty")
    return password


async def user_action(api: ApiClient, args: argparse.Namespace) -> int:
    action, reason = args.user_action, args.reason.strip()
    if not reason:
        raise OpsError(EXIT_USAGE, f"{action} needs --reason TEXT (it is recorded with the event)")
    if action == "unlock":
        return await _unlock(api, args, reason)
    user = await _find(api, args.email)
    body: dict[str, Any] = {"reason": reason}
    if action == "role":
        body["role"] = args.role
    if action == "reset-password" and args.password_stdin:
        if not args.yes:  # stdin carries the password, so it cannot carry the answer too
            raise OpsError(EXIT_USAGE, "--password-stdin uses stdin: pass --yes to confirm")
        body["password"] = _password()
    lines = [f"{action} admin user {user['email']} ({user['userId']})",
             f"  roles {','.join(user['roles']) or '-'}, {_state(user)}, last login {user['lastLoginAt'] or 'never'}, "
             f"{user['liveSessions']} live session(s)",
             f"  this will {ACTIONS[action].replace('ROLE', getattr(args, 'role', '') or 'ROLE')}",
             f"  reason: {reason}"]
    confirm(args, lines, action, user["email"])
    after = await api.post(f"/api/admin/users/{quote(user['userId'], safe='')}/{action}", body)
    if args.json:
        render.emit_json(after)
        return EXIT_OK
    u = after["user"]
    if not after["changed"]:
        render.out(f"{action}: {u['email']} was already so; nothing changed")
    else:
        render.out(f"{action}: {u['email']} is now {_state(u)} with roles {','.join(u['roles']) or '-'}"
                   f" ({after['sessionsRevoked']} session(s) ended)")
    if after.get("generatedPassword"):
        render.out(f"one-time password for {u['email']} (shown only now; hand it over securely): "
                   f"{after['generatedPassword']}")
    return EXIT_OK


async def _unlock(api: ApiClient, args: argparse.Namespace, reason: str) -> int:
    if not args.email and not args.address:
        raise OpsError(EXIT_USAGE, "unlock needs EMAIL, --address ADDRESS, or both")
    what = " from ".join(x for x in (args.email, args.address) if x)
    confirm(args, [f"unlock the login throttle of {what}", f"  this will {ACTIONS['unlock']}", f"  reason: {reason}"],
            "unlock", what)
    body = {"email": args.email, "address": args.address, "reason": reason}
    after = await api.post("/api/admin/login-throttle/unlock", {k: v for k, v in body.items() if v})
    if args.json:
        render.emit_json(after)
    else:
        render.out(f"unlock: cleared {after['cleared']} failed login(s) of {what}")
    return EXIT_OK
