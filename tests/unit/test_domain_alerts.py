"""Integrity alerts as decide/evolve (pure): identity by (code, subject), one open alert at a time, ack and
resolve only from the states that allow them, the codes that wait for a human. Also Decision.posted."""

from __future__ import annotations

import pytest

from periodya.domain import alerts
from periodya.domain.decision import Decision, group_id, posted
from periodya.domain.errors import InvalidState
from periodya.domain.events import AlertAcknowledged, AlertRaised, AlertResolved, LedgerGroupPosted, PostedEntry
from periodya.domain.ledger import transfer

CODE, SUBJECT = "SENT_STUCK", "payout:po-1"


def fold(*decisions: Decision, state: alerts.AlertState | None = None) -> alerts.AlertState | None:
    for d in decisions:
        for e in d.events:
            state = alerts.evolve(state, e)
    return state


def raised(state: alerts.AlertState | None = None, code: str = CODE) -> alerts.AlertState:
    d = alerts.decide_raise(state, code, alerts.CRITICAL, SUBJECT, {"payoutId": "po-1"}, "see runbook")
    after = fold(d, state=state)
    assert after is not None
    return after


def test_stream_and_alert_id_are_pinned() -> None:
    """Stored alerts are found again by these values: a change would orphan every open alert."""
    assert alerts.stream(CODE, SUBJECT) == "alert-8088c9dcaf725360ea85fc5f685c604a"
    assert alerts.alert_id(CODE, SUBJECT, 1) == "al_8947ea7daf8bdb5297d0d3c6"
    assert alerts.alert_id(CODE, SUBJECT, 2) == "al_d9849f9c4129d39e20bf058e"
    assert alerts.stream(CODE, "payout:po-2") != alerts.stream(CODE, SUBJECT)
    assert alerts.stream("OUTBOX_STUCK", SUBJECT) != alerts.stream(CODE, SUBJECT)


def test_raise_records_every_field_and_opens_cycle_one() -> None:
    d = alerts.decide_raise(None, CODE, alerts.WARNING, SUBJECT, {"n": 1}, "do this")
    [event] = d.events
    assert event == AlertRaised(alert_id=alerts.alert_id(CODE, SUBJECT, 1), code=CODE, severity="warning",
                                subject=SUBJECT, details={"n": 1}, remedy="do this")
    assert d.groups == ()
    state = fold(d)
    assert state == alerts.AlertState(CODE, SUBJECT, 1, alerts.alert_id(CODE, SUBJECT, 1), alerts.OPEN, 1)
    assert state.is_open


@pytest.mark.parametrize("status", [alerts.OPEN, alerts.ACKNOWLEDGED])
def test_an_open_alert_is_not_raised_again(status: str) -> None:
    state: alerts.AlertState | None = raised()
    if status == alerts.ACKNOWLEDGED:
        state = fold(alerts.decide_ack(state, "admin:a", None), state=state)
        assert state is not None and state.status == alerts.ACKNOWLEDGED and state.is_open
    assert alerts.decide_raise(state, CODE, alerts.CRITICAL, SUBJECT, {}, "r").is_noop


def test_a_resolved_alert_raises_a_new_cycle_with_a_new_id() -> None:
    state: alerts.AlertState | None = raised()
    state = fold(alerts.decide_resolve(state, "admin:a", "fixed"), state=state)
    assert state is not None and state.status == alerts.RESOLVED and not state.is_open
    again = alerts.decide_raise(state, CODE, alerts.CRITICAL, SUBJECT, {}, "r")
    [event] = again.events
    assert isinstance(event, AlertRaised) and event.alert_id == alerts.alert_id(CODE, SUBJECT, 2)
    after = fold(again, state=state)
    assert after is not None
    assert (after.cycle, after.status, after.version, after.alert_id) == (2, alerts.OPEN, 3, event.alert_id)


