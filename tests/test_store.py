"""The one store, on PostgreSQL and SQLite: idempotency, atomicity, concurrency, authors,
reorg removal and range reconciliation."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select, text

from devtools.local_chain import DEFAULT_AUTHOR
from glisk_pipeline.chain.decoder import MintRecord
from glisk_pipeline.db.schema import authors, mint_events, tokens
from glisk_pipeline.db.store import MintStore, StoreError, TokenConflictError
from tests.support.factories import chain_of, make_records
from tests.support.race import race


def count(engine: Engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


@pytest.fixture
def store(engine: Engine) -> MintStore:
    return MintStore(engine, DEFAULT_AUTHOR, start_block=0)


def test_same_records_twice_store_once(store: MintStore, engine: Engine) -> None:
    records = make_records(1_000)
    first = store.store(records, source="backfill")
    second = store.store(records, source="webhook")
    assert (first.stored, first.duplicates) == (1_000, 0)
    assert (second.stored, second.duplicates) == (0, 1_000)
    assert count(engine, mint_events) == 1_000
    assert count(engine, tokens) == sum(r.quantity for r in records) == first.tokens
    # the first writer's source wins: a duplicate never rewrites a row
    assert count(engine, mint_events, mint_events.c.source == "webhook") == 0


def test_token_rows_match_each_event(store: MintStore, engine: Engine) -> None:
    records = make_records(200)
    store.store(records, source="backfill")
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                mint_events.c.start_token_id, mint_events.c.quantity, func.count(tokens.c.token_id)
            )
            .join(tokens, tokens.c.mint_event_id == mint_events.c.id)
            .group_by(mint_events.c.id)
        ).all()
        statuses = set(conn.execute(select(tokens.c.status).distinct()).scalars())
    assert len(rows) == 200 and all(q == n for _, q, n in rows)
    assert statuses == {"detected"}


def test_duplicates_inside_one_call_are_collapsed(store: MintStore, engine: Engine) -> None:
    records = make_records(10)
    result = store.store(records + records[:4], source="backfill")
    assert result.stored == 10 and count(engine, mint_events) == 10


def test_failure_mid_batch_leaves_nothing(store: MintStore, engine: Engine) -> None:
    good = make_records(50)
    # a record that violates a CHECK constraint (quantity must be > 0) halfway through
    bad = dataclasses.replace(good[25], quantity=0, tx_hash="0x" + "f" * 64)
    with pytest.raises(Exception):  # noqa: B017 - the driver's IntegrityError
        store.store([*good[:25], bad, *good[25:]], source="backfill")
    assert count(engine, mint_events) == 0
    assert count(engine, tokens) == 0


def test_token_conflict_rolls_back_and_names_ids(store: MintStore, engine: Engine) -> None:
    store.store(make_records(5), source="backfill")
    clash = make_records(3, seed=99)  # different logs claiming token ids from 1
    with pytest.raises(TokenConflictError, match="token"):
        store.store(clash, source="webhook")
    assert count(engine, mint_events) == 5


def test_authors_registered_mixed_case_and_default(store: MintStore, engine: Engine) -> None:
    records = make_records(60, authors=3)
    wallets = sorted({r.author_wallet for r in records})
    registered = wallets[0]
    checksum_like = "0x" + registered[2:].upper()
    author_id = store.register_author(checksum_like, twitter_handle="alice")
    assert store.register_author(registered) == author_id  # case-insensitive identity
    store.store(records, source="backfill")
    with engine.connect() as conn:
        default_id = conn.execute(
            select(authors.c.id).where(authors.c.wallet_address == DEFAULT_AUTHOR)
        ).scalar_one()
        by_wallet = dict(
            conn.execute(
                select(mint_events.c.author_wallet, func.min(tokens.c.author_id))
                .join(tokens, tokens.c.mint_event_id == mint_events.c.id)
                .group_by(mint_events.c.author_wallet)
            ).all()
        )
    assert by_wallet[registered] == author_id
    assert all(by_wallet[w] == default_id for w in wallets[1:])


def test_total_paid_exact_above_2_pow_63(store: MintStore, engine: Engine) -> None:
    huge = 2**255 + 12345
    record = dataclasses.replace(make_records(1)[0], total_paid=huge)
    store.store([record], source="webhook")
    with engine.connect() as conn:
        value = conn.execute(select(mint_events.c.total_paid)).scalar_one()
    assert Decimal(value) == Decimal(huge)


def test_concurrent_writers_on_overlapping_records(store: MintStore, engine: Engine) -> None:
    records = make_records(600)
    slices = [records[0:400], records[200:600], records[100:500], records[::-1]]

    def write(batch) -> None:
        for start in range(0, len(batch), 50):
            store.store(batch[start : start + 50], source="webhook")

    race([lambda s=s: write(s) for s in slices])
    assert count(engine, mint_events) == 600
    assert count(engine, tokens) == sum(r.quantity for r in records)


def test_reorg_delivery_marks_old_hash_removed_and_ignores_stale(
    store: MintStore, engine: Engine
) -> None:
    old = make_records(3)  # all in block 100
    assert {r.block_number for r in old} == {100}
    first = store.store_block_delivery(
        block_number=100, block_hash=old[0].block_hash, sequence_number=2**60, records=old
    )
    assert first.stored == 3
    new_hash = "0x" + "c" * 64
    # after the reorg, one of the three logs is in the new block, under a new tx
    moved = dataclasses.replace(old[0], block_hash=new_hash, tx_hash="0x" + "9" * 64)
    second = store.store_block_delivery(
        block_number=100, block_hash=new_hash, sequence_number=2**60 + 1, records=[moved]
    )
    assert second.removed == 3 and second.stored == 1
    assert count(engine, mint_events, ~mint_events.c.removed) == 1
    assert count(engine, tokens) == moved.quantity
    # the older delivery arriving late changes nothing
    late = store.store_block_delivery(
        block_number=100, block_hash=old[0].block_hash, sequence_number=2**60, records=old
    )
    assert late.stale and late.stored == 0
    assert count(engine, mint_events, ~mint_events.c.removed) == 1


def test_removed_log_is_revived_when_it_returns(store: MintStore, engine: Engine) -> None:
    record = make_records(1)[0]
    store.store_block_delivery(
        block_number=100, block_hash=record.block_hash, sequence_number=1, records=[record]
    )
    store.store_block_delivery(
        block_number=100, block_hash="0x" + "c" * 64, sequence_number=2, records=[]
    )
    assert count(engine, tokens) == 0
    again = dataclasses.replace(record, block_number=101, block_hash="0x" + "d" * 64)
    result = store.store([again], source="webhook")
    assert [e.outcome for e in result.events] == ["restored"]
    assert count(engine, tokens) == record.quantity
    assert count(engine, mint_events, ~mint_events.c.removed) == 1


def test_reconcile_range_makes_table_equal_chain(engine: Engine) -> None:
    store = MintStore(engine, DEFAULT_AUTHOR, start_block=100)
    canonical = make_records(30)  # blocks 100..109
    # two logs a webhook saw on a fork of block 105 that lost
    webhook_only = make_records(2, seed=3, first_token=10_000, first_block=105, block_hash_salt="f")
    store.store(canonical[:10] + webhook_only, source="webhook")
    chain = chain_of(*canonical)
    result = store.reconcile_range(canonical, start_block=100, end_block=109, canonical=chain)
    assert (result.removed, result.stored, result.duplicates) == (2, 20, 10)
    with engine.connect() as conn:
        live = set(
            conn.execute(
                select(mint_events.c.tx_hash, mint_events.c.log_index).where(~mint_events.c.removed)
            ).all()
        )
    assert live == {r.key for r in canonical}
    assert store.last_processed_block() == 109
    again = store.reconcile_range(canonical, start_block=100, end_block=109, canonical=chain)
    assert (again.removed, again.stored, again.duplicates) == (0, 0, 30)


def test_reconcile_rejects_records_outside_range(store: MintStore) -> None:
    with pytest.raises(StoreError, match="outside the range"):
        store.reconcile_range(make_records(5), start_block=0, end_block=99)


def test_checkpoint_is_contiguous(store: MintStore) -> None:
    store.reconcile_range([], start_block=20, end_block=29)
    assert store.last_processed_block() is None  # gap 0-19
    store.reconcile_range([], start_block=0, end_block=9)
    assert store.last_processed_block() == 9
    store.reconcile_range([], start_block=10, end_block=19)
    assert store.last_processed_block() == 29


def test_rows_are_lowercase_hex_everywhere(store: MintStore, engine: Engine) -> None:
    store.store(make_records(20), source="backfill")
    with engine.connect() as conn:
        upper = conn.execute(
            text(
                "SELECT count(*) FROM mint_events WHERE tx_hash <> lower(tx_hash) "
                "OR minter <> lower(minter) OR author_wallet <> lower(author_wallet)"
            )
        ).scalar_one()
    assert upper == 0
    with pytest.raises(Exception), engine.begin() as conn:  # noqa: B017
        conn.execute(authors.insert().values(wallet_address="0x" + "AB" * 20))


def _swap_blocks(records):
    """A reorg that swaps two transactions between blocks 100 and 101, and with them
    their token ids (ids follow chain order)."""
    tx1, tx2 = records
    hash100, hash101 = "0x" + "a1" * 32, "0x" + "b2" * 32
    new_tx2 = dataclasses.replace(
        tx2, block_number=100, block_hash=hash100, start_token_id=tx1.start_token_id
    )
    new_tx1 = dataclasses.replace(
        tx1,
        block_number=101,
        block_hash=hash101,
        start_token_id=tx1.start_token_id + tx2.quantity,
    )
    return new_tx1, new_tx2


def _two_blocks() -> list:
    first, second = make_records(2)
    second = dataclasses.replace(second, block_number=101, block_hash="0x" + "0b" * 32)
    return [first, second]


def test_reorg_moving_transactions_between_blocks_loses_nothing(
    store: MintStore, engine: Engine
) -> None:
    old = _two_blocks()
    store.store(old, source="webhook")
    new_tx1, new_tx2 = _swap_blocks(old)
    # the backfill reconciles the final range block by block
    chain = chain_of(new_tx1, new_tx2)
    first = store.reconcile_range([new_tx2], start_block=100, end_block=100, canonical=chain)
    second = store.reconcile_range([new_tx1], start_block=101, end_block=101, canonical=chain)
    assert [e.outcome for e in first.events + second.events] == ["restored", "restored"]
    with engine.connect() as conn:
        live = conn.execute(
            select(mint_events.c.tx_hash, mint_events.c.block_number, mint_events.c.start_token_id)
            .where(~mint_events.c.removed)
            .order_by(mint_events.c.block_number)
        ).all()
    assert live == [
        (new_tx2.tx_hash, 100, new_tx2.start_token_id),
        (new_tx1.tx_hash, 101, new_tx1.start_token_id),
    ]
    assert count(engine, tokens) == old[0].quantity + old[1].quantity


def _delivered_two_blocks(store: MintStore) -> list:
    old = _two_blocks()
    for r in old:
        store.store_block_delivery(
            block_number=r.block_number, block_hash=r.block_hash, sequence_number=1, records=[r]
        )
    return old


def _live(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(mint_events.c.tx_hash, mint_events.c.block_hash).where(~mint_events.c.removed)
        )
        return {(tx, block_hash) for tx, block_hash in rows}


def test_webhook_delivery_moving_a_log_to_another_block(store: MintStore, engine: Engine) -> None:
    old = _delivered_two_blocks(store)
    new_tx1, new_tx2 = _swap_blocks(old)
    # block 101 (now holding tx1) arrives before block 100's re-delivery
    store.store_block_delivery(
        block_number=101, block_hash=new_tx1.block_hash, sequence_number=2, records=[new_tx1]
    )
    store.store_block_delivery(
        block_number=100, block_hash=new_tx2.block_hash, sequence_number=3, records=[new_tx2]
    )
    live = {(new_tx1.tx_hash, new_tx1.block_hash), (new_tx2.tx_hash, new_tx2.block_hash)}
    assert _live(engine) == live
    assert count(engine, tokens) == old[0].quantity + old[1].quantity


def test_a_repeated_delivery_does_not_move_a_log_back(store: MintStore, engine: Engine) -> None:
    # Block 100's delivery was applied (e.g. its call committed after the sidecar had
    # answered 500), a reorg moved tx1 to block 101 and block 101 was delivered; then
    # Alchemy's retry of the applied delivery arrives, before block 100's new view.
    old = _delivered_two_blocks(store)
    new_tx1, new_tx2 = _swap_blocks(old)
    store.store_block_delivery(
        block_number=101, block_hash=new_tx1.block_hash, sequence_number=2, records=[new_tx1]
    )
    retry = store.store_block_delivery(
        block_number=100, block_hash=old[0].block_hash, sequence_number=1, records=[old[0]]
    )
    assert [e.outcome for e in retry.events] == ["duplicate"]  # applied already: no move
    store.store_block_delivery(
        block_number=100, block_hash=new_tx2.block_hash, sequence_number=3, records=[new_tx2]
    )
    live = {(new_tx1.tx_hash, new_tx1.block_hash), (new_tx2.tx_hash, new_tx2.block_hash)}
    assert _live(engine) == live
    assert count(engine, tokens) == old[0].quantity + old[1].quantity


def test_another_webhooks_late_retry_of_the_applied_view_does_not_move_a_log_back(
    store: MintStore, engine: Engine
) -> None:
    # Two webhooks on the contract. Webhook a delivers blocks 100 and 101; b's delivery of
    # block 100 fails (Alchemy will retry it). A reorg swaps the two transactions, and a
    # delivers block 101's new view (tx1 moved there). Then b's retry of block 100's old
    # view arrives: it agrees with the view applied for block 100, but it predates the
    # reorg, and nothing orders it against block 101's view. It may only add what is
    # missing: moving tx1 back would remove the canonical row at block 101 and delete its
    # tokens, and a's new view of block 100 would then remove tx1 for good.
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    old = _two_blocks()
    for seq, r in enumerate(old, start=1):
        store.store_block_delivery(
            block_number=r.block_number,
            block_hash=r.block_hash,
            sequence_number=seq,
            records=[r],
            webhook_id="wh_a",
            created_at=t0 + timedelta(seconds=seq),
        )
    new_tx1, new_tx2 = _swap_blocks(old)
    store.store_block_delivery(
        block_number=101,
        block_hash=new_tx1.block_hash,
        sequence_number=3,
        records=[new_tx1],
        webhook_id="wh_a",
        created_at=t0 + timedelta(seconds=10),
    )
    retry = store.store_block_delivery(
        block_number=100,
        block_hash=old[0].block_hash,
        sequence_number=1,
        records=[old[0]],
        webhook_id="wh_b",
        created_at=t0 + timedelta(seconds=2),  # later than the view applied for block 100
    )
    assert not retry.stale and retry.removed == 0
    assert [e.outcome for e in retry.events] == ["duplicate"]
    assert (new_tx1.tx_hash, new_tx1.block_hash) in _live(engine)
    store.store_block_delivery(
        block_number=100,
        block_hash=new_tx2.block_hash,
        sequence_number=4,
        records=[new_tx2],
        webhook_id="wh_a",
        created_at=t0 + timedelta(seconds=12),
    )
    live = {(new_tx1.tx_hash, new_tx1.block_hash), (new_tx2.tx_hash, new_tx2.block_hash)}
    assert _live(engine) == live
    assert count(engine, tokens) == old[0].quantity + old[1].quantity


def _moving_to_block_100() -> tuple:
    """A log (record), its row in block 101 before a reorg (old) and in block 100 after it."""
    (record,) = make_records(1)
    old = dataclasses.replace(record, block_number=101, block_hash="0x" + "01" * 32)
    moved = dataclasses.replace(record, block_number=100, block_hash="0x" + "20" * 32)
    return record, old, moved


def _view(
    store: MintStore,
    webhook: str,
    seq: int,
    second: float | None,
    block: int,
    block_hash: str,
    records: list,
) -> None:
    from datetime import UTC, datetime, timedelta

    store.store_block_delivery(
        block_number=block,
        block_hash=block_hash,
        sequence_number=seq,
        records=records,
        webhook_id=webhook,
        created_at=None
        if second is None
        else datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=second),
    )


def _heartbeat_first_reorg(store: MintStore, old, moved) -> None:
    """a applies block 100 (empty) and 101 (old); the reorg moves the log to block 100, and
    heartbeat-only webhook b's view of the new block 100 arrives first."""
    _view(store, "a", 1, 1, 100, "0x" + "10" * 32, [])
    _view(store, "a", 2, 2, 101, old.block_hash, [old])
    _view(store, "b", 1, 3, 100, moved.block_hash, [])


