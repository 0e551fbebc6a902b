"""The admin reads, /api/auth/me, the GET run for Vercel Cron and /metrics through the client built from
/openapi.json alone (tests/integration/spec_client.py): every answer, errors included, is checked against
the closed schemas of the document, so a field the handlers add or a status they give that the document
does not name fails here."""

from __future__ import annotations

import base64
import uuid

import asyncpg

from periodya.admin import users
from periodya.eventstore import EventStore
from periodya.handlers.unit_of_work import Meta
from periodya.http.api_models_admin import (
    AdminPasswordResetResult,
    AdminPayoutDetail,
    AdminUserChange,
    AdminUserList,
    JobTable,
    Me,
    PayoutPage,
    ThrottleUnlockResult,
)
from tests.conftest import CRON_SECRET
from tests.integration import test_openapi
from tests.integration.spec_client import SpecClient

served, spec_client = test_openapi.served, test_openapi.spec_client  # its fixtures: a real server, a logged-in client


async def _two_payouts(c: SpecClient) -> tuple[str, list[str]]:
    escrow, payee = f"esc_{uuid.uuid4().hex[:8]}", f"payee_{uuid.uuid4().hex[:8]}"
    assert (await c.call("createEscrow", {"escrowId": escrow, "amount": 10_000, "currency": "EUR"})).status == 201
    assert (await c.call("releaseEscrow", {"payeeId": payee, "amount": 10_000}, escrow_id=escrow)).status == 200
    ids = []
    for n in (1, 2):
        made = await c.call("createPayout", {"payeeId": payee, "amount": 1_000 * n, "currency": "EUR",
                                             "destination": "ba_1"}, **{"Idempotency-Key": f"{payee}-{n}"})
        assert made.status == 201
        ids.append(made.body["payoutId"])
    return payee, ids


async def test_the_admin_reads_answer_as_the_document_says(spec_client: SpecClient) -> None:
    c = spec_client
    payee, ids = await _two_payouts(c)
    me = await c.call("getMe")
    assert me.status == 200 and me.body["platformAdmin"] and me.body["email"] == "ops@example.com"
    Me.model_validate(me.body)

    first = await c.call("listAdminPayouts", payeeId=payee, limit=1)
    assert first.status == 200 and [p["payoutId"] for p in first.body["payouts"]] == [ids[1]]  # newest first
    assert first.body["nextCursor"] is not None
    PayoutPage.model_validate(first.body)
    last = await c.call("listAdminPayouts", payeeId=payee, limit=1, cursor=first.body["nextCursor"])
    assert [p["payoutId"] for p in last.body["payouts"]] == [ids[0]] and last.body["nextCursor"] is None
    filtered = await c.call("listAdminPayouts", status="requested", olderThanMinutes="0.5", stuck="SENDING")
    assert filtered.status == 200 and filtered.body["payouts"] == []
    refused = await c.call("listAdminPayouts", cursor="bm90LWEtY3Vyc29y")
    assert refused.status == 400 and refused.body["code"] == "VALIDATION_FAILED"

    detail = await c.call("getAdminPayout", id=ids[0])
    assert detail.status == 200 and detail.body["payout"]["status"] == "REQUESTED"
    assert [e["type"] for e in detail.body["timeline"]] == ["PayoutRequested"] and detail.body["ledger"]
    AdminPayoutDetail.model_validate(detail.body)
    assert (await c.call("getAdminPayout", id="no-such-payout")).status == 404

    session_on_get = SpecClient(c.spec, c.base, c.http, {"cronSecret": c.credentials["adminSession"]})
    forbidden = await session_on_get.call("runJobByCron", job="sentinel", mode="recent")
    assert forbidden.status == 403 and forbidden.body["code"] == "FORBIDDEN"  # an admin session on a GET run
    cron = SpecClient(c.spec, c.base, c.http, {"cronSecret": CRON_SECRET})
    ran = await cron.call("runJobByCron", job="outbox", batch=10)
    assert ran.status == 200 and ran.body["job"] == "outbox"
    assert (await cron.call("runJobByCron", job="outbox", mode="full")).status == 422
    jobs = await c.call("listJobs")
    assert jobs.status == 200 and JobTable.model_validate(jobs.body)
    outbox = next(j for j in jobs.body["jobs"] if j["job"] == "outbox")
    assert outbox["lastRunAt"] is not None and outbox["trigger"].startswith("http:") and not outbox["overdue"]
    health = await c.call("getHealth")
    assert health.status == 200 and "outbox" in health.body["jobs"]
    metrics = await c.call("getMetrics")
    assert metrics.status == 200 and "periodya_outbox_pending" in metrics.body


async def test_a_cursor_naming_a_nul_character_is_400_not_a_database_error(spec_client: SpecClient) -> None:
    """A cursor is base64 of `<timestamp>|<payout id>`: one that decodes to a NUL in the id must be refused
    before PostgreSQL sees it (text cannot hold NUL: CharacterNotInRepertoireError, a 500)."""
    for payout_id in ("po\x00x", "po x", ""):
        raw = base64.urlsafe_b64encode(f"2026-01-01T00:00:00+00:00|{payout_id}".encode()).decode().rstrip("=")
        answer = await spec_client.call("listAdminPayouts", cursor=raw)
        assert answer.status == 400 and answer.body["code"] == "VALIDATION_FAILED", (payout_id, answer.body)


async def test_the_user_management_calls_answer_as_the_document_says(spec_client: SpecClient,
                                                                     pool: asyncpg.Pool) -> None:
    c = spec_client
    bob = await users.create_user(EventStore(pool), "bob@example.com", "a long enough password", meta=Meta(actor="t"))
    listed = await c.call("listAdminUsers")
    assert listed.status == 200 and [u["email"] for u in listed.body["users"]] == ["bob@example.com", "ops@example.com"]
    AdminUserList.model_validate(listed.body)
    why = {"reason": "spec check"}
    for op, body in (("setAdminUserRole", {"role": "ops_viewer", **why}), ("disableAdminUser", why),
                     ("enableAdminUser", why)):
        answer = await c.call(op, body, user=bob)
        assert answer.status == 200 and answer.body["changed"], answer
        AdminUserChange.model_validate(answer.body)
    reset = await c.call("resetAdminUserPassword", why, user="bob@example.com")
    assert reset.status == 200 and reset.body["generatedPassword"]
    AdminPasswordResetResult.model_validate(reset.body)
    unlocked = await c.call("unlockLoginThrottle", {"email": "bob@example.com", "address": "10.0.0.1", **why})
    assert unlocked.status == 200 and unlocked.body == {"email": "bob@example.com", "address": "10.0.0.1", "cleared": 0}
    ThrottleUnlockResult.model_validate(unlocked.body)
    refused = await c.call("disableAdminUser", why, user="ops@example.com")
    assert refused.status == 409 and refused.body["code"] == "SELF_CHANGE_REFUSED"
    missing = await c.call("enableAdminUser", why, user="nobody@example.com")
    assert missing.status == 404 and missing.body["code"] == "NOT_FOUND"
