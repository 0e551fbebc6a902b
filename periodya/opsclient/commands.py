"""What each `periodya ops ACTION` does against the public HTTP API (README, "periodya ops"); its command
line (the parser, the dispatch) is periodya/cli/ops.py.

Exit codes (periodya/opsclient/errors.py): 0 ok, 1 attention or refused by the API, 2 usage or
configuration, 3 authentication, 4 deployment unreachable or failing. Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable, Callable

from periodya.opsclient import health, payouts, render, users
from periodya.opsclient.client import ApiClient
from periodya.opsclient.config import ConfigStore, Session
from periodya.opsclient.errors import EXIT_ATTENTION, EXIT_AUTH, EXIT_OK, EXIT_USAGE, OpsError

JOBS = ("outbox", "webhooks", "reconcile-pull", "repair", "sentinel")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        raise OpsError(EXIT_USAGE, "no terminal to ask for the password on: use --password-stdin")
    else:
        password = getpass.getpass("Password: ")  # not echoed, never in argv
    if not password:
        raise OpsError(EXIT_USAGE, "the password is empty")
    return password


async def login(args: argparse.Namespace) -> int:
    store = ConfigStore()
    url = store.resolve_url(args.url)
    password = _password(args)
    async with ApiClient(url) as api:
        try:
            body = await api.post("/api/auth/login", {"email": args.email, "password": password})
        except OpsError as exc:
            if exc.exit_code == EXIT_AUTH:
                raise OpsError(EXIT_AUTH, "login refused: invalid email or password") from None
            raise
        api.token = body["token"]
        me = await api.get("/api/auth/me")
        await _end_previous(store, url)
    store.store(Session(url, body["token"], me["email"], body["expiresAt"]))
    if args.json:
        render.emit_json({"url": url, "email": me["email"], "roles": me["roles"], "expiresAt": body["expiresAt"]})
    else:
        render.out(f"logged in to {url} as {me['email']} until {body['expiresAt']}")
    if not me["platformAdmin"]:
        print("periodya ops: warning: this account lacks platform_admin; the API will refuse ops commands",
              file=sys.stderr)
    return EXIT_OK


async def _end_previous(store: ConfigStore, url: str) -> None:
    """A new login replaces the stored session: end the old one on the server too (best effort)."""
    try:
        previous = store.session(url)
        async with ApiClient(url, previous.token) as api:
            await api.post("/api/auth/logout")
    except OpsError:
        pass  # none stored, or already ended: nothing to revoke


async def logout(store: ConfigStore, url: str, args: argparse.Namespace) -> int:
    session = store.session(url)
    ended = True
    async with ApiClient(url, session.token) as api:
        try:
            await api.post("/api/auth/logout")
        except OpsError as exc:
            if exc.exit_code != EXIT_AUTH:
                store.forget(url)  # forgotten here either way; the server's copy expires on its own
                raise OpsError(exc.exit_code, f"forgot the session here, but the server was not told: {exc}") from None
            ended = False  # already expired or revoked
    store.forget(url)
    if args.json:
        render.emit_json({"url": url, "loggedOut": True, "sessionWasLive": ended})
    else:
        render.out(f"logged out of {url}" + ("" if ended else " (the session had already ended)"))
    return EXIT_OK


async def whoami(api: ApiClient, args: argparse.Namespace) -> int:
    me = await api.get("/api/auth/me")
    if args.json:
        render.emit_json({"url": api.url, **me})
    else:
        render.out(f"{me['email']} at {api.url} (roles: {', '.join(me['roles']) or 'none'}; "
                   f"session until {me['expiresAt']})")
    return EXIT_OK


async def show_health(api: ApiClient, args: argparse.Namespace) -> int:
    body = await api.get("/api/admin/ops/health")
    jobs = await api.get("/api/admin/jobs")
    ok, result = health.report(body, jobs)
    if args.json:
        render.emit_json(result)
    else:
        health.print_report(body, jobs)
    return EXIT_OK if ok else EXIT_ATTENTION


async def show_jobs(api: ApiClient, args: argparse.Namespace) -> int:
    jobs = await api.get("/api/admin/jobs")
    if args.json:
        render.emit_json(jobs)
        return EXIT_OK
    render.out(render.table(
        ["job", "cron", "last run", "ago", "ok", "processed", "failed", "error", "overdue"],
        [(j["job"] + (f":{j['mode']}" if j["mode"] else ""), j["cron"], j["lastRunAt"], render.age(j["lastRunAt"]),
          j["ok"], j["processed"], j["failed"], j["error"], "OVERDUE" if j["overdue"] else "no")
         for j in jobs["jobs"]]))
    return EXIT_OK


async def show_alerts(api: ApiClient, args: argparse.Namespace) -> int:
    body = await api.get("/api/admin/ops/alerts", {"status": args.status, "severity": args.severity,
                                                   "code": args.code})
    if args.json:
        render.emit_json(body)
        return EXIT_OK
    render.out(render.table(["alert", "code", "severity", "status", "subject", "raised", "note"],
                            [(a["alertId"], a["code"], a["severity"], a["status"], a["subject"], a["raisedAt"],
                              a["note"]) for a in body["alerts"]]))
    for a in body["alerts"]:
        if a["status"] != "RESOLVED":
            render.out(f"  {a['alertId']}: {a['remedy']}")
    return EXIT_OK


async def alert_action(api: ApiClient, args: argparse.Namespace) -> int:
    body = {"note": args.note} if args.note is not None else None
    alert = await api.post(f"/api/admin/ops/alerts/{payouts.check_id(args.id)}/{args.action}", body)
    if args.json:
        render.emit_json(alert)
    else:
        render.out(f"alert {alert['alertId']} ({alert['code']}) is {alert['status']}")
    return EXIT_OK


async def run_job(api: ApiClient, args: argparse.Namespace) -> int:
    params = {"batch": None if args.batch is None else str(args.batch), "mode": args.mode}
    summary = await api.post(f"/api/admin/ops/run/{args.job}", None, params)
    if args.json:
        render.emit_json(summary)
    else:
        render.out(render.pairs([(k, v) for k, v in summary.items() if not isinstance(v, dict)]))
        for name, count in sorted(summary.get("outcomes", {}).items()):
            render.out(f"  {name}: {count}")
    return EXIT_OK if not summary.get("failed") else EXIT_ATTENTION


HANDLERS: dict[str, Callable[[ApiClient, argparse.Namespace], Awaitable[int]]] = {
    "whoami": whoami, "health": show_health, "jobs": show_jobs, "alerts": show_alerts, "alert": alert_action,
    "payouts": payouts.list_payouts, "payout": payouts.show_payout, "run": run_job,
    **{name: payouts.act for name in payouts.ACTIONS}, "users": users.list_users, "user": users.user_action,
}
