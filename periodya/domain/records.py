"""`changed`: dataclasses.replace for the hot folds (evolve, replay), without its per-field overhead."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def changed(obj: T, **changes: Any) -> T:
    """A copy of the frozen dataclass `obj` with `changes` applied.

    Only for plain dataclasses (no __post_init__, no InitVar, no validation in __init__): then a new
    instance whose __dict__ is the old one's updated with `changes`, fields in declaration order, is
    exactly what __init__ builds, without one object.__setattr__ per field. Replay folds every event of
    the log through here. tests/unit/test_domain_records.py holds the classes that use it to that rule.
    """
    new = object.__new__(type(obj))
    fields = new.__dict__
    fields.update(obj.__dict__)
    fields.update(changes)
    return new