def test_a_reorg_back_restores_a_log_when_another_webhooks_heartbeat_came_first(
    store: MintStore, engine: Engine
) -> None:
    # Webhook b's filter matches none of our logs: it sends heartbeats, which claim blocks
    # too. Block 100 goes H1 (tx1) -> H2 -> back to H1, b's view first each time.
    (tx1,) = make_records(1)
    h1, h2 = tx1.block_hash, "0x" + "a2" * 32
    _view(store, "a", 1, 1, 100, h1, [tx1])
    _view(store, "b", 1, 2, 100, h2, [])  # the reorg: tx1 removed
    _view(store, "a", 2, 2.1, 100, h2, [])
    _view(store, "b", 2, 3, 100, h1, [])  # back to H1
    _view(store, "a", 3, 3.1, 100, h1, [tx1])  # agrees with b's claim: must revive tx1
    assert _live(engine) == {(tx1.tx_hash, h1)}
    assert count(engine, tokens) == tx1.quantity


def test_a_log_moving_to_an_earlier_block_is_kept_when_a_heartbeat_came_first(
    store: MintStore, engine: Engine
) -> None:
    record, old, moved = _moving_to_block_100()
    _heartbeat_first_reorg(store, old, moved)
    _view(store, "a", 3, 3.1, 100, moved.block_hash, [moved])  # must move tx1 to block 100
    _view(store, "b", 2, 4, 101, "0x" + "02" * 32, [])
    _view(store, "a", 4, 4.1, 101, "0x" + "02" * 32, [])
    assert _live(engine) == {(record.tx_hash, moved.block_hash)}
    assert count(engine, tokens) == record.quantity


