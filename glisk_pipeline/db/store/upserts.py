"""The upserts of events, their token rows and authors, in each dialect's best form.

Exactly-once is the database's job, not ours: UNIQUE(tx_hash, log_index) and
UNIQUE(token_id) with ON CONFLICT decide what is new, so two writers racing on the same
log can neither duplicate it nor fail. No read-then-write check decides a duplicate.
A removed row that comes back (re-included after a reorg) is revived with its tokens.

PostgreSQL takes a batch as one statement, token rows generated server-side with
generate_series. The statement reads the batch as `incoming`: a small batch (a webhook
delivery) as `unnest`ed arrays in the statement itself, one round trip; a bulk batch (a
backfill chunk, up to ~5,000 logs) is first COPYed (binary) into a temporary staging
table, because psycopg's text encoding of the arrays cost ~30 µs a log on the client,
the largest client-side cost of the recovery CLI after decoding (measured), and a binary
COPY costs a fraction of it. SQLite runs the same logic row by row; it serialises writers.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from glisk_pipeline.chain.decoder import MintRecord
from glisk_pipeline.db.schema import authors, mint_events, tokens
from glisk_pipeline.db.store.downstream import announce_sql, pg_take_over_sql, take_over_sqlite
from glisk_pipeline.db.store.results import (
    EventOutcome,
    Outcome,
    Source,
    StoreResult,
    TokenConflictError,
)

# Rows per array statement on PostgreSQL: large enough to amortise the round trip, small
# enough to keep one statement's memory modest. All chunks of a call share one transaction.
PG_CHUNK = 5_000
# From this many records a batch is staged by COPY (see the module docstring): below it
# the extra statements (create the staging table, COPY) cost more than the arrays' encoding.
COPY_MIN_RECORDS = 100

# The staging table: dropped at the end of the transaction (commit or rollback), so a
# retried transaction and the next call on a pooled connection start without it.
STAGE = "glisk_incoming"
_STAGE_COLUMNS = (
    ("tx_hash", "text"),
    ("log_index", "int4"),
    ("block_number", "int8"),
    ("block_hash", "text"),
    ("block_ts", "int8"),
    ("contract_address", "text"),
    ("minter", "text"),
    ("author_wallet", "text"),
    ("start_token_id", "int8"),
    ("quantity", "int4"),
    ("total_paid", "numeric"),
)
_STAGE_CREATE = "CREATE TEMPORARY TABLE {stage} ({columns}) ON COMMIT DROP".format(
    stage=STAGE, columns=", ".join(f"{name} {kind}" for name, kind in _STAGE_COLUMNS)
)
_STAGE_COPY = "COPY {stage} ({columns}) FROM STDIN (FORMAT BINARY)".format(
    stage=STAGE, columns=", ".join(name for name, _ in _STAGE_COLUMNS)
)


def stage(conn: Connection, batch: list[MintRecord], *, pg: bool) -> bool:
    """COPY a bulk batch into this transaction's staging table, which the store's
    statements then read instead of arrays (pass them `staged=True`). Returns False,
    staging nothing, for a small batch or on SQLite."""
    if not pg or len(batch) < COPY_MIN_RECORDS:
        return False
    conn.exec_driver_sql(_STAGE_CREATE)
    # psycopg's COPY on the connection SQLAlchemy holds: the same transaction
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(_STAGE_COPY) as copy:
            copy.set_types([kind for _, kind in _STAGE_COLUMNS])
            for r in batch:
                copy.write_row(
                    (
                        r.tx_hash, r.log_index, r.block_number, r.block_hash,
                        r.block_timestamp, r.contract_address, r.minter, r.author_wallet,
                        r.start_token_id, r.quantity, r.total_paid,
                    )
                )  # fmt: skip
    finally:
        cursor.close()
    return True


def upsert_events(
    conn: Connection,
    batch: list[MintRecord],
    source: Source,
    *,
    pg: bool,
    default_wallet: str,
    revive: bool = True,
    staged: bool = False,
) -> StoreResult:
    """Store the events of `batch` that are not there yet (reviving removed ones unless
    `revive=False`), with their token rows; report each as stored/restored/duplicate.
    `staged`: `batch` is in the staging table (see `stage`)."""
    result = StoreResult()
    if not batch:
        return result
    if pg and staged:
        result.events.extend(_upsert_pg(conn, batch, source, default_wallet, revive, staged))
    elif pg:
        # PostgreSQL resolves (and creates) the default author inside the upsert itself
        for start in range(0, len(batch), PG_CHUNK):
            chunk = batch[start : start + PG_CHUNK]
            result.events.extend(_upsert_pg(conn, chunk, source, default_wallet, revive))
    else:
        default_author = _default_author_id(conn, default_wallet)
        result.events.extend(_upsert_sqlite(conn, batch, source, default_author, revive))
    return result


def dedupe(records: Iterable[MintRecord]) -> list[MintRecord]:
    """One record per (tx_hash, log_index), sorted: a stable lock order across writers
    avoids deadlocks, and ON CONFLICT DO UPDATE may not touch a row twice."""
    unique = {r.key: r for r in records}
    return [unique[k] for k in sorted(unique)]


def upsert_author(conn: Connection, values: dict[str, Any], *, pg: bool) -> int:
    """Create or update the author keyed by values["wallet_address"]; returns its id.
    Fields absent from `values` (or None) keep what the row holds: re-adding a wallet
    without its handles does not erase them."""
    given = {k: v for k, v in values.items() if v is not None}
    insert = pg_insert if pg else sqlite_insert
    stmt = insert(authors).values(**given)
    # An empty SET is not valid SQL: a no-op update still lets RETURNING see the row.
    updates = {k: stmt.excluded[k] for k in given if k != "wallet_address"} or {
        "wallet_address": stmt.excluded.wallet_address
    }
    upsert = stmt.on_conflict_do_update(
        index_elements=[authors.c.wallet_address], set_=updates
    ).returning(authors.c.id)
    return int(conn.execute(upsert).scalar_one())


def upsert_authors(conn: Connection, rows: list[dict[str, Any]], *, pg: bool) -> int:
    """Upsert every row (as upsert_author); returns how many wallets were new."""
    wallets = [row["wallet_address"] for row in rows]
    existing = set(
        conn.execute(
            select(authors.c.wallet_address).where(authors.c.wallet_address.in_(wallets))
        ).scalars()
    )
    for row in rows:
        upsert_author(conn, row, pg=pg)
    return len(set(wallets) - existing)


# The incoming rows of one chunk, from arrays (one bind parameter per column).
PG_INCOMING_ARRAYS = """
    SELECT * FROM unnest(
        CAST(:tx_hash AS text[]), CAST(:log_index AS int[]), CAST(:block_number AS bigint[]),
        CAST(:block_hash AS text[]), CAST(:block_ts AS bigint[]), CAST(:contract AS text[]),
        CAST(:minter AS text[]), CAST(:author AS text[]), CAST(:start_token AS bigint[]),
        CAST(:quantity AS int[]), CAST(:total_paid AS numeric[])
    ) AS t(tx_hash, log_index, block_number, block_hash, block_ts, contract_address,
           minter, author_wallet, start_token_id, quantity, total_paid)
