"""GET /metrics (Prometheus text exposition) and the middleware that counts every HTTP request.

The scrape renders this process's counters (periodya/metrics.py) and, read from the database at that
moment, the runbook's health fields as gauges: the same queries health uses (handlers/health.py), so
one rule decides both, and every process of a deployment reports the same values for them. When the
database does not answer, the process's own metrics are still served with `periodya_health_query_ok 0`:
a scrape that fails whole would hide the very counters that explain why.

Access: open when PERIODYA_METRICS_TOKEN is unset (bind to a private network or put a proxy in front);
when set, `Authorization: Bearer <token>` is required and anything else is 401 problem+json. The
metrics token opens /metrics only, and no other secret opens /metrics.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterable

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from periodya import metrics
from periodya.config import Settings
from periodya.deps import Deps
from periodya.handlers import health
from periodya.http.auth import bearer
from periodya.http.middleware import Handler
from periodya.http.problems import Unauthenticated
from periodya.logging import get_logger

SETTINGS = web.AppKey("metrics_settings", Settings)
DEPS = web.AppKey("metrics_deps", Deps)
log = get_logger("periodya.metrics")
# The classic text format generate_latest writes; every Prometheus 2.x and 3.x server reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# (gauge name, health row column, help): the runbook's health pulse, field by field.
HEALTH_GAUGES = (
    ("periodya_outbox_pending", "pending", "payoutOutboxPending: outbox tasks waiting to be sent"),
    ("periodya_outbox_sending_stuck", "sending_stuck",
     "payoutOutboxSendingStuck: SENDING past PERIODYA_SENDING_STUCK_MINUTES (runbook: expected 0)"),
    ("periodya_payouts_sent_stuck", "sent_stuck",
     "providerPayoutSentStuck10m: SENT past PERIODYA_SENT_STUCK_MINUTES (runbook: expected 0)"),
    ("periodya_alerts_critical_open", "critical_open",
     "integrityAlertsCriticalOpen: critical alerts not resolved (runbook: expected 0)"),
    ("periodya_alerts_unresolved", "open_alerts", "alertsOpen: alerts not resolved"),
    ("periodya_webhooks_pending", "webhooks_pending", "webhooksPending: stored provider events not applied yet"),
    ("periodya_eventstore_events_behind_horizon", "behind_horizon",
     "readerLag.eventsBehindHorizon: events not yet visible to commit-order readers"),
)


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by its route TEMPLATE (bounded cardinality), method and status.
    Outermost, so it sees the final status of problem answers too."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # a redirect or an error the boundary let through
        status = exc.status
        raise
    except asyncio.CancelledError:  # the client went away: not a server error (nginx's 499)
        status = 499
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        method = metrics.http_method(request.method)
        metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
        metrics.HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - started)


def _check_token(request: web.Request) -> None:
    expected = request.app[SETTINGS].metrics_token
    if not expected:
        return
    token = bearer(request)
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthenticated("a valid metrics token is required (PERIODYA_METRICS_TOKEN)")


async def database_families(deps: Deps) -> list[Metric]:
    """The health gauges, read now. Raises the database's error when it does not answer."""
    c = await health.counts(deps)
    families: list[Metric] = []
    for name, column, text in HEALTH_GAUGES:
        families.append(GaugeMetricFamily(name, text, value=c[column]))
    oldest = c["oldest_open"]
    age = max((deps.clock() - oldest).total_seconds(), 0.0) if oldest else 0.0
    families.append(GaugeMetricFamily("periodya_outbox_max_age_seconds",
                                      "maxOutboxAgeMinutes x 60: age of the oldest PENDING or SENDING task", value=age))
    by_code = GaugeMetricFamily("periodya_alerts_open", "Alerts not resolved, by code and severity",
                                labels=["code", "severity"])
    for row in await health.open_alerts_by_code(deps):
        by_code.add_metric([row["code"], row["severity"]], row["n"])
    lag = GaugeMetricFamily("periodya_checkpoint_lag_events", "Catch-up readers: positions between the log's head "
                            "and the checkpoint", labels=["checkpoint"])
    for row in await health.checkpoint_lag(deps):
        lag.add_metric([row["name"]], row["lag"])
    last = GaugeMetricFamily("periodya_job_last_run_timestamp_seconds", "When each job last started (job_runs)",
                             labels=["job", "mode"])
    ok = GaugeMetricFamily("periodya_job_last_run_ok", "1 when the job's last finished run had no failed item",
                           labels=["job", "mode"])
    for row in await health.latest_runs(deps):
        last.add_metric([row["job"], row["mode"] or ""], row["started_at"].timestamp())
        if row["ok"] is not None:
            ok.add_metric([row["job"], row["mode"] or ""], 1.0 if row["ok"] else 0.0)
    return [*families, by_code, lag, last, ok]


class _Families:
    """A collector that yields metric families computed before the (synchronous) render."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


async def render(deps: Deps) -> bytes:
    """The whole exposition: this process's metrics, then the database's gauges (or health_query_ok 0)."""
    started = time.perf_counter()
    try:
        families = await database_families(deps)
        ok = 1.0
    except _DB_ERRORS as exc:
        log.warning("metrics_database_unavailable", error=type(exc).__name__)
        families, ok = [], 0.0
    families.append(GaugeMetricFamily("periodya_health_query_ok", "1 when the health gauges were read", value=ok))
    families.append(GaugeMetricFamily("periodya_health_query_duration_seconds",
                                      "Time this scrape spent reading the health gauges",
                                      value=time.perf_counter() - started))
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Families(families))
    return bytes(generate_latest(metrics.REGISTRY) + generate_latest(scrape))


async def get_metrics(request: web.Request) -> web.Response:
    _check_token(request)
    body = await render(request.app[DEPS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def setup(app: web.Application, settings: Settings, deps: Deps) -> None:
    app[SETTINGS] = settings
    app[DEPS] = deps
    app.router.add_get("/metrics", get_metrics, allow_head=False)