def test_an_older_view_does_not_undo_another_webhooks_newer_agreeing_one(
    store: MintStore, engine: Engine
) -> None:
    # The chain goes H1 (t10) -> H0 (t12) -> H1 (t20). Webhook b's newest view agrees
    # with a's; b's older view of H0, retried late, must not replace it.
    (tx1,) = make_records(1)
    h1, h0 = tx1.block_hash, "0x" + "c0" * 32
    tx0 = dataclasses.replace(tx1, tx_hash="0x" + "d" * 64, block_hash=h0, start_token_id=10**6)
    _view(store, "a", 5, 10, 100, h1, [tx1])
    _view(store, "b", 3, 20, 100, h1, [tx1])
    _view(store, "b", 2, 12, 100, h0, [tx0])  # older than b's applied view: stale
    assert _live(engine) == {(tx1.tx_hash, h1)}
    assert count(engine, tokens) == tx1.quantity


@pytest.mark.parametrize("webhook_b_views_101_first", [True, False])
def test_a_log_moving_to_an_earlier_block_survives_views_of_both_blocks_out_of_order(
    store: MintStore, engine: Engine, webhook_b_views_101_first: bool
) -> None:
    # tx moves from block 101 to block 100. Block 101's new view (without tx) is applied
    # before a's view of block 100 with tx, which agrees with b's heartbeat there: tx's
    # row at 101 is removed by then, and a's view must still bring it back at 100.
    record, old, moved = _moving_to_block_100()
    _heartbeat_first_reorg(store, old, moved)
    if webhook_b_views_101_first:
        _view(store, "b", 2, 4, 101, "0x" + "02" * 32, [])
    else:  # a's own later view of 101 overtakes its view of 100
        _view(store, "a", 4, 4, 101, "0x" + "02" * 32, [])
    _view(store, "a", 3, 3.1, 100, moved.block_hash, [moved])
    assert _live(engine) == {(record.tx_hash, moved.block_hash)}
    assert count(engine, tokens) == record.quantity


