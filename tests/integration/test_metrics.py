"""GET /metrics: the counters move with real work, the health gauges match health, access and labels."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse, urlunparse

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from periodya.config import Settings
from periodya.handlers import alerts
from periodya.handlers.unit_of_work import run_command
from periodya.http.app import create_app
from tests.clients import Client
from tests.conftest import CRON_SECRET
from tests.integration.pipeline import META, Pipeline, live_pipeline, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(http: aiohttp.ClientSession, base: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(f"{base}/metrics", headers=headers) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(await r.text())


async def cron(p: Pipeline, method: str, job: str) -> dict[str, Any]:
    async with p.http.request(method, f"{p.api_url}/api/admin/ops/run/{job}",
                              headers={"Authorization": f"Bearer {CRON_SECRET}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()  # type: ignore[no-any-return]


async def test_one_payout_requested_to_finalized_moves_the_counters(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        await p.request("po-1", "p1", 4_000)
        before = await scrape(p.http, p.api_url)
        assert value(before, "periodya_outbox_pending") == 1
        assert value(before, "periodya_health_query_ok") == 1

        assert (await cron(p, "POST", "outbox"))["succeeded"] == 1
        ppid = await pool.fetchval("SELECT provider_payout_id FROM payouts")
        await p.settle(ppid, "paid")
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM provider_events"))
        assert (await cron(p, "GET", "webhooks"))["succeeded"] == 1  # as Vercel Cron calls it
        assert await pool.fetchval("SELECT status FROM payouts") == "FINALIZED"
        after = await scrape(p.http, p.api_url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("periodya_job_runs_total", job="outbox", mode="", outcome="ok") == 1
    assert moved("periodya_job_runs_total", job="webhooks", mode="", outcome="ok") == 1
    assert moved("periodya_job_run_duration_seconds_count", job="outbox", mode="") == 1
    assert moved("periodya_job_items_total", job="outbox", result="succeeded") == 1
    assert moved("periodya_job_items_total", job="webhooks", result="succeeded") == 1
    assert moved("periodya_provider_requests_total", operation="create_payout", outcome="ok") == 1
    assert moved("periodya_provider_request_duration_seconds_count", operation="create_payout") == 1
    assert moved("periodya_webhooks_total", result="stored") == 1
    assert moved("periodya_webhooks_total", result="refused") == 0
    assert moved("periodya_group_commit_batch_size_count", batcher="provider event") == 1
    assert moved("periodya_eventstore_appended_events_total") >= 5  # sent, received, paid, finalized, ledger...
    assert moved("periodya_http_requests_total", route="/api/admin/ops/run/{job}", method="POST", status="200") == 1
    assert moved("periodya_http_requests_total", route="/api/admin/ops/run/{job}", method="GET", status="200") == 1
    assert moved("periodya_http_requests_total", route="/api/webhooks/provider", method="POST", status="200") == 1
    assert value(after, "periodya_outbox_pending") == 0
    assert value(after, "periodya_job_last_run_ok", job="webhooks", mode="") == 1
    assert value(after, "periodya_job_last_run_timestamp_seconds", job="outbox", mode="") > 0


async def test_health_gauges_are_health_fields(pool: asyncpg.Pool, settings: Settings) -> None:
    async with live_pipeline(pool, settings) as p:
        await p.fund_payee("p1", 10_000)
        for i in range(3):
            await p.request(f"po-{i}", "p1", 1_000)
        await run_command(p.store, META, lambda u: alerts.raise_alert(u, "LEDGER_UNBALANCED", "critical", "ledger-g1",
                                                                       {}, "notify engineering"))
        p.advance(30)
        status, health = await p.admin("GET", "/api/admin/ops/health")
        assert status == 200
        samples = await scrape(p.http, p.api_url)
    for gauge, field in [("periodya_outbox_pending", "payoutOutboxPending"),
                         ("periodya_outbox_sending_stuck", "payoutOutboxSendingStuck"),
                         ("periodya_payouts_sent_stuck", "providerPayoutSentStuck10m"),
                         ("periodya_alerts_critical_open", "integrityAlertsCriticalOpen"),
                         ("periodya_alerts_unresolved", "alertsOpen"),
                         ("periodya_webhooks_pending", "webhooksPending")]:
        assert value(samples, gauge) == health[field], gauge
    assert (value(samples, "periodya_outbox_pending"), value(samples, "periodya_alerts_critical_open")) == (3, 1)
    assert value(samples, "periodya_alerts_open", code="LEDGER_UNBALANCED", severity="critical") == 1
    assert abs(value(samples, "periodya_outbox_max_age_seconds") / 60 - health["maxOutboxAgeMinutes"]) < 1
    assert value(samples, "periodya_outbox_max_age_seconds") >= 30 * 60


@pytest.fixture
async def guarded(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Client]:
    server = TestServer(create_app(settings.with_overrides(metrics_token="metrics-secret"), pool))
    client = TestClient(server)
    await client.start_server()
    yield client
    await client.close()


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer " + CRON_SECRET, "Basic metrics-secret"])
async def test_metrics_token_is_required_when_set(guarded: Client, header: str | None) -> None:
    r = await guarded.get("/metrics", headers={"Authorization": header} if header else {})
    body = await r.json(content_type=None)
    assert (r.status, r.content_type, body["code"]) == (401, "application/problem+json", "UNAUTHENTICATED")
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert "metrics-secret" not in await r.text()


async def test_metrics_token_opens_metrics_only(guarded: Client) -> None:
    ok = {"Authorization": "Bearer metrics-secret"}
    r = await guarded.get("/metrics", headers=ok)
    assert r.status == 200 and "periodya_outbox_pending" in await r.text()
    assert (await guarded.get("/api/admin/ops/health", headers=ok)).status == 401
    assert (await guarded.post("/api/admin/ops/run/outbox", headers=ok)).status == 401


async def test_routes_are_labelled_by_template_never_by_raw_path(api: Client) -> None:
    before = parse(await (await api.get("/metrics")).text())  # counters are the process's: other tests' too
    for i in range(3):
        assert (await api.get(f"/api/escrows/esc-raw-{i}")).status == 404
        assert (await api.get(f"/no/such/route-{i}")).status == 404
    await api.request("PROPFIND", "/livez")
    text = await (await api.get("/metrics")).text()
    assert "esc-raw-" not in text and "route-1" not in text and "PROPFIND" not in text
    after = parse(text)

    def moved(**labels: str) -> float:
        return value(after, "periodya_http_requests_total", **labels) - value(before, "periodya_http_requests_total",
                                                                             **labels)

    assert moved(route="/api/escrows/{escrow_id}", method="GET", status="404") == 3
    assert moved(route="unmatched", method="GET", status="404") == 3
    assert moved(route="/livez", method="OTHER", status="405") + moved(route="unmatched", method="OTHER",
                                                                      status="405") == 1


async def test_an_unreachable_database_still_serves_the_process_metrics(database_url: str, pool: asyncpg.Pool,
                                                                         settings: Settings,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from periodya import db

    role = f"limited_{uuid.uuid4().hex[:8]}"
    await pool.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
    parts = urlparse(database_url)
    # only the user changes: the embedded server's URL has no host part (its socket dir is in the query)
    url = urlunparse(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))
    holder = await asyncpg.connect(url)  # takes the role's only connection
    limited = await db.connect_pool(url, min_size=0, max_size=2)
    client = TestClient(TestServer(create_app(settings, limited)))
    await client.start_server()
    try:
        r = await client.get("/metrics")
        assert r.status == 200
        samples = parse(await r.text())
        assert value(samples, "periodya_health_query_ok") == 0
        assert ("periodya_outbox_pending", ()) not in samples  # no stale or invented gauge
        assert value(samples, "periodya_http_requests_total", route="/metrics", method="GET", status="200") >= 0
    finally:
        await client.close()
        await limited.close()
        await holder.close()
        await pool.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
    assert "Traceback" not in capsys.readouterr().out


async def test_every_refused_credential_is_counted_even_past_the_log_limit(api: Client) -> None:
    """Issue 13: failed service-token and session checks are logged (rate-limited) and counted in /metrics,
    every one of them, so a brute force shows even when its log lines are suppressed."""
    before = parse(await (await api.get("/metrics")).text())
    for i in range(40):  # more than the 30 log lines a kind gets per minute
        assert (await api.get("/api/escrows/esc-1", headers={"Authorization": f"Bearer wrong-{i}"})).status == 401
    assert (await api.get("/api/admin/ops/health", headers={"Authorization": "Bearer not-a-session"})).status == 401
    after = parse(await (await api.get("/metrics")).text())

    def moved(kind: str) -> float:
        return value(after, "periodya_refusals_total", kind=kind) - value(before, "periodya_refusals_total", kind=kind)

    assert moved("service_token") == 40
    assert moved("session") == 1
