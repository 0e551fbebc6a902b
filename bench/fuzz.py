"""Hostile HTTP at a real `periodya serve`: no 5xx, problem+json on every error, bounded log bytes per request.

Hypothesis builds raw HTTP/1.1 requests, written to a plain socket (so nothing on the client side tidies
them up): random methods; paths from the app's route table with random ids (long, non-ASCII, percent-
encoded bytes, NUL); random query strings (also the ops filters and batch); random header bytes (non-
UTF-8, huge, duplicated) and bodies (JSON nested up to 1,100 deep, wide, NUL, integers past 64 bits,
wrong types, or raw bytes); under each kind of credential (none, service token, cron secret, admin
session, garbage bytes). Every answer must be below 500; every error application/problem+json with a
`code`; and the server's log may grow by at most MAX_LOG_BYTES per request.

`python -m bench fuzz [--examples N] [--seed S]` starts the provider simulator and `periodya serve` on a
scratch database (DATABASE_URL or the embedded server), creates and logs in an admin, and runs N
examples; tests/e2e/test_http_fuzz.py runs the same engine in CI with a fixed budget and seed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

MAX_LOG_BYTES = 4096
"""A request may add at most this much to the server's log (one line, or a few at info level; a traceback
is tens of kilobytes)."""
CREDENTIALS = ("none", "service", "cron", "admin", "garbage")
PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass
class Target:
    """A running server: where it listens, its log file, and a bearer token per credential kind."""

    host: str
    port: int
    log: Path
    tokens: dict[str, str]
    webhook_secret: str | None = None
    """When set, some webhook deliveries are signed with it: malformed but correctly signed provider events."""

    def log_size(self) -> int:
        return self.log.stat().st_size


@dataclass
class Stats:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    log_bytes: int = 0
    max_log_bytes: int = 0

    def line(self) -> str:
        top = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (f"fuzz: {self.requests} requests, 0 failures, log {self.log_bytes} bytes "
                f"({self.log_bytes / max(self.requests, 1):.0f}/request, max {self.max_log_bytes}); statuses {top}")


def route_table() -> list[tuple[str, str]]:
    """(method, pattern) of every route of the real app."""
    from periodya.config import Settings
    from periodya.http.app import create_app

    app = create_app(Settings.from_env({}), None)  # type: ignore[arg-type]  # routes only: no pool needed
    return sorted({(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None})


# --- what a stranger sends ------------------------------------------------------------------------------

def strategies(target: Target) -> Any:
    """The Hypothesis strategy of one raw request (bytes) against `target`."""
    from hypothesis import strategies as st

    routes = route_table()
    plain = st.from_regex(r"[A-Za-z0-9_.:-]{1,40}", fullmatch=True)
    ids = st.one_of(plain, plain, plain, st.text(max_size=60),
                    st.binary(max_size=40).map(lambda b: quote(b, safe="")), st.just("x" * 10_000),
                    st.sampled_from(["pay_unknown", "esc-1", "%00", "..", "%2F", "\u00b2", "%C2%B2", "%ff%fe"]))

    @st.composite
    def path(draw: Any) -> tuple[str, str]:
        method, pattern = draw(st.sampled_from(routes))
        if target.webhook_secret and draw(st.integers(0, 5)) == 0:
            method, pattern = "POST", "/api/webhooks/provider"  # more deliveries, half of them signed
        if draw(st.integers(0, 9)) == 0:
            method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "BREW"]))
        filled = PLACEHOLDER.sub(lambda m: _path_safe(draw(ids)), pattern)
        return method, filled

    query_value = st.one_of(st.text(max_size=30), st.sampled_from(
        ["OPEN", "open", "critical", "CRITICAL", "%00", "\u00b2", "99999999999999999999", "-1", "0", "full", "recent",
         "FINALIZE_MISSING", "x" * 5000]))
    query = st.lists(st.tuples(st.sampled_from(["status", "severity", "code", "batch", "mode", "limit", "x", ""]),
                               query_value), max_size=4)
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                     st.just("a\x00b"), st.just("x" * 3000))
    json_value = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                            st.dictionaries(st.text(max_size=12), inner, max_size=6)),
                              max_leaves=30)
    fields = st.fixed_dictionaries({}, optional={
        k: json_value for k in ("escrowId", "amount", "currency", "payeeId", "feeAmount", "destination", "email",
                                "password", "reason", "note", "id", "type", "data")})
    body = st.one_of(
        st.just(b""), fields.map(_json), json_value.map(_json), st.binary(max_size=200),
        st.integers(100, 1100).map(lambda n: b'{"email":' * 1 + b"[" * n + b"]" * n + b',"password":"x"}'),
        st.integers(100, 1100).map(lambda n: b"[" * n + b"]" * n),
        st.integers(100, 1100).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.just(b'{"amount": 123456789012345678901234567890}'), st.just(b'{"escrowId": "\\u0000"}'))
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.encode)
    header_value = st.one_of(printable, printable, printable, st.binary(max_size=40), st.just(b"\xff\xfe"),
                             st.text(max_size=40).map(lambda s: s.encode("utf-8")), st.just(b"x" * 9000),
                             st.sampled_from([b"application/json", b"chunked", b"gzip", b"t=1,v1=00"]))
    extra_headers = st.lists(st.tuples(st.sampled_from(
        [b"X-Request-Id", b"Idempotency-Key", b"Content-Type", b"Stripe-Signature", b"Authorization", b"X-Junk",
         b"Accept", b"Transfer-Encoding", b"Content-Encoding"]), header_value), max_size=3)
    provider_event = st.fixed_dictionaries({
        "id": st.one_of(plain, plain, plain, json_value, st.just("evt_\x00"), st.just("evt\nx")),
        "type": st.one_of(st.sampled_from(["payout.paid", "payout.failed", "payout.updated", "payout.canceled",
                                           "balance.available"]), json_value),
        "data": st.fixed_dictionaries({"object": st.fixed_dictionaries({
            "id": st.one_of(plain, json_value), "status": st.sampled_from(["paid", "failed", "pending", "?"])},
            optional={"amount": st.one_of(st.integers(1, 10**6), json_value),
                      "currency": st.one_of(st.just("usd"), json_value),
                      "metadata": st.one_of(st.fixed_dictionaries({"payout_id": json_value}), json_value)})})},
        optional={"created": json_value})
    credential = st.sampled_from(CREDENTIALS)
    garbage = st.one_of(st.binary(min_size=1, max_size=64), st.just(b"\xff\xfe"), st.just(b"a" * 9000))

    @st.composite
    def request(draw: Any) -> bytes:
        method, target_path = draw(path())
        pairs = draw(query)
        if pairs:
            target_path += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='%')}" for k, v in pairs)
        kind = draw(credential)
        if kind == "admin" and target_path.startswith("/api/auth/logout"):
            kind = "none"  # keep the admin session alive for the rest of the run
        head = [f"{method} {target_path} HTTP/1.1".encode("utf-8", "surrogateescape"), b"Host: fuzz",
                b"Connection: close"]
        if kind == "garbage":
            head.append(b"Authorization: Bearer " + draw(garbage).replace(b"\r", b"").replace(b"\n", b""))
        elif kind != "none":
            head.append(b"Authorization: Bearer " + target.tokens[kind].encode())
        for name, value in draw(extra_headers):
            head.append(name + b": " + value.replace(b"\r", b"").replace(b"\n", b""))
        payload = draw(body) if method not in ("GET", "HEAD") or draw(st.booleans()) else b""
        if target.webhook_secret and target_path.startswith("/api/webhooks/") and draw(st.booleans()):
            from periodya.provider.signing import sign

            payload = draw(provider_event.map(_json))
            head.append(b"Stripe-Signature: " + sign(payload, target.webhook_secret, int(time.time())).encode())
        head.append(b"Content-Length: " + str(len(payload)).encode())
        return b"\r\n".join(head) + b"\r\n\r\n" + payload

    return request()


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False).encode("utf-8", "surrogatepass")


def _path_safe(value: str) -> str:
    """A path segment as a client would put it on the wire: no '/', '?', '#' or whitespace left raw."""
    return "".join(c if c not in "/?# \t\r\n" and ord(c) > 31 else quote(c, safe="") for c in value)


# --- one exchange ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def exchange(target: Target, raw: bytes, timeout: float = 30.0) -> Answer:
    """Send `raw` on a new connection and read the answer until the server closes it."""
    with socket.create_connection((target.host, target.port), timeout=timeout) as s:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading all of an oversized request
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1."):
        raise AssertionError(f"no HTTP answer: {data[:200]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Answer(int(lines[0].split(" ")[1]), headers, body)


def check(raw: bytes, answer: Answer) -> None:
    """The contract for any request at all."""
    method = raw.split(b" ", 1)[0]
    where = f"{raw[:300]!r}{'...' if len(raw) > 300 else ''}"
    assert answer.status < 500, f"{answer.status} {answer.body[:300]!r} for {where}"
    if answer.status >= 400:
        assert answer.headers.get("content-type", "").startswith("application/problem+json"), (
            f"{answer.status} {answer.headers.get('content-type')} for {where}")
        if method != b"HEAD":
            problem = json.loads(answer.body)
            assert problem["code"] and problem["status"] == answer.status, (answer.body[:300], where)


def run(target: Target, examples: int, seed: int, stats: Stats | None = None) -> Stats:
    """Throw `examples` hostile requests at `target` (Hypothesis, fixed seed; shrinks a failure)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as with_seed

    stats = stats or Stats()

    @with_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              print_blob=True)
    @given(strategies(target))
    def one(raw: bytes) -> None:
        before = target.log_size()
        answer = exchange(target, raw)
        check(raw, answer)
        grown = _log_growth(target, before)
        assert grown <= MAX_LOG_BYTES, f"the log grew {grown} bytes for {raw[:300]!r}"
        stats.requests += 1
        stats.statuses[answer.status] += 1
        stats.log_bytes += grown
        stats.max_log_bytes = max(stats.max_log_bytes, grown)

    one()
    return stats