def test_an_agreeing_view_moves_a_log_held_under_a_hash_its_block_no_longer_has(
    store: MintStore, engine: Engine
) -> None:
    record, old, moved = _moving_to_block_100()
    _view(store, "b", 1, 3, 100, moved.block_hash, [])
    _view(store, "a", 4, 4, 101, "0x" + "02" * 32, [])
    store.store_unordered_delivery([old])  # a late view of 101's old fork, no sequence
    _view(store, "a", 3, 3.1, 100, moved.block_hash, [moved])
    assert _live(engine) == {(record.tx_hash, moved.block_hash)}


def test_agreeing_views_without_a_clock_still_move_the_log(
    store: MintStore, engine: Engine
) -> None:
    # Without createdAt nothing says which view is older, so an agreeing view is not held
    # back: here webhook c's clockless views of both forks would otherwise strand the log.
    record, old, moved = _moving_to_block_100()
    _view(store, "c", 1, None, 101, old.block_hash, [old])
    _view(store, "d", 1, 3, 100, moved.block_hash, [])
    _view(store, "b", 1, 4, 100, moved.block_hash, [moved])  # agrees with d: moves L here
    _view(store, "c", 2, None, 101, "0x" + "02" * 32, [])
    assert _live(engine) == {(record.tx_hash, moved.block_hash)}


