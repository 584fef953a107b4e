"""The one store's public face: `MintStore`, each call one transaction (retried whole).

Every face (webhook, Dagster asset, CLI) hands it decoded `MintRecord`s. Each call is ONE
transaction that writes the events, their token rows and the author links, or nothing.
What is new is decided by the database (see upserts.py), which view of a block a webhook
delivery may apply by the ordering rules (ordering.py), and what the chain contradicts by
reconciliation (reconcile.py). PostgreSQL in production; SQLite is the embedded default.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from glisk_pipeline.chain.decoder import MintRecord
from glisk_pipeline.db.store import counters, reconcile
from glisk_pipeline.db.store.downstream import LOCK_NOT_AVAILABLE
from glisk_pipeline.db.store.ordering import (
    AGREE,
    FINAL,
    PG_FINAL_LOCK,
    REPEAT,
    Claim,
    agreeing_may_move,
    block_is_final,
    claim_block,
)
from glisk_pipeline.db.store.proof import NeedProof, Settlement
from glisk_pipeline.db.store.results import (
    EventOutcome,
    Source,
    StoreError,
    StoreResult,
    TokenConflictError,
    TokenHeldError,
    UnprovenRemovalError,
)
from glisk_pipeline.db.store.upserts import (
    dedupe,
    stage,
    upsert_author,
    upsert_authors,
    upsert_events,
)
from glisk_pipeline.db.store.webhook_pg import (
    CALL_SQLALCHEMY,
    TOKEN_CONFLICT_SQLSTATE,
    delivery_document,
    read_answer,
)

T = TypeVar("T")

# The chain's hash at each block number, None where the node lacks the block
# (RpcClient.block_hashes: batched eth_getBlockByNumber).
CanonicalHashes = Callable[[Sequence[int]], Mapping[int, str | None]]
# A reconcile reads proof at most this often: contradicted rows, then conflict holders,
# then (rarely) rows a concurrent writer added meanwhile.
PROOF_ROUNDS = 4

# SQLSTATEs worth retrying the whole transaction for: deadlock, serialization failure,
# and a NOT NULL author_id: two writers creating the default author at once, where the
# loser's statement snapshot cannot see the winner's row yet (its retry does).
RETRYABLE_SQLSTATES = {"40P01", "40001", "23502"}


class MintStore:
    """Writes decoded records. `default_author_wallet` receives the tokens of authors that
    are not registered in `authors`; `start_block` anchors last_processed_block;
    `webhook_blocks_retention` (None: keep all) prunes webhook_blocks rows that many blocks
    below the checkpoint whenever a reconcile moves it."""

    def __init__(
        self,
        engine: Engine,
        default_author_wallet: str,
        start_block: int = 0,
        *,
        webhook_blocks_retention: int | None = None,
    ):
        self.engine = engine
        self.default_author_wallet = default_author_wallet.lower()
        self.start_block = start_block
        self.webhook_blocks_retention = webhook_blocks_retention
        self._pg = engine.dialect.name == "postgresql"

    def store(
        self, records: Iterable[MintRecord], *, source: Source, revive: bool = True
    ) -> StoreResult:
        """Store records that are not there yet; report each as stored/restored/duplicate.
        `revive=False` leaves rows marked removed alone: for blocks that are not final,
        where the caller's view may be an older fork than the one that removed them."""
        batch = dedupe(records)
        return self._transaction(
            lambda conn: self._upsert(conn, batch, source, revive, stage(conn, batch, pg=self._pg))
        )

    def store_unordered_delivery(self, records: Iterable[MintRecord]) -> StoreResult:
        """A webhook delivery that has no sequenceNumber: nothing orders it against other
        views of its block, so it only adds the logs that are missing and revives none,
        and a log in a block a backfill reconciled as final makes it stale, as an ordered
        delivery would be (the chain decided; a non-canonical log would stay live)."""
        batch = dedupe(records)
        if self._pg:  # the delivery function with no claim (webhook_pg.py)
            doc = delivery_document(batch, self.default_author_wallet, None)
            return self._transaction(lambda conn: read_answer(_call(conn, doc), batch))

        def work(conn: Connection) -> StoreResult:  # SQLite serialises writers: no lock
            if any(block_is_final(conn, n) for n in {r.block_number for r in batch}):
                return StoreResult(stale=True, stale_reason=FINAL)
            return self._upsert(conn, batch, "webhook", revive=False)

        return self._transaction(work)

    def store_block_delivery(
        self,
        *,
        block_number: int,
        block_hash: str,
        sequence_number: int,
        records: Iterable[MintRecord],
        webhook_id: str = "",
        created_at: datetime | None = None,
    ) -> StoreResult:
        """Apply one webhook delivery for a block: its logs stored, and rows of the same
        block under another hash (a reorg) marked removed, unless it is older than what
        was already applied for this block, or the block is final (`stale`; the rules are
        in ordering.py)."""
        batch = dedupe(records)
        block_hash = block_hash.lower()
        claim = Claim(webhook_id, block_number, block_hash, sequence_number, created_at)

        if self._pg:  # one call of the delivery function (webhook_pg.py)
            doc = delivery_document(batch, self.default_author_wallet, claim)
            return self._transaction(lambda conn: read_answer(_call(conn, doc), batch))

        def work(conn: Connection) -> StoreResult:  # SQLite
            verdict = claim_block(conn, claim)
            repeat = verdict == REPEAT  # applied already: add what is missing, only
            if verdict not in (None, REPEAT, AGREE):
                return StoreResult(stale=True, stale_reason=verdict)
            kept = set()  # the keys of an agreeing view's logs a newer view placed
            if verdict == AGREE:
                kept = {r.key for r in batch if not agreeing_may_move(conn, r.key, claim)}
            written = [r for r in batch if r.key not in kept]
            removed = 0
            if not repeat:
                removed = reconcile.remove_stale(conn, written, block_number, block_hash)
            result = self._upsert(conn, written, "webhook", revive=not repeat)
            if kept:  # reported as duplicates, in the order given (as read_answer does)
                outcomes = {(e.tx_hash, e.log_index): e for e in result.events}
                result.events = [
                    outcomes.get(r.key)
                    or EventOutcome(r.tx_hash, r.log_index, "duplicate", None, r.token_ids)
                    for r in batch
                ]
            result.removed = removed
            return result

        return self._transaction(work)

    def reconcile_range(
        self,
        records: Iterable[MintRecord],
        *,
        start_block: int,
        end_block: int,
        source: Source = "backfill",
        canonical: CanonicalHashes | None = None,
    ) -> StoreResult:
        """Make the table equal the chain for a final range [start_block, end_block]:
        missing logs are stored, and the range is recorded as processed, in one
        transaction (so the checkpoint moves with the data).

        THE RULE: a row leaves the live set only with proof that its block left the
        canonical chain: `canonical(block numbers)` (the chain's hash at each number,
        None where the node lacks the block) gives a hash other than the row's. The
        absence of a log from `records` (one provider's answer) is never proof: a
        contradicted row whose block is still canonical means the answer is incomplete
        (a node that lags or drops logs), and nothing is written (UnprovenRemovalError).
        The same rule settles token conflicts: a live row elsewhere (e.g. the next window's
        first block, or another chunk) holding token ids of a canonical log here is
        removed if its block is proven gone, else TokenConflictError names both events.
        Proof is read between attempts, never inside the transaction (which holds the
        lock webhook deliveries wait on)."""
        batch = dedupe(records)
        outside = [r for r in batch if not start_block <= r.block_number <= end_block]
        if outside:
            raise StoreError(
                f"record in block {outside[0].block_number} is outside the range "
                f"{start_block}-{end_block} being reconciled"
            )
        settle = Settlement(start_block, end_block)
        for _ in range(PROOF_ROUNDS):
            try:
                return self._transaction(lambda conn: self._reconcile(conn, batch, source, settle))
            except NeedProof as need:
                if not need.blocks:
                    continue  # proven already: the next attempt acts on it
                if canonical is None:
                    raise UnprovenRemovalError(
                        f"reconciling blocks {start_block}-{end_block} would remove rows at "
                        f"blocks {sorted(need.blocks)[:10]}, and no chain was given to prove "
                        "they left it: nothing written"
                    ) from None
                settle.proofs.update(canonical(sorted(need.blocks)))
                settle.proven_blocks += len(need.blocks)
        raise StoreError(
            f"reconciling blocks {start_block}-{end_block}: the rows to prove kept changing "
            f"over {PROOF_ROUNDS} rounds (concurrent writers?); nothing written, retry"
        )

    def _reconcile(
        self, conn: Connection, batch: list[MintRecord], source: Source, settle: Settlement
    ) -> StoreResult:
        staged = stage(conn, batch, pg=self._pg)  # before the lock: it needs none
        if self._pg:
            # Exclusive against webhook deliveries (which take it shared) and other
            # reconciles: a delivery deciding "not final" must not interleave with a
            # reconcile making the block final; the checkpoint update is serialised.
            conn.execute(PG_FINAL_LOCK)
        lo, hi = settle.start_block, settle.end_block
        stale = reconcile.contradicted(conn, batch, lo, hi, pg=self._pg, staged=staged)
        holders = reconcile.live_rows(conn, settle.holders)
        doomed = settle.judge(stale, holders)
        removed = reconcile.remove_rows(conn, [row.id for row in doomed], pg=self._pg)
        try:
            result = self._upsert(conn, batch, source, staged=staged)
        except TokenConflictError as conflict:
            held = reconcile.token_holders(conn, conflict.claims)
            if not held or all(row.id in settle.holders for _, row in held):
                raise
            settle.hold(held)
            raise NeedProof({row.block_number for _, row in held} - set(settle.proofs)) from None
        if self._pg and doomed:
            reconcile.announce_orphans(conn, [row.id for row in doomed])
        result.removed = removed
        result.proven_blocks = settle.proven_blocks
        reconcile.sweep_detected(conn, lo, hi, pg=self._pg)
        reconcile.record_range(conn, lo, hi, len(batch), pg=self._pg, start_block=self.start_block)
        if self.webhook_blocks_retention is not None:
            reconcile.prune_webhook_blocks(conn, self.webhook_blocks_retention)
        return result

    def register_author(
        self,
        wallet_address: str,
        *,
        twitter_handle: str | None = None,
        farcaster_handle: str | None = None,
        prompt_text: str | None = None,
    ) -> int:
        """Create or update an author; returns its id. Wallets compare case-insensitively;
        a field passed as None keeps its stored value."""
        values = {
            "wallet_address": wallet_address.lower(),
            "twitter_handle": twitter_handle,
            "farcaster_handle": farcaster_handle,
            "prompt_text": prompt_text,
        }
        return self._transaction(lambda conn: upsert_author(conn, values, pg=self._pg))

    def register_authors(self, rows: Iterable[dict[str, str | None]]) -> int:
        """Register many authors in ONE transaction (all or none; `glisk authors import`);
        each row as register_author's keyword arguments plus `wallet_address`. Returns
        how many wallets were new."""
        batch = [{**row, "wallet_address": str(row["wallet_address"]).lower()} for row in rows]
        if not batch:
            return 0
        return self._transaction(lambda conn: upsert_authors(conn, batch, pg=self._pg))

    def last_processed_block(self) -> int | None:
        with self.engine.connect() as conn:
            return reconcile.last_processed_block(conn)

    def record_metrics(
        self, increments: Mapping[str, int], values: Mapping[str, int] | None = None
    ) -> None:
        """Add to operational counters and set gauges (keys from counters.metric_key), in
        one transaction."""

        def work(conn: Connection) -> None:
            counters.add(conn, increments, pg=self._pg)
            counters.put(conn, values or {}, pg=self._pg)

        self._transaction(work)

    def read_metrics(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return counters.read_all(conn)

    def _upsert(
        self,
        conn: Connection,
        batch: list[MintRecord],
        source: Source,
        revive: bool = True,
        staged: bool = False,
    ) -> StoreResult:
        return upsert_events(
            conn,
            batch,
            source,
            pg=self._pg,
            default_wallet=self.default_author_wallet,
            revive=revive,
            staged=staged,
        )

    def _transaction(self, work: Callable[[Connection], T], attempts: int = 4) -> T:
        for attempt in range(1, attempts + 1):
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except DBAPIError as exc:
                sqlstate = getattr(exc.orig, "sqlstate", None)
                if sqlstate == LOCK_NOT_AVAILABLE:
                    raise TokenHeldError() from None
                if sqlstate not in RETRYABLE_SQLSTATES or attempt == attempts:
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")


def _call(conn: Connection, doc: str) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = conn.execute(text(CALL_SQLALCHEMY), {"doc": doc}).scalar_one()
        return answer
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == TOKEN_CONFLICT_SQLSTATE:
            raise TokenConflictError(exc.orig.diag.message_primary) from None  # type: ignore[union-attr]
        raise
