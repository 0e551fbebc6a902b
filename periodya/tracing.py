"""Optional OpenTelemetry tracing, off by default.

On only when OTEL_EXPORTER_OTLP_ENDPOINT is set AND the `otel` extra is installed
(`pip install 'periodya[otel]'`): spans for every HTTP request the aiohttp server answers, every call
of the provider client (aiohttp client) and every asyncpg query, exported over OTLP/HTTP (the exporter
reads the standard OTEL_* variables itself: headers, timeouts, OTEL_SERVICE_NAME). The server span
carries `periodya.request_id` (the X-Request-Id answered) and, on payout routes, `periodya.payout_id`;
a provider call's span carries the payout id it is about. With the endpoint unset nothing is imported
and nothing changes; with it set but the extra missing, one warning says so and the service runs
untraced.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from periodya.logging import get_logger

log = get_logger("periodya.tracing")
_state: dict[str, Any] = {}  # "on": bool, once decided for this process
PAYOUT_PARAMS = ("payout_id", "id")


def configure(env: dict[str, str] | None = None) -> bool:
    """Set up tracing for this process once; True when it is on."""
    if "on" in _state:
        return bool(_state["on"])
    env = dict(os.environ if env is None else env)
    _state["on"] = False
    if not env.get("OTEL_EXPORTER_OTLP_ENDPOINT") and not env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
        from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning("tracing_unavailable", missing=exc.name, hint="pip install 'periodya[otel]'")
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "periodya")}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    # The server instrumentor makes every web.Application created from now on start with its middleware.
    instrumentors: list[Any] = [AioHttpServerInstrumentor, AioHttpClientInstrumentor, AsyncPGInstrumentor]
    for instrumentor in instrumentors:
        instrumentor().instrument()
    _state.update(on=True, provider=provider)
    log.info("tracing_on", endpoint=env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
             or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    return True


def shutdown() -> None:
    """Flush the spans still buffered (a clean shutdown loses none)."""
    provider = _state.get("provider")
    if provider is not None:
        provider.shutdown()


def middlewares() -> list[Any]:
    """Our server middleware when tracing is on, else none. Call it BEFORE creating the application:
    configuring tracing makes web.Application put the server-span middleware first."""
    return [_annotate] if configure() else []


@web.middleware
async def _annotate(request: web.Request, handler: Any) -> web.StreamResponse:
    from opentelemetry import trace

    span = trace.get_current_span()
    for name in PAYOUT_PARAMS:
        if name in request.match_info and request.path.startswith(("/api/payouts/", "/api/admin/ops/payouts/")):
            span.set_attribute("periodya.payout_id", request.match_info[name])
    response: web.StreamResponse = await handler(request)
    if "X-Request-Id" in response.headers:
        span.set_attribute("periodya.request_id", response.headers["X-Request-Id"])
    return response


@contextmanager
def span(name: str, attributes: dict[str, str]) -> Iterator[None]:
    """A span around a block when tracing is on; nothing at all when it is off."""
    if not _state.get("on"):
        yield
        return
    from opentelemetry import trace

    with trace.get_tracer("periodya").start_as_current_span(name, attributes=attributes):
        yield
