"""An append turned into the database's arguments (schema.sql `append_events`) in one pass."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from periodya.eventstore.hashing import canonical_json, lock_key
from periodya.eventstore.model import NewEvent, RecordedEvent, StreamAppend


def stream_lock(stream_id: str) -> str:
    return f"stream:{stream_id}"


@dataclass(frozen=True, slots=True)
class PreparedAppend:
    """One EventStore.append call as arrays: sorted distinct lock keys, one entry per stream (name and
    expected version), one per event (1-based stream index, type, data and metadata as JSON text)."""

    keys: list[int]
    streams: list[str]
    expected: list[int]
    ev_stream: list[int]
    types: list[str]
    datas: list[str]
    metas: list[str]
    flat: list[NewEvent]

    def args(self) -> tuple[list[Any], ...]:
        """The arguments of schema.sql `append_events`."""
        return (self.keys, self.streams, self.expected, self.ev_stream, self.types, self.datas, self.metas)

    def records(self, rows: Sequence[Any]) -> list[RecordedEvent]:
        """Recorded events from rows of (seq, tx, stream_id, stream_version, recorded_at), one row per
        event in append order."""
        return [RecordedEvent(row[0], row[1], row[2], row[3], ev.type, ev.data, ev.metadata, row[4])
                for row, ev in zip(rows, self.flat, strict=True)]


def prepare(appends: Sequence[StreamAppend], lock_names: Iterable[str] = ()) -> PreparedAppend:
    """One pass over the events builds every argument (this is the hot path of every command)."""
    streams = [a.stream_id for a in appends]
    if len(set(streams)) != len(streams):
        raise ValueError("each stream may appear once per append")
    keys = sorted({lock_key(stream_lock(s)) for s in streams}.union(map(lock_key, lock_names)))
    flat: list[NewEvent] = []
    ev_stream: list[int] = []
    types: list[str] = []
    datas: list[str] = []
    metas: list[str] = []
    for index, item in enumerate(appends, start=1):
        for ev in item.events:
            flat.append(ev)
            ev_stream.append(index)
            types.append(ev.type)
            datas.append(canonical_json(ev.data))
            metas.append(canonical_json(ev.metadata))
    return PreparedAppend(keys, streams, [a.expected_version for a in appends], ev_stream, types, datas, metas, flat)
