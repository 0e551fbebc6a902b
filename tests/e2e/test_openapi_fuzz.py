"""Schemathesis against a real `periodya serve` process and its own /openapi.json, with every auth
scheme the document declares: the service token, an admin session (logged in through POST
/api/auth/login, and again whenever a fuzzed logout revoked it) and the cron secret (configured in the
first run too, and alone in a second run of the run endpoints, so there it is the credential used; the
admin session on POST run is exercised by tests/integration/test_openapi.py's generated client).

Every check schemathesis has (`--checks all`): no 5xx, every status and media type documented, every
body valid against its documented schema (problem+json with the documented `code`s included), valid
data accepted, invalid data refused, the 405s of undeclared methods, ... and afterwards the server's log
holds no traceback and no "unhandled error". Bounded for CI: a fixed seed and MAX_EXAMPLES per
operation (about a minute here).

Where our rules are stricter than JSON Schema can say, the check is scoped here, each with its reason:
* amounts: `1.0` is refused (StrictInt) though JSON Schema calls it an integer: fuzz_hooks.py;
* POST and GET /api/admin/ops/run/{job}: `mode` is allowed only with job=sentinel, a dependency between a
  path and a query parameter OpenAPI cannot state, so 422 is an accepted answer to schema-valid data there;
* GET /api/admin/payouts: `cursor` is opaque (only a `nextCursor` this API returned is one), so 400 is an
  accepted answer to schema-valid data there;
* POST /api/admin/login-throttle/unlock: `address` must parse as an IP address and one of `email` and
  `address` must be given, which the document says in words only, so 400 is an accepted answer there;
* POST /api/webhooks/provider: Stripe-Signature is an HMAC over the raw body that no schema can generate,
  so 400 INVALID_SIGNATURE is an accepted answer to schema-valid data there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CRON_SECRET, SERVICE_TOKEN, database_name
from tests.e2e.procs import ADMIN_EMAIL, ADMIN_PASSWORD, base_env, create_user, fresh_database, start_server

SEED = 20261207
MAX_EXAMPLES = 20
ROOT = Path(__file__).resolve().parents[2]
SCOPED = """
[[operations]]
include-operation-id = "runJob"
checks.positive_data_acceptance.expected-statuses = ["2XX", "401", "403", "404", "409", "422"]

[[operations]]
include-operation-id = "runJobByCron"
checks.positive_data_acceptance.expected-statuses = ["2XX", "401", "403", "404", "409", "422"]

[[operations]]
include-operation-id = "listAdminPayouts"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400"]

[[operations]]
include-operation-id = "unlockLoginThrottle"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400"]

