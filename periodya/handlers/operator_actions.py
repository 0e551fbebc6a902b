"""The operator's payout actions: the runbook's manual commands (section 4), behind the admin ops
routes. Each is an event with the admin as actor, the reason and the request id in its metadata; each
is idempotent where API.md says a repeat is a no-op. Force-reconcile and force-finalize decide on the
provider's answer with the one rule, settlement.settle (force-finalize with force=True).

A payout whose create answer was lost names no provider payout although the provider may hold one;
once quarantined nothing resends it, so nothing else would ever learn the id. Both ask the provider by
our idempotency key then (provider_answer.ask_provider) and record the payout found as ours
(settlement.adopt) before applying its word: the payee's funds never stay in flight for good, and the
safeguards hold (one provider payout per key, finalized only on the provider's paid, cancel only when
the provider holds none)."""

from __future__ import annotations

from periodya.deps import Deps
from periodya.domain import payout
from periodya.domain.errors import InvalidState
from periodya.domain.settlement import Record, Refused, adopt
from periodya.handlers import lifecycle
from periodya.handlers.provider_answer import NOT_HELD, ask_provider, may_be_held, outcome_of, reconcile_one
from periodya.handlers.unit_of_work import UnitOfWork
from periodya.provider.port import ProviderError, ProviderNotFound


async def rerun_outbox(uow: UnitOfWork, payout_id: str) -> None:
    """Task back to PENDING now (same idempotency key: a resend can never pay twice)."""
    await lifecycle.requeue(uow, payout_id, "rerun-outbox by an operator")


async def force_reconcile(deps: Deps, uow: UnitOfWork, payout_id: str) -> None:
    """Ask the provider now (by our idempotency key if the payout names no provider payout) and apply
    its answer; refused when no send was ever attempted, or the provider holds none or does not answer."""
    state = await uow.load_payout(payout_id)
    if state is None or not may_be_held(state):
        raise InvalidState(f"payout {payout_id}", state.status if state else "absent", "force-reconcile",
                           "the provider has not accepted it yet")
    outcome = await reconcile_one(deps, uow, payout_id) or ""
    if outcome == NOT_HELD:
        raise InvalidState(state.subject, state.status, "force-reconcile", "the provider holds no payout for it")
    if outcome.startswith("provider_error"):
        raise InvalidState(f"payout {payout_id}", state.status, "force-reconcile", f"the provider did not answer: "
                           f"{outcome}")


async def force_finalize(deps: Deps, uow: UnitOfWork, payout_id: str) -> None:
    """Finalize only when the provider says paid, asked now (by our idempotency key if the payout names
    no provider payout). Already finalized: nothing is written."""
    state = await uow.load_payout(payout_id)
    if state is None:
        raise InvalidState("payout", "absent", "force-finalize")
    if state.ledger_finalized:
        return
    if not may_be_held(state):
        raise InvalidState(state.subject, state.status, "force-finalize", "the provider has not accepted it")
    try:
        answer = await ask_provider(deps, state)
    except ProviderError as exc:
        raise InvalidState(state.subject, state.status, "force-finalize",
                           f"the provider could not confirm it paid: {type(exc).__name__}") from None
    if answer is None:
        raise InvalidState(state.subject, state.status, "force-finalize", "the provider holds no payout for it")
    settled = adopt(state, outcome_of(answer, "admin"), force=True)  # refused unless the provider says paid
    if isinstance(settled, Refused):
        raise settled.error
    if isinstance(settled, Record):
        await uow.commit(payout.stream(payout_id), state.version, settled.decision)


async def quarantine(uow: UnitOfWork, payout_id: str, reason: str) -> None:
    await lifecycle.quarantine(uow, payout_id, reason)


async def cancel(deps: Deps, uow: UnitOfWork, payout_id: str, reason: str) -> None:
    """Cancel a quarantined payout the provider never got. If a send was ever attempted, ask the provider:
    only a definite 'no such payout' allows returning the funds."""
    state = await uow.load_payout(payout_id)
    if state is None:
        raise InvalidState("payout", "absent", "cancel")
    provider_has_none = False
    if state.status == payout.QUARANTINED and state.provider_payout_id is None and state.attempts > 0:
        try:
            provider_has_none = await deps.provider.find_by_payout_id(payout_id) is None
        except ProviderNotFound:
            provider_has_none = True
        except ProviderError as exc:
            raise InvalidState(state.subject, state.status, "cancel",
                               f"cannot confirm the provider holds no payout: {type(exc).__name__}") from None
    decision = payout.decide_cancel(state, reason, provider_has_none=provider_has_none)
    await uow.commit(payout.stream(payout_id), state.version, decision)
