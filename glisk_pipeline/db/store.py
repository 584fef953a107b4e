"""The one store: the only module that writes mint_events and tokens.

Every face (webhook, Dagster asset, CLI) hands it decoded `MintRecord`s. Each call is ONE
transaction that writes the events, their token rows and the author links, or nothing.

Exactly-once is the database's job, not ours: UNIQUE(tx_hash, log_index) and
UNIQUE(token_id) with ON CONFLICT decide what is new, so two writers racing on the same
log can neither duplicate it nor fail. No read-then-write check decides a duplicate.

A log whose block left the canonical chain is kept with `removed = true` and its token
rows are deleted (they never existed on the chain that won). If the same log comes back
(re-included after a reorg), the upsert revives the row and its tokens.

PostgreSQL (production) takes every batch as one statement over `unnest`ed arrays: one
round trip whatever the size, token rows generated server-side with generate_series.
SQLite (the embedded default) runs the same logic row by row; it serialises writers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeVar

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
    Engine,
    bindparam,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from glisk_pipeline.chain import MintRecord
from glisk_pipeline.db.schema import (
    LAST_PROCESSED_BLOCK,
    authors,
    mint_events,
    processed_ranges,
    system_state,
    tokens,
    webhook_blocks,
)

Source = Literal["webhook", "backfill"]
Outcome = Literal["stored", "restored", "duplicate"]
T = TypeVar("T")

# Rows per statement on PostgreSQL: large enough to amortise the round trip, small enough
# to keep one statement's memory modest. All chunks of a call share one transaction.
PG_CHUNK = 5_000
# SQLSTATEs worth retrying the whole transaction for: deadlock, serialization failure,
# and a NOT NULL author_id: two writers creating the default author at once, where the
# loser's statement snapshot cannot see the winner's row yet (its retry does).
RETRYABLE_SQLSTATES = {"40P01", "40001", "23502"}


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


@dataclass(frozen=True, slots=True)
class _Claim:
    """A webhook delivery's view of a block."""

    webhook_id: str
    block_number: int
    block_hash: str
    sequence_number: int
    created_at: datetime | None

    def newer_than(self, current) -> bool:  # type: ignore[no-untyped-def]
        """Whether this view may replace the applied one (`current`, a webhook_blocks row)."""
        if current.webhook_id == self.webhook_id:  # one webhook: its sequenceNumber orders
            return self.sequence_number >= int(current.sequence_number)
        if current.block_hash == self.block_hash:  # agrees: nothing to undo
            return True
        # another webhook saw another hash: the later event (Alchemy's clock) wins
        if self.created_at is None or current.created_at is None:
            return False
        return _utc(self.created_at) > _utc(current.created_at)


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored in UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class MintStore:
    """Writes decoded records. `default_author_wallet` receives the tokens of authors that
    are not registered in `authors`; `start_block` anchors last_processed_block."""

    def __init__(self, engine: Engine, default_author_wallet: str, start_block: int = 0):
        self.engine = engine
        self.default_author_wallet = default_author_wallet.lower()
        self.start_block = start_block
        self._pg = engine.dialect.name == "postgresql"

    # --- public interface ------------------------------------------------------------

    def store(
        self, records: Iterable[MintRecord], *, source: Source, revive: bool = True
    ) -> StoreResult:
        """Store records that are not there yet; report each as stored/restored/duplicate.
        `revive=False` leaves rows marked removed alone: for blocks that are not final,
        where the caller's view may be an older fork than the one that removed them."""
        batch = _dedupe(records)
        return self._transaction(lambda conn: self._upsert(conn, batch, source, revive))

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
        was already applied for this block (`stale`). Within one webhook, sequenceNumber
        orders deliveries; across webhooks (each numbers its own) Alchemy's createdAt does,
        and a delivery that agrees with the applied hash always applies. A block that a
        backfill has reconciled as final is never changed (the chain decided; a late
        retry must not undo it)."""
        batch = _dedupe(records)
        block_hash = block_hash.lower()
        claim = _Claim(webhook_id, block_number, block_hash, sequence_number, created_at)

        def work(conn: Connection) -> StoreResult:
            refused = self._claim(conn, claim)
            if refused is not None:
                return StoreResult(stale=True, stale_reason=refused)
            removed = self._remove_stale(conn, batch, block_number, block_number, block_hash)
            result = self._upsert(conn, batch, "webhook")
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
    ) -> StoreResult:
        """Make the table equal the chain for a final range [start_block, end_block]:
        rows whose log is not in `records` (the canonical logs of the whole range) are
        marked removed, missing ones are stored, and the range is recorded as processed,
        all in one transaction (so the checkpoint moves with the data)."""
        batch = _dedupe(records)
        outside = [r for r in batch if not start_block <= r.block_number <= end_block]
        if outside:
            raise StoreError(
                f"record in block {outside[0].block_number} is outside the range "
                f"{start_block}-{end_block} being reconciled"
            )

        def work(conn: Connection) -> StoreResult:
            if self._pg:
                # Exclusive against webhook deliveries (which take it shared) and other
                # reconciles: a delivery deciding "not final" must not interleave with a
                # reconcile making the block final; the checkpoint update is serialised.
                conn.execute(_PG_FINAL_LOCK)
            removed = self._remove_stale(conn, batch, start_block, end_block)
            result = self._upsert(conn, batch, source)
            result.removed = removed
            self._record_range(conn, start_block, end_block, len(batch))
            return result

        return self._transaction(work)

    def register_author(
        self,
        wallet_address: str,
        *,
        twitter_handle: str | None = None,
        farcaster_handle: str | None = None,
        prompt_text: str | None = None,
    ) -> int:
        """Create or update an author; returns its id. Wallets compare case-insensitively."""
        values = {
            "wallet_address": wallet_address.lower(),
            "twitter_handle": twitter_handle,
            "farcaster_handle": farcaster_handle,
            "prompt_text": prompt_text,
        }
        insert = pg_insert if self._pg else sqlite_insert
        stmt = insert(authors).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[authors.c.wallet_address],
            set_={k: stmt.excluded[k] for k in values if k != "wallet_address"},
        ).returning(authors.c.id)
        return self._transaction(lambda conn: conn.execute(stmt).scalar_one())

    def last_processed_block(self) -> int | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(system_state.c.value).where(system_state.c.key == LAST_PROCESSED_BLOCK)
            ).scalar_one_or_none()
        return None if value is None else int(value)

    # --- transactions ------------------------------------------------------------------

    def _transaction(self, work: Callable[[Connection], T], attempts: int = 4) -> T:
        for attempt in range(1, attempts + 1):
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except DBAPIError as exc:
                sqlstate = getattr(exc.orig, "sqlstate", None)
                if sqlstate not in RETRYABLE_SQLSTATES or attempt == attempts:
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    # --- building blocks (all run inside the caller's transaction) --------------------

    def _default_author_id(self, conn: Connection) -> int:
        found = conn.execute(
            select(authors.c.id).where(authors.c.wallet_address == self.default_author_wallet)
        ).scalar_one_or_none()
        if found is not None:
            return found
        insert = pg_insert if self._pg else sqlite_insert
        conn.execute(
            insert(authors)
            .values(wallet_address=self.default_author_wallet)
            .on_conflict_do_nothing(index_elements=[authors.c.wallet_address])
        )
        return conn.execute(
            select(authors.c.id).where(authors.c.wallet_address == self.default_author_wallet)
        ).scalar_one()

    def _upsert(
        self, conn: Connection, batch: list[MintRecord], source: Source, revive: bool = True
    ) -> StoreResult:
        result = StoreResult()
        if not batch:
            return result
        # PostgreSQL resolves (and creates) the default author inside the upsert itself
        default_author = 0 if self._pg else self._default_author_id(conn)
        upsert = self._upsert_pg if self._pg else self._upsert_sqlite
        size = PG_CHUNK if self._pg else len(batch)
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            result.events.extend(upsert(conn, chunk, source, default_author, revive))
        return result

    def _upsert_pg(
        self,
        conn: Connection,
        chunk: list[MintRecord],
        source: Source,
        default_author: int,
        revive: bool,
    ) -> list[EventOutcome]:
        if len(chunk) > 200:
            # keep the sort of a big chunk's token rows in memory
            conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        rows = conn.execute(
            _PG_UPSERT,
            {
                "tx_hash": [r.tx_hash for r in chunk],
                "log_index": [r.log_index for r in chunk],
                "block_number": [r.block_number for r in chunk],
                "block_hash": [r.block_hash for r in chunk],
                "block_ts": [r.block_timestamp for r in chunk],
                "contract": [r.contract_address for r in chunk],
                "minter": [r.minter for r in chunk],
                "author": [r.author_wallet for r in chunk],
                "start_token": [r.start_token_id for r in chunk],
                "quantity": [r.quantity for r in chunk],
                "total_paid": [str(r.total_paid) for r in chunk],
                "source": source,
                "revive": revive,
                "default_wallet": self.default_author_wallet,
            },
        ).all()
        written = {(row.tx_hash, row.log_index): row for row in rows}
        _check_tokens((row.quantity, row.tokens, row.start_token_id) for row in rows)
        return [_outcome(r, written.get(r.key)) for r in chunk]

    def _upsert_sqlite(
        self,
        conn: Connection,
        chunk: list[MintRecord],
        source: Source,
        default_author: int,
        revive: bool,
    ) -> list[EventOutcome]:
        wallets = {r.author_wallet for r in chunk}
        author_ids = dict(
            conn.execute(
                select(authors.c.wallet_address, authors.c.id).where(
                    authors.c.wallet_address.in_(wallets)
                )
            ).all()
        )
        insert_event = (
            sqlite_insert(mint_events)
            .on_conflict_do_nothing(index_elements=["tx_hash", "log_index"])
            .returning(mint_events.c.id)
        )
        outcomes = []
        token_rows = []
        for r in chunk:
            values = _event_values(r, source)
            event_id = conn.execute(insert_event.values(**values)).scalar_one_or_none()
            outcome: Outcome = "stored"
            if event_id is None and revive:  # present: revive it if it had been removed
                outcome = "restored"
                event_id = conn.execute(
                    update(mint_events)
                    .where(
                        mint_events.c.tx_hash == r.tx_hash,
                        mint_events.c.log_index == r.log_index,
                        mint_events.c.removed,
                    )
                    .values(**values, detected_at=func.now())
                    .returning(mint_events.c.id)
                ).scalar_one_or_none()
            if event_id is None:
                outcomes.append(
                    EventOutcome(r.tx_hash, r.log_index, "duplicate", None, r.token_ids)
                )
                continue
            outcomes.append(EventOutcome(r.tx_hash, r.log_index, outcome, event_id, r.token_ids))
            author_id = author_ids.get(r.author_wallet, default_author)
            token_rows.extend(
                {
                    "token_id": token_id,
                    "mint_event_id": event_id,
                    "minter_address": r.minter,
                    "author_id": author_id,
                    "mint_timestamp": values["block_timestamp"],
                }
                for token_id in r.token_ids
            )
        if token_rows:
            inserted = conn.execute(
                sqlite_insert(tokens).on_conflict_do_nothing(index_elements=["token_id"]),
                token_rows,
            ).rowcount
            if inserted != len(token_rows):
                taken = _taken_token_ids(conn, token_rows)
                raise TokenConflictError(_conflict_message(taken))
        return outcomes

    def _claim(self, conn: Connection, claim: _Claim) -> str | None:
        """Record this delivery as the one applied for its block, or say why it must not
        be applied: the block is final and reconciled, or an older view of it than the
        one already applied."""
        final = "block already reconciled from the chain as final"
        older = "an older view of this block than the one already applied"
        params = {
            "block": claim.block_number,
            "key": LAST_PROCESSED_BLOCK,
            "webhook_id": claim.webhook_id,
            "hash": claim.block_hash,
            "seq": claim.sequence_number,
            "created": claim.created_at,
        }
        if self._pg:
            # The lock first, in its own statement: our final check must see a reconcile
            # that committed while we waited (a statement's snapshot predates its locks).
            conn.execute(_PG_FINAL_LOCK_SHARED)
            verdict, claimed = conn.execute(_PG_CLAIM, params).one()  # the rules, in SQL
            return final if verdict == "final" else None if claimed else older
        current = conn.execute(_SQLITE_CURRENT, params).one()
        if current.is_final:
            return final
        if current.webhook_id is not None and not claim.newer_than(current):
            return older
        return None if conn.execute(_CLAIM, params).first() is not None else older

    def _remove_stale(
        self,
        conn: Connection,
        batch: list[MintRecord],
        lo: int,
        hi: int,
        keep_hash: str | None = None,
    ) -> int:
        """Mark removed (and drop the tokens of) the live rows the chain contradicts:
        rows in blocks lo..hi that are not among `batch` (the canonical logs of those
        blocks; with `keep_hash`, only rows under another block hash: a webhook delivery
        speaks for its own block hash, not for logs another webhook delivered), and rows of
        `batch`'s logs recorded under another block hash (a reorg moved their transaction;
        left alone, the upsert would call the log a duplicate and keep it, and its token
        ids, at a block the chain no longer has)."""
        if self._pg:
            stale = conn.execute(
                _PG_REMOVE,
                {
                    "lo": lo,
                    "hi": hi,
                    "keep_hash": keep_hash,
                    "tx_hash": [r.tx_hash for r in batch],
                    "log_index": [r.log_index for r in batch],
                    "block_hash": [r.block_hash for r in batch],
                },
            ).all()
            token_ids = [t for row in stale for t in range(row.start, row.start + row.quantity)]
            for start in range(0, len(token_ids), 50_000):  # by primary key, never a scan
                conn.execute(
                    delete(tokens).where(
                        tokens.c.token_id == func.any(bindparam("ids", type_=ARRAY(BigInteger))),
                        tokens.c.mint_event_id.in_([row.id for row in stale]),
                    ),
                    {"ids": token_ids[start : start + 50_000]},
                )
            return len(stale)
        canonical = {(r.tx_hash, r.log_index, r.block_hash) for r in batch}
        live = conn.execute(
            select(
                mint_events.c.id,
                mint_events.c.tx_hash,
                mint_events.c.log_index,
                mint_events.c.block_hash,
            ).where(mint_events.c.block_number.between(lo, hi), ~mint_events.c.removed)
        ).all()
        stale = {
            row.id
            for row in live
            if tuple(row[1:]) not in canonical and row.block_hash != keep_hash
        }
        wanted = {r.key: r.block_hash for r in batch}
        hashes = sorted({r.tx_hash for r in batch})
        for start in range(0, len(hashes), 500):  # bounded IN lists
            rows = conn.execute(
                select(
                    mint_events.c.id,
                    mint_events.c.tx_hash,
                    mint_events.c.log_index,
                    mint_events.c.block_hash,
                ).where(
                    mint_events.c.tx_hash.in_(hashes[start : start + 500]),
                    ~mint_events.c.removed,
                )
            ).all()
            stale |= {
                row.id
                for row in rows
                if wanted.get((row.tx_hash, row.log_index), row.block_hash) != row.block_hash
            }
        return self._remove_ids(conn, sorted(stale))

    def _remove_ids(self, conn: Connection, ids: Sequence[int]) -> int:
        """Mark events removed and delete their token rows (they left the detected queue:
        those tokens do not exist on the canonical chain). Tokens are found by their
        key range, so tokens.mint_event_id needs no index of its own."""
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            events = conn.execute(
                update(mint_events)
                .where(mint_events.c.id.in_(chunk))
                .values(removed=True)
                .returning(mint_events.c.id, mint_events.c.start_token_id, mint_events.c.quantity)
            ).all()
            for event_id, first, quantity in events:
                conn.execute(
                    delete(tokens).where(
                        tokens.c.token_id.between(first, first + quantity - 1),
                        tokens.c.mint_event_id == event_id,
                    )
                )
        return len(ids)

    def _record_range(self, conn: Connection, start: int, end: int, events: int) -> None:
        insert = pg_insert if self._pg else sqlite_insert
        stmt = insert(processed_ranges).values(start_block=start, end_block=end, events=events)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[processed_ranges.c.start_block],
                set_={
                    # greatest() is max() in SQLite's scalar form
                    "end_block": (func.greatest if self._pg else func.max)(
                        stmt.excluded.end_block, processed_ranges.c.end_block
                    ),
                    "events": stmt.excluded.events,
                    "processed_at": func.now(),
                },
            )
        )
        # reconcile_range holds the exclusive lock: concurrent checkpoint updates are
        # serialised, and each sees the ranges committed before it
        self._advance_checkpoint(conn)

    def _advance_checkpoint(self, conn: Connection) -> None:
        """last_processed_block = end of the contiguous run of processed ranges that
        starts at start_block."""
        current = conn.execute(
            select(system_state.c.value).where(system_state.c.key == LAST_PROCESSED_BLOCK)
        ).scalar_one_or_none()
        last = int(current) if current is not None else self.start_block - 1
        reach = select(func.max(processed_ranges.c.end_block)).where(
            processed_ranges.c.start_block <= bindparam("next"),
            processed_ranges.c.end_block > bindparam("last"),
        )
        while True:
            further = conn.execute(reach, {"next": last + 1, "last": last}).scalar_one_or_none()
            if further is None:
                break
            last = further
        if last < self.start_block or (current is not None and int(current) == last):
            return
        insert = pg_insert if self._pg else sqlite_insert
        stmt = insert(system_state).values(key=LAST_PROCESSED_BLOCK, value=str(last))
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[system_state.c.key],
                set_={"value": stmt.excluded.value, "updated_at": func.now()},
            )
        )


# --- helpers ---------------------------------------------------------------------------


def _dedupe(records: Iterable[MintRecord]) -> list[MintRecord]:
    """One record per (tx_hash, log_index), sorted: a stable lock order across writers
    avoids deadlocks, and ON CONFLICT DO UPDATE may not touch a row twice."""
    unique = {r.key: r for r in records}
    return [unique[k] for k in sorted(unique)]


def _event_values(r: MintRecord, source: Source) -> dict[str, object]:
    return {
        "tx_hash": r.tx_hash,
        "log_index": r.log_index,
        "block_number": r.block_number,
        "block_hash": r.block_hash,
        "block_timestamp": datetime.fromtimestamp(r.block_timestamp, UTC),
        "contract_address": r.contract_address,
        "minter": r.minter,
        "author_wallet": r.author_wallet,
        "start_token_id": r.start_token_id,
        "quantity": r.quantity,
        "total_paid": r.total_paid,
        "source": source,
        "removed": False,
    }


def _outcome(r: MintRecord, row) -> EventOutcome:  # type: ignore[no-untyped-def]
    if row is None:
        return EventOutcome(r.tx_hash, r.log_index, "duplicate", None, r.token_ids)
    return EventOutcome(
        r.tx_hash, r.log_index, "stored" if row.inserted else "restored", row.id, r.token_ids
    )


def _check_tokens(rows: Iterable[tuple[int, int, int]]) -> None:
    for quantity, written, start in rows:
        if written != quantity:
            raise TokenConflictError(
                f"event minting tokens {start}..{start + quantity - 1} wrote {written} of "
                f"{quantity} token rows: the others are held by another live event"
            )


def _taken_token_ids(conn: Connection, token_rows: list[dict[str, object]]) -> list[int]:
    ids = [row["token_id"] for row in token_rows]
    mine = {row["token_id"]: row["mint_event_id"] for row in token_rows}
    held = conn.execute(
        select(tokens.c.token_id, tokens.c.mint_event_id).where(tokens.c.token_id.in_(ids))
    ).all()
    return sorted(t for t, event in held if mine[t] != event)


def _conflict_message(taken: list[int]) -> str:
    shown = ", ".join(map(str, taken[:10])) + (" ..." if len(taken) > 10 else "")
    return f"token ids already held by another live event: {shown}"


# One statement per chunk: upsert the events, insert their tokens, report what was written.
# ON CONFLICT ... WHERE removed revives a removed row; a live row is left alone (duplicate).
# `xmax = 0` tells a fresh insert from a revived row.
_PG_UPSERT = text(
    """
