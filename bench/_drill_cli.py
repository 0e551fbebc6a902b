"""The drill's audit through the operator's CLI, each command a real process on the drill's database:
`periodya verify`, `replay` (clean diff), `export` + `verify-export --against-db` (and every ledger group
of the export balanced per currency, no payout finalized twice), `history` of every quarantined payout
and a random sample of the others (one process each, about a second apiece: the HTTP audit timeline
covers every payout), and `balances --as-of` at the three moments the drill recorded, compared with
what the model said at each. A non-zero exit is an audit failure, named as a known defect when its
output shows one.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench._drill_model import Findings, Model

KNOWN_DEFECTS = {"executemany": "known defect (issue 11 #1): replay crashes once the webhooks job applied a "
                                "provider event (AttributeError 'SharedConnection' ... 'executemany')"}


@dataclass
class Moment:
    """An `as-of` point taken while no escrow command was in flight, with what the model said then."""

    at: str
    escrows: dict[str, int]  # escrow:<id> -> balance
    revenue: dict[str, int]  # currency -> fees
    payees: dict[str, int] | None = None  # payable + in-flight per payee (only once everything settled)
    cash: dict[str, int] | None = None


@dataclass
class Cli:
    """Runs the operator's commands against the drill's database; failures go to `fail`."""

    model: Model
    findings: Findings
    env: dict[str, str]
    log_dir: Path
    fail: Callable[[str], None]

    async def cli(self, *args: str, seconds: float = 600.0) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "periodya", *args, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), seconds)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return -1, f"timed out after {seconds:.0f} s"
        except BaseException:  # the drill was interrupted: the command goes with it
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        return proc.returncode or 0, out.decode(errors="replace")

    async def step(self, *args: str) -> str | None:
        """One CLI command; a non-zero exit is an audit failure (naming a known defect when it is one)."""
        started = time.monotonic()
        code, out = await self.cli(*args)
        print(f"drill: periodya {' '.join(args[:3])}{' ...' if len(args) > 3 else ''}: exit {code} "
              f"({time.monotonic() - started:.1f} s)", flush=True)
        if code != 0:
            known = [text for marker, text in KNOWN_DEFECTS.items() if marker in out]
            self.fail(f"periodya {' '.join(args)} exited {code}" + (f": {known[0]}" if known else "") +
                      "\n" + "\n".join(out.strip().splitlines()[-8:]))
            return None
        return out

    async def cli_audit(self, moments: list[Moment], expected: dict[str, str], history_sample: int,
                        rng: Any) -> None:
        await self.step("verify")
        await self.step("replay")
        export = self.log_dir / "export.jsonl"
        if await self.step("export", "--out", str(export)) is not None:
            await self.step("verify-export", str(export), "--against-db")
            self.ledger_groups(export)
        ids = sorted(self.model.payouts)
        special = [p for p in ids if self.model.payouts[p].quarantined]
        sample = sorted(set(special) | set(rng.sample(ids, min(history_sample, len(ids)))))
        print(f"drill: history of {len(sample)} of {len(ids)} payouts (every quarantined one and a random sample)",
              flush=True)
        for payout_id in sample:
            out = await self.step("history", "payout", payout_id, "--json")
            if out is None:
                continue
            body = orjson.loads(out)
            status = (body.get("state") or {}).get("status")
            if status != expected[payout_id] or len(body.get("providerPayoutIds") or []) > 1:
                self.fail(f"history of {payout_id}: {status}, provider ids {body.get('providerPayoutIds')}; "
                          f"the provider's facts say {expected[payout_id]}")
        for moment in moments:
            out = await self.step("balances", "--as-of", moment.at, "--json")
            if out is not None:
                self.as_of(moment, orjson.loads(out))

    def ledger_groups(self, export: Path) -> None:
        """Every LedgerGroupPosted of the export balanced per currency; no payout finalized twice."""
        groups = 0
        finalized: Counter[str] = Counter()
        with export.open("rb") as lines:
            for line in lines:
                event = orjson.loads(line)
                if event["event_type"] != "LedgerGroupPosted":
                    continue
                groups += 1
                data = event["data"]
                sums: Counter[str] = Counter()
                for entry in data["entries"]:
                    sums[entry["currency"]] += entry["debit"] - entry["credit"]
                if any(sums.values()):
                    self.findings.unbalanced += 1
                    self.findings.problem(f"ledger group {data['group_id']} unbalanced: {dict(sums)}")
                if data["kind"] == "payout_finalized":
                    finalized[data["groupId"].split("@")[0]] += 1
        twice = {k: n for k, n in finalized.items() if n > 1}
        if twice:
            self.findings.duplicates += len(twice)
            self.findings.problem(f"payouts finalized more than once: {twice}")
        print(f"drill: export: {groups} ledger groups checked, {len(finalized)} payouts finalized", flush=True)

    def as_of(self, moment: Moment, body: dict[str, Any]) -> None:
        got: dict[tuple[str, str], int] = {(r["account"], r["currency"]): r["balance"] for r in body["balances"]}
        by_account: dict[str, int] = defaultdict(int)
        per_currency: Counter[str] = Counter()
        for (account, currency), balance in got.items():
            by_account[account] += balance
            per_currency[currency] += balance
        wrong: list[str] = [f"{cur} sums to {n}" for cur, n in per_currency.items() if n]
        want: dict[str, int] = dict(moment.escrows)
        for currency, fees in moment.revenue.items():
            revenue = got.get(("revenue:platform", currency), 0)
            if revenue != fees:
                wrong.append(f"revenue:platform {currency}: model {fees}, log {revenue}")
        for payee, total in (moment.payees or {}).items():
            held = by_account.get(f"payable:{payee}", 0) + by_account.get(f"inflight:{payee}", 0)
            if held != total:
                wrong.append(f"payee {payee}: model {total}, log {held}")
        for currency, cash in (moment.cash or {}).items():
            if got.get(("cash:platform", currency), 0) != cash:
                wrong.append(f"cash:platform {currency}: model {cash}, log {got.get(('cash:platform', currency))}")
        wrong += [f"{acct}: model {bal}, log {by_account.get(acct, 0)}" for acct, bal in want.items()
                  if by_account.get(acct, 0) != bal]
        print(f"drill: balances as of {moment.at}: {len(got)} accounts, {len(wrong)} differ from the model", flush=True)
        if wrong:
            self.fail(f"balances --as-of {moment.at} disagree with the model: " + "; ".join(wrong[:10]) +
                      (f" ... and {len(wrong) - 10} more" if len(wrong) > 10 else ""))
