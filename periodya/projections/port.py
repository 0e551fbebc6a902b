"""What a projection is, and what it may do with the connection it is handed.

Every projection's `apply(conn, events)` runs on two kinds of connection: the inline path's asyncpg
connection, and the rebuild engine's SharedConnection (audit.shared_connection: replay, --until, --swap
and its catch-up), which serialises the concurrent apply calls of a batch. An apply that used a method
one of them lacks failed only where that one ran (issue 11: `executemany` on SharedConnection). So the
apply functions are typed against ProjectionConnection, the few methods they may call, and mypy checks
both sides: an apply that calls anything else does not type-check, and neither does a wrapper handed to
an apply without all of them (PROJECTIONS is typed as Projection, so the rebuild's call is checked)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from periodya.eventstore.model import RecordedEvent


class ProjectionConnection(Protocol):
    """The methods of asyncpg.Connection an apply function may call."""

    async def execute(self, query: str, *args: Any) -> Any: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def copy_records_to_table(self, table_name: str, *, records: Any, columns: Sequence[str]) -> Any: ...


class Projection(Protocol):
    """A projection module: the tables it owns and its one apply function."""

    @property
    def TABLES(self) -> tuple[str, ...]: ...

    async def apply(self, conn: ProjectionConnection, events: Sequence[RecordedEvent]) -> None: ...
