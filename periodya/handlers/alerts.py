"""Alert commands: raise (sentinel, runners), acknowledge and resolve (humans, auto-resolve, or the job
that healed the payout an alert is about: resolve_healed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from periodya.domain import alerts
from periodya.domain.decision import Decision
from periodya.domain.errors import NotFound
from periodya.event_registry import REGISTRY
from periodya.eventstore.store import stream_lock
from periodya.handlers.unit_of_work import UnitOfWork


async def load(uow: UnitOfWork, code: str, subject: str) -> alerts.AlertState | None:
    sid = alerts.stream(code, subject)
    await uow.lock([stream_lock(sid)])
    state: alerts.AlertState | None = None
    for ev in await uow.store.read_stream(sid, conn=uow.conn):
        state = alerts.evolve(state, REGISTRY.decode(ev))
    return state


async def _commit(uow: UnitOfWork, code: str, subject: str, state: alerts.AlertState | None,
                  decision: Decision) -> bool:
    await uow.commit(alerts.stream(code, subject), state.version if state else 0, decision)
    return bool(decision.events)


async def raise_alert(uow: UnitOfWork, code: str, severity: str, subject: str, details: dict[str, Any],
                      remedy: str) -> bool:
    """Raise unless one is open for (code, subject). Returns whether a new alert was raised."""
    state = await load(uow, code, subject)
    return await _commit(uow, code, subject, state,
                         alerts.decide_raise(state, code, severity, subject, details, remedy))


async def auto_resolve(uow: UnitOfWork, code: str, subject: str) -> bool:
    state = await load(uow, code, subject)
    return await _commit(uow, code, subject, state,
                         alerts.decide_resolve(state, "sentinel", "condition cleared", automatic=True))


async def _by_id(uow: UnitOfWork, alert_id: str) -> tuple[str, str]:
    row = await uow.conn.fetchrow("SELECT code, subject FROM alerts WHERE alert_id = $1", alert_id)
    if row is None:
        raise NotFound(f"no alert {alert_id!r}")
    return row["code"], row["subject"]


async def acknowledge(uow: UnitOfWork, alert_id: str, by: str, note: str | None) -> None:
    code, subject = await _by_id(uow, alert_id)
    state = await load(uow, code, subject)
    if state is not None and state.alert_id != alert_id:
        return  # an older cycle of this alert: it is resolved, acknowledging it again changes nothing
    await _commit(uow, code, subject, state, alerts.decide_ack(state, by, note))


async def resolve(uow: UnitOfWork, alert_id: str, by: str, note: str | None) -> None:
    code, subject = await _by_id(uow, alert_id)
    state = await load(uow, code, subject)
    if state is not None and state.alert_id != alert_id:
        return
    await _commit(uow, code, subject, state, alerts.decide_resolve(state, by, note))


HEALED_BY = "system"
STUCK_CODES = ("SENT_STUCK", "OUTBOX_STUCK")
# Open SENT_STUCK / OUTBOX_STUCK alerts of these payouts (alerts_open index: open alerts are few).
_OPEN_STUCK = ("SELECT a.code, a.subject, pg_current_xact_id_if_assigned() IS NULL AS unwritten FROM alerts a "
               "WHERE a.status <> 'RESOLVED' AND a.code = ANY($2::text[]) AND a.subject = ANY($1::text[])")
# ... whose condition the just-projected rows no longer show: the payout left SENT, the outbox task left SENDING.
_HEALED = (_OPEN_STUCK + " AND CASE a.code "
           "WHEN 'SENT_STUCK' THEN NOT EXISTS (SELECT 1 FROM payouts p WHERE p.payout_id = a.subject "
           "AND p.status = 'SENT') "
           "ELSE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.payout_id = a.subject AND o.status = 'SENDING') END "
           "ORDER BY a.code, a.subject")


async def lock_stuck_alerts(uow: UnitOfWork, payout_ids: Sequence[str]) -> frozenset[str]:
    """Before the transaction's first write (UnitOfWork.record): lock the streams of the open
    SENT_STUCK / OUTBOX_STUCK alerts of `payout_ids`, which the write may heal. An advisory lock assigns
    no xid, so a raise or resolve of those alerts either committed before this transaction got its xid
    or waits for its commit: the resolve appended later lands after them in (tx, seq) order.

    Lock order: taken last, after the payout and account locks this transaction holds, in one sorted
    call. That cannot deadlock: no transaction holds an alert stream's lock while it waits for another
    lock (raising, acknowledging and resolving alerts lock their alert stream only).

    Returns the alert stream locks taken; none if the transaction already has its xid (it wrote
    something outside the unit of work first), as a lock taken now would order nothing."""
    rows = await uow.conn.fetch(_OPEN_STUCK, list(payout_ids), list(STUCK_CODES))
    if rows and not rows[0]["unwritten"]:
        return frozenset()
    names = frozenset(stream_lock(alerts.stream(r["code"], r["subject"])) for r in rows)
    await uow.lock(names)
    return names


async def resolve_healed(uow: UnitOfWork, payout_ids: Sequence[str]) -> None:
    """In the transaction that just recorded (and projected) events of `payout_ids`: resolve, as
    "system", every open SENT_STUCK / OUTBOX_STUCK alert of those payouts whose condition is gone, so
    the alert closes with the fact that healed it rather than at the next sentinel run.

    Only alerts whose stream was locked before the transaction's first write (lock_stuck_alerts) are
    resolved: locking one now, after the write, could append the resolve at a smaller xid than a raise
    that committed in between (a version gap in (tx, seq) order). The others are left open; the
    sentinel's next run sees their condition gone and auto-resolves them."""
    for row in await uow.conn.fetch(_HEALED, list(payout_ids), list(STUCK_CODES)):
        code, subject = row["code"], row["subject"]
        if stream_lock(alerts.stream(code, subject)) not in uow.healable:
            continue
        state = await load(uow, code, subject)
        await _commit(uow, code, subject, state, alerts.decide_resolve(
            state, HEALED_BY, f"healed: {uow.meta.actor} recorded the payout's progress", automatic=True))