WITH incoming AS (
    SELECT * FROM unnest(
        CAST(:tx_hash AS text[]), CAST(:log_index AS int[]), CAST(:block_number AS bigint[]),
        CAST(:block_hash AS text[]), CAST(:block_ts AS bigint[]), CAST(:contract AS text[]),
        CAST(:minter AS text[]), CAST(:author AS text[]), CAST(:start_token AS bigint[]),
        CAST(:quantity AS int[]), CAST(:total_paid AS numeric[])
    ) AS t(tx_hash, log_index, block_number, block_hash, block_ts, contract_address,
           minter, author_wallet, start_token_id, quantity, total_paid)
),
upserted AS (
    INSERT INTO mint_events AS m (
        tx_hash, log_index, block_number, block_hash, block_timestamp, contract_address,
        minter, author_wallet, start_token_id, quantity, total_paid, source, removed)
    SELECT tx_hash, log_index, block_number, block_hash, to_timestamp(block_ts),
           contract_address, minter, author_wallet, start_token_id, quantity, total_paid,
           :source, false
    FROM incoming
    ORDER BY tx_hash, log_index
    ON CONFLICT (tx_hash, log_index) DO UPDATE SET
        block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash,
        block_timestamp = EXCLUDED.block_timestamp,
        contract_address = EXCLUDED.contract_address, minter = EXCLUDED.minter,
        author_wallet = EXCLUDED.author_wallet, start_token_id = EXCLUDED.start_token_id,
        quantity = EXCLUDED.quantity, total_paid = EXCLUDED.total_paid,
        source = EXCLUDED.source, removed = false, detected_at = now()
    WHERE m.removed AND CAST(:revive AS boolean)
    RETURNING m.id, m.tx_hash, m.log_index, m.start_token_id, m.quantity, m.minter,
              m.author_wallet, m.block_timestamp, (m.xmax = 0) AS inserted
),
new_default AS (
    -- the default author, created the first time it is needed
    INSERT INTO authors (wallet_address)
    SELECT CAST(:default_wallet AS varchar)
    WHERE NOT EXISTS (SELECT 1 FROM authors WHERE wallet_address = :default_wallet)
    ON CONFLICT (wallet_address) DO NOTHING
    RETURNING id
),
default_author AS (
    SELECT id FROM new_default
    UNION ALL
    SELECT id FROM authors WHERE wallet_address = :default_wallet
),
new_tokens AS (
    INSERT INTO tokens (token_id, mint_event_id, minter_address, author_id, status,
                        mint_timestamp)
    SELECT u.start_token_id + g.i, u.id, u.minter,
           COALESCE(a.id, (SELECT id FROM default_author LIMIT 1)),
           'detected', u.block_timestamp
    FROM upserted u
    CROSS JOIN LATERAL generate_series(0, u.quantity - 1) AS g(i)
    LEFT JOIN authors a ON a.wallet_address = u.author_wallet
    ORDER BY 1
    ON CONFLICT (token_id) DO NOTHING
    RETURNING mint_event_id
)
SELECT u.id, u.tx_hash, u.log_index, u.inserted, u.quantity, u.start_token_id,
       COALESCE(n.written, 0) AS tokens
