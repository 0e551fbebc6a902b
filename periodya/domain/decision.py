"""What a decide function returns: events for the aggregate's stream and ledger groups to post."""

from __future__ import annotations

from dataclasses import dataclass, field

from periodya.domain.events import Event, LedgerGroupPosted, PostedEntry
from periodya.domain.ledger import LedgerGroup


@dataclass(frozen=True)
class Decision:
    events: tuple[Event, ...] = ()
    groups: tuple[LedgerGroup, ...] = field(default=())

    @property
    def is_noop(self) -> bool:
        return not self.events and not self.groups


def posted(group: LedgerGroup, subject: str) -> LedgerGroupPosted:
    return LedgerGroupPosted(
        group_id=group.group_id, kind=group.kind, subject=subject,
        entries=tuple(PostedEntry(account=e.account, currency=e.currency, debit=e.debit, credit=e.credit)
                      for e in group.entries))


def group_id(stream_id: str, version: int, kind: str) -> str:
    """Deterministic group id: the stream and the version of the event that caused it. A group can
    therefore be posted only once (its ledger stream is appended with NO_STREAM)."""
    return f"{stream_id}@{version}:{kind}"
