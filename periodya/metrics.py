"""Every Prometheus metric this process counts, defined in one place (served at GET /metrics).

Counters and histograms live in this process's memory: several `serve` processes each expose their
own, and Prometheus sums them across targets (`sum by (...) (rate(...))`). The gauges of the runbook's
health fields are not here: they are read from the database at scrape time (http/metrics_routes.py),
so every process reports the same values for them.

Labels are bounded on purpose: a route is its template (`/api/payouts/{id}`), never the raw path; a
method outside the standard set is `OTHER`; an outcome is a fixed word, never an error message.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# No `_created` series beside every counter: half the text, and nothing the rules or dashboard read.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter("periodya_http_requests", "HTTP requests answered, by route template, method and status",
                        ["route", "method", "status"], registry=REGISTRY)
HTTP_LATENCY = Histogram("periodya_http_request_duration_seconds", "HTTP request latency by route template",
                         ["route", "method"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
JOB_RUNS = Counter("periodya_job_runs", "Job runs by job, mode and outcome (ok | item_failures | error)",
                   ["job", "mode", "outcome"], registry=REGISTRY)
JOB_DURATION = Histogram("periodya_job_run_duration_seconds", "Job run duration", ["job", "mode"],
                         buckets=JOB_BUCKETS, registry=REGISTRY)
JOB_ITEMS = Counter("periodya_job_items", "Items handled by job runs (processed | succeeded | failed | skipped)",
                    ["job", "result"], registry=REGISTRY)
WEBHOOKS = Counter("periodya_webhooks", "Provider webhooks received: stored | duplicate | refused",
                   ["result"], registry=REGISTRY)
REFUSALS = Counter("periodya_refusals", "Refused credentials, signatures and requests by kind (service_token, "
                   "cron_secret, session, webhook_signature, http_parser, ...); every one, not only the logged ones",
                   ["kind"], registry=REGISTRY)
PROVIDER_CALLS = Counter("periodya_provider_requests", "Payout provider calls by operation and outcome",
                         ["operation", "outcome"], registry=REGISTRY)
PROVIDER_LATENCY = Histogram("periodya_provider_request_duration_seconds", "Payout provider call latency",
                             ["operation"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
GROUP_COMMIT_BATCH = Histogram("periodya_group_commit_batch_size", "Requests per group-commit transaction",
                               ["batcher"], buckets=BATCH_BUCKETS, registry=REGISTRY)
EVENTSTORE_APPENDS = Counter("periodya_eventstore_appends", "Event-store appends (each atomic, one or more streams)",
                             registry=REGISTRY)
EVENTSTORE_EVENTS = Counter("periodya_eventstore_appended_events", "Events appended to the log",
                            registry=REGISTRY)

# Pre-create the fixed label sets so a scrape shows them at 0 before the first one happens (rate() and
# the alert rules then see a series from the start instead of "no data").
for _result in ("stored", "duplicate", "refused"):
    WEBHOOKS.labels(_result)


def http_method(method: str) -> str:
    return method if method in METHODS else "OTHER"


def job_finished(job: str, mode: str | None, outcome: str, seconds: float, summary: dict[str, object]) -> None:
    """One job run: its outcome, duration and items (summary as Summary.as_json(); {} for an error)."""
    label = mode or ""
    JOB_RUNS.labels(job, label, outcome).inc()
    JOB_DURATION.labels(job, label).observe(seconds)
    for result in ("processed", "succeeded", "failed", "skipped"):
        value = summary.get(result)
        if isinstance(value, int) and value:
            JOB_ITEMS.labels(job, result).inc(value)


@contextmanager
def provider_call(operation: str) -> Iterator[None]:
    """Time one provider call; its outcome is `ok` or the ProviderError's code (e.g. PROVIDER_UNAVAILABLE)."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except Exception as exc:
        outcome = str(getattr(exc, "code", None) or "ERROR")
        raise
    except BaseException:
        outcome = "cancelled"
        raise
    finally:
        PROVIDER_CALLS.labels(operation, outcome).inc()
        PROVIDER_LATENCY.labels(operation).observe(time.perf_counter() - started)


def group_commit_batch(batcher: str, size: int) -> None:
    GROUP_COMMIT_BATCH.labels(batcher).observe(size)


def appended(events: int) -> None:
    EVENTSTORE_APPENDS.inc()
    EVENTSTORE_EVENTS.inc(events)
