"""`bench pipeline`: the report, from the figures `bench/pipeline.py` measured (sections 1-6)."""

from __future__ import annotations

import argparse
import os
from collections import defaultdict

from bench import _common as c
from bench._pipeline_parts import INTAKE, OUTBOX_STEPS
from bench._pipeline_pass import AMOUNT, Pass, Tally, phases_text, shape_text
from bench.pipeline import TARGET_E2E, Figures
from periodya.runners import outbox


def _loops(args: argparse.Namespace) -> int:
    return int(args.runners) * (1 if args.schedule == "alternate" else 2)


def per_s(items: float, seconds: float) -> str:
    return c.rate(items / seconds) if seconds > 0 else "-"


def _outcomes(t: Tally) -> str:
    parts = [f"{k}x{v:,}" for k, v in sorted(t.outcomes.items())]
    if t.skipped:
        parts.append(f"skippedx{t.skipped:,}")
    if t.errors:
        parts.append(f"ERRORSx{len(t.errors)}")
    return " ".join(parts) or "-"


def report_pass(p: Pass, args: argparse.Namespace, title: str, jobs_title: str | None = None) -> None:
    assert p.request is not None
    r = p.request
    answers = " ".join(f"{k}x{v:,}" for k, v in sorted((p.statuses + p.errors).items(), key=str))
    first = "requests (jobs running meanwhile)" if p.overlap else "phase 1, requests"
    rows = [
        [f"{first}: POST /api/payouts over HTTP, concurrency {args.concurrency}", f"{p.n:,}",
         f"{p.request_s:.2f}", per_s(p.n, p.request_s), f"p50 {c.ms(r.p50_ms)} / p99 {c.ms(r.p99_ms)} ms; {answers}"],
        [f"jobs: {args.runners} x {shape_text(args)}, first request -> last FINALIZED" if p.overlap else
         f"phase 2, settle: {args.runners} x {shape_text(args)} until all FINALIZED", f"{p.finalized:,}",
         f"{p.jobs_s:.2f}", per_s(p.settled, p.jobs_s), "TIMED OUT" if p.timed_out else ""],
    ]
    if p.overlap:
        rows.append(["  of which the tail: last request answered -> last FINALIZED", "", f"{p.settle_s:.2f}", "", ""])
    rows.append([f"END TO END ({args.phases}): first request -> last FINALIZED", f"{p.settled:,}",
                 f"{p.e2e_s:.2f}", c.rate(p.e2e_rate), ""])
    c.print_table(["phase", "payouts", "seconds", "payouts/s", ""], rows, title=title)
    job_rows = []
    for name, t in p.jobs.items():
        if not t.runs:
            continue
        job_rows.append([name, f"{t.runs:,}", f"{t.items:,}", f"{t.busy:.2f}", per_s(t.items, t.busy),
                         per_s(t.items, p.jobs_s), c.percent(t.busy / args.runners / p.jobs_s)
                         if p.jobs_s > 0 else "-", _outcomes(t)])
    job_rows.append(["idle: nothing due, webhooks on their way", "", "", f"{p.idle_s:.2f}", "", "",
                     c.percent(p.idle_s / _loops(args) / p.jobs_s) if p.jobs_s > 0 else "-", ""])
    c.print_table(["job", "runs", "items", "busy s", "items/busy s", "items/s of jobs' window",
                   "share of window", "outcomes"], job_rows, title=jobs_title)
    out, hooks = p.jobs["outbox"], p.jobs["webhooks"]
    if out.items and hooks.items and out.busy and hooks.busy and args.schedule == "per-job":
        a, b = out.items / out.busy, hooks.items / hooks.busy
        print(f"   the jobs run concurrently: phase 2's ceiling is the slower job's rate, min({a:,.0f}, {b:,.0f}) "
              f"payouts/s, while CPU allows")
    elif out.items and hooks.items and out.busy and hooks.busy:
        a, b = out.items / out.busy, hooks.items / hooks.busy
        print(f"   one loop alternates the jobs: its ceiling is 1 / (1/{a:,.0f} + 1/{b:,.0f}) = "
              f"{1 / (1 / a + 1 / b):,.0f} payouts/s (outbox busy {out.busy / p.n * 1000:.2f} ms + webhooks busy "
              f"{hooks.busy / p.n * 1000:.2f} ms per payout)")
    for name, t in p.jobs.items():
        for error in t.errors[:3]:
            print(f"   {name} run failed: {error}")


