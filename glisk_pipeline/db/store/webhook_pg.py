"""A webhook delivery on PostgreSQL: one server-side function call, one round trip.

`glisk_store_delivery(doc jsonb)` (installed by an Alembic migration from CREATE_FUNCTION
below) does, in one transaction: take the final-range lock shared (reconcile_range takes it
exclusive), claim the block by the ordering rule (ordering.py, the same CASE SQLite runs),
mark the rows the delivery contradicts removed and drop their tokens still `detected`
(reconcile.py's and downstream.py's statements), and upsert the events and their tokens
(upserts.py's statement, which announces new token ids: NOTIFY glisk_tokens). A delivery
without a block to claim (no sequenceNumber) is refused as final if any of its logs is in
a final block, and otherwise only adds what is missing. It returns
`{"verdict", "removed", "events": [[tx_hash, log_index, id, inserted], ...]}`, or raises
SQLSTATE GL001 (token ids held by another live event) and writes nothing. The statements
are the store's own, composed here, so the rule and the upserts cannot drift between the
paths; a test compares the installed function with CREATE_FUNCTION.

Callers: `MintStore.store_block_delivery` (sync, SQLAlchemy) and `AsyncDeliveryStore`
(the sidecar: a psycopg 3 async pool, autocommit, a prepared statement, no threadpool).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from glisk_pipeline.chain.decoder import MintRecord
from glisk_pipeline.db.schema import LAST_PROCESSED_BLOCK
from glisk_pipeline.db.store.downstream import (
    LOCK_NOT_AVAILABLE,
    pg_announce_orphans_sql,
    pg_drop_tokens_sql,
)
from glisk_pipeline.db.store.ordering import (
    FINAL,
    OLDER,
    PG_FINAL_LOCK_SHARED,
    Claim,
    agreeing_may_move_sql,
    final_check_sql,
    pg_claim_sql,
    utc,
)
from glisk_pipeline.db.store.reconcile import pg_remove_sql
from glisk_pipeline.db.store.results import (
    EventOutcome,
    Outcome,
    StoreError,
    StoreResult,
    TokenConflictError,
    TokenHeldError,
)
from glisk_pipeline.db.store.upserts import TOKEN_CONFLICT, dedupe, pg_upsert_sql

FUNCTION = "glisk_store_delivery"
TOKEN_CONFLICT_SQLSTATE = "GL001"
# SQLSTATEs worth retrying the whole call for (see api.RETRYABLE_SQLSTATES).
RETRYABLE = {"40P01", "40001", "23502"}

# The function's variables, as the shared statements name their parameters.
_VARS = {
    "block": "v_block",
    "key": "v_key",
    "webhook_id": "v_webhook_id",
    "hash": "v_hash",
    "seq": "v_seq",
    "created": "v_created",
}
# An incoming event of doc->'events' (`ev`), as agreeing_may_move_sql names it.
_EVENT = {"tx_hash": "ev->>'tx_hash'", "log_index": "(ev->>'log_index')::int"}
_INCOMING_JSON = """
    SELECT * FROM jsonb_to_recordset(doc->'events') AS t(
        tx_hash text, log_index int, block_number bigint, block_hash text, block_ts bigint,
        contract_address text, minter text, author_wallet text, start_token_id bigint,
        quantity int, total_paid numeric)
"""
_CONFLICT_FORMAT = TOKEN_CONFLICT.format(first="%s", last="%s", written="%s", quantity="%s")

BODY = f"""
DECLARE
    v_block bigint := (doc->>'block')::bigint;
    v_key text := '{LAST_PROCESSED_BLOCK}';
    v_webhook_id text := doc->>'webhook_id';
    v_hash text := doc->>'hash';
    v_seq numeric := (doc->>'seq')::numeric;
    v_created timestamptz := (doc->>'created')::timestamptz;
    v_source text := doc->>'source';
    v_revive boolean := (doc->>'revive')::boolean;
    v_default_wallet varchar := doc->>'default_wallet';
    v_verdict text;
    v_claimed boolean;
    v_removed int := 0;
    v_removed_ids bigint[];
    v_dropped bigint;
    v_events json := '[]';
    v_bad json;
