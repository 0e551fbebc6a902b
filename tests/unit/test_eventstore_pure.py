"""Pure parts of the event store: canonical JSON, lock keys, the registry and its upcasters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from periodya.errors import UnknownEventType
from periodya.eventstore import Event, EventRegistry, RecordedEvent
from periodya.eventstore.hashing import GENESIS, canonical_json, chain_hash, epoch_micros, lock_key


def test_canonical_json_sorts_keys_and_is_compact() -> None:
    assert canonical_json({"b": 1, "a": {"d": [1, 2], "c": "ż"}}) == '{"a":{"c":"ż","d":[1,2]},"b":1}'


def test_lock_keys_are_stable_signed_64_bit() -> None:
    assert lock_key("stream:x") == lock_key("stream:x") != lock_key("stream:y")
    assert -(2**63) <= lock_key("account:a") < 2**63


def test_lock_keys_are_pinned() -> None:
    """Processes of two versions running at once must take the same advisory lock for the same resource:
    the key of a name never changes (blake2b-64 of the name, big-endian, signed)."""
    assert lock_key("stream:x") == -5396274027526730907
    assert lock_key("stream:y") == -6833180525898695758
    assert lock_key("account:a") == -8861939736109332786
    assert lock_key("account:cash:platform:USD") == -5003381395789200994
    assert lock_key("stream:payout-po-1") == -5323852197296579649


def test_chain_hash_depends_on_every_field() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    base = chain_hash(GENESIS, "s", 1, "T", at, {"a": 1}, {})
    assert epoch_micros(at) == 1767225600000000
    variants = [chain_hash(b"\x01" * 32, "s", 1, "T", at, {"a": 1}, {}),
                chain_hash(GENESIS, "t", 1, "T", at, {"a": 1}, {}),
                chain_hash(GENESIS, "s", 2, "T", at, {"a": 1}, {}),
                chain_hash(GENESIS, "s", 1, "U", at, {"a": 1}, {}),
                chain_hash(GENESIS, "s", 1, "T", at.replace(microsecond=1), {"a": 1}, {}),
                chain_hash(GENESIS, "s", 1, "T", at, {"a": 2}, {}),
                chain_hash(GENESIS, "s", 1, "T", at, {"a": 1}, {"actor": "x"})]
    assert len({base, *variants}) == 8


registry = EventRegistry()


@registry.register
class ThingRenamed(Event):
    event_type = "ThingRenamed"
    schema_version = 3
    new_name: str
    reason: str


@registry.upcaster("ThingRenamed", 1)
def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {"new_name": data["name"]}


@registry.upcaster("ThingRenamed", 2)
def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "reason": "unknown"}


def _recorded(type_: str, data: dict[str, Any], meta: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(1, 1, "s", 1, type_, data, meta, datetime(2026, 1, 1, tzinfo=UTC))


def test_round_trip_through_registry() -> None:
    new = registry.to_new(ThingRenamed(new_name="x", reason="y"), {"actor": "a"})
    assert new.metadata == {"actor": "a", "schemaVersion": 3}
    assert registry.decode(_recorded(new.type, new.data, new.metadata)) == ThingRenamed(new_name="x", reason="y")


def test_old_versions_are_upcast_in_order() -> None:
    decoded = registry.decode(_recorded("ThingRenamed", {"name": "old"}, {}))
    assert decoded == ThingRenamed(new_name="old", reason="unknown")


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownEventType, match="NoSuchEvent"):
        registry.decode(_recorded("NoSuchEvent", {}, {}))
