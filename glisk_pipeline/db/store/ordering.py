"""Which view of a block a webhook delivery may apply: the ordering rules, in one place.

Alchemy may deliver several views of one block (a reorg, a retry, two webhooks on the same
contract). The rule, written once as SQL and run by both dialects:
- a block that a backfill has reconciled as final is never changed (the chain decided;
  a late retry must not undo it): at or below the contiguous checkpoint, or inside any
  processed range (ranges above a gap count too);
- no view applied yet: apply;
- within one webhook, its sequenceNumber orders deliveries (the later or equal applies;
  the equal one with the applied hash is the same delivery again: see REPEAT);
- across webhooks (each numbers its own), a view that agrees with the applied hash
  applies (AGREE), otherwise the later createdAt (Alchemy's clock) wins; a missing
  createdAt never wins. An agreeing view may be a late retry from before a reorg, so it
  moves a log recorded in another block only if it is newer than that block's applied
  view (`agreeing_may_move_sql`).
- a delivery without a sequenceNumber claims nothing: it only adds missing logs, and
  none in a final block (`final_check_sql`, in the delivery function and
  MintStore.store_unordered_delivery).
The applied view is recorded in webhook_blocks, one row per block (the claim row).

PostgreSQL runs it inside the delivery function (webhook_pg.py): reads (and locks) the
claim row, decides and records the claim in one statement, in the same server-side call
as the removal and the upsert. SQLite, which has no data-modifying CTE and serialises
writers, decides with the same CASE, then records the claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BindParameter, Connection, bindparam, select, text

from glisk_pipeline.db.schema import LAST_PROCESSED_BLOCK, mint_events, webhook_blocks

FINAL = "block already reconciled from the chain as final"
OLDER = "an older view of this block than the one already applied"
# This very delivery (webhook, sequenceNumber, hash) was applied already (Alchemy's retry
# of a delivery whose call committed after the sidecar answered 500, or a duplicate
# delivery): its claim committed with its rows. Applied again, it would undo what later
# deliveries of other blocks did: a reorg that moved one of its logs to the next block
# had the log moved back, then removed by its own block's new view, the mint lost until
# the final reconcile (tests/test_store.py). So a repeat removes and revives nothing; it
# only adds logs that are missing.
REPEAT = "this delivery was applied already"
# Another webhook's view agreeing with the applied hash. It applies (and takes the claim):
# its block's rows are right, and it revives what a heartbeat of another fork removed
# there. But it may be a late retry from before a reorg that moved one of its logs to
# another block since. So a log that another block's applied view holds (live, under that
# view's hash) is moved here only if this view is newer than that one: the same webhook's
# higher sequenceNumber, or another webhook's later createdAt. Otherwise the log is left
# where it is (reported as a duplicate). A removed row, or one under a hash its block no
# longer has, is always moved: blocking it would lose the mint for good. So is a log
# when either view has no createdAt: nothing says this view is the older one, and a
# canonical view without a clock must not be held back.
AGREE = "agree"

# Reconciles take it exclusive, webhook deliveries shared (PostgreSQL): a delivery deciding
# "not final" must not interleave with a reconcile making the block final.
PG_FINAL_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('glisk.final'))")
PG_FINAL_LOCK_SHARED = "pg_advisory_xact_lock_shared(hashtext('glisk.final'))"

# The rule's parameters as bind parameters (SQLite); the delivery function passes its
# PL/pgSQL variables instead (webhook_pg.py).
BINDS = {n: f":{n}" for n in ("block", "key", "webhook_id", "hash", "seq", "created")}


@dataclass(frozen=True, slots=True)
class Claim:
    """A webhook delivery's view of a block."""

    webhook_id: str
    block_number: int
    block_hash: str
    sequence_number: int
    created_at: datetime | None