BEGIN
    IF v_hash IS NOT NULL THEN
        -- Its own statement: the claim's snapshot must see a reconcile that committed
        -- while we waited for the lock (each statement here takes a fresh snapshot).
        PERFORM {PG_FINAL_LOCK_SHARED};
        {pg_claim_sql(_VARS)}
        INTO v_verdict, v_claimed;
        IF v_verdict = 'final' OR (v_verdict <> 'repeat' AND NOT v_claimed) THEN
            RETURN json_build_object(
                'verdict', CASE WHEN v_verdict = 'final' THEN 'final' ELSE 'older' END);
        END IF;
        IF v_verdict = 'repeat' THEN  -- applied already (ordering.REPEAT)
            v_revive := false;
        ELSE
        IF v_verdict = 'agree' THEN  -- logs recorded elsewhere by a newer view stay there
            doc := jsonb_set(doc, '{{events}}', (
                SELECT COALESCE(jsonb_agg(ev), '[]'::jsonb)
                FROM jsonb_array_elements(doc->'events') AS ev
                WHERE {agreeing_may_move_sql(_VARS, _EVENT)}));
        END IF;
        WITH incoming AS (
            SELECT * FROM jsonb_to_recordset(doc->'events')
                AS t(tx_hash text, log_index int, block_hash text)
        ),
        removed AS ({pg_remove_sql("v_block", "v_block", "v_hash", probe=True, final_key="v_key")})
        SELECT count(DISTINCT id), array_agg(DISTINCT id) FROM removed
        INTO v_removed, v_removed_ids;
        IF v_removed > 0 THEN  -- their detected token rows; the others stay, orphaned
            {pg_drop_tokens_sql("m.id = ANY (v_removed_ids)")}
            INTO v_dropped;
        END IF;
        END IF;
    ELSE  -- no sequenceNumber: nothing to claim, add what is missing, never in a final block
        PERFORM {PG_FINAL_LOCK_SHARED};
        IF EXISTS (SELECT 1 FROM jsonb_to_recordset(doc->'events') AS t(block_number bigint)
                   WHERE {final_check_sql({"block": "t.block_number", "key": "v_key"})}) THEN
            RETURN json_build_object('verdict', 'final');
        END IF;
    END IF;
    IF jsonb_array_length(doc->'events') > 0 THEN
        IF v_revive THEN
            -- Lock the rows this delivery may revive before the upsert's snapshot is
            -- taken: a delivery removing one of them commits first, and the upsert then
            -- sees which of its token rows that delivery deleted (a revived event's
            -- remaining rows are kept, the others inserted again).
            PERFORM 1 FROM mint_events m
            JOIN jsonb_to_recordset(doc->'events') AS t(tx_hash text, log_index int)
              ON m.tx_hash = t.tx_hash AND m.log_index = t.log_index
            ORDER BY m.tx_hash, m.log_index
            FOR UPDATE OF m;
        END IF;
        IF jsonb_array_length(doc->'events') > 200 THEN
            PERFORM set_config('work_mem', '64MB', true);  -- a big delivery's token sort
        END IF;
        {pg_upsert_sql(_INCOMING_JSON, "v_source", "v_revive", "v_default_wallet")}
        SELECT COALESCE(json_agg(json_build_array(tx_hash, log_index, id, inserted)), '[]'),
               (SELECT json_build_array(start_token_id, start_token_id + quantity - 1,
                                        tokens, quantity)
                FROM written WHERE tokens <> quantity LIMIT 1)
        FROM written
        INTO v_events, v_bad;
        IF v_bad IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = '{TOKEN_CONFLICT_SQLSTATE}',
                MESSAGE = format('{_CONFLICT_FORMAT}',
                                 v_bad->>0, v_bad->>1, v_bad->>2, v_bad->>3);
        END IF;
    END IF;
    IF v_removed > 0 THEN  -- the rows it left orphaned (not those it revived)
        {pg_announce_orphans_sql("m.id = ANY (v_removed_ids)")}
        INTO v_dropped;
    END IF;
    RETURN json_build_object('verdict', 'apply', 'removed', v_removed, 'events', v_events);
END
"""

CREATE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}(doc jsonb) RETURNS json
LANGUAGE plpgsql VOLATILE AS $glisk$
{BODY}
$glisk$
"""
DROP_FUNCTION = f"DROP FUNCTION IF EXISTS {FUNCTION}(jsonb)"

# The call, as psycopg (the async path) and SQLAlchemy (the sync path) spell it.
CALL = f"SELECT {FUNCTION}(%s::jsonb)"
CALL_SQLALCHEMY = f"SELECT {FUNCTION}(CAST(:doc AS jsonb))"


