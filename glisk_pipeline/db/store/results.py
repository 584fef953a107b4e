"""What the store reports, and the errors it raises."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Source = Literal["webhook", "backfill"]
Outcome = Literal["stored", "restored", "duplicate"]


class StoreError(RuntimeError):
    """The store refused a write; the transaction was rolled back."""


class TokenConflictError(StoreError):
    """A new event claims token ids already held by another live event. `claims`: the
    (tx_hash, log_index, token ids) whose token rows could not all be written, where
    known (the reconcile settles them by proof)."""

    def __init__(self, message: str, claims: Sequence[tuple[str, int, range]] = ()) -> None:
        super().__init__(message)
        self.claims = list(claims)


class TokenHeldError(TokenConflictError):
    """A new event claims a token id whose row a removed mint kept (orphaned), and a
    worker downstream holds that row locked: nothing was written; retry once the worker
    lets go (the webhook answers as for a token conflict, so Alchemy retries). The store
    sets no lock_timeout; one a deployment sets on the database role would be reported
    as this too (the same SQLSTATE, 55P03)."""

    def __init__(self) -> None:
        super().__init__(
            "a token id this call claims is held by a row a worker downstream has locked "
            "(its mint left the chain; it moves aside once the worker lets go): "
            "nothing written, retry"
        )


class UnprovenRemovalError(StoreError):
    """An answer contradicts live rows that cannot be proven off the canonical chain
    (their block is still canonical, or the node lacks it): nothing was written."""


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
    proven_blocks: int = 0  # block hashes read to prove removals (a final reconcile)

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
        self.proven_blocks += other.proven_blocks
        self.stale = self.stale or other.stale
        self.stale_reason = self.stale_reason or other.stale_reason
