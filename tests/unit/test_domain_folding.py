"""folding.changed is dataclasses.replace for plain frozen dataclasses; these tests hold the classes
folded through it (and RecordedEvent, built the same way by row_to_event) to that rule."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from periodya.domain.escrow import EscrowState
from periodya.domain.folding import changed
from periodya.domain.payout import PayoutState
from periodya.eventstore.model import RecordedEvent
from periodya.projections.outbox import OutboxTask

FOLDED = [PayoutState, EscrowState, OutboxTask, RecordedEvent]


@pytest.mark.parametrize("cls", FOLDED, ids=lambda c: c.__name__)
def test_folded_classes_are_plain_dataclasses(cls: type) -> None:
    """A __post_init__ or InitVar would be skipped by changed(): it must be removed from this list first."""
    assert dataclasses.is_dataclass(cls)
    assert not hasattr(cls, "__post_init__"), f"{cls.__name__} gained a __post_init__"
    assert not any(isinstance(f.type, dataclasses.InitVar) or f.type == "InitVar" for f in dataclasses.fields(cls))


def test_changed_equals_replace_field_for_field_and_in_order() -> None:
    state = PayoutState("p1", "payee", 500, "EUR", "ba_1", version=1)
    expected = dataclasses.replace(state, status="SENT", attempts=2, version=2)
    got = changed(state, status="SENT", attempts=2, version=2)
    assert got == expected and type(got) is PayoutState
    assert list(vars(got)) == list(vars(expected))  # rows.values() relies on declaration order
    assert state.status != "SENT" and state.version == 1  # the original is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.status = "PAID"  # type: ignore[misc]


def test_changed_on_a_recorded_event() -> None:
    ev = RecordedEvent(1, 7, "payout-p1", 1, "PayoutRequested", {}, {}, datetime(2026, 1, 1, tzinfo=UTC))
    assert changed(ev, seq=2) == dataclasses.replace(ev, seq=2)