def test_ack_only_an_open_alert() -> None:
    with pytest.raises(InvalidState):
        alerts.decide_ack(None, "admin:a", None)
    state = raised()
    d = alerts.decide_ack(state, "admin:a", "looking")
    assert d.events == (AlertAcknowledged(alert_id=state.alert_id, by="admin:a", note="looking"),)
    acked = fold(d, state=state)
    assert acked is not None and (acked.status, acked.version, acked.cycle) == (alerts.ACKNOWLEDGED, 2, 1)
    assert alerts.decide_ack(acked, "admin:b", None).is_noop  # acknowledged already
    resolved = fold(alerts.decide_resolve(acked, "admin:a", None), state=acked)
    assert alerts.decide_ack(resolved, "admin:b", None).is_noop  # resolved: nothing to acknowledge


@pytest.mark.parametrize("automatic", [False, True])
def test_resolve_an_open_or_acknowledged_alert(automatic: bool) -> None:
    with pytest.raises(InvalidState):
        alerts.decide_resolve(None, "admin:a", None)
    for state in (raised(), fold(alerts.decide_ack(raised(), "a", None), state=raised())):
        assert state is not None
        d = alerts.decide_resolve(state, "sentinel", "gone", automatic=automatic)
        assert d.events == (AlertResolved(alert_id=state.alert_id, by="sentinel", note="gone", automatic=automatic),)
        after = fold(d, state=state)
        assert after is not None and after.status == alerts.RESOLVED and after.version == state.version + 1
        assert alerts.decide_resolve(after, "sentinel", None).is_noop


@pytest.mark.parametrize("code", sorted(alerts.NEVER_AUTO_RESOLVED))
def test_some_codes_wait_for_a_human(code: str) -> None:
    state = raised(code=code)
    with pytest.raises(InvalidState, match="waits for a human"):
        alerts.decide_resolve(state, "sentinel", None, automatic=True)
    assert alerts.decide_resolve(state, "admin:a", None).events  # a human may
    assert {"LEDGER_UNBALANCED", "HASH_CHAIN_BROKEN", "DIGEST_MISMATCH"} == alerts.NEVER_AUTO_RESOLVED


def test_evolve_needs_a_raised_alert_first() -> None:
    with pytest.raises(AssertionError):
        alerts.evolve(None, AlertAcknowledged(alert_id="al_x", by="a"))


def test_posted_copies_the_group() -> None:
    group = transfer("g1", "escrow_funded", "USD", ("a", "b", 500))
    event = posted(group, "escrow-e1")
    assert event == LedgerGroupPosted(group_id="g1", kind="escrow_funded", subject="escrow-e1", entries=(
        PostedEntry(account="a", currency="USD", debit=500, credit=0),
        PostedEntry(account="b", currency="USD", debit=0, credit=500)))
    assert group_id("payout-p1", 3, "payout_reversed") == "payout-p1@3:payout_reversed"
    assert Decision().is_noop and not Decision(events=(event,)).is_noop and not Decision(groups=(group,)).is_noop


def test_alert_refusals_say_why() -> None:
    with pytest.raises(InvalidState) as caught:
        alerts.decide_ack(None, "a", None)
    assert str(caught.value) == "alert is absent: acknowledge is not allowed"
    with pytest.raises(InvalidState) as caught:
        alerts.decide_resolve(None, "a", None)
    assert str(caught.value) == "alert is absent: resolve is not allowed"
    state = raised(code="LEDGER_UNBALANCED")
    with pytest.raises(InvalidState) as caught:
        alerts.decide_resolve(state, "sentinel", None, automatic=True)
    assert str(caught.value) == (f"alert {state.alert_id} is OPEN: auto-resolve is not allowed "
                                 "(LEDGER_UNBALANCED waits for a human)")


def test_evolve_counts_an_unknown_event_of_the_stream_without_changing_it() -> None:
    state = raised()
    other = alerts.evolve(state, LedgerGroupPosted(group_id="g", kind="k", subject="s", entries=()))
    assert other == alerts.AlertState(CODE, SUBJECT, 1, state.alert_id, alerts.OPEN, 2)
