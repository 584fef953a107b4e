"""The store's bulk path: batches of at least COPY_MIN_RECORDS go through the COPY staging
table on PostgreSQL (small ones through arrays, tested in test_store.py). The same
guarantees: exactly-once under concurrent writers, removal and revival, token conflicts
rolled back with the checkpoint. Run on SQLite too, whose path has no staging."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select

from devtools.local_chain import DEFAULT_AUTHOR
from glisk_pipeline.db.schema import mint_events, tokens
from glisk_pipeline.db.store import MintStore, StoreResult, TokenConflictError
from glisk_pipeline.db.store.upserts import COPY_MIN_RECORDS
from tests.support.factories import block_hash, chain_of, make_records
from tests.support.race import race

# make_records puts 3 logs in each block from block 100: a multiple of 3 is whole blocks
BULK = 3 * COPY_MIN_RECORDS


def count(engine: Engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def live_keys(engine: Engine) -> set[tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(mint_events.c.tx_hash, mint_events.c.log_index).where(~mint_events.c.removed)
        ).all()
    return {(tx, index) for tx, index in rows}


def first_block(records: list) -> int:
    return records[0].block_number


def last_block(records: list) -> int:
    return records[-1].block_number


def test_concurrent_bulk_writers_store_each_log_once(engine: Engine) -> None:
    """Four writers at once on overlapping bulk batches, reconciles and plain stores
    mixed: every log is reported stored by exactly one of them, no row is duplicated or
    removed, every token row exists once."""
    store = MintStore(engine, DEFAULT_AUTHOR, start_block=100)
    records = make_records(2 * BULK)
    a, b, c = records[:BULK], records[BULK // 2 : BULK + BULK // 2], records[BULK:]
    assert min(len(a), len(b), len(c)) >= COPY_MIN_RECORDS  # the staged path
    writers: list[Callable[[], StoreResult]] = [
        lambda: store.reconcile_range(a, start_block=first_block(a), end_block=last_block(a)),
        lambda: store.store(b, source="webhook"),
        lambda: store.reconcile_range(c, start_block=first_block(c), end_block=last_block(c)),
        lambda: store.store(records[::-1], source="backfill"),
    ]
    results = race(writers)
    assert sum(r.stored for r in results) == len(records)
    assert sum(r.removed for r in results) == 0
    assert count(engine, mint_events) == len(records)
    assert live_keys(engine) == {r.key for r in records}
    assert count(engine, tokens) == sum(r.quantity for r in records)
    assert store.last_processed_block() == last_block(records)


def test_bulk_reconcile_removes_revives_and_moves(engine: Engine) -> None:
    """A bulk reconcile over rows a webhook stored: a log not on the chain is marked
    removed (its tokens deleted), a removed log that is back is revived with its tokens,
    a log whose transaction moved to another block is moved, the rest are duplicates."""
    store = MintStore(engine, DEFAULT_AUTHOR, start_block=100)
    canonical = make_records(BULK)
    first, last = first_block(canonical), last_block(canonical)
    # a log the webhook saw on a fork of block first + 10 that lost
    orphan = make_records(
        1, seed=3, first_token=10**6, first_block=first + 10, block_hash_salt="f"
    )[0]
    # a transaction the webhook saw in block `last` on a lost fork, which the chain has in
    # block `first`
    moved_from = canonical[0]
    webhook_view = dataclasses.replace(
        moved_from, block_number=last, block_hash=block_hash(last, "f")
    )
    revived = canonical[5]
    store.store([*canonical[1:], orphan, webhook_view], source="webhook")
    store.store_block_delivery(  # a reorg delivery that removes `revived`'s block
        block_number=revived.block_number,
        block_hash="0x" + "c" * 64,
        sequence_number=1,
        records=[],
    )
    assert count(engine, mint_events, mint_events.c.removed) == 3  # `revived`'s block
    result = store.reconcile_range(
        canonical, start_block=first, end_block=last, canonical=chain_of(*canonical)
    )
    outcomes = {e.tx_hash: e.outcome for e in result.events}
    assert outcomes[revived.tx_hash] == "restored"
    assert outcomes[moved_from.tx_hash] == "restored"  # moved: removed there, back here
    assert result.removed == 2  # the orphan and the webhook's view of the moved log
    assert live_keys(engine) == {r.key for r in canonical}
    assert count(engine, tokens) == sum(r.quantity for r in canonical)
    with engine.connect() as conn:
        moved_block = conn.execute(
            select(mint_events.c.block_number).where(mint_events.c.tx_hash == moved_from.tx_hash)
        ).scalar_one()
    assert moved_block == first
    assert store.last_processed_block() == last


def test_bulk_token_conflict_rolls_back_rows_and_checkpoint(engine: Engine) -> None:
    store = MintStore(engine, DEFAULT_AUTHOR, start_block=100)
    held = make_records(BULK)
    store.store(held, source="webhook")
    # other logs (another seed) claiming the same token ids, in later blocks
    clash = make_records(BULK, seed=99, first_block=last_block(held) + 1)
    # ... while the chain still has `held`'s blocks: a real conflict, naming both events
    with pytest.raises(TokenConflictError, match=r"held by live event .* still canonical"):
        store.reconcile_range(
            clash,
            start_block=first_block(clash),
            end_block=last_block(clash),
            canonical=chain_of(*held, *clash),
        )
    assert count(engine, mint_events) == len(held)
    assert store.last_processed_block() is None
    # the failed transaction left no staging table behind on its pooled connection
    fresh = make_records(BULK, seed=5, first_token=10**6, first_block=last_block(clash) + 1)
    assert store.store(fresh, source="backfill").stored == len(fresh)
    assert store.store(fresh, source="backfill").duplicates == len(fresh)
