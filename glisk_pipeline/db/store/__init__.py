"""The one store: the only package that writes mint_events and tokens.

- api.py: `MintStore`, the public interface; one transaction per call, retried whole.
- upserts.py: the events/tokens/authors upserts, one statement per chunk on PostgreSQL.
- ordering.py: which view of a block a webhook delivery may apply (one rule, in SQL).
- reconcile.py: marking what the chain contradicts as removed; processed ranges and the
  last_processed_block checkpoint.
- downstream.py: the token rows downstream owns: what a reorg does to them, NOTIFY.
"""

from glisk_pipeline.db.store.api import RETRYABLE_SQLSTATES, MintStore
from glisk_pipeline.db.store.results import (
    EventOutcome,
    Outcome,
    Source,
    StoreError,
    StoreResult,
    TokenConflictError,
    TokenHeldError,
)
from glisk_pipeline.db.store.upserts import PG_CHUNK

__all__ = [
    "PG_CHUNK",
    "RETRYABLE_SQLSTATES",
    "EventOutcome",
    "MintStore",
    "Outcome",
    "Source",
    "StoreError",
    "StoreResult",
    "TokenConflictError",
    "TokenHeldError",
]
