"""Helpers of the hot folds (evolve, replay): `changed`, dataclasses.replace without its per-field
overhead, and `step_for`, an evolve step found by the event's class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Step = TypeVar("Step", bound=Callable[[Any, Any], Any])


def changed(obj: T, **changes: Any) -> T:
    """A copy of the frozen dataclass `obj` with `changes` applied.

    Only for plain dataclasses (no __post_init__, no InitVar, no validation in __init__): then a new
    instance whose __dict__ is the old one's updated with `changes`, fields in declaration order, is
    exactly what __init__ builds, without one object.__setattr__ per field. Replay folds every event of
    the log through here. tests/unit/test_domain_folding.py holds the classes that use it to that rule.
    """
    new = object.__new__(type(obj))
    fields = new.__dict__
    fields.update(obj.__dict__)
    fields.update(changes)
    return new


def step_for(steps: dict[Any, Step], kind: type, default: Step) -> Step:
    """The step of `steps` for an event of class `kind`: its own, else its nearest base class's (a
    subclass of an event), else `default`; remembered in `steps` for the next event of that class.
    A dict lookup instead of a chain of isinstance checks, which are slow on pydantic models (their
    metaclass is an ABCMeta)."""
    step = steps.get(kind)
    if step is None:
        step = next((steps[base] for base in kind.__mro__ if base in steps), default)
        steps[kind] = step
    return step