FROM upserted u
LEFT JOIN (SELECT mint_event_id, count(*) AS written FROM new_tokens GROUP BY 1) n
       ON n.mint_event_id = u.id
"""
)

# Is the block final and reconciled (at or below the contiguous checkpoint, or inside any
# processed range: ranges above a gap count too)? And the claim row of its block, locked.
_FINAL_CHECK = """
    :block <= COALESCE(
        (SELECT CAST(value AS bigint) FROM system_state WHERE key = :key), -1)
    OR EXISTS (SELECT 1 FROM processed_ranges
               WHERE end_block >= :block AND start_block <= :block)
"""
_CURRENT = f"""
SELECT ({_FINAL_CHECK}) AS is_final, w.webhook_id, w.block_hash, w.sequence_number,
       w.created_at
FROM (SELECT 1) AS one
LEFT JOIN (SELECT * FROM webhook_blocks WHERE block_number = :block {{lock}}) AS w ON true
"""
# PostgreSQL: read (and lock) the block's row, decide as _Claim.newer_than does, and
# record the claim, in one round trip per delivery.
_PG_CLAIM = text(
    f"""
WITH cur AS (
    SELECT webhook_id, block_hash, sequence_number, created_at
    FROM webhook_blocks WHERE block_number = :block FOR UPDATE
),
verdict AS (
    SELECT CASE
        WHEN ({_FINAL_CHECK}) THEN 'final'
        WHEN NOT EXISTS (SELECT 1 FROM cur) THEN 'apply'
        WHEN (SELECT webhook_id FROM cur) = :webhook_id THEN
            CASE WHEN CAST(:seq AS numeric) >= (SELECT sequence_number FROM cur)
                 THEN 'apply' ELSE 'older' END
        WHEN (SELECT block_hash FROM cur) = :hash THEN 'apply'
        WHEN CAST(:created AS timestamptz) > (SELECT created_at FROM cur) THEN 'apply'
        ELSE 'older'
    END AS v
),
claimed AS (
    INSERT INTO webhook_blocks AS w
        (block_number, webhook_id, block_hash, sequence_number, created_at)
    SELECT :block, :webhook_id, :hash, CAST(:seq AS numeric), CAST(:created AS timestamptz)
    FROM verdict WHERE v = 'apply'
    ON CONFLICT (block_number) DO UPDATE SET
        webhook_id = EXCLUDED.webhook_id, block_hash = EXCLUDED.block_hash,
        sequence_number = EXCLUDED.sequence_number, created_at = EXCLUDED.created_at,
        received_at = now()
    WHERE w.webhook_id <> EXCLUDED.webhook_id
       OR EXCLUDED.sequence_number >= w.sequence_number
    RETURNING 1
)
SELECT v, EXISTS (SELECT 1 FROM claimed) FROM verdict
"""
).bindparams(
    bindparam("seq", type_=webhook_blocks.c.sequence_number.type),
    bindparam("created", type_=webhook_blocks.c.created_at.type),
)
_CURRENT_TYPES = {
    "sequence_number": webhook_blocks.c.sequence_number.type,
    "created_at": webhook_blocks.c.created_at.type,
}
_SQLITE_CURRENT = text(_CURRENT.format(lock="")).columns(**_CURRENT_TYPES)
# Record the delivery applied for a block. The row may have appeared since it was read
# (two first deliveries at once): within one webhook the database settles that race by
# sequenceNumber. Plain SQL, valid on both dialects; built once (it runs per delivery).
_CLAIM = text(
    """
