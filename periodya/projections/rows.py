"""Row helpers shared by the projections."""

from __future__ import annotations

from typing import Any


def values(obj: Any) -> tuple[Any, ...]:
    """A dataclass instance's field values in declaration order, without dataclasses.astuple's deep copy."""
    return tuple(vars(obj).values())
