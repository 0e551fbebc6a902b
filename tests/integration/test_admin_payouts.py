"""The admin reads behind `periodya ops`: payout list and search, one payout by either id with its timeline
and ledger, the job table with overdue flags, GET /api/auth/me. Real HTTP, real PostgreSQL, real simulator."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from periodya.config import Settings
from periodya.handlers import payout_search
from periodya.handlers.payout_search import Cursor, PayoutQuery
from periodya.runners import outbox, webhooks
from tests.integration.pipeline import Pipeline, live_pipeline, wait_for
from tests.integration.test_hot_path_plans import generic_plan

ADMIN = "admin:ops@example.com"


async def _ids(p: Pipeline, query: str) -> list[str]:
    status, body = await p.admin("GET", f"/api/admin/payouts{query}")
    assert status == 200, body
    return [x["payoutId"] for x in body["payouts"]]


async def _four_payouts(p: Pipeline, pool: asyncpg.Pool) -> dict[str, str]:
    """po-a FINALIZED, po-b and po-c SENT, po-d SENDING (claimed, never answered); returns provider ids."""
    await p.fund_payee("p1", 10_000)
    await p.fund_payee("p2", 10_000)
    for pid, payee in (("po-a", "p1"), ("po-b", "p1"), ("po-c", "p2")):
        await p.request(pid, payee, 1_000)
    assert (await outbox.run(p.deps)).details == {"sent": 3}
    await p.request("po-d", "p2", 500)
    assert [s.payout_id for s in await outbox.claim_batch(p.deps, ["po-d"])] == ["po-d"]
    ppids = {r["payout_id"]: r["provider_payout_id"] for r in await pool.fetch("SELECT * FROM payouts")}
    await p.settle(ppids["po-a"], "paid")
    await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM provider_events"))
    await webhooks.run(p.deps)
    return ppids


async def test_payout_list_search_and_stuck_lists(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        ppids = await _four_payouts(p, pool)
        assert await _ids(p, "") == ["po-d", "po-c", "po-b", "po-a"]  # newest first
        assert await _ids(p, "?status=sent") == ["po-c", "po-b"]
        assert await _ids(p, "?status=FINALIZED") == ["po-a"]
        assert await _ids(p, "?payeeId=p1") == ["po-b", "po-a"]
        assert await _ids(p, f"?providerPayoutId={ppids['po-c']}") == ["po-c"]
        assert await _ids(p, "?payeeId=p2&status=SENDING") == ["po-d"]
        assert await _ids(p, "?stuck=sending") == [] and await _ids(p, "?stuck=sent") == []
        assert await _ids(p, "?olderThanMinutes=5") == []

        seen, cursor = [], ""
        for _ in range(5):
            status, body = await p.admin("GET", f"/api/admin/payouts?limit=1{cursor}")
            assert status == 200 and len(body["payouts"]) == 1, body
            seen.append(body["payouts"][0]["payoutId"])
            if body["nextCursor"] is None:
                break
            cursor = f"&cursor={body['nextCursor']}"
        assert seen == ["po-d", "po-c", "po-b", "po-a"]

        p.advance(settings.sending_stuck_minutes + 1)  # past both thresholds (15 and 10 minutes)
        assert await _ids(p, "?stuck=sending") == ["po-d"]
        assert await _ids(p, "?stuck=SENT") == ["po-b", "po-c"]  # oldest first, then by id
        assert await _ids(p, "?stuck=sent&payeeId=p2") == ["po-c"]
        assert await _ids(p, "?olderThanMinutes=5&status=SENT") == ["po-c", "po-b"]
        status, body = await p.admin("GET", "/api/admin/payouts?stuck=sending")
        [item] = body["payouts"]
        assert (item["status"], item["outbox"]["status"], item["payeeId"], item["amount"]) == (
            "SENDING", "SENDING", "p2", 500), item
        assert item["outbox"]["updatedAt"] and item["statusChangedAt"]


BAD_QUERIES = ["status=BOGUS", "status=", "stuck=maybe", "limit=0", "limit=501", "limit=abc", "limit=-1",
               "olderThanMinutes=-1", "olderThanMinutes=nan", "olderThanMinutes=inf", "olderThanMinutes=1e3",
               "olderThanMinutes=0", "payeeId=%00", "payeeId=a%20b", "payeeId=" + "x" * 129,
               "providerPayoutId=po%00x", "cursor=!!!", "cursor=bm90LWEtY3Vyc29y", "cursor=" + "A" * 401,
               "unknown=1", "status=SENT&status=PAID", "%00=1", "status=SENT%00",
               "limit=%EF%BC%91", "olderThanMinutes=%D9%A1", "limit=%C2%B2"]  # non-ASCII digits: 1, 1, superscript 2


async def test_bad_query_parameters_are_400(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        answers = {q: await p.admin("GET", f"/api/admin/payouts?{q}") for q in BAD_QUERIES}
        wrong = {q: a for q, a in answers.items() if a[0] != 400 or a[1].get("code") != "VALIDATION_FAILED"}
        assert wrong == {}, wrong
        for path in ("/api/admin/jobs?x=1", "/api/admin/payouts/po-x?limit=1"):
            status, body = await p.admin("GET", path)
            assert status == 400 and body["code"] == "VALIDATION_FAILED", body


async def test_payout_detail_by_either_id(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        ppids = await _four_payouts(p, pool)
        status, body = await p.admin("POST", "/api/admin/ops/payouts/po-b/quarantine",
                                     json={"reason": "Suspected fraud"})
        assert status == 200, body
        by_ours = await p.admin("GET", "/api/admin/payouts/po-b")
        by_provider = await p.admin("GET", f"/api/admin/payouts/{ppids['po-b']}")
        assert by_ours == by_provider and by_ours[0] == 200
        detail = by_ours[1]
        assert (detail["payout"]["status"], detail["payout"]["outbox"]["status"]) == ("QUARANTINED", "FAILED")
        assert detail["audit"] == "/api/admin/audit/payouts/po-b"
        types = [e["type"] for e in detail["timeline"]]
        assert types[0] == "PayoutRequested" and types[-1] == "PayoutQuarantined", types
        assert [e["version"] for e in detail["timeline"]] == list(range(1, len(types) + 1))
        last = detail["timeline"][-1]
        assert (last["actor"], last["reason"]) == (ADMIN, "Suspected fraud") and last["requestId"], last
        [reserve] = detail["ledger"]  # payable -> in-flight when requested; nothing else yet
        assert sum(e["debit"] for e in reserve["entries"]) == sum(e["credit"] for e in reserve["entries"]) == 1_000
        assert {e["account"] for e in reserve["entries"]} == {"payable:p1", "inflight:p1"}

        status, done = await p.admin("GET", "/api/admin/payouts/po-a")
        assert status == 200 and done["payout"]["status"] == "FINALIZED"
        assert len(done["ledger"]) == 2 and {e["account"] for g in done["ledger"] for e in g["entries"]} == {
            "payable:p1", "inflight:p1", "cash:platform"}
        status, body = await p.admin("GET", "/api/admin/payouts/po-nope")
        assert status == 404 and body["code"] == "NOT_FOUND"
        status, body = await p.admin("GET", "/api/admin/payouts/bad%20id")
        assert status == 400 and body["code"] == "VALIDATION_FAILED"
        async with aiohttp.ClientSession() as http, http.get(f"{p.api_url}/api/admin/payouts/po-a") as r:
            assert r.status == 401


async def test_jobs_last_runs_and_overdue(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        status, body = await p.admin("GET", "/api/admin/jobs")
        assert status == 200 and body["overdue"] == len(body["jobs"]) == 6, body  # nothing ever ran
        assert [(j["job"], j["mode"]) for j in body["jobs"]][-2:] == [("sentinel", "recent"), ("sentinel", "full")]
        status, _ = await p.admin("POST", "/api/admin/ops/run/outbox")
        assert status == 200
        status, body = await p.admin("GET", "/api/admin/jobs")
        jobs = {(j["job"], j["mode"]): j for j in body["jobs"]}
        outbox_job = jobs[("outbox", None)]
        assert (outbox_job["overdue"], outbox_job["ok"], outbox_job["processed"]) == (False, True, 0), outbox_job
        assert outbox_job["cron"] == "* * * * *" and outbox_job["lastRunAt"] and body["overdue"] == 5
        p.advance(5)  # five minutes without a run: a minute job is overdue again
        status, body = await p.admin("GET", "/api/admin/jobs")
        assert body["overdue"] == 6, body


async def test_auth_me(pool: asyncpg.Pool, settings: Settings) -> None:
    from periodya.admin import sessions, users
    from tests.integration.pipeline import META

    async with live_pipeline(pool, settings) as p:
        await p.admin("GET", "/api/admin/jobs")  # creates and logs in the admin
        async with aiohttp.ClientSession() as http:
            async def me(token: str | None) -> tuple[int, Any]:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with http.get(f"{p.api_url}/api/auth/me", headers=headers) as r:
                    return r.status, await r.json(content_type=None)

            status, body = await me(p.admin_token)
            assert status == 200 and (body["email"], body["roles"], body["platformAdmin"]) == (
                "ops@example.com", ["platform_admin"], True), body
            assert body["expiresAt"] > body["sessionCreatedAt"]
            viewer = await users.create_user(p.store, "viewer@example.com", "correct horse battery", (), meta=META)
            token, _ = await sessions.create_session(pool, viewer)
            status, body = await me(token)
            assert status == 200 and (body["roles"], body["platformAdmin"]) == ([], False)
            for bad in (None, "nope", "x" * 300):
                status, body = await me(bad)
                assert status == 401 and body["code"] == "UNAUTHENTICATED", body
            await sessions.revoke_session(pool, token)
            assert (await me(token))[0] == 401


NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHAPES = {
    "list": PayoutQuery(),
    "status": PayoutQuery(status="SENT"),
    "payee": PayoutQuery(payee_id="p1"),
    "provider id": PayoutQuery(provider_payout_id="po_1"),
    "age and status": PayoutQuery(status="SENT", older_than_minutes=5),
    "stuck sending": PayoutQuery(stuck="sending"),
    "stuck sent": PayoutQuery(stuck="sent"),
    "page 2": PayoutQuery(cursor=Cursor(NOW, "po-x")),
}
TYPES = {datetime: "timestamptz", str: "text", int: "bigint"}


@pytest.mark.parametrize("shape", SHAPES)
async def test_search_shapes_scan_no_table_sequentially(pool: asyncpg.Pool, shape: str) -> None:
    sql, args = payout_search.search_sql(SHAPES[shape], NOW, 15, 10)
    async with pool.acquire() as conn:
        plan = await generic_plan(conn, sql, [TYPES[type(a)] for a in args])
        ledger_plan = await generic_plan(conn, payout_search.LEDGER, ["text"])
    for table in ("payouts", "outbox"):
        assert f"Seq Scan on {table}" not in plan, plan
    assert "Seq Scan on ledger_groups" not in ledger_plan, ledger_plan
