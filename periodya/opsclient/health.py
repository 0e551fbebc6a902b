"""The runbook's Daily Checks (section 2) judged from GET /api/admin/ops/health, each with the runbook's
expectation and, when it needs attention, the playbook step (section 3) as `periodya ops` commands."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from periodya.opsclient import render

OK, ATTENTION = "OK", "ATTENTION"


@dataclass(frozen=True)
class Check:
    field: str
    value: Any
    expectation: str
    state: str
    step: str | None


def checks(health: dict[str, Any]) -> list[Check]:
    """One row per runbook field (and maxOutboxAgeMinutes, the SENDING incident's symptom)."""
    limit = health.get("thresholds", {}).get("sendingStuckMinutes", 15)
    age = health.get("maxOutboxAgeMinutes", 0)
    rows = [
        Check("payoutOutboxPending", health["payoutOutboxPending"],
              "fluctuates with volume, must not climb continuously",
              ATTENTION if health["payoutOutboxPending"] and age > limit else OK,
              "pending work is older than the SENDING threshold: periodya ops run outbox; "
              "periodya ops jobs shows whether the scheduler runs it"),
        Check("maxOutboxAgeMinutes", age, f"at most {limit:g} (the SENDING threshold)",
              ATTENTION if age > limit else OK,
              "see payoutOutboxPending and payoutOutboxSendingStuck"),
        Check("payoutOutboxSendingStuck", health["payoutOutboxSendingStuck"], "0",
              ATTENTION if health["payoutOutboxSendingStuck"] else OK,
              "Outbox stuck SENDING: periodya ops run repair (Stuck Repair self-heals it); if it persists, "
              "periodya ops rerun-outbox PAYOUT_ID for each one below"),
        Check("providerPayoutSentStuck10m", health["providerPayoutSentStuck10m"], "0",
              ATTENTION if health["providerPayoutSentStuck10m"] else OK,
              "SENT stuck without webhook: periodya ops run reconcile-pull (self-heals it); if it persists, "
              "periodya ops force-reconcile ID for each one below"),
        Check("integrityAlertsCriticalOpen", health["integrityAlertsCriticalOpen"], "0",
              ATTENTION if health["integrityAlertsCriticalOpen"] else OK,
              "periodya ops alerts --status OPEN --severity critical; FINALIZE_MISSING: periodya ops "
              "force-finalize PROVIDER_PAYOUT_ID, then periodya ops alert ack|resolve ALERT_ID; "
              "LEDGER_UNBALANCED: do not repair, notify Senior Engineering"),
    ]
    return [Check(c.field, c.value, c.expectation, c.state, c.step if c.state == ATTENTION else None) for c in rows]


def todo(health: dict[str, Any]) -> list[str]:
    """The concrete commands for the payouts health names (its stuck and finalize-missing lists)."""
    lines = [f"periodya ops rerun-outbox {s['payoutId']}    # SENDING since {s['since']}"
             for s in health.get("sendingStuck", [])]
    lines += [f"periodya ops force-reconcile {s['providerPayoutId'] or s['payoutId']}    # SENT since {s['since']}"
              for s in health.get("sentStuck", [])]
    for m in health.get("finalizeMissing", []):
        lines += [f"periodya ops force-finalize {m['providerPayoutId'] or m['payoutId']}    # FINALIZE_MISSING",
                  f"periodya ops alert ack {m['alertId']} --note ...; periodya ops alert resolve {m['alertId']} "
                  "--note ..."]
    return lines


def report(health: dict[str, Any], jobs: dict[str, Any] | None) -> tuple[bool, dict[str, Any]]:
    """(every check OK, the JSON a script gets with --json)."""
    rows = checks(health)
    ok = all(c.state == OK for c in rows)
    return ok, {"ok": ok, "status": health.get("status"), "checks": [asdict(c) for c in rows],
                "todo": todo(health), "health": health, "jobs": jobs}


def print_report(health: dict[str, Any], jobs: dict[str, Any] | None) -> None:
    rows = checks(health)
    render.out(f"status: {health.get('status')}    checked at {health.get('checkedAt')}")
    render.out(render.table(["field", "value", "expected", "state"],
                            [(c.field, c.value, c.expectation, c.state) for c in rows]))
    steps = [c for c in rows if c.step]
    if steps:
        render.out("\nrunbook steps:")
        for c in steps:
            render.out(f"  {c.field}: {c.step}")
    commands = todo(health)
    if commands:
        render.out("\nfor the payouts named by health:")
        for line in commands:
            render.out(f"  {line}")
    if jobs is not None:
        render.out("\njobs:")
        render.out(render.table(
            ["job", "cron", "last run", "ago", "ok", "processed", "overdue"],
            [(j["job"] + (f":{j['mode']}" if j["mode"] else ""), j["cron"], j["lastRunAt"], render.age(j["lastRunAt"]),
              j["ok"], j["processed"], "OVERDUE" if j["overdue"] else "no") for j in jobs["jobs"]]))
        if jobs.get("overdue"):
            render.out(f"{jobs['overdue']} job(s) overdue: is the scheduler running (periodya up, periodya scheduler "
                       "or the cron runner)? periodya ops run JOB runs one now")
