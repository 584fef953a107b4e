"""Making the table equal the chain, and the checkpoint that records how far it is.

A log whose block left the canonical chain is kept with `removed = true` and its token
rows still `detected` are deleted (they never existed on the chain that won; rows a
worker moved on stay, orphaned: store/downstream.py). This module finds the rows an
answer contradicts and removes rows by id; which of them may be removed is decided by the
proof rule in api.py (`MintStore.reconcile_range`), never here. A final range, once
reconciled, is recorded in processed_ranges; last_processed_block (system_state) is the
end of the contiguous run of processed ranges from the start block.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, TextClause, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from glisk_pipeline.chain.decoder import MintRecord
from glisk_pipeline.db.schema import (
    LAST_PROCESSED_BLOCK,
    mint_events,
    processed_ranges,
    system_state,
    tokens,
    webhook_blocks,
)
from glisk_pipeline.db.store.downstream import (
    drop_tokens_sqlite,
    pg_announce_orphans_sql,
    pg_drop_tokens_sql,
)
from glisk_pipeline.db.store.ordering import block_is_final, final_check_sql
from glisk_pipeline.db.store.upserts import STAGE

_ROW_SELECT = (
    mint_events.c.id,
    mint_events.c.tx_hash,
    mint_events.c.log_index,
    mint_events.c.block_number,
    mint_events.c.block_hash,
    mint_events.c.start_token_id,
    mint_events.c.quantity,
)


def pg_contradicted_ids_sql(
    lo: str, hi: str, keep_hash: str, *, probe: bool = False, final_key: str | None = None
) -> str:
    """The ids of the live rows the chain contradicts (see remove_stale): a UNION of index
    lookups (an OR would scan the table). Reads the CTE `incoming` (tx_hash, log_index,
    block_hash) the caller puts in front; the arguments are SQL expressions.
    `probe`: look each incoming log up by its key (a webhook delivery's 1-3 logs). The
    planner takes a set-returning function for 100 rows and, on a table of some
    thousands, joins by scanning it: 0.7 ms per delivery at 3,000 rows, growing with it
    (measured); OFFSET 0 keeps the lookup a per-row index probe.
    `final_key` (a webhook delivery; the SQL naming last_processed_block's key): a log
    recorded in a block reconciled as final is not moved away from it (the chain decided
    that block; only a backfill's reconcile may change it)."""
    keep_final = (
        f"\n      AND NOT ({final_check_sql({'block': 'e.block_number', 'key': final_key})})"
        if final_key
        else ""
    )
    moved = (
        """SELECT e.id FROM incoming c
    CROSS JOIN LATERAL (
        SELECT e.id, e.block_hash, e.block_number FROM mint_events e
        WHERE e.tx_hash = c.tx_hash AND e.log_index = c.log_index AND NOT e.removed
        OFFSET 0) e
    WHERE e.block_hash <> c.block_hash"""
        + keep_final
        if probe
        else """SELECT e.id FROM incoming c
    JOIN mint_events e ON e.tx_hash = c.tx_hash AND e.log_index = c.log_index
    WHERE e.block_hash <> c.block_hash AND NOT e.removed"""
        + keep_final
    )
    return f"""SELECT e.id FROM mint_events e
    WHERE e.block_number BETWEEN {lo} AND {hi} AND NOT e.removed
      AND e.block_hash IS DISTINCT FROM {keep_hash}
      AND NOT EXISTS (SELECT 1 FROM incoming c WHERE c.tx_hash = e.tx_hash
                      AND c.log_index = e.log_index AND c.block_hash = e.block_hash)
    UNION
    {moved}"""


def pg_remove_sql(
    lo: str, hi: str, keep_hash: str, *, probe: bool = False, final_key: str | None = None
) -> str:
    """The rows the chain contradicts (pg_contradicted_ids_sql), marked removed, RETURNING
    (id, start, quantity): their token rows are deleted by key afterwards. The webhook's
    delivery function runs it: a delivery for a block is itself the proof that the block
    at that number now has the delivered hash (Alchemy's newer view, by the ordering
    rule)."""
    return f"""
UPDATE mint_events m SET removed = true
FROM (
    {pg_contradicted_ids_sql(lo, hi, keep_hash, probe=probe, final_key=final_key)}
) AS x
WHERE m.id = x.id
RETURNING m.id, m.start_token_id AS start, m.quantity
"""


@dataclass(frozen=True, slots=True)
class LiveRow:
    """A live mint_events row, as the proof rule needs it."""

    id: int
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    start_token_id: int
    quantity: int

    def __str__(self) -> str:
        return (
            f"{self.tx_hash}:{self.log_index} (block {self.block_number} {self.block_hash}, "
            f"tokens {self.start_token_id}..{self.start_token_id + self.quantity - 1})"
        )


_ROW_COLUMNS = (
    "m.id, m.tx_hash, m.log_index, m.block_number, m.block_hash, m.start_token_id, m.quantity"
)


def _bound_contradicted(incoming: str) -> TextClause:
    ids = pg_contradicted_ids_sql(":lo", ":hi", "CAST(NULL AS text)")
    return text(
        f"WITH incoming AS ({incoming}) SELECT {_ROW_COLUMNS} FROM mint_events m "
        f"WHERE m.id IN ({ids}) ORDER BY m.id"
    )


_PG_CONTRADICTED = _bound_contradicted("""
    SELECT * FROM unnest(CAST(:tx_hash AS text[]), CAST(:log_index AS int[]),
                         CAST(:block_hash AS text[])) AS t(tx_hash, log_index, block_hash)""")
_PG_CONTRADICTED_STAGED = _bound_contradicted(f"SELECT tx_hash, log_index, block_hash FROM {STAGE}")


def contradicted(
    conn: Connection, batch: list[MintRecord], lo: int, hi: int, *, pg: bool, staged: bool = False
) -> list[LiveRow]:
    """The live rows an answer for the final range lo..hi contradicts (changing nothing):
    rows in those blocks that are not among `batch` (the answer's logs of those blocks),
    and rows of `batch`'s logs recorded under another block hash (a reorg moved their
    transaction). Whether they may be removed is the proof rule's to say (api.py): the
    absence of a log from one answer proves nothing. `staged`: `batch` is in the staging
    table (upserts.stage)."""
    if pg:
        params: dict[str, object] = {"lo": lo, "hi": hi}
        if not staged:
            params |= {
                "tx_hash": [r.tx_hash for r in batch],
                "log_index": [r.log_index for r in batch],
                "block_hash": [r.block_hash for r in batch],
            }
        rows = conn.execute(_PG_CONTRADICTED_STAGED if staged else _PG_CONTRADICTED, params)
        return [LiveRow(*row) for row in rows]
    return live_rows(conn, _contradicted_ids_sqlite(conn, batch, lo, hi, None))


def live_rows(conn: Connection, ids: Iterable[int]) -> list[LiveRow]:
    """The rows of `ids` that are still live."""
    wanted, found = sorted(set(ids)), []
    for start in range(0, len(wanted), 500):  # bounded IN lists
        found += [
            LiveRow(*row)
            for row in conn.execute(
                select(*_ROW_SELECT).where(
                    mint_events.c.id.in_(wanted[start : start + 500]), ~mint_events.c.removed
                )
            )
        ]
    return found


def token_holders(
    conn: Connection, claims: Sequence[tuple[str, int, range]]
) -> list[tuple[str, LiveRow]]:
    """For each (tx_hash, log_index, token ids) an upsert could not write in full: the
    other live events holding those ids, as (the claiming log, the holder)."""
    held = []
    for tx_hash, log_index, ids in claims:
        rows = conn.execute(
            select(*_ROW_SELECT)
            .distinct()
            .join(tokens, tokens.c.mint_event_id == mint_events.c.id)
            .where(
                tokens.c.token_id.between(ids.start, ids.stop - 1),
                ~mint_events.c.removed,
                ~((mint_events.c.tx_hash == tx_hash) & (mint_events.c.log_index == log_index)),
            )
        )
        held += [(f"{tx_hash}:{log_index}", LiveRow(*row)) for row in rows]
    return held


def remove_stale(conn: Connection, batch: list[MintRecord], block: int, keep_hash: str) -> int:
    """A webhook delivery for `block` under `keep_hash` on SQLite (PostgreSQL runs the
    same rule in the delivery function, pg_remove_sql): rows of that block under another
    hash, and rows of `batch`'s logs recorded under another hash, are marked removed and
    their tokens deleted. The delivery, Alchemy's newer view of the block by the
    ordering rule, is the proof that the block at that number changed. A log recorded in
    a block reconciled as final is not moved (as in pg_contradicted_ids_sql)."""
    ids = _contradicted_ids_sqlite(conn, batch, block, block, keep_hash, keep_final=True)
    return remove_rows(conn, ids, pg=False)


def _contradicted_ids_sqlite(
    conn: Connection,
    batch: list[MintRecord],
    lo: int,
    hi: int,
    keep_hash: str | None,
    *,
    keep_final: bool = False,
) -> list[int]:
    """SQLite's form of pg_contradicted_ids_sql: rows in blocks lo..hi not among `batch`
    (with `keep_hash`, only rows under another hash: a delivery speaks for its own block
    hash), and rows of `batch`'s logs under another block hash."""
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
                mint_events.c.block_number,
            ).where(
                mint_events.c.tx_hash.in_(hashes[start : start + 500]),
                ~mint_events.c.removed,
            )
        ).all()
        stale_ids |= {
            row.id
            for row in rows
            if wanted.get((row.tx_hash, row.log_index), row.block_hash) != row.block_hash
            and not (keep_final and block_is_final(conn, row.block_number))
        }
    return sorted(stale_ids)


def remove_rows(conn: Connection, ids: Sequence[int], *, pg: bool) -> int:
    """Mark events removed and delete their token rows that are still `detected` (those
    tokens do not exist on the canonical chain); rows a worker moved on stay, orphaned
    (store/downstream.py). Tokens are found by their key range, so tokens.mint_event_id
    needs no index of its own."""
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        conn.execute(update(mint_events).where(mint_events.c.id.in_(chunk)).values(removed=True))
        if pg:
            conn.execute(_PG_DROP_TOKENS, {"ids": chunk})
        else:
            marks = ", ".join(str(int(i)) for i in chunk)
            drop_tokens_sqlite(conn, f"m.id IN ({marks})", {})
    return len(ids)


_PG_DROP_TOKENS = text(pg_drop_tokens_sql("m.id = ANY (CAST(:ids AS bigint[]))"))
_SWEEP = "m.removed AND m.block_number BETWEEN :lo AND :hi"
_PG_SWEEP = text(pg_drop_tokens_sql(_SWEEP))
_PG_ANNOUNCE_ORPHANS = text(pg_announce_orphans_sql("m.id = ANY (CAST(:ids AS bigint[]))"))


def announce_orphans(conn: Connection, ids: Sequence[int]) -> None:
    """PostgreSQL: announce the orphaned token rows of the events `ids`, once the call
    that removed them wrote everything else (store/downstream.py)."""
    for start in range(0, len(ids), 500):
        conn.execute(_PG_ANNOUNCE_ORPHANS, {"ids": list(ids[start : start + 500])})


def sweep_detected(conn: Connection, lo: int, hi: int, *, pg: bool) -> None:
    """Delete the `detected` token rows removed events in the final blocks lo..hi still
    own: rows a worker held while their mint was removed, and let go of unchanged."""
    if pg:
        conn.execute(_PG_SWEEP, {"lo": lo, "hi": hi})
    else:
        drop_tokens_sqlite(conn, _SWEEP, {"lo": lo, "hi": hi})


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
