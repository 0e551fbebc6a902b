"""Value types of the event store: what is appended, what is read back, and where a reader stands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

ANY: Final = -1
"""Expected version: append whatever the stream's current version."""
NO_STREAM: Final = 0
"""Expected version: the stream must not exist yet."""


@dataclass(frozen=True)
class NewEvent:
    """An event about to be appended. `data` and `metadata` must be JSON-compatible (no floats)."""

    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamAppend:
    """Events for one stream, appended only if the stream is at `expected_version` (or ANY)."""

    stream_id: str
    expected_version: int
    events: Sequence[NewEvent]


@dataclass(frozen=True, order=True)
class Position:
    """A point in commit-safe global order: (writing transaction id, sequence number)."""

    tx: int
    seq: int


START: Final = Position(0, 0)


@dataclass(frozen=True)
class RecordedEvent:
    seq: int
    tx: int
    stream_id: str
    stream_version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime

    @property
    def position(self) -> Position:
        return Position(self.tx, self.seq)