def test_a_canonical_agreeing_view_without_a_clock_moves_the_log(
    store: MintStore, engine: Engine
) -> None:
    record, old, moved = _moving_to_block_100()
    _heartbeat_first_reorg(store, old, moved)
    _view(store, "c", 1, None, 100, moved.block_hash, [moved])  # agrees with b, no clock
    _view(store, "b", 2, 4, 101, "0x" + "02" * 32, [])  # the new block 101 drops the old row
    assert _live(engine) == {(record.tx_hash, moved.block_hash)}
    assert count(engine, tokens) == record.quantity


def _final_block_100_and_an_orphan(store: MintStore) -> tuple[list[MintRecord], MintRecord]:
    """Block 100 reconciled as final with 3 mints, and a log of another fork of it."""
    canonical = make_records(3)
    store.reconcile_range(canonical, start_block=100, end_block=100)
    orphan = dataclasses.replace(
        canonical[0], tx_hash="0x" + "e" * 64, block_hash="0x" + "a" * 64, start_token_id=10**6
    )
    return canonical, orphan


def test_a_delivery_without_sequence_number_adds_nothing_to_a_final_block(
    store: MintStore, engine: Engine
) -> None:
    canonical, orphan = _final_block_100_and_an_orphan(store)
    late = store.store_unordered_delivery([orphan])
    assert late.stale and "final" in (late.stale_reason or "")
    assert count(engine, mint_events) == 3
    assert count(engine, tokens) == sum(r.quantity for r in canonical)
    # above the final range it adds what is missing, and revives nothing
    fresh = dataclasses.replace(orphan, block_number=101, start_token_id=2 * 10**6)
    assert [e.outcome for e in store.store_unordered_delivery([fresh]).events] == ["stored"]
    assert count(engine, mint_events, ~mint_events.c.removed) == 4


