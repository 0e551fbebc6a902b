"""Platform commands: escrows and payouts. Each is load -> decide -> commit inside one unit of work,
optionally wrapped by an Idempotency-Key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from periodya.domain import escrow, payout
from periodya.domain.errors import NotFound
from periodya.eventstore import EventStore
from periodya.handlers import idempotency, payout_batch, views
from periodya.handlers.unit_of_work import Meta, UnitOfWork, run_command

Body = Callable[[UnitOfWork], Awaitable[dict[str, Any]]]


async def fund_escrow(uow: UnitOfWork, cmd: escrow.FundEscrow) -> dict[str, Any]:
    state = await uow.load_escrow(cmd.escrow_id)
    await uow.commit(escrow.stream(cmd.escrow_id), 0, escrow.decide_fund(state, cmd))
    return await views.escrow_view(uow.conn, cmd.escrow_id)


async def release_escrow(uow: UnitOfWork, cmd: escrow.ReleaseEscrow) -> dict[str, Any]:
    state = await uow.load_escrow(cmd.escrow_id)
    if state is None:  # the contract (API.md): an unknown escrow is 404, not a state conflict
        raise NotFound(f"no escrow {cmd.escrow_id!r}")
    decision = escrow.decide_release(state, cmd)
    await uow.commit(escrow.stream(cmd.escrow_id), state.version if state else 0, decision)
    return await views.escrow_view(uow.conn, cmd.escrow_id)


async def refund_escrow(uow: UnitOfWork, cmd: escrow.RefundEscrow) -> dict[str, Any]:
    state = await uow.load_escrow(cmd.escrow_id)
    if state is None:  # the contract (API.md): an unknown escrow is 404, not a state conflict
        raise NotFound(f"no escrow {cmd.escrow_id!r}")
    decision = escrow.decide_refund(state, cmd)
    await uow.commit(escrow.stream(cmd.escrow_id), state.version if state else 0, decision)
    return await views.escrow_view(uow.conn, cmd.escrow_id)


async def request_payout(uow: UnitOfWork, cmd: payout.RequestPayout) -> dict[str, Any]:
    """Reserve funds for a payout under a caller-chosen id: a batch of one through
    payout_batch.request_payouts, the one path that writes payout requests (POST /api/payouts batches
    them). Raises the typed error that refused it (InvalidState for an id already used)."""
    [outcome] = await payout_batch.request_payouts(uow, [payout_batch.PayoutRequest(cmd, uow.meta)], fresh=False)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome[1]


async def execute(store: EventStore, meta: Meta, body: Body, *, idempotency_key: str | None = None,
                  scope: str = "", request: Any = None, created_status: int = 200) -> tuple[int, dict[str, Any]]:
    """Run a command, honouring an Idempotency-Key when given. Returns (HTTP status, body)."""
    if idempotency_key is None:
        return created_status, await run_command(store, meta, body)
    digest = idempotency.request_hash(scope, request)

    async def with_key(uow: UnitOfWork) -> tuple[int, dict[str, Any]]:
        await uow.lock([idempotency.lock_name(scope, idempotency_key)])
        stored = await idempotency.lookup(uow.conn, scope, idempotency_key, digest)
        if stored is not None:
            return stored.status, stored.body
        result = await body(uow)
        await idempotency.remember(uow.conn, scope, idempotency_key, digest,
                                   idempotency.StoredResponse(created_status, result))
        return created_status, result

    return await run_command(store, meta, with_key)
