"""`periodya ops` against real processes: each runbook incident (/work/shared/runbook.md, section 3) worked
through start to finish with the CLI alone.

The incident is provoked as tests/e2e/test_runbook_incidents.py does it (simulator knobs, a runner process
SIGKILLed at a fault checkpoint, a ledger row edited behind the application's back, the cron secret);
every operator step is a `periodya ops` process whose DATABASE_URL points nowhere, so it can only have
used the HTTP API. Money and provider calls are then checked directly.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import asyncpg

from tests.e2e.opscli import OpsCli
from tests.e2e.procs import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    System,
    create_user,
    eventually,
    free_port,
    running_system,
)
from tests.e2e.test_runbook_incidents import cash_held, funded_payout

ADMIN_ACTOR = f"admin:{ADMIN_EMAIL}"


async def logged_in(system: System, tmp_path: Path) -> OpsCli:
    cli = OpsCli(tmp_path / "config")
    await cli.ok("login", "--url", system.api, "--email", ADMIN_EMAIL, "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
    return cli


def states(result: Any) -> dict[str, str]:
    return {c["field"]: c["state"] for c in result.json["checks"]}


async def attention(cli: OpsCli, field: str) -> dict[str, Any]:
    """`ops health --json` exits 1 with `field` in ATTENTION; returns the report."""
    result = await cli("health", "--json")
    assert result.code == 1 and states(result)[field] == "ATTENTION", result
    return result.json  # type: ignore[no-any-return]


async def healthy(cli: OpsCli) -> None:
    result = await cli("health")
    assert result.code == 0, result
    assert "ATTENTION" not in result.out and "integrityAlertsCriticalOpen" in result.out, result.out


# --- sessions, errors, confirmation ------------------------------------------------------------------

async def test_login_session_file_whoami_logout_and_errors(database_url: str, sim_url: str, tmp_path: Path) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        cli = OpsCli(tmp_path / "config")
        bad = await cli("login", "--url", system.api, "--email", ADMIN_EMAIL, "--password-stdin", stdin="wrong\n")
        assert (bad.code, bad.err.strip()) == (3, "periodya ops: login refused: invalid email or password"), bad
        assert (await cli("login", "--url", system.api, "--email", ADMIN_EMAIL)).code == 2  # no terminal, no stdin
        dead = free_port()
        down = await cli("login", "--url", f"http://127.0.0.1:{dead}", "--email", ADMIN_EMAIL, "--password-stdin",
                         stdin="x\n")
        assert down.code == 4 and down.err.strip() == f"periodya ops: cannot reach http://127.0.0.1:{dead}: " \
                                                      "connection refused", down

        login = await cli.ok("login", "--url", system.api + "/", "--email", ADMIN_EMAIL, "--password-stdin",
                             stdin=ADMIN_PASSWORD + "\n")
        [config] = (tmp_path / "config" / "periodya").iterdir()
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        token = json.loads(config.read_text())["sessions"][system.api]["token"]
        assert token and token not in login.out + login.err
        who = await cli.ok("whoami", "--json")  # the last URL used is the default
        assert (who.json["email"], who.json["url"], who.json["platformAdmin"]) == (ADMIN_EMAIL, system.api, True)
        await healthy(cli)
        refused = await cli("payouts", "--limit", "0")
        assert refused.code == 1 and "400 VALIDATION_FAILED" in refused.err and "\n" not in refused.err.strip()

        status, _ = await system.call("POST", "/api/auth/logout", token)  # revoked elsewhere
        assert status == 204
        expired = await cli("health")
        assert (expired.code, expired.err.strip()) == (3, "periodya ops: session expired: run periodya ops login")
        await cli.ok("login", "--email", ADMIN_EMAIL, "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
        second = json.loads(config.read_text())["sessions"][system.api]["token"]
        assert (await system.call("GET", "/api/auth/me", second))[0] == 200
        await cli.ok("login", "--email", ADMIN_EMAIL, "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
        assert (await system.call("GET", "/api/auth/me", second))[0] == 401  # a new login ends the old session
        await cli.ok("logout")
        assert (await cli("whoami")).code == 3

        await create_user(system.env, tmp_path, "viewer@example.com", ADMIN_PASSWORD, roles=("viewer",))
        viewer = OpsCli(tmp_path / "viewer", url=system.api)
        login = await viewer.ok("login", "--email", "viewer@example.com", "--password-stdin",
                                stdin=ADMIN_PASSWORD + "\n")
        assert "lacks platform_admin" in login.err
        forbidden = await viewer("health")
        assert forbidden.code == 3 and forbidden.err.startswith("periodya ops: forbidden"), forbidden


# --- FINALIZE_MISSING --------------------------------------------------------------------------------

async def test_finalize_missing_with_the_cli(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                             tmp_path: Path) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url,
                              env={"PERIODYA_SENT_STUCK_MINUTES": "10"}) as system:
        cli = await logged_in(system, tmp_path)
        pid = (await funded_payout(system, "payee-fm", 10_000, 4_000))["payoutId"]
        assert (await system.cron("outbox"))["outcomes"] == {"sent": 1}
        ppid = (await system.payout(pid))["providerPayoutId"]
        await system.settle(ppid, "paid")
        await eventually(lambda: _webhooks_pending(system), "the paid webhook to be stored")
        runner, _ = await system.paused("before_webhook_apply", "webhooks")
        assert await runner.kill() < 0  # provider paid, the ledger never finalized
        await eventually(lambda: _raised(system, "FINALIZE_MISSING"), "FINALIZE_MISSING to be raised")

        # The operator: health names the payout and the commands; force-finalize, ack, resolve.
        report = await attention(cli, "integrityAlertsCriticalOpen")
        assert f"periodya ops force-finalize {ppid}    # FINALIZE_MISSING" in report["todo"], report["todo"]
        alerts = (await cli.ok("alerts", "--status", "OPEN", "--severity", "critical", "--json")).json["alerts"]
        [alert] = [a for a in alerts if a["code"] == "FINALIZE_MISSING"]
        done = await cli.ok("force-finalize", ppid, "--yes", "--json")
        assert (done.json["status"], done.json["ledgerFinalized"]) == ("FINALIZED", True), done
        assert f"payout {pid} (provider {ppid})" in done.err and "40.00 USD" in done.err  # the preview
        await cli.ok("alert", "ack", alert["alertId"], "--note", "finalized per runbook")
        resolved = await cli.ok("alert", "resolve", alert["alertId"], "--note", "finalized per runbook")
        assert f"alert {alert['alertId']} (FINALIZE_MISSING) is RESOLVED" in resolved.out
        await healthy(cli)

        detail = (await cli.ok("payout", pid, "--json")).json
        [finalized] = [e for e in detail["timeline"] if e["type"] == "PayoutFinalized"]
        assert finalized["actor"] == ADMIN_ACTOR and finalized["requestId"].startswith("ops-"), finalized
        assert await system.balances("payee-fm") == {"USD": {"available": 6_000, "inFlight": 0}}
        assert await cash_held(pool) == 6_000


async def _webhooks_pending(system: System) -> bool:
    return bool((await system.health())["webhooksPending"])


async def _raised(system: System, code: str) -> bool:
    await system.cron("sentinel", "?mode=recent")
    return any(a["code"] == code for a in await system.alerts("?status=OPEN"))


# --- Outbox stuck SENDING ----------------------------------------------------------------------------

async def test_outbox_stuck_sending_with_the_cli(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                 tmp_path: Path) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        cli = await logged_in(system, tmp_path)
        pid = (await funded_payout(system, "payee-os", 10_000, 2_500))["payoutId"]
        runner, provider_id = await system.paused("after_provider_accept", "outbox")
        assert await runner.kill() < 0  # between the provider's acceptance and recording SENT
        await eventually(lambda: _stuck(system, "payoutOutboxSendingStuck"), "SENDING to be stuck")

        report = await attention(cli, "payoutOutboxSendingStuck")
        assert any(line.startswith(f"periodya ops rerun-outbox {pid}") for line in report["todo"]), report
        stuck = (await cli.ok("payouts", "--stuck", "sending", "--json")).json["payouts"]
        assert [(p["payoutId"], p["status"], p["outbox"]["status"]) for p in stuck] == [(pid, "SENDING", "SENDING")]
        listed = await cli.ok("payouts")  # no filter: the stuck ones first
        assert listed.out.index("stuck SENDING:") < listed.out.index(pid) < listed.out.index("newest:"), listed.out
        rerun = await cli.ok("rerun-outbox", pid, "--yes", "--json")
        assert (rerun.json["status"], rerun.json["outbox"]["status"]) == ("REQUESTED", "PENDING"), rerun
        sent = await cli.ok("run", "outbox", "--json")
        assert sent.json["outcomes"] == {"sent": 1}, sent  # same idempotency key: the provider replays it
        await system.settle(provider_id, "paid")
        await eventually(lambda: _webhooks_pending(system), "the paid webhook to be stored")
        assert (await cli.ok("run", "webhooks", "--json")).json["outcomes"] == {"applied": 1}
        await healthy(cli)

        assert [p["id"] for p in await system.sim_payouts()] == [provider_id]  # paid once
        assert (await system.sim_stats())["payoutsCreated"] == 1
        assert await system.balances("payee-os") == {"USD": {"available": 7_500, "inFlight": 0}}


async def _stuck(system: System, field: str) -> bool:
    return bool((await system.health())[field])


# --- SENT stuck without webhook ----------------------------------------------------------------------

async def test_sent_stuck_without_webhook_with_the_cli(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                       tmp_path: Path) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url, sim={"webhookDropRate": 1.0}) as system:
        cli = await logged_in(system, tmp_path)
        pid = (await funded_payout(system, "payee-ss", 10_000, 1_000))["payoutId"]
        assert (await system.cron("outbox"))["outcomes"] == {"sent": 1}
        ppid = (await system.payout(pid))["providerPayoutId"]
        await system.settle(ppid, "paid")  # paid; the webhook is dropped
        await eventually(lambda: _stuck(system, "providerPayoutSentStuck10m"), "SENT to be stuck")

        report = await attention(cli, "providerPayoutSentStuck10m")
        assert any(line.startswith(f"periodya ops force-reconcile {ppid}") for line in report["todo"]), report
        stuck = (await cli.ok("payouts", "--stuck", "sent", "--json")).json["payouts"]
        assert [p["providerPayoutId"] for p in stuck] == [ppid]
        done = await cli.ok("force-reconcile", ppid, "--yes")
        assert f"payout {pid} is FINALIZED" in done.out, done.out
        await healthy(cli)
        assert await system.balances("payee-ss") == {"USD": {"available": 9_000, "inFlight": 0}}
        assert await cash_held(pool) == 9_000


# --- LEDGER_UNBALANCED (escalation only) -------------------------------------------------------------

async def test_ledger_unbalanced_shown_never_repaired(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                      tmp_path: Path) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        cli = await logged_in(system, tmp_path)
        await system.fund_payee("payee-lu", 10_000)
        group = await pool.fetchval("SELECT group_id FROM ledger_entries WHERE account = 'payable:payee-lu'")
        await pool.execute("UPDATE ledger_entries SET credit = credit + 1 WHERE account = 'payable:payee-lu'")

        run = await cli.ok("run", "sentinel", "--mode", "full", "--json")
        assert run.json["outcomes"].get("raised:LEDGER_UNBALANCED") == 1, run
        report = await attention(cli, "integrityAlertsCriticalOpen")
        [check] = [c for c in report["checks"] if c["field"] == "integrityAlertsCriticalOpen"]
        assert "LEDGER_UNBALANCED: do not repair, notify Senior Engineering" in check["step"], check
        shown = await cli.ok("alerts", "--code", "LEDGER_UNBALANCED")
        assert f"group:{group}" in shown.out and "DO NOT attempt automated repair" in shown.out, shown.out
        # Escalation only: nothing the CLI did changed the ledger or closed the alert.
        assert await pool.fetchval("SELECT sum(credit) - sum(debit) FROM ledger_entries WHERE group_id = $1",
                                   group) == 1
        assert (await cli("health")).code == 1


# --- Quarantine, then cancel -------------------------------------------------------------------------

async def test_quarantine_then_cancel_with_the_cli(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                   tmp_path: Path) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        cli = await logged_in(system, tmp_path)
        pid = (await funded_payout(system, "payee-q", 10_000, 3_000))["payoutId"]
        shown = await cli.ok("payout", pid)
        assert "payee-q" in shown.out and "30.00 USD" in shown.out and "PayoutRequested" in shown.out

        refused = await cli("quarantine", pid, "--reason", "Suspected fraud")  # stdin is not a terminal
        assert refused.code == 2 and "pass --yes" in refused.err, refused
        declined = await cli("quarantine", pid, "--reason", "Suspected fraud", tty=True, stdin="no\n")
        assert declined.code == 1 and "not confirmed" in declined.err, declined
        assert (await system.payout(pid))["status"] == "REQUESTED"  # neither changed anything
        done = await cli("quarantine", pid, "--reason", "Suspected fraud", tty=True, stdin="yes\n")
        assert done.code == 0, done
        assert f"quarantine payout {pid}" in done.out and "payee payee-q, amount 30.00 USD" in done.out
        assert "status REQUESTED" in done.out and f"payout {pid} is QUARANTINED" in done.out, done.out

        assert (await cli.ok("run", "outbox", "--json")).json["processed"] == 0  # never sent
        cancelled = await cli.ok("cancel", pid, "--reason", "confirmed fraud", "--yes", "--json")
        assert (cancelled.json["status"], cancelled.json["fundsReturned"]) == ("CANCELLED", True), cancelled
        timeline = (await cli.ok("payout", pid, "--json")).json["timeline"]
        actions = [(e["type"], e["actor"], e["reason"]) for e in timeline if e["actor"] == ADMIN_ACTOR]
        assert actions == [("PayoutQuarantined", ADMIN_ACTOR, "Suspected fraud"),
                           ("PayoutCancelled", ADMIN_ACTOR, "confirmed fraud"),
                           ("PayoutReversed", ADMIN_ACTOR, "confirmed fraud")], timeline
        await healthy(cli)
        assert await system.balances("payee-q") == {"USD": {"available": 10_000, "inFlight": 0}}
        assert (await system.sim_stats())["payoutsCreated"] == 0


# --- Admin users: list, role, disable/enable, reset password, unlock --------------------------------------

async def test_admin_user_management_with_the_cli(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                  tmp_path: Path) -> None:
    """An admin offboards and onboards a colleague with `periodya ops user ...` alone: confirmation asked
    (and refused without a terminal), guard rails answered with exit 1, every change an event with the
    actor and the reason, the colleague's sessions ended at once, the viewer refused with exit 3."""
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        cli = await logged_in(system, tmp_path)
        bob = "bob@example.com"
        await create_user(system.env, tmp_path, bob, ADMIN_PASSWORD)
        bob_token = await system.login(bob, ADMIN_PASSWORD)
        listed = await cli.ok("users")
        assert bob in listed.out and "platform_admin" in listed.out and "active" in listed.out, listed.out
        assert [u["email"] for u in (await cli.ok("users", "--json")).json["users"]] == [bob, ADMIN_EMAIL]

        refused = await cli("user", "disable", bob, "--reason", "left the company")  # stdin is not a terminal
        assert refused.code == 2 and "pass --yes" in refused.err, refused
        declined = await cli("user", "disable", bob, "--reason", "left the company", tty=True, stdin="no\n")
        assert declined.code == 1 and "not confirmed" in declined.err, declined
        assert (await system.call("GET", "/api/auth/me", bob_token))[0] == 200  # nothing changed
        done = await cli("user", "disable", bob, "--reason", "left the company", tty=True, stdin="yes\n")
        assert done.code == 0, done
        assert f"disable admin user {bob}" in done.out and "1 live session(s)" in done.out, done.out
        assert f"disable: {bob} is now DISABLED" in done.out and "(1 session(s) ended)" in done.out, done.out
        assert (await system.call("GET", "/api/auth/me", bob_token))[0] == 401  # at once
        again = await cli.ok("user", "disable", bob, "--reason", "again", "--yes", "--json")
        assert (again.json["changed"], again.json["user"]["disabled"]) == (False, True)

        self_disable = await cli("user", "disable", ADMIN_EMAIL, "--reason", "oops", "--yes")
        assert self_disable.code == 1 and "409 SELF_CHANGE_REFUSED" in self_disable.err, self_disable
        self_demote = await cli("user", "role", ADMIN_EMAIL, "ops_viewer", "--reason", "oops", "--yes")
        assert self_demote.code == 1 and "409 SELF_CHANGE_REFUSED" in self_demote.err, self_demote
        unknown = await cli("user", "enable", "nobody@example.com", "--reason", "x", "--yes")
        assert unknown.code == 1 and "no admin user" in unknown.err, unknown
        no_reason = await cli("user", "enable", bob, "--reason", "  ", "--yes")
        assert no_reason.code == 2, no_reason

        await cli.ok("user", "enable", bob, "--reason", "rehired", "--yes")
        role = await cli.ok("user", "role", bob, "ops_viewer", "--reason", "read-only for now", "--yes", "--json")
        assert role.json["user"]["roles"] == ["ops_viewer"], role.out
        reset = await cli.ok("user", "reset-password", bob, "--reason", "forgot it", "--yes")
        [line] = [x for x in reset.out.splitlines() if x.startswith("one-time password for")]
        generated = line.rsplit(" ", 1)[1]
        viewer = OpsCli(tmp_path / "viewer-config")
        await viewer.ok("login", "--url", system.api, "--email", bob, "--password-stdin", stdin=generated + "\n")
        assert bob in (await viewer.ok("users")).out  # a viewer may list
        forbidden = await viewer("user", "enable", ADMIN_EMAIL, "--reason", "x", "--yes")
        assert forbidden.code == 3 and "forbidden" in forbidden.err, forbidden
        chosen = "a chosen new password"
        await cli.ok("user", "reset-password", bob, "--password-stdin", "--reason", "chosen", "--yes",
                     stdin=chosen + "\n")
        assert (await viewer("whoami")).code == 3  # every session of bob's ended
        await system.login(bob, chosen)

        for _ in range(5):
            status, _body = await system.call("POST", "/api/auth/login", None,
                                              json={"email": bob, "password": "wrong password"})
            assert status == 401
        status, _body = await system.call("POST", "/api/auth/login", None, json={"email": bob, "password": chosen})
        assert status == 429
        unlocked = await cli.ok("user", "unlock", bob, "--reason", "locked out by typos", "--yes")
        assert f"cleared 5 failed login(s) of {bob}" in unlocked.out, unlocked.out
        await system.login(bob, chosen)

        rows = await pool.fetch("SELECT event_type, metadata->>'actor' AS actor, metadata->>'reason' AS reason "
                                "FROM events WHERE event_type NOT IN ('AdminUserCreated') AND "
                                "(stream_id LIKE 'admin-user-%' OR stream_id = 'admin-login-throttle') ORDER BY seq")
        assert [(r["event_type"], r["actor"], r["reason"]) for r in rows] == [
            ("AdminUserDisabled", ADMIN_ACTOR, "left the company"), ("AdminUserEnabled", ADMIN_ACTOR, "rehired"),
            ("AdminUserRoleChanged", ADMIN_ACTOR, "read-only for now"),
            ("AdminPasswordReset", ADMIN_ACTOR, "forgot it"), ("AdminPasswordReset", ADMIN_ACTOR, "chosen"),
            ("LoginThrottleUnlocked", ADMIN_ACTOR, "locked out by typos")]