def claim_block(conn: Connection, claim: Claim) -> str | None:
    """SQLite: record this delivery as the one applied for its block (None, or AGREE for
    another webhook's agreeing view), or say why it must not be applied (FINAL, OLDER,
    or REPEAT: add missing logs only). Runs inside the caller's transaction.
    (PostgreSQL runs pg_claim_sql inside the delivery function.)"""
    params = {
        "block": claim.block_number,
        "key": LAST_PROCESSED_BLOCK,
        "webhook_id": claim.webhook_id,
        "hash": claim.block_hash,
        "seq": claim.sequence_number,
        # one clock for both dialects: SQLite keeps the wall time it is given, so an aware
        # time is stored (and compared, as text) in UTC; a naive one is taken as UTC
        "created": claim.created_at and utc(claim.created_at),
    }
    verdict = conn.execute(_SQLITE_VERDICT, params).scalar_one()
    if verdict not in ("apply", AGREE):
        return {"final": FINAL, "repeat": REPEAT}.get(verdict, OLDER)
    if conn.execute(_SQLITE_CLAIM, params).first() is None:
        return OLDER
    return AGREE if verdict == AGREE else None


def agreeing_may_move(conn: Connection, record_key: tuple[str, int], claim: Claim) -> bool:
    """SQLite's agreeing_may_move_sql for one log of an agreeing view (see AGREE)."""
    row = conn.execute(
        select(mint_events.c.block_number, mint_events.c.block_hash, mint_events.c.removed).where(
            mint_events.c.tx_hash == record_key[0], mint_events.c.log_index == record_key[1]
        )
    ).first()
    if row is None or row.block_number == claim.block_number:
        return True  # new, or in this block: the view's own block is its to decide
    applied = conn.execute(
        select(webhook_blocks.c.webhook_id, webhook_blocks.c.block_hash,
               webhook_blocks.c.sequence_number, webhook_blocks.c.created_at)
        .where(webhook_blocks.c.block_number == row.block_number)
    ).first()  # fmt: skip
    if applied is None or row.removed or applied.block_hash != row.block_hash:
        return True  # the other block's applied view does not hold this log
    if applied.webhook_id == claim.webhook_id:
        return claim.sequence_number > int(applied.sequence_number)
    if claim.created_at is None or applied.created_at is None:
        return True  # no clock to say this view is the older one: move it
    return utc(claim.created_at) > utc(applied.created_at)


def agreeing_may_move_sql(p: dict[str, str], event: dict[str, str]) -> str:
    """PostgreSQL: may an agreeing view (see AGREE) write the incoming log `event` (SQL
    expressions for its tx_hash and log_index)? `p` names the view's parameters."""
    return f"""NOT EXISTS (
        SELECT 1 FROM mint_events m
        JOIN webhook_blocks w ON w.block_number = m.block_number
        WHERE m.tx_hash = {event["tx_hash"]} AND m.log_index = {event["log_index"]}
          AND m.block_number <> {p["block"]}
          -- only a log the other block's applied view holds (live, under its hash)
          AND NOT m.removed AND m.block_hash = w.block_hash
          -- held back only when this view is known not to be newer (no clock: it moves)
          AND COALESCE(CASE WHEN w.webhook_id = {p["webhook_id"]}
                            THEN {p["seq"]} <= w.sequence_number
                            ELSE {p["created"]} <= w.created_at END, false))"""


def block_is_final(conn: Connection, block_number: int) -> bool:
    """SQLite: is the block final and reconciled? (The delivery function checks it in
    SQL, under the shared final lock.)"""
    params = {"block": block_number, "key": LAST_PROCESSED_BLOCK}
    return bool(conn.execute(_SQLITE_FINAL, params).scalar_one())


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def final_check_sql(p: dict[str, str]) -> str:
    """Is the block `p["block"]` (an SQL expression) final and reconciled? `p["key"]`
    names last_processed_block's key."""
    return f"""
    {p["block"]} <= COALESCE(
        (SELECT CAST(value AS bigint) FROM system_state WHERE key = {p["key"]}), -1)
    OR EXISTS (SELECT 1 FROM processed_ranges
               WHERE end_block >= {p["block"]} AND start_block <= {p["block"]})
"""