"""


def pg_upsert_sql(incoming: str, source: str, revive: str, default_wallet: str) -> str:
    """One statement per chunk: upsert the events, insert their tokens, report what was
    written, one row per written event (id, tx_hash, log_index, inserted, quantity,
    start_token_id, tokens). `incoming` yields the rows (columns as PG_INCOMING_ARRAYS);
    the other arguments are SQL expressions (bind parameters, or the delivery function's
    variables). ON CONFLICT ... WHERE removed revives a removed row; a live row is left
    alone (duplicate). `xmax = 0` tells a fresh insert from a revived row. Token rows:
    a revived event's own kept rows count as written; rows that a removed event kept on
    these ids move to orphaned_tokens; the new rows are announced (store/downstream.py)."""
    return f"""
WITH incoming AS ({incoming}),
upserted AS (
    INSERT INTO mint_events AS m (
        tx_hash, log_index, block_number, block_hash, block_timestamp, contract_address,
        minter, author_wallet, start_token_id, quantity, total_paid, source, removed)
    SELECT tx_hash, log_index, block_number, block_hash, to_timestamp(block_ts),
           contract_address, minter, author_wallet, start_token_id, quantity, total_paid,
           {source}, false
    FROM incoming
    ORDER BY tx_hash, log_index
    ON CONFLICT (tx_hash, log_index) DO UPDATE SET
        block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash,
        block_timestamp = EXCLUDED.block_timestamp,
        contract_address = EXCLUDED.contract_address, minter = EXCLUDED.minter,
        author_wallet = EXCLUDED.author_wallet, start_token_id = EXCLUDED.start_token_id,
        quantity = EXCLUDED.quantity, total_paid = EXCLUDED.total_paid,
        source = EXCLUDED.source, removed = false, detected_at = now()
    WHERE m.removed AND {revive}
    RETURNING m.id, m.tx_hash, m.log_index, m.start_token_id, m.quantity, m.minter,
              m.author_wallet, m.block_timestamp, (m.xmax = 0) AS inserted
),
new_default AS (
    -- the default author, created the first time it is needed
    INSERT INTO authors (wallet_address)
    SELECT CAST({default_wallet} AS varchar)
    WHERE NOT EXISTS (SELECT 1 FROM authors WHERE wallet_address = {default_wallet})
    ON CONFLICT (wallet_address) DO NOTHING
    RETURNING id
),
default_author AS (
    SELECT id FROM new_default
    UNION ALL
    SELECT id FROM authors WHERE wallet_address = {default_wallet}
),
{pg_take_over_sql("upserted")},
new_tokens AS (
    INSERT INTO tokens (token_id, mint_event_id, minter_address, author_id, status,
                        mint_timestamp)
    SELECT u.start_token_id + g.i, u.id, u.minter,
           COALESCE(a.id, (SELECT id FROM default_author LIMIT 1)),
           'detected', u.block_timestamp
    FROM upserted u
    CROSS JOIN LATERAL generate_series(0, u.quantity - 1) AS g(i)
    LEFT JOIN authors a ON a.wallet_address = u.author_wallet
    WHERE NOT EXISTS (SELECT 1 FROM own o WHERE o.token_id = u.start_token_id + g.i)
      -- the rows taken over are moved before their ids are inserted again
      AND (SELECT count(*) FROM archived) >= 0
    ORDER BY 1
    ON CONFLICT (token_id) DO NOTHING
    RETURNING mint_event_id, token_id
),
{announce_sql("announced", "detected", "SELECT token_id FROM new_tokens")},
written AS (
    SELECT u.id, u.tx_hash, u.log_index, u.inserted, u.quantity, u.start_token_id,
           COALESCE(n.written, 0) + COALESCE(k.kept, 0) AS tokens
    FROM upserted u
    LEFT JOIN (SELECT mint_event_id, count(*) AS written FROM new_tokens GROUP BY 1) n
           ON n.mint_event_id = u.id
    LEFT JOIN (SELECT mint_event_id, count(*) AS kept FROM own GROUP BY 1) k
           ON k.mint_event_id = u.id
    CROSS JOIN announced  -- so that the announcement runs
)"""


def _bound_upsert(incoming: str) -> str:
    return (
        pg_upsert_sql(incoming, ":source", "CAST(:revive AS boolean)", ":default_wallet")
        + "\nSELECT * FROM written"
    )


_PG_UPSERT = text(_bound_upsert(PG_INCOMING_ARRAYS))
_PG_UPSERT_STAGED = text(_bound_upsert(f"SELECT * FROM {STAGE}"))

# Said by both PostgreSQL paths (here, and raised by the delivery function).
TOKEN_CONFLICT = (
    "event minting tokens {first}..{last} wrote {written} of {quantity} token rows: "
    "the others are held by another live event"
)


def _upsert_pg(
    conn: Connection,
    chunk: list[MintRecord],
    source: Source,
    default_wallet: str,
    revive: bool,
    staged: bool = False,
) -> list[EventOutcome]:
    if len(chunk) > 200:
        # keep the sort of a big chunk's token rows in memory
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
    params: dict[str, object] = {
        "source": source,
        "revive": revive,
        "default_wallet": default_wallet,
    }
    if not staged:
        params |= {
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
        }
    rows = conn.execute(_PG_UPSERT_STAGED if staged else _PG_UPSERT, params).all()
    written = {(row.tx_hash, row.log_index): row for row in rows}
    _check_tokens(rows)
    return [_outcome(r, written.get(r.key)) for r in chunk]


def _default_author_id(conn: Connection, wallet: str) -> int:
    found = conn.execute(
        select(authors.c.id).where(authors.c.wallet_address == wallet)
    ).scalar_one_or_none()
    if found is not None:
        return int(found)
    conn.execute(
        sqlite_insert(authors)
        .values(wallet_address=wallet)
        .on_conflict_do_nothing(index_elements=[authors.c.wallet_address])
    )
    return int(
        conn.execute(select(authors.c.id).where(authors.c.wallet_address == wallet)).scalar_one()
    )


def _upsert_sqlite(
    conn: Connection, chunk: list[MintRecord], source: Source, default_author: int, revive: bool
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
    token_rows: list[dict[str, object]] = []
    claimed: dict[int, int] = {}  # token id: the event writing it
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
            outcomes.append(EventOutcome(r.tx_hash, r.log_index, "duplicate", None, r.token_ids))
            continue
        outcomes.append(EventOutcome(r.tx_hash, r.log_index, outcome, event_id, r.token_ids))
        author_id = author_ids.get(r.author_wallet, default_author)
        claimed.update((token_id, event_id) for token_id in r.token_ids)
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
        # kept rows: a revived event's own stay untouched; a removed event's move aside
        own = take_over_sqlite(conn, claimed)
        token_rows = [r for r in token_rows if r["token_id"] not in own]
    if token_rows:
        inserted = conn.execute(
            sqlite_insert(tokens).on_conflict_do_nothing(index_elements=["token_id"]),
            token_rows,
        ).rowcount
        if inserted != len(token_rows):
            taken = _taken_token_ids(conn, token_rows)
            claims = [
                (r.tx_hash, r.log_index, r.token_ids)
                for r in chunk
                if any(t in r.token_ids for t in taken)
            ]
            raise TokenConflictError(_conflict_message(taken), claims)
    return outcomes


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


def _outcome(r: MintRecord, row: Row[Any] | None) -> EventOutcome:
    if row is None:
        return EventOutcome(r.tx_hash, r.log_index, "duplicate", None, r.token_ids)
    return EventOutcome(
        r.tx_hash, r.log_index, "stored" if row.inserted else "restored", row.id, r.token_ids
    )


def _check_tokens(rows: Iterable[Row[Any]]) -> None:
    """Every written event got all its token rows, or TokenConflictError names the first
    that did not and carries all of them (`claims`)."""
    short = [row for row in rows if row.tokens != row.quantity]
    if short:
        first = short[0]
        raise TokenConflictError(
            TOKEN_CONFLICT.format(
                first=first.start_token_id,
                last=first.start_token_id + first.quantity - 1,
                written=first.tokens,
                quantity=first.quantity,
            ),
            [
                (
                    row.tx_hash,
                    row.log_index,
                    range(row.start_token_id, row.start_token_id + row.quantity),
                )
                for row in short
            ],
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
