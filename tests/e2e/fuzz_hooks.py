"""Schemathesis hooks for tests/e2e/test_openapi_fuzz.py (loaded by the schemathesis CLI through
SCHEMATHESIS_HOOKS).

Integral floats become JSON integers. JSON Schema counts 3357.0 as an integer, so schemathesis sends it
as a *valid* amount and expects it accepted; our parser refuses it on purpose (StrictInt: an amount is an
integer in minor units, and `1.0` on the wire is a client bug we want to see, not silently round). No
JSON Schema keyword can tell 1 from 1.0 (the document marks amounts `format: int64` and says so), so
the fuzzer's generated bodies are given the integers our contract means. Fractional values such as 1.5
are left alone: they violate `type: integer` and must still be refused, and are checked to be.
"""

from __future__ import annotations

from typing import Any

import schemathesis


def integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if isinstance(case.body, dict | list):
        case.body = integral(case.body)