def _log_growth(target: Target, before: int) -> int:
    """Log bytes written for the last request: the answer is sent after the request's lines are written,
    but give the writer a moment anyway, until the size stops changing."""
    size = target.log_size()
    for _ in range(3):
        time.sleep(0.002)
        again = target.log_size()
        if again == size:
            break
        size = again
    return size - before


def hostile(target: Target) -> dict[str, bytes]:
    """The requests of issue 13's findings, for --measure: log bytes per request before and after a fix."""
    deep = b"[" * 800 + b"]" * 800

    def req(method: str, path: str, body: bytes = b"", auth: bytes | None = None, extra: bytes = b"") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n".encode()
        if auth is not None:
            head += b"Authorization: Bearer " + auth + b"\r\n"
        return head + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body

    service = target.tokens["service"].encode()
    return {
        "deep JSON login": req("POST", "/api/auth/login", b'{"email":' + deep + b',"password":"x"}'),
        "deep JSON escrow": req("POST", "/api/escrows", b'{"escrowId":' + deep + b"}", service),
        "non-UTF-8 bearer": req("GET", "/api/payees/p1/balances", auth=b"\xff\xfe"),
        "wrong bearer": req("GET", "/api/payees/p1/balances", auth=b"not-the-token"),
        "10,000-char path": req("GET", "/api/payees/" + "x" * 10_000 + "/balances", auth=service),
        "alerts code=%00": req("GET", "/api/admin/ops/alerts?code=%00", auth=target.tokens["admin"].encode()),
        "bad webhook signature": req("POST", "/api/webhooks/provider", b'{"id":"evt_1"}',
                                     extra=b"Stripe-Signature: t=1,v1=00\r\n"),
    }


