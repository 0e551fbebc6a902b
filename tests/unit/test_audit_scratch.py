"""The one validator of scratch schema names (audit.scratch), which are spliced into SQL text."""

from __future__ import annotations

import pytest

from periodya.audit import scratch


@pytest.mark.parametrize("name", ["replay_scratch", "replay_0a1b2c3d", "_x", "a" * 63])
def test_plain_lower_case_identifiers_are_usable(name: str) -> None:
    assert scratch.checked(name) == name


@pytest.mark.parametrize("name", ["periodya", "public", "pg_catalog", "information_schema", "pg_temp_1", "",
                                  "Replay", "1replay", "replay-x", "replay; DROP SCHEMA periodya", "a" * 64])
def test_data_schemas_and_anything_but_a_plain_identifier_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a usable scratch schema name"):
        scratch.checked(name)


def test_new_names_are_usable_and_distinct() -> None:
    names = {scratch.new_name("bench") for _ in range(50)}
    assert len(names) == 50
    assert all(scratch.checked(n).startswith("bench_") for n in names)
