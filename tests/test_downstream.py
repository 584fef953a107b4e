"""The downstream contract in the store (docs/downstream.md), on PostgreSQL and SQLite where
it applies: new token ids announced once per insert (PostgreSQL's NOTIFY), a reorg keeping
the rows a worker moved on (orphaned) while `detected` rows of a removed mint leave, the
same log coming back leaving them untouched, another mint taking their ids, rows a worker
holds locked never making the store wait, updated_at kept by the database, and the
documented database roles."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from devtools.local_chain import DEFAULT_AUTHOR
from glisk_pipeline.chain.decoder import MintRecord
from glisk_pipeline.db.engine import libpq_conninfo
from glisk_pipeline.db.schema import orphaned_tokens, tokens
from glisk_pipeline.db.store import MintStore, TokenHeldError
from glisk_pipeline.db.store.downstream import RUNS_PER_NOTIFY, Orphan
from glisk_pipeline.db.store.downstream import orphaned_tokens as find_orphans
from tests.support.downstream_support import Listener, announced, move_on, token_ids, token_row
from tests.support.factories import block_hash, chain_of, make_records

DOCS = Path(__file__).resolve().parents[1] / "docs" / "downstream.md"
NEW_HASH = "0x" + "c1" * 32


@pytest.fixture
def store(engine: Engine) -> MintStore:
    return MintStore(engine, DEFAULT_AUTHOR, start_block=0)


@pytest.fixture
def pg_store(pg_engine: Engine) -> MintStore:
    return MintStore(pg_engine, DEFAULT_AUTHOR, start_block=0)


@pytest.fixture
def listener(pg_url: str, pg_engine: Engine) -> Iterator[Listener]:
    worker = Listener(pg_url)
    yield worker
    worker.close()


def orphans(engine: Engine) -> list[Orphan]:
    with engine.connect() as conn:
        return find_orphans(conn)


def deliver(store: MintStore, block: int, hash_: str, seq: int, records: list[MintRecord]):
    return store.store_block_delivery(
        block_number=block, block_hash=hash_, sequence_number=seq, records=records
    )


# --- announcements (PostgreSQL) -----------------------------------------------------------


def test_every_stored_token_id_is_announced_once_per_insert_on_the_bulk_paths(
    pg_store: MintStore, pg_engine: Engine, listener: Listener
) -> None:
    store = pg_store
    records = make_records(700)
    # every other mint: 350 separate runs of ids, more than one notification holds
    kept, later = records[::2], records[1::2]
    store.reconcile_range(kept, start_block=100, end_block=333, canonical=chain_of(*kept))
    first = listener.drain()
    assert len(first) == -(-len(kept) // RUNS_PER_NOTIFY) == 3
    assert all(len(p["detected"]) <= RUNS_PER_NOTIFY for p in first)
    assert announced(first, "detected") == {t: 1 for t in token_ids(pg_engine)}

    store.store(kept, source="backfill")  # duplicates: nothing new, nothing announced
    assert listener.drain() == []
    store.store(later[:40], source="webhook")  # the array path (below the COPY size)
    store.store(later[40:], source="backfill")  # the staged (COPY) path
    seen = announced(first + listener.drain(), "detected")
    assert seen == {t: 1 for t in token_ids(pg_engine)}
    assert sum(seen.values()) == sum(r.quantity for r in records)


def test_a_delivery_announces_its_new_token_ids_and_a_rollback_announces_nothing(
    pg_store: MintStore, pg_engine: Engine, listener: Listener
) -> None:
    store = pg_store
    records = make_records(3)  # one block
    deliver(store, 100, records[0].block_hash, 1, records)
    payloads = listener.drain()
    assert payloads == [{"detected": [[1, sum(r.quantity for r in records)]]}]
    deliver(store, 100, records[0].block_hash, 1, records)  # the same delivery again
    assert listener.drain() == []
    clash = dataclasses.replace(records[0], tx_hash="0x" + "77" * 32, block_number=101)
    with pytest.raises(Exception, match="token"):  # ids held by a live event: rolled back
        deliver(store, 101, clash.block_hash, 2, [clash])
    assert listener.drain() == []


# --- a reorg and the rows a worker moved on -------------------------------------------------


def _mined_and_moved_on(store: MintStore, engine: Engine) -> tuple[list[MintRecord], int, int]:
    """Three mints in block 100; a worker moved a token of the first to generating and
    one of the second to revealed. Returns (records, generating id, revealed id)."""
    records = make_records(3)
    deliver(store, 100, records[0].block_hash, 1, records)
    generating, revealed = records[0].start_token_id, records[1].start_token_id + 1
    move_on(engine, generating, "generating", generation_attempts=1)
    move_on(engine, revealed, "revealed", image_url="ipfs://revealed")
    return records, generating, revealed


def test_a_reorg_as_a_heartbeat_keeps_the_rows_a_worker_moved_on_and_marks_them(
    store: MintStore, engine: Engine, request: pytest.FixtureRequest
) -> None:
    pg = engine.dialect.name == "postgresql"
    listener = Listener(request.getfixturevalue("pg_url")) if pg else None
    records, generating, revealed = _mined_and_moved_on(store, engine)
    before = {t: token_row(engine, t) for t in (generating, revealed)}
    if listener:
        listener.drain()

    heartbeat = deliver(store, 100, NEW_HASH, 2, [])  # the block's new view: no mint
    assert heartbeat.removed == 3
    # the detected rows of the removed mints left; the two moved on are kept unchanged
    assert token_ids(engine) == [generating, revealed]
    assert {t: token_row(engine, t) for t in (generating, revealed)} == before
    assert orphans(engine) == [
        Orphan(generating, "generating", False),
        Orphan(revealed, "revealed", False),
    ]
    if listener:
        assert listener.drain() == [{"orphaned": [[generating, generating], [revealed, revealed]]}]

    # the same logs reappear in block 101: the kept rows untouched, no longer orphaned
    moved = [dataclasses.replace(r, block_number=101, block_hash=block_hash(101)) for r in records]
    again = deliver(store, 101, moved[0].block_hash, 3, moved)
    assert again.count("restored") == 3
    assert {t: token_row(engine, t) for t in (generating, revealed)} == before
    assert orphans(engine) == []
    everything = sum(r.quantity for r in records)
    assert token_ids(engine) == list(range(1, everything + 1))
    if listener:
        reinserted = set(range(1, everything + 1)) - {generating, revealed}
        assert announced(listener.drain(), "detected") == {t: 1 for t in reinserted}
        assert claimable(engine) == sorted(reinserted)  # the documented claim query
        listener.close()


def test_another_mint_taking_a_kept_rows_id_moves_the_row_aside(
    store: MintStore, engine: Engine
) -> None:
    records, generating, revealed = _mined_and_moved_on(store, engine)
    deliver(store, 100, NEW_HASH, 2, [])
    # the winning fork minted the same ids in another transaction
    rival = dataclasses.replace(records[0], tx_hash="0x" + "99" * 32, block_hash=NEW_HASH)
    result = deliver(store, 100, NEW_HASH, 3, [rival])
    assert result.stored == 1
    row = token_row(engine, generating)
    assert row is not None and (row["status"], row["generation_attempts"]) == ("detected", 0)
    with engine.connect() as conn:
        (aside,) = conn.execute(select(orphaned_tokens)).all()
    assert (aside.token_id, aside.status, aside.generation_attempts) == (
        generating,
        "generating",
        1,
    )
    assert orphans(engine) == [
        Orphan(generating, "generating", True),
        Orphan(revealed, "revealed", False),
    ]


def test_a_final_reconcile_keeps_rows_a_worker_moved_on(
    store: MintStore, engine: Engine, request: pytest.FixtureRequest
) -> None:
    pg = engine.dialect.name == "postgresql"
    listener = Listener(request.getfixturevalue("pg_url")) if pg else None
    _, generating, revealed = _mined_and_moved_on(store, engine)
    if listener:
        listener.drain()
    # the final chain has another block 100 without these mints
    result = store.reconcile_range([], start_block=100, end_block=100, canonical=chain_of())
    assert result.removed == 3
    assert token_ids(engine) == [generating, revealed]
    assert [o.token_id for o in orphans(engine)] == [generating, revealed]
    if listener:
        assert listener.drain() == [{"orphaned": [[generating, generating], [revealed, revealed]]}]
        listener.close()


def test_updated_at_changes_on_every_update(store: MintStore, engine: Engine) -> None:
    (record,) = make_records(1)
    store.store([record], source="webhook")
    first = token_row(engine, record.start_token_id)
    assert first is not None
    time.sleep(0.01)
    move_on(engine, record.start_token_id, "generating")
    second = token_row(engine, record.start_token_id)
    assert second is not None and second["updated_at"] > first["updated_at"]
    time.sleep(0.01)
    move_on(engine, record.start_token_id, "generating", image_url="ipfs://x")
    third = token_row(engine, record.start_token_id)
    assert third is not None and third["updated_at"] > second["updated_at"]
    other = token_row(engine, record.start_token_id + 1) if record.quantity > 1 else None
    assert other is None or other["updated_at"] == first["updated_at"]


# --- rows a worker holds locked (PostgreSQL) -------------------------------------------------


class Worker:
    """A worker's open transaction holding token rows locked (as while generating)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(libpq_conninfo(url))

    def claim(self, token_id: int, status: str | None = None) -> None:
        self.conn.execute(
            "SELECT token_id FROM tokens WHERE token_id = %s FOR UPDATE SKIP LOCKED", (token_id,)
        )
        if status is not None:
            self.conn.execute(
                "UPDATE tokens SET status = %s WHERE token_id = %s", (status, token_id)
            )

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


