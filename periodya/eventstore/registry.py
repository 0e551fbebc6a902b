"""Events as pydantic models registered by type name, with upcasters for old schema versions.

Models derive from periodya.domain.events.Event. A model declares `event_type` (its stored name) and
`schema_version`. Stored metadata carries
`schemaVersion`; reading an older version runs the registered upcasters in order on the raw data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from periodya.domain.events import Event
from periodya.errors import UnknownEventType
from periodya.eventstore.model import NewEvent, RecordedEvent

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


E = TypeVar("E", bound=type[Event])


class EventRegistry:
    def __init__(self) -> None:
        self._models: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, model: E) -> E:
        name = model.event_type
        if name in self._models and self._models[name] is not model:
            raise ValueError(f"event type {name!r} registered twice")
        self._models[name] = model
        return model

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning data of `from_version` into data of `from_version + 1`."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return decorate

    def model_for(self, event_type: str) -> type[Event]:
        try:
            return self._models[event_type]
        except KeyError:
            raise UnknownEventType(f"no event model registered for type {event_type!r}") from None

    def to_new(self, event: Event, metadata: dict[str, Any] | None = None) -> NewEvent:
        meta = dict(metadata or {})
        meta["schemaVersion"] = event.schema_version
        return NewEvent(event.event_type, event.model_dump(mode="json", by_alias=True), meta)

    def decode(self, recorded: RecordedEvent) -> Event:
        model = self._models.get(recorded.type) or self.model_for(recorded.type)  # unknown: UnknownEventType
        data = recorded.data
        stored = recorded.metadata.get("schemaVersion", 1)
        if stored != model.schema_version:  # the common case (current version) skips the upcast loop
            version = int(stored)
            while version < model.schema_version:
                step = self._upcasters.get((recorded.type, version))
                if step is None:
                    raise UnknownEventType(
                        f"{recorded.type} v{version} cannot be upcast to v{model.schema_version}: no upcaster")
                data = step(data)
                version += 1
        # model_validate's own work, minus its per-call wrapper: the same validator, the same checks.
        return model.__pydantic_validator__.validate_python(data)  # type: ignore[no-any-return]
