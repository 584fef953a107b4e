"""The shared backfill loop: chain → tables, idempotent, reconciling, dry-run."""

from __future__ import annotations

import dataclasses
import time

import pytest
from sqlalchemy import Engine, func, select

from devtools.history import History, realistic_history
from devtools.local_chain import DEFAULT_AUTHOR
from devtools.oracle import chain_logs, chain_rows, table_rows, token_ids
from glisk_pipeline.chain.decoder import decode_rpc_log
from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.db.schema import mint_events
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.sync.backfill import backfill_range, prefetch
from tests.support.faultproxy import FaultProxy
from tests.support.fixtures_chain import DevChain


@pytest.fixture
def history(devchain: DevChain) -> History:
    return realistic_history(
        devchain.anvil, devchain.glisk, devchain.decoy, n_batches=800, n_blocks=300, seed=3
    )


def test_backfill_equals_chain_and_is_idempotent(devchain, history, engine: Engine) -> None:
    store = MintStore(engine, DEFAULT_AUTHOR, start_block=0)
    with RpcClient(devchain.anvil.url) as client:
        report = backfill_range(client, store, devchain.glisk, 0, history.to_block)
        again = backfill_range(client, store, devchain.glisk, 0, history.to_block)
    expected = chain_rows(devchain.mints())
    assert table_rows(engine) == expected and len(expected) == len(history.mints)
    assert token_ids(engine) == list(range(1, history.tokens_minted + 1))
    assert (report.logs_found, report.stored, report.duplicates) == (len(expected),) * 2 + (0,)
    assert (again.stored, again.duplicates) == (0, len(expected))
    assert store.last_processed_block() == history.to_block


def test_backfill_under_provider_limits_equals_chain(devchain, history, pg_engine) -> None:
    store = MintStore(pg_engine, DEFAULT_AUTHOR)
    with FaultProxy(devchain.anvil.url) as proxy:
        proxy.limit_results(100, "alchemy")
        proxy.strip_timestamps = True
        proxy.script("429", "timeout", "truncate")
        with RpcClient(proxy.url, backoff_base=0.01, timeout=1.0) as client:
            report = backfill_range(client, store, devchain.glisk, 0, history.to_block)
    assert table_rows(pg_engine) == chain_rows(devchain.mints())
    # 429 and truncated JSON are retried; the timeout (on a range wider than one block)
    # narrows the range instead of repeating it
    assert report.rpc_retries == 2 and report.rpc_calls > report.rpc_retries


def test_reconciliation_removes_webhook_row_not_on_chain(devchain, history, pg_engine) -> None:
    store = MintStore(pg_engine, DEFAULT_AUTHOR)
    real = decode_rpc_log(chain_logs(devchain.anvil, devchain.glisk)[0])
    ghost = dataclasses.replace(
        real, tx_hash="0x" + "ab" * 32, start_token_id=10**9, block_hash="0x" + "cd" * 32
    )
    store.store([ghost], source="webhook")  # a log from a block that lost a reorg
    with RpcClient(devchain.anvil.url) as client:
        report = backfill_range(client, store, devchain.glisk, 0, history.to_block)
    assert report.removed == 1
    assert table_rows(pg_engine) == chain_rows(devchain.mints())
    assert 10**9 not in token_ids(pg_engine)


def test_dry_run_writes_nothing(devchain, history, pg_engine) -> None:
    store = MintStore(pg_engine, DEFAULT_AUTHOR)
    with RpcClient(devchain.anvil.url) as client:
        report = backfill_range(client, store, devchain.glisk, 0, history.to_block, dry_run=True)
    assert report.logs_found == len(history.mints) and report.stored == 0
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mint_events)).scalar_one() == 0


def test_prefetch_keeps_order_bounds_lookahead_and_propagates_errors() -> None:
    produced: list[int] = []

    def numbers():
        for i in range(50):
            produced.append(i)
            yield i
        raise RuntimeError("provider gave up")

    seen = []
    with pytest.raises(RuntimeError, match="provider gave up"):
        for item in prefetch(numbers(), depth=1):
            time.sleep(0.002)
            # one item queued + one being produced: never further ahead
            assert len(produced) <= item + 3
            seen.append(item)
    assert seen == list(range(50))


def test_prefetch_stops_the_worker_when_the_consumer_stops() -> None:
    produced: list[int] = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    for item in prefetch(endless()):
        if item == 3:
            break
    time.sleep(0.3)
    assert len(produced) <= 6