def verdict_sql(p: dict[str, str], seq: str, created: str) -> str:
    """THE rule (see the module docstring), over `cur` (the block's claim row, if any).
    `p` names the parameters (BINDS, or the delivery function's variables); `seq`/`created`
    are the parameters as each dialect compares them: PostgreSQL needs casts; SQLite
    compares the stored forms (sequence numbers as zero-padded text, times as fixed-width
    UTC text), whose text order is the numeric and time order."""
    return f"""CASE
        WHEN ({final_check_sql(p)}) THEN 'final'
        WHEN NOT EXISTS (SELECT 1 FROM cur) THEN 'apply'
        WHEN (SELECT webhook_id FROM cur) = {p["webhook_id"]} THEN
            CASE WHEN {seq} = (SELECT sequence_number FROM cur)
                      AND (SELECT block_hash FROM cur) = {p["hash"]} THEN 'repeat'
                 WHEN {seq} >= (SELECT sequence_number FROM cur)
                 THEN 'apply' ELSE 'older' END
        WHEN (SELECT block_hash FROM cur) = {p["hash"]} THEN 'agree'
        WHEN {created} > (SELECT created_at FROM cur) THEN 'apply'
        ELSE 'older'
    END"""


def _typed() -> tuple[BindParameter[int], BindParameter[datetime]]:
    return (
        bindparam("seq", type_=webhook_blocks.c.sequence_number.type),
        bindparam("created", type_=webhook_blocks.c.created_at.type),
    )


# Record the applied view. The row may have appeared since it was read (two first
# deliveries at once): the database settles that race by the rule itself, the
# sequenceNumber within one webhook, the hash or createdAt across webhooks (else the
# earlier view of another webhook, committing last, would take the block over).
_UPSERT_CLAIM = """
ON CONFLICT (block_number) DO UPDATE SET
    webhook_id = excluded.webhook_id, block_hash = excluded.block_hash,
    sequence_number = excluded.sequence_number, created_at = excluded.created_at,
    received_at = CURRENT_TIMESTAMP
WHERE CASE WHEN webhook_blocks.webhook_id = excluded.webhook_id
           THEN excluded.sequence_number >= webhook_blocks.sequence_number
           ELSE webhook_blocks.block_hash = excluded.block_hash
                OR excluded.created_at > webhook_blocks.created_at END
"""


def pg_claim_sql(p: dict[str, str]) -> str:
    """PostgreSQL: lock the claim row, decide, and record the claim, in one statement that
    returns (verdict, claimed). Run after taking PG_FINAL_LOCK_SHARED in an earlier
    statement: the final check must see a reconcile that committed while we waited (a
    statement's snapshot predates its locks)."""
    return f"""
WITH cur AS (
    SELECT webhook_id, block_hash, sequence_number, created_at
    FROM webhook_blocks WHERE block_number = {p["block"]} FOR UPDATE
),
verdict AS (
    SELECT {verdict_sql(p, p["seq"], p["created"])} AS v
),
claimed AS (
    INSERT INTO webhook_blocks
        (block_number, webhook_id, block_hash, sequence_number, created_at)
    SELECT {p["block"]}, {p["webhook_id"]}, {p["hash"]}, {p["seq"]}, {p["created"]}
    FROM verdict WHERE v IN ('apply', 'agree')
    {_UPSERT_CLAIM}
    RETURNING 1
)
SELECT v, EXISTS (SELECT 1 FROM claimed) FROM verdict
"""


_SQLITE_VERDICT = text(
    f"""
WITH cur AS (
    SELECT webhook_id, block_hash, sequence_number, created_at
    FROM webhook_blocks WHERE block_number = :block
)
SELECT {verdict_sql(BINDS, ":seq", ":created")} AS v
"""
).bindparams(*_typed())

_SQLITE_CLAIM = text(
    f"""
INSERT INTO webhook_blocks (block_number, webhook_id, block_hash, sequence_number, created_at)
VALUES (:block, :webhook_id, :hash, :seq, :created)
{_UPSERT_CLAIM}
RETURNING block_number
"""
).bindparams(*_typed())

_SQLITE_FINAL = text(f"SELECT CASE WHEN ({final_check_sql(BINDS)}) THEN 1 ELSE 0 END")
