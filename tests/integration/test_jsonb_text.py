"""`hashing.jsonb_text` reproduces PostgreSQL's jsonb text output exactly, so a hash computed by the
database over `data::text` can be recomputed by anyone from the exported JSON."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from periodya.eventstore.hashing import jsonb_text

SURROGATES: Any = ("Cs",)
text = st.text(alphabet=st.characters(blacklist_categories=SURROGATES, blacklist_characters="\x00"), max_size=12)
scalars = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | text
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=5),
                      max_leaves=25)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.dictionaries(text, values, max_size=6))
async def test_matches_postgres(pool: asyncpg.Pool, value: dict) -> None:  # type: ignore[type-arg]
    assert jsonb_text(value) == await pool.fetchval("SELECT $1::text::jsonb::text", orjson.dumps(value).decode())


@pytest.mark.parametrize("value", [
    {"b": 1, "a": 2, "aa": 3, "é": 4, "z": 5},  # length first, then bytes: "é" is two bytes
    {"s": "quote\" back\\ nl\n tab\t cr\r ff\f bs\b ctl\x01\x1f del\x7f ünï 😀"},
    {"nested": {"list": [1, [], {}, None, True, False, -5]}},
])
async def test_known_tricky_values(pool: asyncpg.Pool, value: dict) -> None:  # type: ignore[type-arg]
    assert jsonb_text(value) == await pool.fetchval("SELECT $1::text::jsonb::text", orjson.dumps(value).decode())


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError, match="integer minor units"):
        jsonb_text({"amount": 1.5})
