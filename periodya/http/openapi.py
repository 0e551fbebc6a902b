"""The OpenAPI 3.1 document, built from the running app's route table and the pydantic models that
validate its requests (never written by hand beside them).

* Which operations exist: every route of `app.router` (a GET route's implicit HEAD twin aside), each
  looked up by (method, path template) in periodya/http/operations.OPERATIONS. `drift(app)` lists a
  route with no entry and an entry with no route; the tests fail on either, so they cannot drift.
* Request bodies: the handlers' own pydantic models (schemas.CreateEscrow, ...), in validation mode.
* Responses: periodya/http/api_models, closed objects; every error is application/problem+json with
  the `status` fixed and `code` enumerated per operation.
* Security: derived from the path by auth.py's rules (`security_for`).

Amounts: JSON Schema counts 1.0 as an integer, our parser does not (StrictInt: `1.0`, `"1"` and `true`
are 400). The schema cannot say that, so every integer is marked `format: int64` and the bodies'
descriptions state it; the fuzzing test generates integers as JSON integers, so it never relies on it.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from periodya.http import api_models, auth
from periodya.http.operations import ID_SCHEMA, OPERATIONS, Op

PROBLEM = "application/problem+json"
REQUEST_ID = {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"}
SPEC_KEY = web.AppKey("openapi_spec", dict)  # {"spec": the document}, filled on first use
STRICT_INTEGERS = ("Integers are JSON integers in minor units: `1.0`, `\"1\"` and `true` are refused with 400 "
                   "VALIDATION_FAILED, although JSON Schema counts 1.0 as an integer.")
SECURITY_SCHEMES = {
    "serviceToken": {"type": "http", "scheme": "bearer",
                     "description": "PERIODYA_SERVICE_TOKEN: the platform backend (/api/escrows*, /api/payouts*, "
                                    "/api/payees*)"},
    "adminSession": {"type": "http", "scheme": "bearer",
                     "description": "a session token from POST /api/auth/login of a user with platform_admin"},
    "cronSecret": {"type": "http", "scheme": "bearer",
                   "description": "PERIODYA_CRON_SECRET: the cron runner, on the run endpoints only"},
    "metricsToken": {"type": "http", "scheme": "bearer",
                     "description": "PERIODYA_METRICS_TOKEN, required by GET /metrics only when it is set"},
}
TAGS = ["escrows", "payees", "payouts", "webhooks", "auth", "ops", "audit", "probes", "meta"]
_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def routed(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves; a GET route's HEAD twin is not listed.
    The ops console (/ops/: its page, assets and cookie session; README "The ops console") is a client of
    this API, not part of it, and is left out."""
    found = {(r.method, r.resource.canonical) for r in app.router.routes()
             if r.resource is not None and not r.resource.canonical.startswith("/ops/")}
    return {(m, p) for m, p in found if not (m == "HEAD" and ("GET", p) in found)}