INSERT INTO webhook_blocks (block_number, webhook_id, block_hash, sequence_number, created_at)
VALUES (:block, :webhook_id, :hash, :seq, :created)
ON CONFLICT (block_number) DO UPDATE SET
    webhook_id = excluded.webhook_id, block_hash = excluded.block_hash,
    sequence_number = excluded.sequence_number, created_at = excluded.created_at,
    received_at = CURRENT_TIMESTAMP
WHERE webhook_blocks.webhook_id <> excluded.webhook_id
   OR excluded.sequence_number >= webhook_blocks.sequence_number
RETURNING block_number
"""
).bindparams(
    bindparam("seq", type_=webhook_blocks.c.sequence_number.type),
    bindparam("created", type_=webhook_blocks.c.created_at.type),
)
# Reconciles take it exclusive, webhook deliveries shared (see MintStore.reconcile_range).
_PG_FINAL_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('glisk.final'))")
_PG_FINAL_LOCK_SHARED = text("SELECT pg_advisory_xact_lock_shared(hashtext('glisk.final'))")

# The rows the chain contradicts (see MintStore._remove_stale), marked removed; their token
# rows are deleted by key afterwards. A UNION of index lookups: an OR would scan the table.
_PG_REMOVE = text(
    """
WITH incoming AS (
    SELECT * FROM unnest(CAST(:tx_hash AS text[]), CAST(:log_index AS int[]),
                         CAST(:block_hash AS text[])) AS t(tx_hash, log_index, block_hash)
)
UPDATE mint_events m SET removed = true
FROM (
    SELECT e.id FROM mint_events e
    WHERE e.block_number BETWEEN :lo AND :hi AND NOT e.removed
      AND e.block_hash IS DISTINCT FROM CAST(:keep_hash AS text)
      AND NOT EXISTS (SELECT 1 FROM incoming c WHERE c.tx_hash = e.tx_hash
                      AND c.log_index = e.log_index AND c.block_hash = e.block_hash)
    UNION
    SELECT e.id FROM incoming c
    JOIN mint_events e ON e.tx_hash = c.tx_hash AND e.log_index = c.log_index
    WHERE e.block_hash <> c.block_hash AND NOT e.removed
) AS x
WHERE m.id = x.id
RETURNING m.id, m.start_token_id AS start, m.quantity
"""
)
