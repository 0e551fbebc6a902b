"""Whole-system drill: two servers, two cron loops, a faulty provider, SIGKILLs, then a full audit.

Starts the system as real processes on a scratch database (DATABASE_URL's server, or the embedded one in
PERIODYA_DATA_DIR): the provider simulator with faults on, two `periodya serve`, two cron loops calling
the run endpoints (bench/_drill_system.py says why not `periodya scheduler`), and a round-robin webhook
relay. Drives randomized traffic over HTTP only (bench/_drill_traffic.py), SIGKILLs a random server or
cron loop at random moments and restarts it, keeps a model of every balance from the answers, lets
the jobs settle and audits everything (bench/_drill_audit.py). The last line is the summary:

    drill: N payouts, K kills, D duplicates, L lost, U unbalanced, S not terminal, audit ok|FAILED

Exit 0 only when every count but N and K is 0 and the audit is ok. The logs of every process (and the
export) are in the directory printed at the start; it is removed after a clean run unless --keep-logs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import tempfile
import time
import traceback
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench import _common as c
from bench._drill_audit import Audit
from bench._drill_cli import Cli, Moment
from bench._drill_model import Api, Findings, Model, Payee
from bench._drill_system import System, running
from bench._drill_traffic import CURRENCIES, Killer, Traffic


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench drill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--payouts", type=int, default=2000, help="payouts to create (default 2000)")
    p.add_argument("--seed", type=int, default=None, help="seed of the traffic, the kills and the provider's faults")
    p.add_argument("--kills", type=int, default=12, help="SIGKILLs of a server or cron loop (default 12)")
    p.add_argument("--workers", type=int, default=6, help="concurrent traffic workers (default 6)")
    p.add_argument("--history-sample", type=int, default=25,
                   help="`periodya history` of this many random payouts besides every quarantined one (default 25)")
    p.add_argument("--settle-seconds", type=float, default=240.0,
                   help="how long the jobs get to bring every payout to a terminal state (default 240)")
    p.add_argument("--keep-database", action="store_true",
                   help="keep the scratch database for inspection (its URL is printed) instead of dropping it")
    p.add_argument("--keep-logs", action="store_true", help="keep the process logs after a clean run too "
                   "(a failed run always keeps them)")
    args = p.parse_args(argv)
    if args.payouts < 1 or args.kills < 0 or args.workers < 1:
        p.error("--payouts and --workers must be positive, --kills not negative")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    try:
        return asyncio.run(drill(args))
    except (KeyboardInterrupt, asyncio.CancelledError):  # every process it started was stopped on the way out
        print("drill: interrupted", flush=True)
        return 130


def moment(model: Model, **extra: Any) -> Moment:
    at = datetime.now(UTC).isoformat()
    revenue: Counter[str] = Counter()
    for e in model.escrows.values():
        revenue[e.currency] += e.fees
    return Moment(at, {f"escrow:{e.escrow_id}": e.balance for e in model.escrows.values()}, dict(revenue), **extra)


async def snapshots(traffic: Traffic, moments: list[Moment]) -> None:
    """At a third and two thirds of the payouts, pause the workers (no escrow command in flight) and
    note the moment and what the model says then, for `balances --as-of`."""
    for share in (1 / 3, 2 / 3):
        await traffic.reached(int(traffic.target * share))
        await traffic.gate.pause()
        await asyncio.sleep(0.2)  # recorded_at is the committing server's clock: keep clear of the moment
        moments.append(moment(traffic.model))
        await asyncio.sleep(0.2)
        traffic.gate.resume()


async def probes(api: Api, findings: Findings, http: aiohttp.ClientSession, base: str) -> None:
    """A few contract points the drill's traffic never reaches: unknown escrows are 404 NOT_FOUND, an
    oversized request line is a 4xx problem+json."""
    for path, body in (("release", {"payeeId": "p", "amount": 1, "feeAmount": 0}), ("refund", {"amount": 1})):
        status, answer = await api.call("POST", f"/api/escrows/esc-never-funded/{path}", body=body, key=f"probe-{path}")
        if status != 404:
            findings.problem(f"{path} of an unknown escrow answered {status} {answer} "
                             "(the contract says 404 NOT_FOUND; issue 11 #3)")
    async with http.get(f"{base}/api/payees/{'x' * 10_000}/balances") as r:
        if not (400 <= r.status < 500 and r.content_type == "application/problem+json"):
            findings.problem(f"an oversized request line answered {r.status} {r.content_type}, "
                             "not a 4xx problem+json (issue 11 #4)")


async def drill(args: argparse.Namespace) -> int:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)  # stop as on Ctrl-C
    rng = random.Random(args.seed)
    log_dir = Path(tempfile.mkdtemp(prefix="periodya-drill-"))
    server = c.server_url()
    print(f"drill: {args.payouts} payouts, {args.kills} kills, seed {args.seed}, on {c.describe_server(server)}; "
          f"logs in {log_dir}", flush=True)
    findings, model = Findings(), Model()
    kills: list[str] = []
    audit_problems: list[str] = []
    started = time.monotonic()
    try:
        async with c.scratch_database(server, "drill", keep=args.keep_database) as url, \
                running(url, log_dir, seed=args.seed) as system:
            print(f"drill: database {c.redact(url)}{' (kept)' if args.keep_database else ''}", flush=True)
            audit_problems = await exercise(args, rng, system, findings, model, kills, log_dir)
    except Exception as exc:  # a drill that cannot finish has failed; say where
        traceback.print_exc()
        audit_problems.append(f"the drill stopped: {type(exc).__name__}: {exc}")
    audit = "ok" if not audit_problems and not findings.problems else "FAILED"
    print(f"drill: {len(findings.problems)} problem(s), {len(audit_problems)} audit failure(s), "
          f"{findings.ambiguous} answers cut off by a kill and resolved by an Idempotency-Key retry, "
          f"{time.monotonic() - started:.0f} s; kills: {dict(Counter(kills))}", flush=True)
    print(f"drill: {len(model.payouts)} payouts, {len(kills)} kills, {findings.duplicates} duplicates, "
          f"{findings.lost} lost, {findings.unbalanced} unbalanced, {findings.not_terminal} not terminal, "
          f"audit {audit}", flush=True)
    counts = (findings.duplicates, findings.lost, findings.unbalanced, findings.not_terminal)
    passed = audit == "ok" and not any(counts)
    if passed and not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0 if passed else 1


async def exercise(args: argparse.Namespace, rng: random.Random, system: System, findings: Findings, model: Model,
                   kills: list[str], log_dir: Path) -> list[str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        api = Api(http, system.apis, system.env["PERIODYA_SERVICE_TOKEN"], system.admin_token, findings)
        await probes(api, findings, http, system.apis[0])
        for i in range(max(2 * args.workers, args.payouts // 15)):
            pid = f"payee-{args.seed}-{i}"
            model.payees[pid] = Payee(pid, CURRENCIES[i % len(CURRENCIES)])
        payees = list(model.payees.values())
        traffic = Traffic(api, model, findings, rng, args.payouts, f"d{args.seed}")
        killer = Killer(system.killable, traffic, args.kills, rng, kills)
        moments: list[Moment] = []
        t0 = time.monotonic()
        await asyncio.gather(*(traffic.worker(payees[w::args.workers]) for w in range(args.workers)),
                             traffic.admin(), snapshots(traffic, moments), killer.run())
        print(f"drill: traffic done in {time.monotonic() - t0:.0f} s: {len(model.payouts)} payouts, "
              f"{len(model.escrows)} escrows, {dict(findings.counts)}; webhook relay {dict(system.relayed)}",
              flush=True)
        audit = Audit(api, model, findings)
        await audit.settle(args.settle_seconds, traffic.operator)
        for cron in system.crons:  # the system at rest from here on: the drill's own runs are the last
            await cron.stop()
        await asyncio.sleep(1.0)  # webhooks the simulator still had on their way
        await audit.last_tick()
        expected = await audit.payouts_against_provider(http, system.sim)
        totals = audit.payee_totals(expected)
        await audit.balances(totals)
        unanswered = sum(n for k, n in system.relayed.items() if not k.isdigit())
        await audit.health_and_alerts(expected, system.relayed["400"], unanswered)
        await audit.timelines(expected)
        cash: Counter[str] = Counter()
        for e in model.escrows.values():
            cash[e.currency] -= e.funded - e.refunded
        for p in model.payouts.values():
            cash[p.currency] += p.amount if expected[p.payout_id] == "FINALIZED" else 0
        moments.append(moment(model, payees=totals, cash=dict(cash)))
        async with http.get(f"{system.sim}/_sim/stats") as r:
            print(f"drill: provider {await r.json()}", flush=True)
        cli = Cli(model, findings, system.env, log_dir, audit.fail)
        await cli.cli_audit(moments, expected, args.history_sample, rng)
        return audit.audit_problems