def report_cpu(p: Pass) -> None:
    rows = []
    req, settle = p.cpu_request, p.cpu_settle
    wall_r, wall_s = req.get("wall", 0.0), settle.get("wall", 0.0)
    for part in [k for k in req if k not in ("wall", "machine")] + ["machine"]:
        a, b = req.get(part, float("nan")), settle.get(part, float("nan"))
        label = "whole machine (all processes, incl. others)" if part == "machine" else part
        rows.append([label, _cores(a, wall_r), _ms_per(a, p.n), _cores(b, wall_s), _ms_per(b, p.n),
                     _cores(a + b, wall_r + wall_s), _ms_per(a + b, p.n)])
    rows.append(["all our processes + PostgreSQL", _cores(_ours(req), wall_r), _ms_per(_ours(req), p.n),
                 _cores(_ours(settle), wall_s), _ms_per(_ours(settle), p.n),
                 _cores(_ours(req) + _ours(settle), wall_r + wall_s), _ms_per(_ours(req) + _ours(settle), p.n)])
    first, second = ("requests+jobs", "tail") if p.overlap else ("phase 1", "phase 2")
    c.print_table(["process", f"{first} cores", "CPU ms/payout", f"{second} cores", "CPU ms/payout",
                   "whole run cores", "CPU ms/payout"], rows,
                  title=f"3. CPU used ({os.cpu_count()} CPUs; PostgreSQL = this database's backends + auxiliaries; "
                        f"API = POST /api/payouts + webhook intake)")


def _cores(cpu: float, wall: float) -> str:
    return "n/a" if cpu != cpu or wall <= 0 else f"{cpu / wall:.2f}"


def _ms_per(cpu: float, n: int) -> str:
    return "n/a" if cpu != cpu or not n else f"{cpu / n * 1000:.2f}"


def report_checks(rows: list[tuple[str, str, bool]], title: str) -> None:
    c.print_table(["check", "found", "result"], [[a, b, "OK" if ok else "FAIL"] for a, b, ok in rows], title=title)


def report_profile(f: Figures, args: argparse.Namespace) -> None:
    p = f.profiled
    assert p is not None
    n = p.n
    print(f"\n5. where the time goes: instrumented pass of {n:,} payouts (timers on every statement and pool "
          f"acquire add a little overhead)")
    report_pass(p, args, "   the instrumented pass")
    by_job: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for (job, _key), (count, secs) in f.sql.items():
        by_job[job][0] += count
        by_job[job][1] += secs
    order = ["request", "outbox", *OUTBOX_STEPS, INTAKE, "webhooks", "reconcile-pull", "repair", "other"]
    rows = []
    for job in sorted(by_job, key=lambda j: order.index(j) if j in order else len(order)):
        count, secs = by_job[job]
        waits = f.acquires.get(job, [0, 0.0])
        step = f.steps.get(job)
        busy = p.jobs[job].busy if job in p.jobs else (step[1] if step else p.request_s * args.concurrency
                                                       if job == "request" else float("nan"))
        rows.append([job, f"{count / n:.1f}", c.ms(secs / n * 1000), f"{waits[0] / n:.1f}",
                     c.ms(waits[1] / n * 1000), "n/a" if busy != busy else c.ms(busy / n * 1000)])
    c.print_table(["job (SQL filed by the job that ran it)", "statements/payout", "SQL ms/payout",
                   "pool acquires/payout", "pool wait ms/payout", "wall ms/payout"], rows,
                  title="   SQL round trips per payout (lock waits count as SQL time)")
    print("   wall ms/payout: the job's busy time (request: summed over the concurrent workers; outbox steps: summed "
          "over their concurrent sends)")
    for job in ("request", "outbox", *OUTBOX_STEPS, INTAKE, "webhooks"):
        stmts = sorted(((k, v) for (j, k), v in f.sql.items() if j == job), key=lambda kv: -kv[1][1])
        if not stmts:
            continue
        total = sum(v[1] for _, v in stmts) or 1
        c.print_table([f"{job}: statement (normalised)", "per payout", "mean ms", "share"],
                      [[k[:80], f"{v[0] / n:.2f}", c.ms(v[1] / v[0] * 1000), c.percent(v[1] / total)]
                       for k, v in stmts[:20]], title="")
    if f.provider_ms:
        pm = f.provider_ms
        q = lambda x: pm[min(len(pm) - 1, int(x * len(pm)))]  # noqa: E731
        print(f"\n   provider create_payout (HTTP to the simulator, from the outbox): {len(pm):,} calls, p50 "
              f"{q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, mean {sum(pm) / len(pm):.2f} ms")
    for name, (count, secs) in f.steps.items():
        print(f"   {name}: {count:,} calls, mean {secs / count * 1000:.2f} ms each")
    if f.cprofiled is not None:
        report_cprofile(f.profile_path, f.cprofiled, args)


