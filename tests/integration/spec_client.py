"""A tiny generic client generated at run time from an OpenAPI 3.1 document: it knows nothing of
Periodya but what /openapi.json says. `call(operationId, **kwargs)` finds the operation's method and
path, fills the path, query and header parameters the document declares (refusing unknown arguments
and missing required ones), checks the JSON body against the request schema, sends it, then checks the
answer: its status must be documented, its media type the documented one, its body valid against the
documented schema (JSON Schema 2020-12, as OpenAPI 3.1 schemas are).

Why not a code generator such as openapi-python-client: it writes a package of modules to import and
pulls in its own HTTP stack (httpx, attrs, typer, jinja2); this client is the same idea in ~80 lines,
runs offline, and its checks of each answer against the document are what the test is after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from jsonschema import Draft202012Validator


@dataclass
class Answer:
    status: int
    media: str
    body: Any
    headers: Any


class SpecError(AssertionError):
    pass


class SpecClient:
    def __init__(self, spec: dict[str, Any], base_url: str, http: aiohttp.ClientSession,
                 credentials: dict[str, str] | None = None) -> None:
        self.spec, self.base, self.http = spec, base_url.rstrip("/"), http
        self.credentials = credentials or {}  # security scheme name -> bearer token
        self.ops = {op["operationId"]: (method, path, op) for path, item in spec["paths"].items()
                    for method, op in item.items()}

    def check(self, schema: dict[str, Any], value: Any, what: str) -> None:
        root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": self.spec["components"],
                "allOf": [schema]}
        errors = sorted(Draft202012Validator(root).iter_errors(value), key=str)
        if errors:
            raise SpecError(f"{what}: {errors[0].message} at {list(errors[0].absolute_path)}")

    def _auth(self, op: dict[str, Any]) -> dict[str, str]:
        for requirement in op.get("security") or []:
            for scheme in requirement:
                if scheme in self.credentials:
                    return {"Authorization": f"Bearer {self.credentials[scheme]}"}
        return {}

    async def call(self, operation_id: str, body: Any = None, **params: str | int) -> Answer:
        method, path, op = self.ops[operation_id]
        query: dict[str, str | int] = {}
        headers = self._auth(op)
        for p in op.get("parameters", []):
            name = p["name"]
            value = params.pop(name, None)
            if value is None:
                if p["required"]:
                    raise SpecError(f"{operation_id}: missing required {p['in']} parameter {name}")
                continue
            self.check(p["schema"], value, f"{operation_id} parameter {name}")
            if p["in"] == "path":
                path = path.replace("{" + name + "}", str(value))
            elif p["in"] == "query":
                query[name] = value
            else:
                headers[name] = str(value)
        if params:
            raise SpecError(f"{operation_id}: the document declares no parameter {sorted(params)}")
        request_body = op.get("requestBody")
        if body is not None:
            if request_body is None:
                raise SpecError(f"{operation_id} takes no body")
            self.check(request_body["content"]["application/json"]["schema"], body, f"{operation_id} body")
        elif request_body and request_body["required"]:
            raise SpecError(f"{operation_id}: a body is required")
        async with self.http.request(method.upper(), self.base + path, params=query, headers=headers,
                                     json=body) as r:
            raw = await r.read()
            answer = Answer(r.status, r.content_type, None, r.headers)
        documented = op["responses"].get(str(answer.status))
        if documented is None:
            raise SpecError(f"{operation_id}: status {answer.status} is not documented ({raw[:300]!r})")
        content = documented.get("content")
        if content is None:
            if raw:
                raise SpecError(f"{operation_id}: {answer.status} is documented without content")
            return answer
        if answer.media not in content:
            raise SpecError(f"{operation_id}: {answer.status} answered {answer.media}, documented {list(content)}")
        answer.body = orjson.loads(raw) if answer.media.endswith("json") else raw.decode()
        self.check(content[answer.media]["schema"], answer.body, f"{operation_id} {answer.status} answer")
        return answer