def test_a_delivery_cannot_move_a_log_out_of_a_final_block(
    store: MintStore, engine: Engine
) -> None:
    # The chain put tx1 in block 100, reconciled as final. A delivery for block 105 (not
    # final) naming tx1 there (a fork deeper than finality, or a faulty payload) must not
    # mark the final row removed nor delete its tokens: only a reconcile changes it.
    (record,) = make_records(1)
    store.reconcile_range([record], start_block=100, end_block=100)
    moved = dataclasses.replace(record, block_number=105, block_hash="0x" + "f5" * 32)
    result = store.store_block_delivery(
        block_number=105, block_hash=moved.block_hash, sequence_number=1, records=[moved]
    )
    assert not result.stale and result.removed == 0
    assert [e.outcome for e in result.events] == ["duplicate"]
    assert _live(engine) == {(record.tx_hash, record.block_hash)}
    assert count(engine, tokens) == record.quantity


def test_late_webhook_retry_cannot_undo_a_reconciled_final_block(
    store: MintStore, engine: Engine
) -> None:
    _, orphan = _final_block_100_and_an_orphan(store)
    late = store.store_block_delivery(
        block_number=100, block_hash=orphan.block_hash, sequence_number=1, records=[orphan]
    )
    assert late.stale and "final" in (late.stale_reason or "")
    assert count(engine, mint_events, ~mint_events.c.removed) == 3
    assert count(engine, mint_events) == 3


