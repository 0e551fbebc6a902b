"""The ops console in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium) against
real processes (`periodya provider-sim`, `periodya serve`, runners killed at a fault checkpoint).

Each test saves a screenshot of every page it visits under $PERIODYA_ARTIFACTS_DIR (default
tests/e2e/artifacts/, gitignored). Without /usr/bin/chromium the module is skipped, except under CI
(`CI` set), where that is a failure: .ci/run installs Chromium.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.e2e.procs import ADMIN_EMAIL, ADMIN_PASSWORD, System, create_user, eventually, running_system
from tests.e2e.test_runbook_incidents import _killed_after_provider_accept, funded_payout

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("PERIODYA_ARTIFACTS_DIR") or Path(__file__).parent / "artifacts")
VIEWER_EMAIL = "viewer@example.com"

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing under CI: .ci/run must install Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); browser tests skipped outside CI",
                allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    pg = await context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and "401" not in msg.text
          and "403" not in msg.text else None)
    try:
        yield pg
        assert errors == [], errors  # no script error, no CSP violation
    finally:
        await context.close()


async def shot(page: Page, name: str) -> None:
    """A full-page screenshot saved as an artifact (Playwright creates the directory)."""
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def login(page: Page, system: System, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> None:
    await page.goto(f"{system.api}/ops/")
    await expect(page.locator("#login-form")).to_be_visible()
    await page.fill("#login-email", email)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await expect(page.locator("#who-email")).to_have_text(email)


async def goto(page: Page, system: System, route: str) -> None:
    await page.goto(f"{system.api}/ops/#/{route}")


def check(page: Page, field: str) -> Any:
    return page.locator(f"#checks tr[data-field='{field}']")


async def confirm(page: Page, expect_text: list[str], reason: str | None = None) -> None:
    dialog = page.locator("dialog#confirm")
    await expect(dialog).to_be_visible()
    for text in expect_text:
        await expect(dialog).to_contain_text(text)
    if reason is not None:
        await page.fill("#confirm-reason", reason)
    await page.click("#confirm-ok")
    await expect(dialog).to_be_hidden()


async def fetch(page: Page, method: str, path: str, headers: dict[str, str] | None = None,
                body: Any = None) -> dict[str, Any]:
    """A request from the page itself (its cookies, same origin): {status, body}."""
    result: dict[str, Any] = await page.evaluate(
        """async ([method, path, headers, body]) => {
             const r = await fetch(path, {method, headers, credentials: "same-origin",
                                          body: body === null ? undefined : JSON.stringify(body)});
             const text = await r.text();
             let parsed = text; try { parsed = JSON.parse(text); } catch (e) {}
             return {status: r.status, type: r.headers.get("content-type"), body: parsed};
           }""", [method, path, headers or {}, body])
    return result


async def csrf_token(page: Page) -> str:
    return str(await page.evaluate(
        "() => decodeURIComponent((document.cookie.split('; ').find(c => c.startsWith('periodya_csrf=')) || '=')"
        ".split('=')[1])"))


# --- the incident: stuck SENDING, worked through from the console -------------------------------------

async def test_stuck_sending_red_then_green_from_the_console(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                              tmp_path: Path, page: Page) -> None:
    """Log in; health turns red by itself while a payout is stuck SENDING (outbox runner SIGKILLed after the
    provider accepted); the sentinel run from the Jobs page raises OUTBOX_STUCK; Incidents shows its
    playbook; the alert is acked, the runbook's action (rerun-outbox) clicked there (which heals the alert),
    the outbox run from Jobs; health is green, and the provider holds exactly one payout."""
    # SENT stuck at 10 minutes, so once the payout is SENT health is as the runbook expects.
    async with running_system(database_url, tmp_path, sim_url=sim_url,
                              env={"PERIODYA_SENT_STUCK_MINUTES": "10"}) as system:
        pid = (await funded_payout(system, "payee-console", 10_000, 2_500))["payoutId"]
        await login(page, system)
        for field in ("payoutOutboxSendingStuck", "providerPayoutSentStuck10m", "integrityAlertsCriticalOpen"):
            await expect(check(page, field)).to_have_attribute("data-state", "green")
        await shot(page, "health-green-before")

        provider_id = await _killed_after_provider_accept(system, pool, pid)
        # No reload: the page refreshes itself.
        await expect(check(page, "payoutOutboxSendingStuck")).to_have_attribute("data-state", "red", timeout=20_000)
        await expect(check(page, "maxOutboxAgeMinutes")).to_have_attribute("data-state", "red")
        await expect(page.locator("#named")).to_contain_text(pid)
        await shot(page, "health-red-stuck-sending")

        await goto(page, system, "payouts")
        await expect(page.locator("#stuck-sending")).to_contain_text(pid)
        await shot(page, "payouts-stuck-sending")

        await goto(page, system, "jobs")
        await page.click("button[data-run='sentinel:recent']")
        await expect(page.locator("#run-results")).to_contain_text("raised:OUTBOX_STUCK")
        await goto(page, system, "incidents")
        group = page.locator("section[data-code='OUTBOX_STUCK']")
        await expect(group).to_contain_text("Rerun outbox")
        await expect(group.locator(".playbook")).to_contain_text("Stuck Repair")
        await shot(page, "incidents-outbox-stuck")

        row = group.locator("tr[data-alert]")
        await row.locator("button[data-alert-action='ack']").click()  # the operator takes it
        await confirm(page, ["OUTBOX_STUCK"], reason="on it: rerun per runbook")
        await expect(row).to_contain_text("ACK")
        await group.locator(f"button[data-action='rerun-outbox'][data-payout='{pid}']").click()
        await confirm(page, [pid, "25.00 USD", "payee-console"])
        await expect(page.locator("#toast")).to_contain_text("REQUESTED")
        # Requeued is progress: the system heals the alert itself; it is listed as resolved.
        await expect(page.locator("#no-incidents")).to_be_visible()
        await expect(page.locator("#resolved")).to_contain_text("OUTBOX_STUCK")
        await shot(page, "incidents-healed")

        await goto(page, system, "jobs")
        await page.click("button[data-run='outbox']")
        await expect(page.locator("#run-results")).to_contain_text('"sent": 1')
        await shot(page, "jobs")

        await goto(page, system, "health")
        for field in ("payoutOutboxPending", "maxOutboxAgeMinutes", "payoutOutboxSendingStuck",
                      "providerPayoutSentStuck10m", "integrityAlertsCriticalOpen"):
            await expect(check(page, field)).to_have_attribute("data-state", "green")
        await shot(page, "health-green-after")

        view = await system.payout(pid)
        assert (view["status"], view["providerPayoutId"]) == ("SENT", provider_id), view
        stats = await system.sim_stats()
        assert (stats["payoutsCreated"], stats["idempotentReplays"]) == (1, 1), stats  # never paid twice
        [alert] = await system.alerts("?code=OUTBOX_STUCK")
        assert (alert["status"], alert["ackedBy"]) == ("RESOLVED", f"admin:{ADMIN_EMAIL}"), alert


# --- LEDGER_UNBALANCED: ack and resolve by hand ------------------------------------------------------

async def test_ledger_unbalanced_ack_and_resolve_from_incidents(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                                tmp_path: Path, page: Page) -> None:
    """The one alert only a human closes: Incidents shows its playbook and no repair button; after
    Senior Engineering put the row back, the operator acks and resolves it with notes; health is green."""
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        await system.fund_payee("payee-lu", 10_000, fee=500)
        await pool.execute("UPDATE ledger_entries SET credit = credit + 1 WHERE account = 'payable:payee-lu'")
        await login(page, system)
        await goto(page, system, "jobs")
        await page.click("button[data-run='sentinel:full']")
        await expect(page.locator("#run-results")).to_contain_text("raised:LEDGER_UNBALANCED")
        await goto(page, system, "health")
        await expect(check(page, "integrityAlertsCriticalOpen")).to_have_attribute("data-state", "red")
        await expect(page.locator("#health-banner")).to_have_attribute("data-status", "critical")
        await goto(page, system, "incidents")
        group = page.locator("section[data-code='LEDGER_UNBALANCED']")
        await expect(group.locator(".playbook")).to_contain_text("DO NOT attempt automated repair")
        await expect(group).to_contain_text("10501")  # the group's credits, named for isolation
        assert await group.locator("button[data-action]").count() == 0  # no repair button, by design
        await shot(page, "incidents-ledger-unbalanced")

        await pool.execute("UPDATE ledger_entries SET credit = credit - 1 WHERE account = 'payable:payee-lu'")
        row = group.locator("tr[data-alert]")
        await row.locator("button[data-alert-action='ack']").click()
        await confirm(page, ["LEDGER_UNBALANCED"], reason="escalated to senior engineering")
        await expect(row).to_contain_text("ACK")
        await row.locator("button[data-alert-action='resolve']").click()
        await confirm(page, ["LEDGER_UNBALANCED"], reason="row restored by senior engineering")
        await expect(page.locator("#no-incidents")).to_be_visible()
        await expect(page.locator("#resolved")).to_contain_text("row restored by senior engineering")
        await shot(page, "incidents-resolved")
        await goto(page, system, "health")
        await expect(check(page, "integrityAlertsCriticalOpen")).to_have_attribute("data-state", "green")

        [alert] = await system.alerts("?code=LEDGER_UNBALANCED")
        assert (alert["status"], alert["ackedBy"], alert["resolvedBy"], alert["note"]) == (
            "RESOLVED", f"admin:{ADMIN_EMAIL}", f"admin:{ADMIN_EMAIL}", "row restored by senior engineering"), alert


# --- quarantine and cancel -------------------------------------------------------------------------------

async def test_quarantine_with_a_reason_then_cancel(database_url: str, sim_url: str, tmp_path: Path,
                                                     page: Page) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        pid = (await funded_payout(system, "payee-q", 10_000, 3_000))["payoutId"]
        await login(page, system)
        await goto(page, system, "payouts")
        await page.fill("#payout-filters input[name=payeeId]", "payee-q")
        await page.click("#payout-filters button[type=submit]")
        await expect(page.locator("#payout-list")).to_contain_text(pid)
        await shot(page, "payouts-search")
        await page.click(f"#payout-list tr[data-payout='{pid}']")
        await expect(page.locator("#payout-title")).to_have_text(f"Payout {pid}")

        await page.click("#payout-actions button[data-action='quarantine']")
        dialog = page.locator("dialog#confirm")
        for text in (pid, "30.00 USD", "payee-q", "Reason (required)"):  # names the payout and the amount
            await expect(dialog).to_contain_text(text)
        await page.click("#confirm-ok")  # a blank reason is refused in the dialog
        await expect(page.locator("#confirm-error")).to_have_text("A reason is required.")
        await shot(page, "payout-quarantine-confirm")
        await confirm(page, [pid], reason="Suspected fraud")
        await expect(page.locator("#payout-title + .tag")).to_have_text("QUARANTINED")
        timeline = page.locator("#timeline")
        await expect(timeline).to_contain_text("PayoutQuarantined")
        quarantined = timeline.locator("tr", has_text="PayoutQuarantined")
        await expect(quarantined).to_contain_text(f"admin:{ADMIN_EMAIL}")
        await expect(quarantined).to_contain_text("Suspected fraud")
        await shot(page, "payout-quarantined")

        await page.click("#payout-actions button[data-action='cancel']")
        await confirm(page, [pid, "30.00 USD"], reason="confirmed fraud")
        await expect(page.locator("#payout-title + .tag")).to_have_text("CANCELLED")
        await expect(timeline.locator("tr", has_text="PayoutCancelled")).to_contain_text(f"admin:{ADMIN_EMAIL}")
        await expect(timeline.locator("tr", has_text="PayoutCancelled")).to_contain_text("confirmed fraud")
        await expect(page.locator("#payout-actions button")).to_have_count(0)
        await shot(page, "payout-cancelled")

        view = await system.payout(pid)
        assert (view["status"], view["fundsReturned"]) == ("CANCELLED", True), view
        assert await system.balances("payee-q") == {"USD": {"available": 10_000, "inFlight": 0}}
        assert (await system.sim_stats())["payoutsCreated"] == 0


# --- the read-only viewer ------------------------------------------------------------------------------

async def test_viewer_sees_no_action_buttons_and_the_api_refuses_them(database_url: str, sim_url: str,
                                                                      tmp_path: Path, page: Page) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        pid = (await funded_payout(system, "payee-v", 10_000, 1_000))["payoutId"]
        await create_user(system.env, tmp_path, VIEWER_EMAIL, ADMIN_PASSWORD, roles=("ops_viewer",))
        await login(page, system, VIEWER_EMAIL)
        await expect(page.locator("#readonly")).to_be_visible()
        await expect(page.locator("#who-role")).to_have_text("read-only")
        await expect(check(page, "payoutOutboxSendingStuck")).to_have_attribute("data-state", "green")
        await shot(page, "viewer-health")
        for route in ("incidents", "payouts", f"payouts/{pid}", "jobs"):
            await goto(page, system, route)
            await expect(page.locator("#readonly")).to_be_visible()
            await expect(page.locator("main h1")).to_be_visible()
            assert await page.locator("button[data-action], button[data-run], button[data-alert-action]").count() == 0
        await goto(page, system, f"payouts/{pid}")
        await expect(page.locator("#timeline")).to_contain_text("PayoutRequested")
        await shot(page, "viewer-payout")

        token = await csrf_token(page)
        assert token
        for path, body in ((f"/api/admin/ops/payouts/{pid}/quarantine", {"reason": "not allowed"}),
                           (f"/api/admin/ops/payouts/{pid}/rerun-outbox", None), ("/api/admin/ops/run/outbox", None)):
            out = await fetch(page, "POST", path, {"X-CSRF-Token": token, "Content-Type": "application/json"}, body)
            assert (out["status"], out["type"], out["body"]["code"]) == (403, "application/problem+json",
                                                                         "FORBIDDEN"), out
        assert (await system.payout(pid))["status"] == "REQUESTED"


# --- CSRF, a missing session, logout -------------------------------------------------------------------

async def test_csrf_and_missing_session_are_refused(database_url: str, sim_url: str, tmp_path: Path,
                                                     page: Page) -> None:
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        pid = (await funded_payout(system, "payee-c", 10_000, 1_000))["payoutId"]
        response = await page.goto(f"{system.api}/ops/")
        assert response is not None
        headers = await response.all_headers()
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        await expect(page.locator("#login-form")).to_be_visible()
        await shot(page, "login")

        # A missing session: the API refuses, the console shows the login form.
        out = await fetch(page, "GET", "/api/admin/ops/health")
        assert (out["status"], out["body"]["code"]) == (401, "UNAUTHENTICATED"), out
        out = await fetch(page, "POST", f"/api/admin/ops/payouts/{pid}/quarantine",
                          {"Content-Type": "application/json"}, {"reason": "no session"})
        assert out["status"] == 401, out

        await page.fill("#login-email", ADMIN_EMAIL)
        await page.fill("#login-password", "wrong password")
        await page.click("#login-submit")
        await expect(page.locator("#login-error")).to_have_text("invalid email or password")
        await login(page, system)
        [session] = [c for c in await page.context.cookies() if c["name"] == "periodya_session"]
        assert (session["httpOnly"], session["sameSite"], session["secure"]) == (True, "Strict", False)
        assert "periodya_session" not in await page.evaluate("() => document.cookie")  # HttpOnly

        # CSRF: the cookie alone, or with a wrong token, is refused, and nothing changes.
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            out = await fetch(page, "POST", f"/api/admin/ops/payouts/{pid}/quarantine",
                              {"Content-Type": "application/json", **headers}, {"reason": "csrf"})
            assert (out["status"], out["type"], out["body"]["code"]) == (403, "application/problem+json",
                                                                         "FORBIDDEN"), out
        assert (await system.payout(pid))["status"] == "REQUESTED"
        # The cookie is no credential for the platform's routes.
        out = await fetch(page, "GET", f"/api/payouts/{pid}", {"X-CSRF-Token": await csrf_token(page)})
        assert out["status"] == 401, out

        await page.click("#logout")
        await expect(page.locator("#login-error")).to_have_text("Signed out.")
        out = await fetch(page, "GET", "/api/admin/ops/health")
        assert out["status"] == 401, out
        status, _ = await system.call("GET", "/api/admin/ops/health", session["value"])
        assert status == 401  # revoked on the server, not only forgotten by the browser
        await page.goto(f"{system.api}/ops/#/payouts")
        await expect(page.locator("#login-form")).to_be_visible()
        assert re.search(r"/ops/", page.url)
        await eventually(lambda: _no_session_cookie(page), "the session cookie to be cleared")


async def _no_session_cookie(page: Page) -> bool:
    return not [c for c in await page.context.cookies() if c["name"] == "periodya_session"]


# --- admin users ---------------------------------------------------------------------------------------

BOB = "bob@example.com"


def user_row(page: Page, email: str) -> Any:
    return page.locator(f"#users tr[data-user='{email}']")


async def test_users_page_disable_enable_role_reset_and_unlock(database_url: str, pool: asyncpg.Pool, sim_url: str,
                                                               tmp_path: Path, page: Page) -> None:
    """The Users page: disable (bob's session ends at once), enable, make viewer, reset password (the
    one-time password shown once), unlock a throttle; each confirmed with a reason in a dialog naming the
    user; no disable or demote button on one's own row; then bob, now a viewer, sees no buttons and the API
    refuses him."""
    async with running_system(database_url, tmp_path, sim_url=sim_url) as system:
        await create_user(system.env, tmp_path, BOB, ADMIN_PASSWORD)
        bob_token = await system.login(BOB, ADMIN_PASSWORD)
        await login(page, system)
        await goto(page, system, "users")
        await expect(user_row(page, BOB)).to_contain_text("active")
        own = user_row(page, ADMIN_EMAIL)
        await expect(own.locator("button[data-user-action='reset-password']")).to_be_visible()
        assert "null" not in await page.locator("main").inner_text()
        demote = "button[data-user-action='disable'], button[data-user-action='make-viewer']"
        assert await own.locator(demote).count() == 0
        await shot(page, "users")

        await user_row(page, BOB).locator("button[data-user-action='disable']").click()
        dialog = page.locator("dialog#confirm")
        for text in (BOB, "Reason (required)", "1"):  # names the user and their live session
            await expect(dialog).to_contain_text(text)
        await page.click("#confirm-ok")
        await expect(page.locator("#confirm-error")).to_have_text("A reason is required.")
        await shot(page, "users-disable-confirm")
        await confirm(page, [BOB], reason="left the company")
        await expect(user_row(page, BOB)).to_contain_text("DISABLED")
        status, _ = await system.call("GET", "/api/auth/me", bob_token)
        assert status == 401  # at once

        await user_row(page, BOB).locator("button[data-user-action='enable']").click()
        await confirm(page, [BOB], reason="rehired")
        await expect(user_row(page, BOB)).to_contain_text("active")
        await user_row(page, BOB).locator("button[data-user-action='make-viewer']").click()
        await confirm(page, [BOB, "ops_viewer"], reason="read-only for now")
        await expect(user_row(page, BOB)).to_contain_text("ops_viewer")
        await user_row(page, BOB).locator("button[data-user-action='reset-password']").click()
        await confirm(page, [BOB, "one-time password"], reason="forgot it")
        await expect(page.locator("#one-time-password")).to_contain_text(BOB)
        generated = await page.locator("#one-time-value").inner_text()
        assert len(generated) == 24
        await shot(page, "users-one-time-password")
        await goto(page, system, "health")
        await goto(page, system, "users")
        await expect(page.locator("#users")).to_be_visible()
        await expect(page.locator("#one-time-password")).to_have_count(0)  # shown once (waits for the re-render)

        for _ in range(5):
            status, _ = await system.call("POST", "/api/auth/login", None, json={"email": BOB, "password": "wrong!"})
            assert status == 401
        await page.fill("#unlock-form input[name=email]", BOB)
        await page.click("#unlock-form button[type=submit]")
        await confirm(page, [BOB], reason="locked out by typos")
        await expect(page.locator("#toast")).to_contain_text("cleared 5")
        await shot(page, "users-unlocked")

        await page.click("#logout")
        await expect(page.locator("#login-error")).to_have_text("Signed out.")
        await login(page, system, BOB, generated)
        await goto(page, system, "users")
        await expect(page.locator("#readonly")).to_be_visible()
        await expect(user_row(page, ADMIN_EMAIL)).to_be_visible()
        assert await page.locator("button[data-user-action], #unlock-form").count() == 0
        await shot(page, "users-viewer")
        token = await csrf_token(page)
        out = await fetch(page, "POST", f"/api/admin/users/{ADMIN_EMAIL}/disable",
                          {"X-CSRF-Token": token, "Content-Type": "application/json"}, {"reason": "not allowed"})
        assert (out["status"], out["body"]["code"]) == (403, "FORBIDDEN"), out

        rows = await pool.fetch("SELECT event_type, metadata->>'actor' AS actor, metadata->>'reason' AS reason "
                                "FROM events WHERE event_type <> 'AdminUserCreated' AND "
                                "(stream_id LIKE 'admin-user-%' OR stream_id = 'admin-login-throttle') ORDER BY seq")
        actor = f"admin:{ADMIN_EMAIL}"
        assert [(r["event_type"], r["actor"], r["reason"]) for r in rows] == [
            ("AdminUserDisabled", actor, "left the company"), ("AdminUserEnabled", actor, "rehired"),
            ("AdminUserRoleChanged", actor, "read-only for now"), ("AdminPasswordReset", actor, "forgot it"),
            ("LoginThrottleUnlocked", actor, "locked out by typos")]
