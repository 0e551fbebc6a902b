"""The peer: the `eventsourcing` library (PyPI) with its PostgreSQL persistence, driven from threads.

The library is synchronous (psycopg 3 with a psycopg_pool pool), so concurrency is N threads sharing
one Application whose pool is sized for them (POSTGRES_POOL_SIZE, no overflow, unlimited waiters).
Its tables go in their own schema of the scratch database, created here.
"""

from __future__ import annotations

import functools
import itertools
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from typing import Any

from bench._common import SyncOp

PEER_SCHEMA = "eventsourcing_peer"
INSTALL_HINT = "pip install -e '.[bench]'"


def missing() -> str | None:
    """Why the peer cannot run here, or None when it can."""
    for module in ("eventsourcing", "psycopg", "psycopg_pool"):
        if find_spec(module) is None:
            return f"{module} is not installed ({INSTALL_HINT})"
    return None


def describe() -> str:
    """Library and driver versions, and which psycopg implementation is loaded (C or pure Python)."""
    import psycopg

    try:
        lib = version("eventsourcing")
    except PackageNotFoundError:
        lib = "?"
    return f"eventsourcing {lib}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__} implementation)"


def peer_env(url: str, pool_size: int) -> dict[str, str]:
    """The library's configuration (its POSTGRES_* variables) for the database at `url`."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname", "postgres")),
        "POSTGRES_HOST": str(params.get("host") or "localhost"),
        "POSTGRES_PORT": str(params.get("port") or 5432),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_SCHEMA": PEER_SCHEMA,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_MAX_WAITING": "0",  # 0 = unlimited: a thread waits for a connection, never fails
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "CREATE_TABLE": "yes",
    }


def open_application(url: str, pool_size: int) -> Any:
    """An Application on the library's PostgreSQL recorder, its tables created, its pool full."""
    from eventsourcing.application import Application

    app = Application(env=peer_env(url, pool_size))
    pool = app.recorder.datastore.pool
    pool.open(wait=True, timeout=30)
    pool.wait(timeout=30)  # all pool_size connections open before the clock starts
    return app


@functools.cache
def payout_aggregate() -> Any:
    """The tiny aggregate class, defined once: the library registers each class under its topic."""
    from eventsourcing.domain import Aggregate

    class Payout(Aggregate):
        def __init__(self, payee: str, amount: int, currency: str, reference: str) -> None:
            self.payee = payee
            self.amount = amount
            self.currency = currency
            self.reference = reference

    return Payout


def save_one_event_aggregate(app: Any, payload: dict[str, Any]) -> SyncOp:
    """Create a new one-event aggregate and `app.save` it: one stored event, one transaction."""
    payout = payout_aggregate()
    serial = itertools.count()

    def op(worker: int) -> None:
        app.save(payout(payload["payee"], payload["amount"], payload["currency"], f"w{worker}-{next(serial)}"))

    return op