def measure(target: Target, repeat: int) -> list[str]:
    lines = []
    for name, raw in hostile(target).items():
        before, statuses = target.log_size(), Counter[int]()
        for _ in range(repeat):
            statuses[exchange(target, raw).status] += 1
        grown = _log_growth(target, before)
        lines.append(f"{name:24} {len(raw):>7} B request  status {dict(statuses)}  "
                     f"log {grown / repeat:>9.0f} B/request")
    return lines


# --- `python -m bench fuzz` -----------------------------------------------------------------------------

@asynccontextmanager
async def running_target(database_url: str, log_dir: Path, *, log_level: str = "info") -> AsyncIterator[Target]:
    """The provider simulator and `periodya serve` on `database_url` (migrated), as real processes, with
    an admin created by the CLI and logged in over HTTP."""
    from bench import _common as c

    service, cron, email, password = uuid.uuid4().hex, uuid.uuid4().hex, "fuzz@example.com", uuid.uuid4().hex
    sim_port, api_port = c.free_port(), c.free_port()
    env = c.child_env({"DATABASE_URL": database_url, "PERIODYA_SERVICE_TOKEN": service, "PERIODYA_CRON_SECRET": cron,
                       "PERIODYA_PROVIDER_URL": f"http://127.0.0.1:{sim_port}", "PERIODYA_PROVIDER_API_KEY": "sk_fuzz",
                       "PERIODYA_WEBHOOK_SECRET": "whsec_fuzz", "PERIODYA_LOG_LEVEL": log_level})
    async with c.children(log_dir) as procs:
        await procs.periodya("provider-sim", ["provider-sim", "--port", str(sim_port)], env,
                             ready=f"http://127.0.0.1:{sim_port}/_sim/stats").start()
        await procs.periodya("serve", ["serve", "--host", "127.0.0.1", "--port", str(api_port)], env,
                             ready=f"http://127.0.0.1:{api_port}/livez").start()
        await c.create_admin(env, email, password)
        token = await c.login(f"http://127.0.0.1:{api_port}", email, password)
        yield Target("127.0.0.1", api_port, log_dir / "serve.log",
                     {"service": service, "cron": cron, "admin": token}, webhook_secret="whsec_fuzz")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5_000, help="requests to try (default 5000)")
    parser.add_argument("--seed", type=int, default=20261207, help="Hypothesis seed (default 20261207)")
    parser.add_argument("--log-level", default="info", help="the server's log level (default info, as shipped)")
    parser.add_argument("--measure", type=int, metavar="N", default=0,
                        help="instead: send each request of issue 13's findings N times, print log bytes/request")
    args = parser.parse_args(argv)

    async def go() -> int:
        from bench._common import scratch_database, server_url
        with tempfile.TemporaryDirectory(prefix="periodya-fuzz-") as tmp:
            async with scratch_database(server_url(), "fuzz") as url, \
                    running_target(url, Path(tmp), log_level=args.log_level) as target:
                if args.measure:
                    print("\n".join(await asyncio.to_thread(measure, target, args.measure)))
                    return 0
                started = time.monotonic()
                stats = await asyncio.to_thread(run, target, args.examples, args.seed)
                print(f"{stats.line()}; {time.monotonic() - started:.1f} s")
        return 0

    return asyncio.run(go())
