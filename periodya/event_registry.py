"""This application's event registry: every domain event model, by stored type name."""

from __future__ import annotations

from periodya.domain.events import ALL_EVENTS
from periodya.eventstore.registry import EventRegistry

REGISTRY = EventRegistry()
for _model in ALL_EVENTS:
    REGISTRY.register(_model)
