"""Catch-up while the webhook is silent: store the tip's mints by RPC, add-only.

Alchemy pauses an endpoint after repeated failed deliveries and, once unpaused, does not
replay the gap; until then nothing delivers mints, and the backfill only reaches a block
once its window is final (head - GLISK_CONFIRMATIONS or the chain's `finalized` block, and
complete). The tip fill covers the blocks above the checkpoint meanwhile, through the same
loop as every backfill (ingest.backfill_range), but ADD-ONLY: nothing is reconciled,
checkpointed or revived there (a node's view of non-final blocks may be a fork that loses);
the window's reconcile, once it is final, makes those blocks equal the chain.

The Dagster sensor `webhook_silence_sensor` (defs/silence_sensor.py) decides with the
functions here and requests a run of the `mint_events_tip` asset (defs/tip_fill.py), which
calls fill_tip; this module holds the decisions and the fill, so they are testable
without Dagster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select

from glisk_pipeline.chain.rpc import RangeCheck, RpcClient
from glisk_pipeline.db.heartbeat import last_heartbeat
from glisk_pipeline.db.schema import webhook_blocks
from glisk_pipeline.db.store import MintStore, TokenConflictError
from glisk_pipeline.db.store.reconcile import last_processed_block
from glisk_pipeline.sync.backfill import BackfillReport, ChunkReport, backfill_range

# Blocks re-read below the last filled block on each tick: a shallow tip reorg moves
# mints between blocks the previous tick already read (Base reorgs are a few blocks deep).
REORG_OVERLAP = 64
# Blocks one fill run reads at most; the next run resumes where it stopped. A day of Base
# is 43,200 blocks: one run covers a day's silence, and a run stays short enough that the
# fills keep up with the chain (the next one starts after this one ends).
MAX_BLOCKS_PER_FILL = 50_000


@dataclass(frozen=True, slots=True)
class WebhookView:
    last_block: int | None  # highest block a delivery named (webhook_blocks)
    # the last delivery: one that named a block, or one that did not (a heartbeat in
    # the shape without block fields), whichever came later
    last_delivery_at: datetime | None


def read_view(engine: Engine) -> tuple[WebhookView, int | None]:
    """The webhook's last delivery, and last_processed_block (three indexed reads)."""
    with engine.connect() as conn:
        checkpoint = last_processed_block(conn)
        last_block, last_at = conn.execute(
            select(func.max(webhook_blocks.c.block_number), func.max(webhook_blocks.c.received_at))
        ).one()
        unnamed_at = last_heartbeat(conn)
    if last_at is not None and last_at.tzinfo is None:  # SQLite: naive UTC
        last_at = last_at.replace(tzinfo=UTC)
    if unnamed_at is not None and (last_at is None or unnamed_at > last_at):
        last_at = unnamed_at
    return WebhookView(last_block, last_at), checkpoint


def silence(view: WebhookView, head: int, now: datetime, threshold_s: int) -> str | None:
    """Why the webhook counts as silent (None: it does not): no delivery for threshold_s
    seconds while the chain advanced past the last delivered block. A database that never
    received a delivery is silent once the chain has any block. When no delivery ever
    named a block (heartbeats without block fields only), the age alone decides."""
    if view.last_delivery_at is None:
        return "no webhook delivery recorded"
    age = (now - view.last_delivery_at).total_seconds()
    if view.last_block is None:
        if age > threshold_s:
            return (
                f"no webhook delivery for {age:.0f} s (threshold {threshold_s} s); "
                "no delivery has named a block"
            )
        return None
    if age > threshold_s and head > view.last_block:
        return (
            f"no webhook delivery for {age:.0f} s (threshold {threshold_s} s) while the chain "
            f"advanced {head - view.last_block} blocks past block {view.last_block}"
        )
    return None


def tip_range(
    *, head: int, checkpoint: int | None, start_block: int, filled_to: int | None
) -> tuple[int, int] | None:
    """The blocks to read next: above the checkpoint, from a little below where the last
    fill stopped, up to the head (at most MAX_BLOCKS_PER_FILL); None if there are none."""
    low = max(start_block, (checkpoint if checkpoint is not None else start_block - 1) + 1)
    if filled_to is not None:
        low = max(low, filled_to + 1 - REORG_OVERLAP)
    high = min(head, low + MAX_BLOCKS_PER_FILL - 1)
    return (low, high) if low <= high else None


@dataclass(slots=True)
class TipFill:
    report: BackfillReport | None
    conflict: str | None = None  # a token conflict left to the final reconcile


def fill_tip(
    client: RpcClient,
    store: MintStore,
    contract: str,
    low: int,
    high: int,
    on_chunk: Callable[[ChunkReport], None] | None = None,
    check: RangeCheck | None = None,
) -> TipFill:
    """Store the mints of [low, high] that are missing; reconcile nothing. A token conflict
    (a reorg's new fork claiming ids a lost fork's rows still hold) stops the fill: those
    blocks are corrected by the reconcile of their window once it is final."""
    try:
        return TipFill(
            backfill_range(
                client,
                store,
                contract,
                low,
                high,
                final_block=low - 1,
                on_chunk=on_chunk,
                check=check,
            )
        )
    except TokenConflictError as exc:
        return TipFill(None, str(exc))
