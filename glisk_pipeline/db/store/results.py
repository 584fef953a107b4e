"""What the store reports, and the errors it raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Source = Literal["webhook", "backfill"]
Outcome = Literal["stored", "restored", "duplicate"]


class StoreError(RuntimeError):
    """The store refused a write; the transaction was rolled back."""


class TokenConflictError(StoreError):
    """A new event claims token ids already held by another live event."""


@dataclass(frozen=True, slots=True)
class EventOutcome:
    tx_hash: str
    log_index: int
    outcome: Outcome
    mint_event_id: int | None  # None for duplicates
    token_ids: range


@dataclass(slots=True)
class StoreResult:
    events: list[EventOutcome] = field(default_factory=list)
    removed: int = 0  # live rows marked removed by this call
    stale: bool = False  # a webhook delivery that must not change anything
    stale_reason: str | None = None

    def count(self, outcome: Outcome) -> int:
        return sum(1 for e in self.events if e.outcome == outcome)

    @property
    def stored(self) -> int:
        return self.count("stored") + self.count("restored")

    @property
    def duplicates(self) -> int:
        return self.count("duplicate")

    @property
    def tokens(self) -> int:
        return sum(len(e.token_ids) for e in self.events if e.outcome != "duplicate")

    def merge(self, other: StoreResult) -> None:
        self.events.extend(other.events)
        self.removed += other.removed
        self.stale = self.stale or other.stale
        self.stale_reason = self.stale_reason or other.stale_reason