def test_sequence_numbers_compare_as_numbers_not_text(store: MintStore, engine: Engine) -> None:
    record = make_records(1)[0]
    store.store_block_delivery(
        block_number=100, block_hash=record.block_hash, sequence_number=10, records=[record]
    )
    older = store.store_block_delivery(
        block_number=100, block_hash="0x" + "c" * 64, sequence_number=9, records=[]
    )
    assert older.stale  # "9" > "10" as text; 9 < 10 as numbers
    assert count(engine, mint_events, ~mint_events.c.removed) == 1


def test_sequence_numbers_are_per_webhook(store: MintStore, engine: Engine) -> None:
    record = make_records(1)[0]
    store.store_block_delivery(
        block_number=100,
        block_hash=record.block_hash,
        sequence_number=10**19,
        records=[],
        webhook_id="wh_one",
    )
    other = store.store_block_delivery(
        block_number=100,
        block_hash=record.block_hash,
        sequence_number=10**17,
        records=[record],
        webhook_id="wh_two",
    )
    assert not other.stale and other.stored == 1


def _deliver(store: MintStore, record, *, block_hash, seq, webhook="wh_a", at=None, logs=True):
    from datetime import UTC, datetime

    return store.store_block_delivery(
        block_number=100,
        block_hash=block_hash,
        sequence_number=seq,
        records=[dataclasses.replace(record, block_hash=block_hash)] if logs else [],
        webhook_id=webhook,
        created_at=datetime.fromtimestamp(at, UTC) if at is not None else None,
    )


def test_another_webhooks_heartbeat_for_the_same_hash_removes_nothing(
    store: MintStore, engine: Engine
) -> None:
    record = make_records(1)[0]
    _deliver(store, record, block_hash=record.block_hash, seq=5, webhook="wh_a", at=10)
    heartbeat = _deliver(
        store, record, block_hash=record.block_hash, seq=1, webhook="wh_b", at=11, logs=False
    )
    assert not heartbeat.stale and heartbeat.removed == 0
    assert count(engine, mint_events, ~mint_events.c.removed) == 1
    assert count(engine, tokens) == record.quantity


def test_a_late_pre_reorg_view_from_another_webhook_is_stale(
    store: MintStore, engine: Engine
) -> None:
    record = make_records(1)[0]
    old_hash, new_hash = "0x" + "a1" * 32, "0x" + "b2" * 32
    _deliver(store, record, block_hash=old_hash, seq=1, webhook="wh_a", at=10)
    _deliver(store, record, block_hash=new_hash, seq=2, webhook="wh_a", at=20)  # the reorg
    late = _deliver(store, record, block_hash=old_hash, seq=1, webhook="wh_b", at=10)
    assert late.stale
    with engine.connect() as conn:
        live = conn.execute(select(mint_events.c.block_hash).where(~mint_events.c.removed)).all()
    assert live == [(new_hash,)]
    # ... while another webhook seeing the reorg first is applied
    newer = _deliver(store, record, block_hash="0x" + "c3" * 32, seq=1, webhook="wh_b", at=30)
    assert not newer.stale


def test_block_inside_any_processed_range_is_final(store: MintStore, engine: Engine) -> None:
    # a gap below (no checkpoint) and a narrower range starting later than a wider one
    for lo, hi in ((10_000, 10_999), (11_000, 12_999), (12_500, 12_600)):
        store.reconcile_range([], start_block=lo, end_block=hi)
    assert store.last_processed_block() is None
    record = dataclasses.replace(make_records(1)[0], block_number=12_700)
    result = store.store_block_delivery(
        block_number=12_700, block_hash=record.block_hash, sequence_number=1, records=[record]
    )
    assert result.stale and count(engine, mint_events) == 0


def test_non_final_store_does_not_revive_removed_rows(store: MintStore, engine: Engine) -> None:
    record = make_records(1)[0]
    _deliver(store, record, block_hash=record.block_hash, seq=1)
    _deliver(store, record, block_hash="0x" + "c" * 64, seq=2, logs=False)  # reorged away
    again = store.store([record], source="backfill", revive=False)  # a lagging node's view
    assert again.duplicates == 1
    assert count(engine, mint_events, ~mint_events.c.removed) == 0
    assert count(engine, tokens) == 0