[[operations]]
include-operation-id = "receiveProviderWebhook"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "409"]
"""


def config(*, service: bool, admin: bool, cron: bool) -> str:
    parts = [f"seed = {SEED}", "workers = 1", "[generation]", f"max-examples = {MAX_EXAMPLES}"]
    if service:
        parts += ["[auth.openapi.serviceToken]", f'bearer = "{SERVICE_TOKEN}"']
    if cron:
        parts += ["[auth.openapi.cronSecret]", f'bearer = "{CRON_SECRET}"']
    if admin:
        parts += ["[auth.dynamic.openapi.adminSession]", 'path = "/api/auth/login"', 'extract_selector = "/token"',
                  f'payload = {{ email = "{ADMIN_EMAIL}", password = "{ADMIN_PASSWORD}" }}']
    return "\n".join(parts) + "\n" + SCOPED


@pytest.fixture(scope="module")
async def server(server_url: str, template_url: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[tuple[str, Path]]:
    log_dir = tmp_path_factory.mktemp("fuzz")
    async with fresh_database(server_url, database_name(template_url), "fuzz") as url:
        env = base_env(url, extra={"PERIODYA_LOG_LEVEL": "info"})
        await create_user(env, log_dir, ADMIN_EMAIL, ADMIN_PASSWORD)
        proc, api = await start_server(env, log_dir)
        try:
            yield api, proc.log
        finally:
            await proc.stop()


def schemathesis_run(api: str, work: Path, toml: str, *args: str) -> dict[str, Any]:
    (work / "schemathesis.toml").write_text(toml)
    report = work / "report.json"
    cli = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(work / "schemathesis.toml"), "run",
           f"{api}/openapi.json", "--checks", "all", "--report", "json", "--report-json-path", str(report),
           "--warnings", "off", *args]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.fuzz_hooks", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cli, cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False)
    (work / "output.txt").write_text(done.stdout + done.stderr)
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(report.read_text())
    result["output"] = done.stdout
    print(f"schemathesis {result['schemathesis_version']} seed {result['seed']}: operations "
          f"{result['operations']['tested']}/{result['operations']['total']} tested, test cases "
          f"{result['test_cases']['generated']} generated, {result['test_cases']['unique_failures']} unique "
          f"failures, {len(result['errors'])} errors, {result['running_time']:.1f} s")
    return result


KNOWN: dict[tuple[str, str], str] = {
    # (schemathesis failure code, operation): the defect, fixed by another change (h2-hostile's hostile-input
    # work); the run still fails on anything not listed here.
    ("ST101", "GET /api/admin/ops/alerts"): "NUL (%00) in the `code` query parameter reaches PostgreSQL: 500 "
                                            "CharacterNotInRepertoireError instead of 400",
    ("ST103", "GET /api/admin/ops/alerts"): "the same 500 is an undocumented status",
}
KNOWN_TRACEBACKS = {
    # (request path or "" for the HTTP parser, text in the traceback): the defect, as for KNOWN
    ("/api/admin/ops/alerts", "CharacterNotInRepertoireError"): "NUL in a query parameter: 500",
    ("", "aiohttp.http_exceptions.BadHttpMessage"): "a request aiohttp's parser refuses (a NUL byte in a header "
                                                    "value) is answered 400 but logged with a traceback",
}


def tracebacks(log: Path, offset: int = 0) -> tuple[list[str], list[str]]:
    """(unknown, known) tracebacks in the server's log: structlog's JSON lines carry theirs in `exception`;
    a plain `Traceback` block (aiohttp's own logger) runs until the next JSON line."""
    unknown: list[str] = []
    known: list[str] = []

    def classify(path: str, trace: str) -> None:
        for (where, kind), why in KNOWN_TRACEBACKS.items():
            if where == path and kind in trace:
                known.append(why)
                return
        unknown.append(f"{path or 'log'}: {trace[-1500:]}")

    block: list[str] | None = None
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    for line in [*text.splitlines(), "{}"]:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if entry is None:
            if line.startswith("Traceback"):
                block = [line]
            elif block is not None:
                block.append(line)
            continue
        if block is not None:
            classify("", "\n".join(block))
            block = None
        if isinstance(entry, dict) and ("exception" in entry or entry.get("event") == "unhandled error"):
            classify(str(entry.get("path", "")), str(entry.get("exception", "")))
    return unknown, known


def assert_clean(result: dict[str, Any], log: Path, offset: int) -> None:
    """No failure and no traceback, except the KNOWN defects: then the test is an xfail naming them."""
    found = [(f["code"], op) for f in result["failures"] for op in f["operations"]]
    unknown = [f for f in found if f not in KNOWN]
    assert not unknown and not result["errors"], f"{unknown} {result['errors']}\n" + result["output"][-12000:]
    bad_logs, known_logs = tracebacks(log, offset)
    assert not bad_logs, "\n".join(bad_logs[:20])
    if found or known_logs:
        pytest.xfail("known defects only (h2-hostile fixes them): " + "; ".join(sorted({KNOWN[f] for f in found})) +
                     f"; log: {sorted(set(known_logs))} ({len(known_logs)} tracebacks)")


def test_fuzz_every_operation_with_service_token_and_admin_session(server: tuple[str, Path], tmp_path: Path) -> None:
    """Every operation but login (fuzzed in the cron run below: its failed logins would throttle this
    run's own re-logins, 20 per address) and GET /openapi.json (schemathesis leaves out the document it
    was given; openapi-spec-validator checks that one, tests/integration/test_openapi.py)."""
    api, log = server
    offset = log.stat().st_size
    result = schemathesis_run(api, tmp_path, config(service=True, admin=True, cron=True),
                              "--exclude-operation-id", "login")
    assert result["operations"]["tested"] == result["operations"]["total"] - 1 >= 27
    assert not result["warnings"].get("missing_auth"), result["warnings"]  # every credential was accepted
    assert not result["auth"]["reauth_broke"]
    assert_clean(result, log, offset)


def test_fuzz_the_run_endpoints_with_the_cron_secret_and_login(server: tuple[str, Path], tmp_path: Path) -> None:
    api, log = server
    offset = log.stat().st_size
    result = schemathesis_run(api, tmp_path, config(service=False, admin=False, cron=True),
                              "--include-operation-id-regex", "^(runJob.*|login)$",  # every run endpoint
                              "--phases", "examples,coverage,fuzzing")  # the links' targets are not selected
    assert result["operations"]["tested"] >= 2
    assert not result["warnings"].get("missing_auth"), result["warnings"]
    assert_clean(result, log, offset)
