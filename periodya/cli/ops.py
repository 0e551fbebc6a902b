"""`periodya ops ...`: the on-call engineer's terminal client of the public HTTP API (README, "periodya ops"):
its parser and dispatch. What each action does is periodya/opsclient/ (commands.py, payouts.py), a library
that speaks only HTTP.

Exit codes (periodya/opsclient/errors.py): 0 ok, 1 attention or refused by the API, 2 usage or
configuration, 3 authentication, 4 deployment unreachable or failing. Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from periodya.config import Settings
from periodya.opsclient import payouts, users
from periodya.opsclient.client import ApiClient
from periodya.opsclient.commands import HANDLERS, JOBS, login, logout
from periodya.opsclient.config import ConfigStore
from periodya.opsclient.errors import OpsError

RUN_TIMEOUT = 600.0


def add_parser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the deployment (default: $PERIODYA_OPS_URL, else the last URL used)")
    common.add_argument("--json", action="store_true", help="print the API's JSON, for scripts")
    ops = sub.add_parser("ops", help="the on-call client of the HTTP API: health, alerts, payouts, jobs",
                         description="Speaks only the public HTTP API, so it works against any deployment. "
                                     "Exit codes: 0 ok, 1 attention or refused by the API, 2 usage, 3 auth, "
                                     "4 unreachable.")
    acts = ops.add_subparsers(dest="ops_command", required=True, metavar="ACTION")

    def add(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = acts.add_parser(name, help=text, description=text, parents=[common])
        return parser

    login = add("login", "log in and keep the session (0600, per URL) in the per-user config dir")
    login.add_argument("--email", required=True)
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    add("logout", "end the session on the server and forget it here")
    add("whoami", "who the stored session belongs to")
    add("health", "the runbook's daily checks: value, expectation, OK/ATTENTION, the step to take; exit 1 "
                  "if any needs attention")
    add("jobs", "each scheduled job's last run and whether it is overdue")
    alerts = add("alerts", "list alerts (newest first)")
    alerts.add_argument("--status", help="OPEN | ACKNOWLEDGED | RESOLVED")
    alerts.add_argument("--severity", help="critical | warning")
    alerts.add_argument("--code", help="e.g. FINALIZE_MISSING")
    alert = add("alert", "acknowledge or resolve an alert")
    alert.add_argument("action", choices=["ack", "resolve"])
    alert.add_argument("id")
    alert.add_argument("--note")
    found = add("payouts", "list and search payouts; without filters the stuck ones come first")
    found.add_argument("--status", help="REQUESTED | SENDING | SENT | PAID | FINALIZED | FAILED | QUARANTINED | "
                                        "CANCELLED")
    found.add_argument("--payee", help="payee id")
    found.add_argument("--provider-id", help="the provider's payout id")
    found.add_argument("--older-than", type=float, metavar="MINUTES", help="in its current status this long")
    found.add_argument("--stuck", choices=["sending", "sent"], help="only the ones stuck past health's threshold")
    found.add_argument("--limit", type=int, default=20)
    found.add_argument("--cursor", help="the next page (printed after a full page)")
    add("payout", "one payout by our id or the provider's: outbox task, timeline, ledger").add_argument("id")
    for name in payouts.ACTIONS:
        act = add(name, f"ID (ours or the provider's): {payouts.ACTIONS[name]}; asks for confirmation")
        act.add_argument("id")
        act.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
        if name in payouts.WITH_REASON:
            act.add_argument("--reason", required=True, help="why (recorded with the event)")
    users.add_parser(add)
    run = add("run", "run one job now on the server and print its summary; exit 1 if an item failed")
    run.add_argument("job", choices=JOBS)
    run.add_argument("--batch", type=int)
    run.add_argument("--mode", choices=["recent", "full"], help="sentinel only")


async def cmd_ops(args: argparse.Namespace, _settings: Settings) -> int:
    try:
        if args.ops_command == "login":
            return await login(args)
        store = ConfigStore()
        url = store.resolve_url(args.url)
        if args.ops_command == "logout":
            return await logout(store, url, args)
        session = store.session(url)
        timeout = RUN_TIMEOUT if args.ops_command == "run" else 30.0
        async with ApiClient(url, session.token, timeout=timeout) as api:
            return await HANDLERS[args.ops_command](api, args)
    except OpsError as exc:
        print(f"periodya ops: {exc.message}", file=sys.stderr)
        return exc.exit_code
