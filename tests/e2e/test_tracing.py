"""Optional tracing: a real `periodya serve` with OTEL_EXPORTER_OTLP_ENDPOINT set exports its spans over
OTLP/HTTP to a receiver in this test; the server span carries the request id and the payout id, and the
database queries are spans too."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import SERVICE_TOKEN
from tests.e2e.procs import base_env, start_server

trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value")) if any_value.WhichOneof("value") else None


async def test_spans_carry_the_request_id_and_payout_id(database_url: str, tmp_path: Path) -> None:
    spans: list[tuple[str, dict[str, Any]]] = []
    arrived = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        message = trace_service.ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                spans.extend((s.name, {a.key: _value(a.value) for a in s.attributes}) for s in scope.spans)
        arrived.set()
        body = trace_service.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    receiver = web.Application()
    receiver.router.add_post("/v1/traces", receive)
    runner = web.AppRunner(receiver)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    env = base_env(database_url, extra={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                                        "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "periodya-test"})
    server, api = await start_server(env, tmp_path)
    try:
        async with aiohttp.ClientSession() as http, http.get(
                f"{api}/api/payouts/po-traced", headers={"Authorization": f"Bearer {SERVICE_TOKEN}",
                                                         "X-Request-Id": "trace-req-1"}) as r:
            assert r.status == 404

        def server_span() -> dict[str, Any] | None:
            return next((a for _, a in spans if a.get("periodya.request_id") == "trace-req-1"), None)

        def complete() -> bool:
            return server_span() is not None and any("db.system" in a or "db.system.name" in a for _, a in spans)

        async with asyncio.timeout(15):
            while not complete():
                arrived.clear()
                await arrived.wait()
        assert server_span()["periodya.payout_id"] == "po-traced"  # type: ignore[index]
    finally:
        await server.stop()
        await runner.cleanup()
    assert "Traceback" not in server.output()