def report_cprofile(path: str, p: Pass, args: argparse.Namespace) -> None:
    prof, n = c.read_profile(path, [("bench", "/bench/")], skip_idle=True), p.n
    where = "runners only" if args.layout == "procs" else "runners + simulator + webhook API, one event loop"
    print(f"\n   cProfile of phase 2 in this process ({where}), a separate pass of {n:,} payouts "
          f"({p.n / p.settle_s if p.settle_s else 0:,.0f}/s under the profiler): {prof.total:.2f} s busy "
          f"of CPU ({prof.total / n * 1e6:,.0f} us per payout, profiler overhead included)")
    c.print_profile(prof, n, "package (own time, epoll wait left out)")
    c.print_table(["periodya function (top 15 by cumulative CPU; a coroutine's only while it runs)", "calls/payout",
                   "cum us/payout"], [[name[:90], f"{calls / n:.1f}", f"{cum / n * 1e6:,.0f}"]
                                      for cum, calls, name in prof.ours[:15]])


def report(f: Figures, args: argparse.Namespace) -> None:
    p = f.main
    assert p is not None
    print(f"\nPostgreSQL {f.version}; {p.n:,} payouts of {AMOUNT} USD over {args.payees} payees; simulator latency 0, "
          f"autoSettle, settleDelayMs 0, paidRatio 1; {phases_text(args)}; batches outbox {args.batch_outbox} / "
          f"webhooks {args.batch_webhooks}; {args.runners} x {shape_text(args)}; {c.machine_load()} after the run")
    report_pass(p, args, "1. payouts/s, end to end and per phase (same run, same database)",
                "2. payouts/s per job (busy s = time inside execute_job, summed over the loops; items/busy s = the "
                "job's own rate)")
    report_cpu(p)
    report_checks(f.checks, "4. checks")
    c.print_table(["target", "figure", "result"], [
        [f">= {TARGET_E2E} payouts/s end to end (request -> FINALIZED)", c.rate(p.e2e_rate),
         c.verdict(p.e2e_rate >= TARGET_E2E and not p.timed_out)]], title="   target")
    if f.profiled is not None:
        report_profile(f, args)
        report_checks(f.profile_checks, "   checks after the instrumented pass (counts cumulative over both passes)")
    if any(f.log_lines.values()):
        print(f"\n   warning/error lines in the child logs: {f.log_lines}")
    findings(f, args)


def _ours(cpu: dict[str, float]) -> float:
    return sum(v for k, v in cpu.items() if k not in ("wall", "machine") and v == v)


