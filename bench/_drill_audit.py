"""The drill's end: let the jobs settle every payout, then check the system against the model.

Over HTTP (this module): every payout terminal and as the provider has it (FINALIZED exactly when the simulator holds
one paid payout for it, CANCELLED only when our cancel was answered 200 and the provider holds none,
else FAILED); the simulator holds at most one payout per payout id (one per payout handed over); every
payee's available + in-flight and every escrow as the model says; health `ok` with the runbook's
fields at their expected values; no open alert but PAYOUT_SEND_ABANDONED for a payout the provider
never got (the drill's provider errors cause those on purpose); the audit timeline of every payout
(GET /api/admin/audit/payouts/{id}) ends in the status the provider's facts imply. The operator's CLI
checks are in bench/_drill_cli.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench._drill_model import TERMINAL, Api, Findings, Model, Payout

HEALTH_ZERO = ("payoutOutboxPending", "payoutOutboxSendingStuck", "providerPayoutSentStuck10m",
               "integrityAlertsCriticalOpen", "maxOutboxAgeMinutes", "webhooksPending")
HEALTH_JOBS = ("outbox", "webhooks", "reconcile-pull", "repair", "sentinel:recent", "sentinel:full")
EXPECTED_ALERTS = frozenset({"PAYOUT_SEND_ABANDONED"})
INTEGRITY = frozenset({"BALANCE_DRIFT", "LEDGER_UNBALANCED", "HASH_CHAIN_BROKEN", "DUPLICATE_PAYOUT",
                       "DIGEST_MISMATCH"})
"""Nothing in the drill tampers with the database: one of these raised at all, even if resolved since,
is money gone wrong or a false alarm, and either is a defect."""
@dataclass
class Audit:
    api: Api
    model: Model
    findings: Findings
    audit_problems: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.audit_problems.append(text)
        print(f"drill: AUDIT {text}", flush=True)

    # --- settle ------------------------------------------------------------------------------------------
    async def settle(self, seconds: float, operator: Any) -> None:
        """Poll every payout not yet terminal until all are, or `seconds` pass. A QUARANTINED one is the
        operator's: cancel it, or if the provider got it, force-finalize / force-reconcile it."""
        deadline = time.monotonic() + seconds
        while True:
            pending = [p for p in self.model.payouts.values() if p.status not in TERMINAL]
            await self._refresh(pending)
            pending = [p for p in pending if p.status not in TERMINAL]
            for p in [p for p in pending if p.status == "QUARANTINED"]:
                for action in ("cancel", "force-finalize", "force-reconcile"):
                    if await operator(action, p) == 200:
                        break
            if not pending or time.monotonic() > deadline:
                print(f"drill: settled, {len(pending)} payout(s) not terminal", flush=True)
                return
            await asyncio.sleep(1.0)

    async def _refresh(self, payouts: list[Payout]) -> None:
        limit = asyncio.Semaphore(8)

        async def one(p: Payout) -> None:
            async with limit:
                status, body = await self.api.call("GET", f"/api/payouts/{p.payout_id}")
            p.status = body.get("status") if status == 200 else f"HTTP {status}"
            p.provider_payout_id = body.get("providerPayoutId") if status == 200 else None

        await asyncio.gather(*(one(p) for p in payouts))

    # --- HTTP checks -------------------------------------------------------------------------------------
    async def payouts_against_provider(self, http: aiohttp.ClientSession, sim: str) -> dict[str, str]:
        """Returns payout id -> the final status the provider's facts imply."""
        f = self.findings
        async with http.get(f"{sim}/_sim/payouts") as r:
            held = (await r.json())["data"]
        by_payout: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for p in held:
            by_payout[(p.get("metadata") or {}).get("payout_id", "")].append(p)
        expected: dict[str, str] = {}
        for payout_id, copies in by_payout.items():
            if len(copies) > 1:
                f.duplicates += 1
                f.problem(f"the provider holds {len(copies)} payouts for {payout_id}: {[c['id'] for c in copies]}")
            if payout_id not in self.model.payouts:
                f.lost += 1
                f.problem(f"the provider holds {payout_id}, which no answer of the API ever named")
        ids = {c["id"] for c in held}
        for p in self.model.payouts.values():
            copies = by_payout.get(p.payout_id, [])
            if p.provider_payout_id is not None and p.provider_payout_id not in ids:
                f.lost += 1
                f.problem(f"payout {p.payout_id} names provider payout {p.provider_payout_id}, which the provider "
                          "does not hold")
            elif p.provider_payout_id is None and copies:
                f.lost += 1
                f.problem(f"payout {p.payout_id} names no provider payout; the provider holds "
                          f"{[c['id'] for c in copies]}")
            if any(c["status"] == "paid" for c in copies):
                want = "FINALIZED"
            elif copies and any(c["status"] not in ("failed", "canceled") for c in copies):
                want = "provider not settled"
            else:
                want = "CANCELLED" if p.cancelled and not copies else "FAILED"
            expected[p.payout_id] = want
            if p.status is None or p.status.startswith("HTTP"):
                f.lost += 1
                f.problem(f"payout {p.payout_id} (accepted 201) reads {p.status}")
            elif p.status not in TERMINAL:
                f.not_terminal += 1
                f.problem(f"payout {p.payout_id} is {p.status} after settling (provider: {want})")
            elif p.status != want:
                f.unbalanced += 1
                f.problem(f"payout {p.payout_id} is {p.status} but the provider's facts say {want}")
        return expected

    def payee_totals(self, expected: dict[str, str]) -> dict[str, int]:
        """Payable + in-flight each payee must hold: released minus what was paid out."""
        paid: Counter[str] = Counter()
        for p in self.model.payouts.values():
            if expected[p.payout_id] == "FINALIZED":
                paid[p.payee_id] += p.amount
        return {pid: payee.released - paid[pid] for pid, payee in self.model.payees.items()}

    async def balances(self, totals: dict[str, int]) -> None:
        limit = asyncio.Semaphore(8)

        async def payee(pid: str) -> None:
            async with limit:
                status, body = await self.api.call("GET", f"/api/payees/{pid}/balances")
            rows = body.get("balances", []) if status == 200 else []
            held = sum(b["available"] + b["inFlight"] for b in rows)
            if held != totals[pid] or any(b["inFlight"] for b in rows):
                self.findings.unbalanced += 1
                self.findings.problem(f"payee {pid}: model {totals[pid]}, API {status} {rows}")

        async def escrow(eid: str) -> None:
            async with limit:
                status, body = await self.api.call("GET", f"/api/escrows/{eid}")
            e = self.model.escrows[eid]
            want = {"funded": e.funded, "released": e.released, "refunded": e.refunded, "balance": e.balance}
            if status != 200 or any(body.get(k) != v for k, v in want.items()):
                self.findings.unbalanced += 1
                self.findings.problem(f"escrow {eid}: model {want}, API {status} {body}")

        await asyncio.gather(*(payee(p) for p in totals), *(escrow(e) for e in self.model.escrows))

    async def last_tick(self) -> None:
        """Every job of the runbook's table once, in order, as the cron runner's last tick (the cron loops
        are stopped by now, so no run is in progress when health reports each job's last run)."""
        for job in ("outbox", "webhooks", "reconcile-pull", "repair", "sentinel?mode=recent", "sentinel?mode=full"):
            await self.api.expect((200,), "POST", f"/api/admin/ops/run/{job}", admin=True)

    async def health_and_alerts(self, expected: dict[str, str], refused: int, unanswered: int) -> None:
        """After `last_tick`: health as the runbook expects it, `webhooksRefused` the webhooks the
        servers refused (`refused` 400s at the relay, plus at most the `unanswered` deliveries a kill cut
        off), and no open alert but those the
        drill's faults caused on purpose; every alert's remedy names real ids, not placeholders."""
        status, h = await self.api.expect((200,), "GET", "/api/admin/ops/health", admin=True)
        if status == 200:
            wrong = {k: h.get(k) for k in HEALTH_ZERO if h.get(k) != 0}
            wrong.update({k: h.get(k) for k in ("finalizeMissing", "sendingStuck", "sentStuck") if h.get(k)})
            if h.get("status") != "ok":
                wrong["status"] = h.get("status")
            jobs = h.get("jobs") or {}
            wrong.update({f"jobs.{j}": jobs.get(j) for j in HEALTH_JOBS if not (jobs.get(j) or {}).get("ok")})
            refused_seen = h.get("webhooksRefused")
            if not (isinstance(refused_seen, int) and refused <= refused_seen <= refused + unanswered):
                wrong["webhooksRefused"] = (f"{h.get('webhooksRefused', 'absent')} "
                                            f"(the servers refused {refused}; issue 11 #6)")
            print(f"drill: health {h.get('status')}: " + ", ".join(f"{k} {h.get(k)}" for k in HEALTH_ZERO), flush=True)
            if wrong:
                self.fail(f"health not as the runbook expects: {wrong}")
        for query in ("?severity=CRITICAL", "?severity=critical", "?status=OPEN", "?status=open"):  # issue 11 #7
            await self.api.expect((200,), "GET", f"/api/admin/ops/alerts{query}", admin=True)
        alerts: dict[str, dict[str, Any]] = {}  # the list is capped (200 newest): ask per status and code too
        for query in ("", "?status=OPEN", "?status=ACKNOWLEDGED", *(f"?code={code}" for code in sorted(INTEGRITY))):
            status, body = await self.api.expect((200,), "GET", f"/api/admin/ops/alerts{query}", admin=True)
            alerts.update({a["alertId"]: a for a in (body.get("alerts", []) if status == 200 else [])})
        seen = Counter(" ".join((a["code"], a["status"], a.get("resolvedBy") or "")).strip() for a in alerts.values())
        print(f"drill: alerts (code status resolvedBy; at most the 200 newest): {dict(seen)}", flush=True)
        placeholders = [a for a in alerts.values() if "{" in (a.get("remedy") or "")]
        if placeholders:
            self.fail(f"{len(placeholders)} alert(s) keep a placeholder in their remedy (issue 11 #7), e.g. "
                      f"{placeholders[0]['code']} on {placeholders[0]['subject']}: {placeholders[0]['remedy']!r}")
        for a in alerts.values():
            if a["code"] in INTEGRITY:
                self.fail(f"integrity alert {a['code']} on {a['subject']} raised {a['raisedAt']} ({a['status']}, "
                          f"resolved by {a.get('resolvedBy')}): {a.get('details')}")
            if a["status"] == "RESOLVED":
                continue
            on_purpose = a["code"] in EXPECTED_ALERTS and expected.get(a["subject"]) == "FAILED"
            if not on_purpose:
                self.fail(f"open alert {a['code']} on {a['subject']}: {a.get('details')}")

    async def timelines(self, expected: dict[str, str]) -> None:
        """The audit timeline of every payout, over HTTP: its state from the log is the expected final
        status, and it names at most one provider payout."""
        limit = asyncio.Semaphore(8)

        async def one(payout_id: str) -> None:
            async with limit:
                status, body = await self.api.call("GET", f"/api/admin/audit/payouts/{payout_id}", admin=True)
            state = (body.get("state") or {}).get("status") if status == 200 else f"HTTP {status}"
            if state != expected[payout_id] or len(body.get("providerPayoutIds") or []) > 1:
                self.fail(f"audit timeline of {payout_id}: {state}, provider ids {body.get('providerPayoutIds')}; "
                          f"the provider's facts say {expected[payout_id]}")

        await asyncio.gather(*(one(p) for p in self.model.payouts))
