"""Platform commands: escrows and payouts. Each is load -> decide -> commit inside one unit of work,
optionally wrapped by an Idempotency-Key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from periodya.domain import accounts, escrow, payout
from periodya.domain.accounts import lock_name
from periodya.domain.errors import NotFound
from periodya.eventstore import EventStore
from periodya.eventstore.store import stream_lock
from periodya.handlers import idempotency, views
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


def payout_request_locks(cmd: payout.RequestPayout) -> list[str]:
    """Every lock a request for a FRESHLY GENERATED payout id needs, for ONE sorted call (with its
    idempotency key). Mixing a stream with accounts in one sorted call is safe only because no other
    transaction can hold a stream that did not exist a moment ago; for any other id, the stream must
    be locked first and the accounts after (see unit_of_work), or the lock graph can form a cycle."""
    return [stream_lock(payout.stream(cmd.payout_id)),
            *(lock_name(a, cmd.currency) for a in (accounts.payable(cmd.payee_id), accounts.inflight(cmd.payee_id)))]


async def request_payout(uow: UnitOfWork, cmd: payout.RequestPayout, *, new_id: bool = False) -> dict[str, Any]:
    """Reserve funds under the payee's account locks: the balance read and the debit are one atomic step.
    `new_id`: the caller generated the payout id just now, so its stream cannot exist yet."""
    if new_id:
        await uow.lock(payout_request_locks(cmd))
    state = await uow.load_payout(cmd.payout_id, new=new_id)
    payable = accounts.payable(cmd.payee_id)
    await uow.lock_accounts([(payable, cmd.currency), (accounts.inflight(cmd.payee_id), cmd.currency)])
    available = await uow.balance(payable, cmd.currency)
    recorded = await uow.commit(payout.stream(cmd.payout_id), 0, payout.decide_request(state, cmd, available))
    return views.new_payout_view(recorded[0])  # the PayoutRequested event: no read-back round trip


async def execute(store: EventStore, meta: Meta, body: Body, *, idempotency_key: str | None = None,
                  scope: str = "", request: Any = None, created_status: int = 200,
                  locks: list[str] | None = None) -> tuple[int, dict[str, Any]]:
    """Run a command, honouring an Idempotency-Key when given. Returns (HTTP status, body).
    `locks`: further locks the command needs that may be taken in the same call as the key's."""
    if idempotency_key is None:
        return created_status, await run_command(store, meta, body)
    digest = idempotency.request_hash(scope, request)

    async def with_key(uow: UnitOfWork) -> tuple[int, dict[str, Any]]:
        await uow.lock([idempotency.lock_name(scope, idempotency_key), *(locks or [])])
        stored = await idempotency.lookup(uow.conn, scope, idempotency_key, digest)
        if stored is not None:
            return stored.status, stored.body
        result = await body(uow)
        await idempotency.remember(uow.conn, scope, idempotency_key, digest,
                                   idempotency.StoredResponse(created_status, result))
        return created_status, result

    return await run_command(store, meta, with_key)
