"""`periodya ops payouts | payout ID | rerun-outbox | force-reconcile | force-finalize | quarantine | cancel`.

The five commands that move money or stop a payout read the payout first, show what will happen (payout
id, payee, amount, currency, status) and ask for confirmation; `--yes` skips the question, and without it
they refuse to act when stdin is not a terminal (a script must say --yes).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from periodya.opsclient import render
from periodya.opsclient.client import ApiClient
from periodya.opsclient.errors import EXIT_ATTENTION, EXIT_OK, EXIT_USAGE, OpsError

ACTIONS = {
    "rerun-outbox": "requeue its outbox task: the outbox job sends it again under the same idempotency key "
                    "(the provider replays it, never pays twice)",
    "force-reconcile": "ask the provider now and record what it holds: paid finalizes the ledger "
                       "(in-flight to cash), failed returns the amount to the payee",
    "force-finalize": "ask the provider now; if it paid, finalize the ledger (in-flight to cash)",
    "quarantine": "stop it: status QUARANTINED, its outbox task fails, nothing more is sent to the provider",
    "cancel": "cancel it (quarantined only) and return the amount to the payee's available balance; "
              "refused if the provider may hold it",
}
WITH_REASON = ("quarantine", "cancel")
_HEAD = ["payout", "payee", "amount", "status", "outbox", "provider id", "in status", "created"]


def _row(p: dict[str, Any]) -> list[Any]:
    return [p["payoutId"], p["payeeId"], render.money(p["amount"], p["currency"]), p["status"],
            p["outbox"]["status"], p["providerPayoutId"], render.age(p.get("statusChangedAt")), p["createdAt"]]


async def list_payouts(api: ApiClient, args: argparse.Namespace) -> int:
    filters = {"status": args.status, "payeeId": args.payee, "providerPayoutId": args.provider_id,
               "olderThanMinutes": None if args.older_than is None else f"{args.older_than:g}",
               "stuck": args.stuck, "cursor": args.cursor}
    limit = str(args.limit)
    if any(v is not None for v in filters.values()):
        page = await api.get("/api/admin/payouts", {**filters, "limit": limit})
        sections = [("payouts", page["payouts"])]
        result: dict[str, Any] = page
    else:  # no filter: the stuck ones first, then the newest
        sending = await api.get("/api/admin/payouts", {"stuck": "sending", "limit": limit})
        sent = await api.get("/api/admin/payouts", {"stuck": "sent", "limit": limit})
        page = await api.get("/api/admin/payouts", {"limit": limit})
        sections = [("stuck SENDING", sending["payouts"]), ("stuck SENT", sent["payouts"]),
                    ("newest", page["payouts"])]
        result = {"stuckSending": sending["payouts"], "stuckSent": sent["payouts"], "payouts": page["payouts"],
                  "nextCursor": page["nextCursor"]}
    if args.json:
        render.emit_json(result)
        return EXIT_OK
    for title, items in sections:
        if len(sections) > 1:
            render.out(f"{title}:")
        render.out(render.table(_HEAD, [_row(p) for p in items]))
        if len(sections) > 1:
            render.out()
    if page["nextCursor"]:
        render.out(f"more: periodya ops payouts ... --cursor {page['nextCursor']}")
    return EXIT_OK


async def show_payout(api: ApiClient, args: argparse.Namespace) -> int:
    detail = await api.get(f"/api/admin/payouts/{check_id(args.id)}")
    if args.json:
        render.emit_json(detail)
        return EXIT_OK
    p, o = detail["payout"], detail["payout"]["outbox"]
    render.out(render.pairs([
        ("payout", p["payoutId"]), ("provider id", p["providerPayoutId"]), ("payee", p["payeeId"]),
        ("amount", render.money(p["amount"], p["currency"])), ("destination", p["destination"]),
        ("status", f"{p['status']} for {render.age(p['statusChangedAt'])}"),
        ("provider status", p["providerStatus"]), ("ledger finalized", p["ledgerFinalized"]),
        ("funds returned", p["fundsReturned"]), ("quarantine reason", p["quarantineReason"]),
        ("outbox task", f"{o['status']}, {o['attempts']} attempt(s), updated {o['updatedAt']}"),
        ("outbox last error", o["lastError"]), ("outbox next attempt", o["nextAttemptAt"]),
        ("created", p["createdAt"])]))
    render.out("\ntimeline:")
    render.out(render.table(["pos", "v", "event", "recorded", "actor", "reason", "request id"],
                            [(e["position"], e["version"], e["type"], e["recordedAt"], e["actor"], e["reason"],
                              e["requestId"]) for e in detail["timeline"]]))
    render.out("\nledger:")
    render.out(render.table(["group", "kind", "account", "debit", "credit"],
                            [(g["groupId"], g["kind"], e["account"], _side(e["debit"], e["currency"]),
                              _side(e["credit"], e["currency"])) for g in detail["ledger"]
                             for e in g["entries"]]))
    render.out(f"\nprovider events and the full audit trail: GET {detail['audit']}")
    return EXIT_OK


def _side(amount: int, currency: str) -> str:
    return render.money(amount, currency) if amount else ""


def check_id(raw: str) -> str:
    if not raw or len(raw) > 128 or any(not (c.isascii() and (c.isalnum() or c in "_.:-")) for c in raw):
        raise OpsError(EXIT_USAGE, f"not a payout id: {raw!r}")
    return raw


def _preview(action: str, p: dict[str, Any], reason: str | None) -> list[str]:
    return [f"{action} payout {p['payoutId']}" + (f" (provider {p['providerPayoutId']})" if p["providerPayoutId"]
                                                  else ""),
            f"  payee {p['payeeId']}, amount {render.money(p['amount'], p['currency'])} "
            f"({p['amount']} {p['currency']} minor units), status {p['status']}, outbox {p['outbox']['status']}, "
            f"provider status {p['providerStatus'] or '-'}",
            f"  this will {ACTIONS[action]}"] + ([f"  reason: {reason}"] if reason else [])


def _confirm(args: argparse.Namespace, lines: list[str], action: str, payout_id: str) -> None:
    stream = sys.stderr if args.json else sys.stdout
    for line in lines:
        print(line, file=stream, flush=True)
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise OpsError(EXIT_USAGE, f"refusing to {action} without confirmation: stdin is not a terminal (pass --yes)")
    print(f"Type yes to {action} {payout_id}: ", end="", file=stream, flush=True)
    if sys.stdin.readline().strip().lower() != "yes":
        raise OpsError(EXIT_ATTENTION, "not confirmed: nothing was done")


async def act(api: ApiClient, args: argparse.Namespace) -> int:
    action = args.ops_command
    reason = getattr(args, "reason", None)
    if action in WITH_REASON and (reason is None or not reason.strip()):
        raise OpsError(EXIT_USAGE, f"{action} needs --reason TEXT (it is recorded with the event)")
    current = (await api.get(f"/api/admin/payouts/{check_id(args.id)}"))["payout"]
    _confirm(args, _preview(action, current, reason), action, current["payoutId"])
    body = {"reason": reason} if action in WITH_REASON else None
    after = await api.post(f"/api/admin/ops/payouts/{current['payoutId']}/{action}", body)
    if args.json:
        render.emit_json(after)
    else:
        render.out(f"{action}: payout {after['payoutId']} is {after['status']} (outbox {after['outbox']['status']}, "
                   f"provider status {after['providerStatus'] or '-'}, ledger finalized "
                   f"{render.cell(after['ledgerFinalized'])}, funds returned {render.cell(after['fundsReturned'])})")
    return EXIT_OK