def drift(app: web.Application) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(routes without a documented operation, documented operations without a route)."""
    routes = routed(app)
    return sorted(routes - OPERATIONS.keys()), sorted(OPERATIONS.keys() - routes)


def security_for(method: str, path: str) -> list[dict[str, list[str]]]:
    """The schemes a route accepts, by the rules auth.authenticate applies (tests check the two agree)."""
    if path.startswith(auth._PLATFORM):
        return [{"serviceToken": []}]
    if path.startswith("/api/admin/ops/run/"):  # GET is for Vercel Cron: the cron secret only
        return [{"adminSession": []}, {"cronSecret": []}] if method == "POST" else [{"cronSecret": []}]
    if path == "/metrics":  # `{}`: no credential needed unless PERIODYA_METRICS_TOKEN is set
        return [{}, {"metricsToken": []}]
    if path.startswith("/api/admin/") or path in ("/api/auth/logout", "/api/auth/me"):
        return [{"adminSession": []}]
    return []


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if options and len(options) == 2 and {"type": "null"} in options:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**rest, **next(o for o in options if o != {"type": "null"})}
    return schema


def _int64(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "integer":
            node.setdefault("format", "int64")
        for value in node.values():
            _int64(value)
    elif isinstance(node, list):
        for value in node:
            _int64(value)


def _problems(op: Op, method: str, path: str, params: list[str]) -> dict[int, tuple[str, ...]]:
    """The problem answers an operation may give: its own plus those every route of its kind gives."""
    out: dict[int, set[str]] = {503: {"UNAVAILABLE"}}
    schemes = {name for s in security_for(method, path) for name in s}
    if op.body or op.query or params or op.headers:
        out.setdefault(400, set()).add("VALIDATION_FAILED")
    if op.body:
        out[413] = {"PAYLOAD_TOO_LARGE"}
    if params:
        out.setdefault(404, set()).add("NOT_FOUND")
    if schemes:
        out[401] = {"UNAUTHENTICATED"}
    if "adminSession" in schemes and path.startswith("/api/admin/"):
        out[403] = {"FORBIDDEN"}
    for status, codes in op.problems.items():
        out.setdefault(status, set()).update(codes)
    return {s: tuple(sorted(c)) for s, c in sorted(out.items())}


def _problem_response(status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    schema = {"allOf": [{"$ref": "#/components/schemas/Problem"},
                        {"type": "object", "properties": {"status": {"const": status}, "code": {"enum": list(codes)}}}]}
    headers: dict[str, Any] = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    if status == 401:
        headers["WWW-Authenticate"] = {"schema": {"type": "string"}, "description": "Bearer"}
    if status in (429, 503):
        headers["Retry-After"] = {"schema": {"type": "string"}, "description": "seconds"}
    return {"description": ", ".join(codes), "headers": headers, "content": {PROBLEM: {"schema": schema}}}


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required,
             "schema": _strip_null({k: v for k, v in prop.items() if k not in ("default", "title")})}
            for name, prop in schema["properties"].items()]


def _operation(op: Op, method: str, path: str, refs: dict[Any, Any]) -> dict[str, Any]:
    params = _PARAM.findall(path)
    parameters = [{"name": n, "in": "path", "required": True, "schema": op.path.get(n, ID_SCHEMA)} for n in params]
    parameters += [{"name": name, "in": "header", "required": required, "schema": schema}
                   for name, (schema, required) in op.headers.items()]
    parameters += _query(op.query) if op.query else []
    parameters.append({"name": "X-Request-Id", "in": "header", "required": False, "schema": {"type": "string"},
                       "description": "echoed and logged when it is 1-128 of [A-Za-z0-9._:-]; any other value is "
                                      "not refused but replaced by a generated id (so the schema does not constrain "
                                      "it)"})
    ok: dict[str, Any] = {"description": op.summary, "headers": {"X-Request-Id": {"$ref": "#/components/headers/"
                                                                                          "X-Request-Id"}}}
    if op.ok != 204:
        schema = refs[(op.response, "serialization")] if op.response else (
            {"type": "object"} if op.media == "application/json" else {"type": "string"})
        medias = (op.media,) if isinstance(op.media, str) else op.media
        ok["content"] = {media: {"schema": schema} for media in medias}
    out: dict[str, Any] = {
        "operationId": op.operation_id, "summary": op.summary, "tags": [op.tag], "parameters": parameters,
        "responses": {str(op.ok): ok, **{str(s): _problem_response(s, c)
                                         for s, c in _problems(op, method, path, params).items()}},
        "security": security_for(method, path)}
    if op.description:
        out["description"] = op.description
    if op.links:
        ok["links"] = {name: {"operationId": target, "parameters": params}
                       for name, (target, params) in op.links.items()}
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required, "description": STRICT_INTEGERS,
                              "content": {"application/json": {"schema": refs[(op.body, "validation")]}}}
    return out


def build(app: web.Application, *, version: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app`: its routed, documented operations."""
    documented = sorted(routed(app) & OPERATIONS.keys(), key=lambda k: (k[1], k[0]))
    models: list[tuple[type[BaseModel], Any]] = [(api_models.Problem, "serialization")]
    for key in documented:
        op = OPERATIONS[key]
        models += [(op.response, "serialization")] if op.response else []
        models += [(op.body, "validation")] if op.body else []
    refs, defs = models_json_schema(list(dict.fromkeys(models)), by_alias=True,
                                    ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})
    _int64(schemas)
    paths: dict[str, dict[str, Any]] = {}
    for method, path in documented:
        paths.setdefault(path, {})[method.lower()] = _operation(OPERATIONS[(method, path)], method, path, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Periodya ledger", "version": version or _version(),
                 "description": "Escrow and payout ledger. Money is integer minor units with an ISO 4217 code. "
                                + STRICT_INTEGERS + " Errors are RFC 9457 application/problem+json with a stable "
                                "`code`."},
        "tags": [{"name": t} for t in TAGS if any(op.tag == t for op in OPERATIONS.values())],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {k: v for k, v in SECURITY_SCHEMES.items() if any(
                           k in req for item in paths.values() for op in item.values() for req in op["security"])},
                       "headers": {"X-Request-Id": {"schema": REQUEST_ID, "description": "the request's id"}}},
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("periodya")
    except PackageNotFoundError:
        return "0"


async def get_openapi(request: web.Request) -> web.Response:
    cache = request.app[SPEC_KEY]
    if "spec" not in cache:  # built on first use: every route is registered by then
        cache["spec"] = build(request.app)
    return web.json_response(cache["spec"])


def setup(app: web.Application) -> None:
    """Serve GET /openapi.json and the /docs page (periodya/http/docs.py)."""
    from periodya.http import docs

    app[SPEC_KEY] = {}
    app.router.add_get("/openapi.json", get_openapi)
    docs.setup(app)