def _timed(work):
    """(result or exception, seconds), run in a thread so a wait cannot hang the test."""
    box: dict[str, object] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            box["result"] = work()
        except Exception as exc:  # the caller asserts on it
            box["result"] = exc
        box["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "the store waited for a worker's lock"
    return box["result"], box["seconds"]


def test_a_reorg_never_waits_for_rows_a_worker_holds_and_loses_nothing(
    pg_url: str, pg_engine: Engine
) -> None:
    store = MintStore(pg_engine, DEFAULT_AUTHOR, start_block=0)
    records = make_records(3)
    deliver(store, 100, records[0].block_hash, 1, records)
    held, updating, dropped = (r.start_token_id for r in records)
    worker, leaver = Worker(pg_url), Worker(pg_url)
    try:
        worker.claim(held)  # claimed, not yet moved on
        worker.claim(updating, "generating")  # moved on, not yet committed
        leaver.claim(dropped)  # claimed, and will be let go of unchanged
        result, seconds = _timed(lambda: deliver(store, 100, NEW_HASH, 2, []))
        assert not isinstance(result, Exception), result
        assert result.removed == 3 and seconds < 2
        # only the rows nobody held left; the held ones wait for their workers
        assert token_ids(pg_engine) == [held, updating, dropped]
        worker.claim(held, "generating")
        worker.commit()
        leaver.rollback()
        assert [(o.token_id, o.status) for o in orphans(pg_engine)] == [
            (held, "generating"),
            (updating, "generating"),
        ]
        # the row let go of unchanged is no orphan (no work on it), no worker may claim it,
        # and it must not stay: the block's final reconcile deletes it
        assert token_ids(pg_engine) == [held, updating, dropped]
        assert claimable(pg_engine) == []
        store.reconcile_range([], start_block=100, end_block=100, canonical=chain_of())
        assert token_ids(pg_engine) == [held, updating]

        # the winning fork's mint takes a held row's id: refused at once, not waited for
        worker.claim(held)
        rival = dataclasses.replace(
            records[0], tx_hash="0x" + "99" * 32, block_number=101, block_hash=block_hash(101)
        )
        result, seconds = _timed(lambda: deliver(store, 101, rival.block_hash, 3, [rival]))
        assert isinstance(result, TokenHeldError) and seconds < 2
        assert token_row(pg_engine, held)["status"] == "generating"  # type: ignore[index]
        worker.commit()
        assert orphans(pg_engine)[0] == Orphan(held, "generating", False)  # nothing written
        again = deliver(store, 101, rival.block_hash, 3, [rival])  # Alchemy's retry
        assert again.stored == 1
        assert token_row(pg_engine, held)["status"] == "detected"  # type: ignore[index]
        assert [(o.token_id, o.archived) for o in orphans(pg_engine)] == [
            (held, True),
            (updating, False),
        ]
    finally:
        worker.close()
        leaver.close()


# --- the documented roles (PostgreSQL) -------------------------------------------------------


def documented_sql(label: str) -> str:
    """The ```sql `label` block of docs/downstream.md."""
    found = re.findall(rf"```sql {label}\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(found) == 1, f"docs/downstream.md holds one ```sql {label} block"
    return str(found[0])


def claimable(engine: Engine) -> list[int]:
    """What the documented claim query hands a worker (rolled back: nothing claimed)."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(documented_sql("claim").replace("LIMIT 10", "LIMIT 1000"))
        found = sorted(row[0] for row in rows)
        conn.rollback()
    return found


def test_the_documented_roles_read_and_move_on_only_what_the_contract_says(
    pg_store: MintStore, pg_engine: Engine
) -> None:
    store = pg_store
    (record,) = make_records(1)
    store.store([record], source="webhook")
    suffix = uuid.uuid4().hex[:8]  # roles are cluster-wide: this test's own names
    sql = re.sub(r"\b(glisk_reader|glisk_worker)\b", rf"\1_{suffix}", documented_sql("roles"))
    reader, worker = f"glisk_reader_{suffix}", f"glisk_worker_{suffix}"
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(sql)
        conn.exec_driver_sql(sql)  # idempotent: run on every deployment
    try:

        def as_role(role: str, statement: str) -> str | None:
            """None if `role` may run `statement`, else the SQLSTATE."""
            with pg_engine.connect() as conn:
                conn.exec_driver_sql(f"SET ROLE {role}")
                try:
                    conn.exec_driver_sql(statement)
                    return None
                except DBAPIError as exc:
                    return getattr(exc.orig, "sqlstate", None)
                finally:
                    conn.rollback()

        t = record.start_token_id
        assert as_role(reader, "SELECT count(*) FROM mint_events") is None
        assert as_role(reader, "SELECT count(*) FROM tokens") is None
        assert as_role(reader, "UPDATE mint_events SET removed = true") == "42501"
        promote = f"UPDATE tokens SET status = 'generating' WHERE token_id = {t}"
        assert as_role(reader, promote) == "42501"
        assert as_role(worker, documented_sql("claim")) is None
        moved = f"UPDATE tokens SET status = 'generating', image_url = 'x' WHERE token_id = {t}"
        assert as_role(worker, moved) is None
        assert as_role(worker, f"UPDATE tokens SET author_id = 1 WHERE token_id = {t}") == "42501"
        assert as_role(worker, "UPDATE mint_events SET removed = true") == "42501"
        assert as_role(worker, f"DELETE FROM tokens WHERE token_id = {t}") == "42501"
    finally:
        with pg_engine.begin() as conn:
            for role in (reader, worker):
                conn.exec_driver_sql(f"DROP OWNED BY {role}")
                conn.exec_driver_sql(f"DROP ROLE {role}")


def test_the_sqlite_trigger_keeps_an_updated_at_the_update_sets(sqlite_engine: Engine) -> None:
    (record,) = make_records(1)
    MintStore(sqlite_engine, DEFAULT_AUTHOR).store([record], source="webhook")
    with sqlite_engine.begin() as conn:
        conn.execute(
            text("UPDATE tokens SET status = 'ready', updated_at = '2030-01-01 00:00:00.000000'")
        )
        stamps = set(conn.execute(select(tokens.c.updated_at)).scalars())
    assert {s.year for s in stamps} == {2030}


def test_a_log_moving_to_another_block_in_one_delivery_announces_no_orphan(
    pg_store: MintStore, pg_engine: Engine, listener: Listener
) -> None:
    records, generating, _ = _mined_and_moved_on(pg_store, pg_engine)
    listener.drain()
    before = token_row(pg_engine, generating)
    # block 101's view holds the first mint's log: removed from block 100 and revived in
    # block 101 by the same call
    moved = dataclasses.replace(records[0], block_number=101, block_hash=block_hash(101))
    deliver(pg_store, 101, moved.block_hash, 2, [moved])
    assert token_row(pg_engine, generating) == before
    assert orphans(pg_engine) == []
    payloads = listener.drain()
    assert [p for p in payloads if "orphaned" in p] == []
    first = range(records[0].start_token_id, records[0].start_token_id + records[0].quantity)
    assert announced(payloads, "detected") == {t: 1 for t in first if t != generating}
