"""webhook_blocks does not grow by one row per block forever: rows far enough below the
checkpoint are pruned when a reconcile moves it, a late delivery for a pruned block is
still refused as final, and the webhook's last delivery is always kept."""

from __future__ import annotations

from sqlalchemy import Engine, select

from devtools.local_chain import DEFAULT_AUTHOR
from glisk_pipeline.db.schema import webhook_blocks
from glisk_pipeline.db.store import MintStore
from tests.support.factories import make_records


def blocks(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(webhook_blocks.c.block_number).order_by(webhook_blocks.c.block_number)
            ).scalars()
        )


def heartbeat(store: MintStore, block: int, salt: str = "a") -> bool:
    """A delivery naming `block` with no logs; True if it was applied (not stale)."""
    result = store.store_block_delivery(
        block_number=block,
        block_hash="0x" + salt * 8 + f"{block:056x}",
        sequence_number=block,
        records=[],
    )
    return not result.stale


def test_rows_below_the_checkpoint_minus_retention_are_pruned(engine: Engine) -> None:
    store = MintStore(engine, DEFAULT_AUTHOR, start_block=0, webhook_blocks_retention=10)
    for block in range(100, 141):
        assert heartbeat(store, block)
    store.reconcile_range([], start_block=0, end_block=130)
    assert blocks(engine) == list(range(120, 141))
    # a late delivery for a pruned (final) block with another hash changes nothing
    assert not heartbeat(store, 105, salt="f")
    assert blocks(engine) == list(range(120, 141))
    # the checkpoint passes every row: the last delivery stays
    store.reconcile_range(make_records(0), start_block=131, end_block=400)
    assert blocks(engine) == [140]


def test_without_a_retention_nothing_is_pruned(engine: Engine) -> None:
    store = MintStore(engine, DEFAULT_AUTHOR, start_block=0)
    for block in range(100, 111):
        heartbeat(store, block)
    store.reconcile_range([], start_block=0, end_block=400)
    assert blocks(engine) == list(range(100, 111))
