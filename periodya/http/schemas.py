"""Request bodies. Strict: integers must be JSON integers, unknown fields are refused."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from pydantic.alias_generators import to_camel

from periodya.domain.money import CURRENCIES
from periodya.errors import BadRequest

Id = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
Currency = Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$", json_schema_extra={"enum": sorted(CURRENCIES)})]
Amount = Annotated[StrictInt, Field(gt=0, lt=2**62)]
Fee = Annotated[StrictInt, Field(ge=0, lt=2**62)]
# a blank reason is refused (422) by the handler after strip(); the schema says so with a pattern
Reason = Annotated[StrictStr, Field(min_length=1, max_length=1000, json_schema_extra={"pattern": r"\S"})]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False, frozen=True)


class CreateEscrow(Body):
    escrow_id: Id
    amount: Amount
    currency: Currency


class ReleaseEscrow(Body):
    payee_id: Id
    amount: Amount
    fee_amount: Fee = 0


class RefundEscrow(Body):
    amount: Amount


class CreatePayout(Body):
    payee_id: Id
    amount: Amount
    currency: Currency
    destination: Annotated[StrictStr, Field(min_length=1, max_length=256)]


B = TypeVar("B", bound=BaseModel)


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise BadRequest("a JSON body is required")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    refusal = check_tree(data)
    if refusal:
        raise BadRequest(refusal)
    return data


MAX_DEPTH = 32
"""Deeper JSON is refused (orjson itself parses up to 1,024 levels; no request body here needs more
than 3). Checked without recursion, so no nesting can reach Python's recursion limit."""


def check_tree(value: Any, max_depth: int = MAX_DEPTH) -> str | None:
    """Why a parsed JSON value is refused at the door, or None. PostgreSQL text and jsonb cannot hold
    U+0000, so it is refused here rather than failing at write time; so is nesting over `max_depth`.
    Iterative (an explicit stack): the cost is one visit per value, whatever the shape."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "strings must not contain the NUL character (\\u0000)"
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                return f"the JSON nests deeper than {max_depth} levels"
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)  # keys are strings: checked at this depth
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
    return None


async def parse(request: web.Request, model: type[B], *, optional: bool = False) -> tuple[B, Any]:
    """Parse and validate the body; returns the model and the raw JSON (for idempotency hashing)."""
    raw = await request.read()
    data: Any = {} if optional and not raw.strip() else await read_json(request)
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        return model.model_validate(data), data
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        raise BadRequest("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors) from None
