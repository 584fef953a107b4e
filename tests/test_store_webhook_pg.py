"""The webhook delivery function on PostgreSQL (db/store/webhook_pg.py): installed as the
store defines it, one round trip per delivery on the async pool, all-or-nothing."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import pq
from sqlalchemy import Engine, func, select, text

from devtools.local_chain import DEFAULT_AUTHOR
from glisk_pipeline.chain.decoder import MintRecord
from glisk_pipeline.db import migrate
from glisk_pipeline.db.engine import libpq_conninfo
from glisk_pipeline.db.schema import mint_events, tokens, webhook_blocks
from glisk_pipeline.db.store import MintStore, TokenConflictError
from glisk_pipeline.db.store.ordering import Claim
from glisk_pipeline.db.store.webhook_pg import (
    BODY,
    CALL,
    FUNCTION,
    AsyncDeliveryStore,
    delivery_document,
)
from tests.support.factories import make_records
from tests.support.fixtures_db import async_pool


def count(engine: Engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_installed_function_is_the_stores(pg_engine: Engine) -> None:
    # A change to the function's SQL (the ordering rule, the upserts) needs a migration
    # that installs it again: the database must run what the store says.
    with pg_engine.connect() as conn:
        installed = conn.execute(
            text("SELECT prosrc FROM pg_proc WHERE proname = :name"), {"name": FUNCTION}
        ).scalar_one()
    assert installed.strip() == BODY.strip()


def test_the_newest_function_migration_was_written_for_the_stores_sql() -> None:
    # A database built from empty runs 0003 with the function's current text, so the test
    # above cannot see a missing migration; an upgraded one would keep the old function.
    # The newest migration that installs the function pins the body it installs.
    versions = Path(migrate.__file__).parent / "migrations" / "versions"
    pins = []
    for path in sorted(versions.glob("[0-9]*.py")):
        spec = importlib.util.spec_from_file_location(f"_glisk_migration_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if hasattr(module, "BODY_SHA256"):
            pins.append((module.revision, module.BODY_SHA256))
    assert pins, "no migration pins the delivery function's body"
    revision, pinned = max(pins)
    current = hashlib.sha256(BODY.strip().encode()).hexdigest()
    assert pinned == current, (
        f"the delivery function's SQL changed after migration {revision}: add a migration "
        f"that installs it again, with BODY_SHA256 = {current!r}"
    )


def _frontend_messages(trace: str) -> list[str]:
    """Message types the client sent (libpq trace lines: direction, length, type, ...)."""
    return [line.split("\t")[2] for line in trace.splitlines() if line.startswith("F\t")]


def test_a_delivery_is_one_round_trip(pg_url: str, pg_engine: Engine) -> None:
    records = make_records(4)
    first, second = records[0], records[3]  # blocks 100 and 101

    async def deliver() -> list[str]:
        async with async_pool(pg_url, max_size=1) as pool:
            store = AsyncDeliveryStore(pool, DEFAULT_AUTHOR)
            await store.store_block_delivery(
                block_number=first.block_number,
                block_hash=first.block_hash,
                sequence_number=1,
                records=[first],
            )
            with tempfile.TemporaryFile("w+") as trace:
                async with pool.connection() as conn:
                    conn.pgconn.trace(trace.fileno())
                    conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
                result = await store.store_block_delivery(
                    block_number=second.block_number,
                    block_hash=second.block_hash,
                    sequence_number=1,
                    records=[second],
                )
                async with pool.connection() as conn:
                    conn.pgconn.untrace()
                trace.seek(0)
                assert result.stored == 1
                return _frontend_messages(trace.read())

    sent = asyncio.run(deliver())
    # a prepared statement: Bind, Execute, Sync; one Sync = one round trip, no BEGIN/COMMIT
    assert sent.count("Sync") == 1, sent
    assert "Query" not in sent and "Parse" not in sent, sent
    assert count(pg_engine, mint_events) == 2


def test_token_conflict_writes_nothing_async(pg_url: str, pg_engine: Engine) -> None:
    MintStore(pg_engine, DEFAULT_AUTHOR).store(make_records(5), source="backfill")
    clash = [r for r in make_records(3, seed=99, first_block=900) if r.block_number == 900]

    async def deliver() -> None:
        async with async_pool(pg_url) as pool:
            await AsyncDeliveryStore(pool, DEFAULT_AUTHOR).store_block_delivery(
                block_number=900,
                block_hash=clash[0].block_hash,
                sequence_number=1,
                records=clash,
            )

    with pytest.raises(TokenConflictError, match="held by another live event"):
        asyncio.run(deliver())
    assert count(pg_engine, mint_events) == 5
    assert count(pg_engine, webhook_blocks) == 0  # the claim rolled back with the rest
    assert count(pg_engine, tokens) == sum(r.quantity for r in make_records(5))


def test_reorg_through_the_async_pool(pg_url: str, pg_engine: Engine) -> None:
    old = make_records(3, first_block=700)  # three logs of block 700
    new = make_records(1, first_block=700, seed=8, first_token=1000, block_hash_salt="c")

    async def deliver() -> tuple[int, int]:
        async with async_pool(pg_url) as pool:
            store = AsyncDeliveryStore(pool, DEFAULT_AUTHOR)
            a = await store.store_block_delivery(
                block_number=700, block_hash=old[0].block_hash, sequence_number=1, records=old
            )
            b = await store.store_block_delivery(
                block_number=700, block_hash=new[0].block_hash, sequence_number=2, records=new
            )
            return a.stored, b.removed

    assert asyncio.run(deliver()) == (3, 3)
    with pg_engine.connect() as conn:
        live = (
            conn.execute(select(mint_events.c.tx_hash).where(~mint_events.c.removed))
            .scalars()
            .all()
        )
        token_count = conn.execute(select(func.count()).select_from(tokens)).scalar_one()
    assert live == [new[0].tx_hash]
    assert token_count == new[0].quantity


def test_first_views_from_two_webhooks_at_once_later_created_wins(
    pg_url: str, pg_engine: Engine
) -> None:
    # Two webhooks deliver different views of block 800, neither applied yet. The later
    # view (createdAt) is written first but not yet committed; the earlier one reads no
    # claim row, decides "apply", and waits on the claim row's insert. When the later one
    # commits, the rule must still hold: the earlier view is older and must not take over.
    early = make_records(1, first_block=800, seed=11, first_token=500, block_hash_salt="a")
    late = make_records(1, first_block=800, seed=12, first_token=600, block_hash_salt="c")
    moment = datetime(2026, 1, 1, tzinfo=UTC)

    def doc(records: list[MintRecord], webhook: str, created: datetime) -> str:
        claim = Claim(webhook, 800, records[0].block_hash, 1, created)
        return delivery_document(records, DEFAULT_AUTHOR, claim)

    conninfo = libpq_conninfo(pg_url)
    with psycopg.connect(conninfo) as later, psycopg.connect(conninfo, autocommit=True) as spy:
        later.execute(CALL, (doc(late, "wh-late", moment + timedelta(seconds=5)),))
        earlier = threading.Thread(
            target=_call_autocommit, args=(conninfo, doc(early, "wh-early", moment))
        )
        earlier.start()
        while not spy.execute(  # the earlier delivery waits on the claim row's insert
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            (f"%{FUNCTION}%",),
        ).fetchone():
            time.sleep(0.01)
        later.commit()
        earlier.join()
    with pg_engine.connect() as conn:
        claimed = conn.execute(select(webhook_blocks.c.webhook_id)).scalars().all()
        live = conn.execute(select(mint_events.c.tx_hash).where(~mint_events.c.removed))
        assert claimed == ["wh-late"]
        assert live.scalars().all() == [late[0].tx_hash]


def _call_autocommit(conninfo: str, doc: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(CALL, (doc,))