def delivery_document(records: list[MintRecord], default_wallet: str, claim: Claim | None) -> str:
    """The function's argument. No claim: store the records idempotently, reviving
    nothing (an unordered view must not undo a removal, even a final block's).
    Big numbers (sequenceNumber, wei) travel as strings: exact whatever their size."""
    doc: dict[str, Any] = {
        "block": claim and claim.block_number,
        "hash": claim and claim.block_hash.lower(),
        "webhook_id": claim.webhook_id if claim else "",
        "seq": claim and str(claim.sequence_number),
        "created": claim and claim.created_at and utc(claim.created_at).isoformat(),
        "source": "webhook",
        "revive": claim is not None,
        "default_wallet": default_wallet,
        "events": [
            {
                "tx_hash": r.tx_hash,
                "log_index": r.log_index,
                "block_number": r.block_number,
                "block_hash": r.block_hash,
                "block_ts": r.block_timestamp,
                "contract_address": r.contract_address,
                "minter": r.minter,
                "author_wallet": r.author_wallet,
                "start_token_id": r.start_token_id,
                "quantity": r.quantity,
                "total_paid": str(r.total_paid),
            }
            for r in records
        ],
    }
    return orjson.dumps(doc).decode()


def read_answer(answer: dict[str, Any], records: list[MintRecord]) -> StoreResult:
    """The function's answer as the store reports it (every record: stored, restored or
    duplicate, in the order given)."""
    verdict = answer["verdict"]
    if verdict != "apply":
        return StoreResult(stale=True, stale_reason=FINAL if verdict == "final" else OLDER)
    written = {(tx, index): (row_id, new) for tx, index, row_id, new in answer["events"]}
    events = []
    for r in records:
        row = written.get(r.key)
        if row is None:
            events.append(EventOutcome(r.tx_hash, r.log_index, "duplicate", None, r.token_ids))
        else:
            outcome: Outcome = "stored" if row[1] else "restored"
            events.append(EventOutcome(r.tx_hash, r.log_index, outcome, row[0], r.token_ids))
    return StoreResult(events=events, removed=int(answer["removed"]))


class DatabaseError(StoreError):
    """The database failed (unreachable, timed out, refused): nothing was written by this
    call, or all of it was (one statement); a retry is safe."""


class AsyncDeliveryStore:
    """Webhook deliveries on an async psycopg pool: one prepared call per delivery."""

    def __init__(self, pool: AsyncConnectionPool, default_author_wallet: str) -> None:
        self.pool = pool
        self.default_author_wallet = default_author_wallet.lower()
        self._sweeping: asyncio.Task[None] | None = None

    async def store_block_delivery(
        self,
        *,
        block_number: int,
        block_hash: str,
        sequence_number: int,
        records: Iterable[MintRecord],
        webhook_id: str = "",
        created_at: datetime | None = None,
    ) -> StoreResult:
        """As MintStore.store_block_delivery."""
        batch = dedupe(records)
        claim = Claim(webhook_id, block_number, block_hash, sequence_number, created_at)
        doc = delivery_document(batch, self.default_author_wallet, claim)
        return read_answer(await self._call(doc), batch)

    async def store(self, records: Iterable[MintRecord]) -> StoreResult:
        """As MintStore.store_unordered_delivery: no block to claim."""
        batch = dedupe(records)
        doc = delivery_document(batch, self.default_author_wallet, None)
        return read_answer(await self._call(doc), batch)

    async def _call(self, doc: str, attempts: int = 4) -> dict[str, Any]:
        attempt = lost = 0
        while True:
            try:
                return await self._execute(doc)
            except _LostConnection:
                # A pooled connection the server or the network dropped while idle (the
                # pool does not test connections on checkout: that would be a second round
                # trip per delivery). Another one is tried at once, and the idle ones are
                # tested in the background. Safe to repeat: if the lost call had committed,
                # the repeat finds its rows and reports them as duplicates.
                lost += 1
                self._sweep()
                if lost > self.pool.max_size:
                    raise DatabaseError("database connection lost") from None
            except psycopg.Error as exc:
                attempt += 1
                if exc.sqlstate == TOKEN_CONFLICT_SQLSTATE:
                    raise TokenConflictError(exc.diag.message_primary or str(exc)) from None
                if exc.sqlstate == LOCK_NOT_AVAILABLE:
                    raise TokenHeldError() from None
                if exc.sqlstate not in RETRYABLE or attempt >= attempts:
                    raise DatabaseError(f"{type(exc).__name__}: {_first_line(exc)}") from exc
                await asyncio.sleep(0.01 * 2**attempt)

    async def _execute(self, doc: str) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            try:
                cur = await conn.execute(CALL, (doc,), prepare=True)
                row = await cur.fetchone()
            except psycopg.OperationalError:
                if conn.broken:
                    raise _LostConnection from None
                raise
            assert row is not None
            answer: dict[str, Any] = row[0]
            return answer

    def _sweep(self) -> None:
        if self._sweeping is None or self._sweeping.done():
            self._sweeping = asyncio.get_running_loop().create_task(self.pool.check())


class _LostConnection(Exception):
    pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
