"""The event store: append-only events in PostgreSQL, read in commit-safe order."""

from periodya.domain.events import Event
from periodya.eventstore.model import ANY, NO_STREAM, START, NewEvent, Position, RecordedEvent, StreamAppend
from periodya.eventstore.registry import EventRegistry
from periodya.eventstore.store import EventStore

__all__ = ["ANY", "NO_STREAM", "START", "Event", "EventRegistry", "EventStore", "NewEvent", "Position",
           "RecordedEvent", "StreamAppend"]