def findings(f: Figures, args: argparse.Namespace) -> None:
    p = f.main
    assert p is not None and p.request is not None
    lines: list[str] = []
    cores = os.cpu_count() or 1
    req_rate = p.n / p.request_s if p.request_s else 0.0
    settle_rate = p.n / p.settle_s if p.settle_s else 0.0
    if p.overlap:
        lines.append(f"requests and jobs overlap: requests ran at {req_rate:,.0f}/s with the jobs beside them, and "
                     f"the jobs' tail after the last answer took {p.settle_s:.2f} s ({p.settle_s / p.e2e_s:.0%} of "
                     f"the run); end to end {p.e2e_rate:,.0f}/s. Compare --phases sequential in the same conditions")
    else:
        lines.append(f"the phases run one after the other, so end to end = 1 / (1/{req_rate:,.0f} + "
                     f"1/{settle_rate:,.0f}) = {p.e2e_rate:,.0f}/s; phase 2 (the jobs) is "
                     f"{p.settle_s / p.e2e_s:.0%} of the time")
    if p.overlap:
        pass
    elif req_rate > TARGET_E2E and settle_rate:
        need = 1 / (1 / TARGET_E2E - 1 / req_rate)
        lines.append(f"with requests at {req_rate:,.0f}/s, {TARGET_E2E}/s end to end needs phase 2 at >= {need:,.0f}/s "
                     f"({need / settle_rate:.0f}x today's {settle_rate:,.0f}/s)")
    elif req_rate:
        lines.append(f"phase 1 alone ({req_rate:,.0f} requests/s) is below {TARGET_E2E}/s: the target cannot be met "
                     f"whatever phase 2 does")
    if p.timed_out:
        lines.append(f"phase 2 TIMED OUT after {args.timeout:g} s with {p.finalized:,} of {p.n:,} FINALIZED: the "
                     f"figures per payout below are not meaningful; see the checks and the job outcomes")
    cpu1, cpu2 = p.cpu_request, p.cpu_settle
    all_in = (_ours(cpu1) + _ours(cpu2)) / p.n * 1000 if p.n and not p.timed_out else 0.0
    if all_in > 0:
        first, second = ("requests+jobs", "tail") if p.overlap else ("phase 1", "phase 2")
        lines.append(f"CPU budget: a payout costs {all_in:.2f} ms of CPU from request to FINALIZED ({first} "
                     f"{_ours(cpu1) / p.n * 1000:.2f} + {second} {_ours(cpu2) / p.n * 1000:.2f}, all our processes and "
                     f"PostgreSQL), so {cores} cores cap this pipeline near {cores / all_in * 1000:,.0f} payouts/s "
                     f"even with perfect overlap and nothing else running; {TARGET_E2E}/s needs <= "
                     f"{cores / TARGET_E2E * 1000:.1f} ms per payout "
                     + (f"({all_in / (cores / TARGET_E2E * 1000):.2f} of that budget is used)"
                        if all_in <= cores / TARGET_E2E * 1000 else
                        f"({all_in / (cores / TARGET_E2E * 1000):.2f}x over it): no amount of concurrency closes "
                        f"that, only less work per payout does"))
    wall2 = cpu2.get("wall", 0.0)
    if wall2 > 0 and not p.overlap:
        ours, machine = _ours(cpu2) / wall2, cpu2["machine"] / wall2
        lines.append(f"phase 2: our processes used {ours:.2f} of {cores} cores; one loop runs the jobs one after the "
                     f"other and each waits on its round trips and provider calls, so phase 2 runs at 1 / (the sum "
                     f"of those latencies per batch)")
        if machine - ours >= 0.25:
            lines.append(f"other processes on the machine used {machine - ours:.2f} cores during phase 2 (the whole "
                         f"machine {machine:.2f}): every round trip waited for a CPU too, so the rates here are lower "
                         f"than on a quiet machine; the CPU-per-payout figures are not affected much")
    out, hooks = p.jobs["outbox"], p.jobs["webhooks"]
    if args.runners > 1:
        lines.append(f"{args.runners} loops: webhooks skipped {hooks.skipped:,} items (every loop lists the same "
                     f"pending events and loses the try-lock race on the other's), outbox {out.skipped:,}; "
                     f"{hooks.busy / hooks.items * 1000 if hooks.items else 0:.2f} ms busy per applied event "
                     f"(compare a --runners 1 run: the difference is waiting, on cash:platform among others)")
    if hooks.items and out.items:
        lines.append(f"busy per payout: outbox {out.busy / p.n * 1000:.2f} ms + webhooks {hooks.busy / p.n * 1000:.2f} "
                     f"ms (+ idle {p.idle_s / p.n * 1000:.2f} ms) against the jobs' window of "
                     f"{p.jobs_s / p.n * 1000:.2f} ms per payout with {args.runners} loop(s)")
    if f.profiled is not None:
        lines += profile_findings(f, args)
    lines += SUGGESTIONS
    print("\n6. findings")
    for line in filter(None, lines):
        print(f"   - {line}")


