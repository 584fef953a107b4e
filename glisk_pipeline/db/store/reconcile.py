"""Making the table equal the chain, and the checkpoint that records how far it is.

A log whose block left the canonical chain is kept with `removed = true` and its token
rows are deleted (they never existed on the chain that won). A final range, once
reconciled, is recorded in processed_ranges; last_processed_block (system_state) is the
end of the contiguous run of processed ranges from the start block.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ARRAY, BigInteger, Connection, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from glisk_pipeline.chain import MintRecord
from glisk_pipeline.db.schema import (
    LAST_PROCESSED_BLOCK,
    mint_events,
    processed_ranges,
    system_state,
    tokens,
    webhook_blocks,
)
from glisk_pipeline.db.store.upserts import STAGE


def pg_remove_sql(lo: str, hi: str, keep_hash: str, *, probe: bool = False) -> str:
    """The rows the chain contradicts (see remove_stale), marked removed, RETURNING
    (id, start, quantity): their token rows are deleted by key afterwards. Reads the CTE
    `incoming` (tx_hash, log_index, block_hash) the caller puts in front; the arguments
    are SQL expressions. A UNION of index lookups: an OR would scan the table.
    `probe`: look each incoming log up by its key (a webhook delivery's 1-3 logs). The
    planner takes a set-returning function for 100 rows and, on a table of some
    thousands, joins by scanning it: 0.7 ms per delivery at 3,000 rows, growing with it
    (measured); OFFSET 0 keeps the lookup a per-row index probe."""
    moved = (
        """SELECT e.id FROM incoming c
    CROSS JOIN LATERAL (
        SELECT e.id, e.block_hash FROM mint_events e
        WHERE e.tx_hash = c.tx_hash AND e.log_index = c.log_index AND NOT e.removed
        OFFSET 0) e
    WHERE e.block_hash <> c.block_hash"""
        if probe
        else """SELECT e.id FROM incoming c
    JOIN mint_events e ON e.tx_hash = c.tx_hash AND e.log_index = c.log_index
    WHERE e.block_hash <> c.block_hash AND NOT e.removed"""
    )
    return f"""
UPDATE mint_events m SET removed = true
FROM (
    SELECT e.id FROM mint_events e
    WHERE e.block_number BETWEEN {lo} AND {hi} AND NOT e.removed
      AND e.block_hash IS DISTINCT FROM {keep_hash}
      AND NOT EXISTS (SELECT 1 FROM incoming c WHERE c.tx_hash = e.tx_hash
                      AND c.log_index = e.log_index AND c.block_hash = e.block_hash)
    UNION
    {moved}
) AS x
WHERE m.id = x.id
RETURNING m.id, m.start_token_id AS start, m.quantity
"""


def _bound_remove(incoming: str) -> str:
    return f"WITH incoming AS ({incoming})" + pg_remove_sql(
        ":lo", ":hi", "CAST(:keep_hash AS text)"
    )


_PG_REMOVE = text(
    _bound_remove("""
    SELECT * FROM unnest(CAST(:tx_hash AS text[]), CAST(:log_index AS int[]),
                         CAST(:block_hash AS text[])) AS t(tx_hash, log_index, block_hash)""")
)
_PG_REMOVE_STAGED = text(_bound_remove(f"SELECT tx_hash, log_index, block_hash FROM {STAGE}"))


def remove_stale(
    conn: Connection,
    batch: list[MintRecord],
    lo: int,
    hi: int,
    keep_hash: str | None = None,
    *,
    pg: bool,
    staged: bool = False,
) -> int:
    """Mark removed (and drop the tokens of) the live rows the chain contradicts:
    rows in blocks lo..hi that are not among `batch` (the canonical logs of those
    blocks; with `keep_hash`, only rows under another block hash: a webhook delivery
    speaks for its own block hash, not for logs another webhook delivered), and rows of
    `batch`'s logs recorded under another block hash (a reorg moved their transaction;
    left alone, the upsert would call the log a duplicate and keep it, and its token
    ids, at a block the chain no longer has). `staged`: `batch` is in the staging table
    (upserts.stage), read from there instead of arrays."""
    if pg:
        params: dict[str, object] = {"lo": lo, "hi": hi, "keep_hash": keep_hash}
        if not staged:
            params |= {
                "tx_hash": [r.tx_hash for r in batch],
                "log_index": [r.log_index for r in batch],
                "block_hash": [r.block_hash for r in batch],
            }
        stale = conn.execute(_PG_REMOVE_STAGED if staged else _PG_REMOVE, params).all()
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
    stale_ids = {
        row.id for row in live if tuple(row[1:]) not in canonical and row.block_hash != keep_hash
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
        stale_ids |= {
            row.id
            for row in rows
            if wanted.get((row.tx_hash, row.log_index), row.block_hash) != row.block_hash
        }
    return _remove_ids(conn, sorted(stale_ids))


def _remove_ids(conn: Connection, ids: Sequence[int]) -> int:
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


def record_range(
    conn: Connection, start: int, end: int, events: int, *, pg: bool, start_block: int
) -> None:
    """Record [start, end] as reconciled and advance the checkpoint over it. The caller
    holds the exclusive final lock (PostgreSQL): concurrent checkpoint updates are
    serialised, and each sees the ranges committed before it."""
    insert = pg_insert if pg else sqlite_insert
    stmt = insert(processed_ranges).values(start_block=start, end_block=end, events=events)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[processed_ranges.c.start_block],
            set_={
                # greatest() is max() in SQLite's scalar form
                "end_block": (func.greatest if pg else func.max)(
                    stmt.excluded.end_block, processed_ranges.c.end_block
                ),
                "events": stmt.excluded.events,
                "processed_at": func.now(),
            },
        )
    )
    _advance_checkpoint(conn, pg=pg, start_block=start_block)


def prune_webhook_blocks(conn: Connection, retention: int) -> int:
    """Delete webhook_blocks rows more than `retention` blocks below the checkpoint: a
    delivery for a block at or below the checkpoint is refused as final before its row is
    read, so those rows decide nothing any more (one row per block would grow forever).
    The highest row stays: it is the webhook's last delivery (`glisk status`, the silence
    sensor)."""
    checkpoint = last_processed_block(conn)
    if checkpoint is None:
        return 0
    newest = select(func.max(webhook_blocks.c.block_number)).scalar_subquery()
    result = conn.execute(
        delete(webhook_blocks).where(
            webhook_blocks.c.block_number < checkpoint - retention,
            webhook_blocks.c.block_number < newest,
        )
    )
    return int(result.rowcount or 0)


def last_processed_block(conn: Connection) -> int | None:
    value = conn.execute(
        select(system_state.c.value).where(system_state.c.key == LAST_PROCESSED_BLOCK)
    ).scalar_one_or_none()
    return None if value is None else int(value)


def _advance_checkpoint(conn: Connection, *, pg: bool, start_block: int) -> None:
    """last_processed_block = end of the contiguous run of processed ranges that
    starts at start_block."""
    current = last_processed_block(conn)
    last = current if current is not None else start_block - 1
    reach = select(func.max(processed_ranges.c.end_block)).where(
        processed_ranges.c.start_block <= bindparam("next"),
        processed_ranges.c.end_block > bindparam("last"),
    )
    while True:
        further = conn.execute(reach, {"next": last + 1, "last": last}).scalar_one_or_none()
        if further is None:
            break
        last = further
    if last < start_block or current == last:
        return
    insert = pg_insert if pg else sqlite_insert
    stmt = insert(system_state).values(key=LAST_PROCESSED_BLOCK, value=str(last))
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[system_state.c.key],
            set_={"value": stmt.excluded.value, "updated_at": func.now()},
        )
    )