# statements of the webhooks transaction that run while it holds the payee's and cash:platform's account locks
_AFTER_ACCOUNT_LOCK = ("SELECT seq, tx, stream_id, stream_version, recorded_at FROM append_events", "INSERT INTO",
                       "SELECT t.* FROM unnest", "UPDATE provider_events", "COMMIT")


def profile_findings(f: Figures, args: argparse.Namespace) -> list[str]:
    p = f.profiled
    assert p is not None
    n, out = p.n, []
    per_job: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for (job, key), (count, secs) in f.sql.items():
        group = "outbox" if job.startswith("outbox") else job
        per_job[group][0] += count
        per_job[group][1] += secs
        per_job[group][2] += count if key.startswith("COMMIT") else 0
    total = sum(v[0] for v in per_job.values())
    commits = sum(v[2] for v in per_job.values())
    parts = ", ".join(f"{job} {v[0] / n:.1f}" for job, v in per_job.items() if v[0] / n >= 0.5)
    out.append(f"SQL round trips per payout: {total / n:.1f} in this process ({parts}), {commits / n:.1f} "
               f"transactions; PostgreSQL's and Python's CPU per payout scale with these round trips"
               + ("" if INTAKE in per_job else "; the API process's SQL (payout requests and webhook intake, both "
                  "group-committed) is not counted here (--layout inproc counts it, under \"other\")"))
    claim, send, record = (f.steps.get(step) for step in OUTBOX_STEPS)
    if claim and send and record and f.provider_ms:
        mean_provider = sum(f.provider_ms) / len(f.provider_ms)
        out.append(f"outbox, per run of up to {args.batch_outbox}: the claim transaction "
                   f"{claim[1] / claim[0] * 1000:.1f} ms, then the provider calls ({outbox.SEND_CONCURRENCY} at a "
                   f"time, each {mean_provider:.1f} ms) "
                   f"{send[1] / send[0] * 1000:.1f} ms, then the record transaction {record[1] / record[0] * 1000:.1f} "
                   f"ms; per payout {(claim[1] + send[1] + record[1]) / n * 1000:.2f} ms")
    hook = [(k, v) for (j, k), v in f.sql.items() if j == "webhooks"]
    runs = max(1, p.jobs["webhooks"].runs)
    held = sum(v[1] / v[0] * 1000 for k, v in hook if k.startswith(_AFTER_ACCOUNT_LOCK) and v[0] >= 0.9 * runs)
    locks = [v for k, v in hook if k.startswith("SELECT lock_keys")]
    if held and locks:
        count, secs = sum(v[0] for v in locks), sum(v[1] for v in locks)
        out.append(f"cash:platform: every finalize posts to it; a webhooks run locks it once for its whole batch, "
                   f"from its account lock_keys to its COMMIT, ~{held:.2f} ms here (append, projections, commit); "
                   f"with {args.runners} loop(s) lock_keys took {secs / count * 1000:.2f} ms on average")
    return out


SUGGESTIONS = [
    "done: each job run is batched (outbox: one claim transaction, concurrent provider calls, one record "
    "transaction; webhooks: one transaction per run, cash:platform locked once per batch); POST /api/payouts and "
    "the webhook intake are group-committed (handlers/commit_scheduler.py)",
    "done: the hot lookups are primary-key probes whatever the statistics (projections/rows.fetch_by_keys): a "
    "generic plan made while this fresh database's tables were small had scanned them whole for every batch",
    "left: about two thirds of the CPU is Python: three HTTP exchanges per payout (request, provider create, "
    "webhook), each parsed and answered by aiohttp on both sides, which no batching removes; the projections "
    "re-read the payout and outbox rows the unit of work has just folded",
]
