"""Proof, not trust (real anvil, real PostgreSQL, real Dagster, the CLI as a process):
- an eth_getLogs answer counts only if the node that gave it had the range: a node whose
  logs lag the head (while heads are current elsewhere) never removes live mints;
- a row leaves the live set only when its block's hash changed, never because one
  answer lacked its log;
- a reorg across a window (or RPC chunk) boundary reconciles: a lost row in the next
  window that holds token ids of a canonical mint is removed on proof.
"""

from __future__ import annotations

import subprocess
import sys
from itertools import groupby

import pytest
from dagster import instance_for_test, materialize
from sqlalchemy import Engine, func, select

from devtools.anvil import DEFAULT_MINT_PRICE, DEV_ACCOUNTS
from devtools.history import Mint, mint_batches, mint_tx
from devtools.local_chain import DEFAULT_AUTHOR
from devtools.oracle import chain_logs, chain_rows, table_rows, token_ids
from glisk_pipeline.chain.decoder import decode_rpc_log
from glisk_pipeline.chain.provider_errors import redact
from glisk_pipeline.chain.rpc import ProviderLagError, RpcClient
from glisk_pipeline.db.schema import mint_events
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.db.store.results import UnprovenRemovalError
from glisk_pipeline.defs.backfill.assets import mint_events as mint_events_asset
from glisk_pipeline.sync.backfill import backfill_range
from glisk_pipeline.windows import PARTITIONS_NAME, partition_key
from tests.support.dagster_runs import range_tags
from tests.support.faultproxy import FaultProxy
from tests.support.fixtures_chain import DevChain
from tests.support.pipeline_support import local_resources

CLI = [sys.executable, "-m", "glisk_pipeline.cli", "recover"]
LAG = 30  # blocks the lagging node is behind
SIZE = 10  # blocks per window here


def mint_live(devchain: DevChain, store: MintStore, n: int, per_block: int = 2) -> int:
    """Mint n batches on chain and store them as the webhook does (one delivery per
    block); returns the first block minted."""
    start = devchain.anvil.block_number() + 1
    mints = [
        Mint(
            DEV_ACCOUNTS[i % 10],
            DEV_ACCOUNTS[(i + 3) % 10],
            1 + i % 5,
            (1 + i % 5) * DEFAULT_MINT_PRICE,
        )
        for i in range(n)
    ]
    mint_batches(devchain.anvil, devchain.glisk, mints, per_block=per_block)
    deliver(devchain, store, start)
    return start


def deliver(
    devchain: DevChain, store: MintStore, from_block: int, to_block: int | None = None
) -> None:
    logs = chain_logs(devchain.anvil, devchain.glisk, from_block, to_block)
    for _, group in groupby(logs, key=lambda log: log["blockNumber"]):
        records = [decode_rpc_log(log) for log in group]
        store.store_block_delivery(
            block_number=records[0].block_number,
            block_hash=records[0].block_hash,
            sequence_number=1,
            records=records,
        )


def removed(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(mint_events).where(mint_events.c.removed)
        ).scalar_one()


def recover(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_lagging_node_removes_no_live_mint_through_the_cli(
    devchain: DevChain, pg_engine: Engine, cli_env: dict[str, str]
) -> None:
    store = MintStore(pg_engine, DEFAULT_AUTHOR)
    start = mint_live(devchain, store, 80)  # 40 blocks of live mints
    live = table_rows(pg_engine)
    assert live == chain_rows(devchain.mints()) and len(live) == 80
    with FaultProxy(devchain.anvil.url) as proxy:
        proxy.lag_logs(LAG)  # eth_getLogs from a node 30 blocks behind; heads current
        env = {
            **cli_env,
            "RPC_URL": proxy.url,
            "RPC_MAX_ATTEMPTS": "3",
            "GLISK_START_BLOCK": str(start),
        }
        out = recover(env, "--from-block", str(start))
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"does not have block {devchain.anvil.block_number()}" in out.stderr
        assert "Traceback" not in out.stderr
        # nothing removed, no token row deleted, no checkpoint
        assert table_rows(pg_engine) == live and removed(pg_engine) == 0
        assert store.last_processed_block() is None
        assert proxy.lagging_answers == 3  # each answer refused, none used
        proxy.lag_logs(None)  # the node caught up
        again = recover(env, "--from-block", str(start))
    assert again.returncode == 0, again.stderr
    assert "found 80, stored 0, duplicates 80, removed 0" in again.stdout
    assert "3 answers refused" not in again.stdout
    assert table_rows(pg_engine) == chain_rows(devchain.mints()) and removed(pg_engine) == 0
    assert store.last_processed_block() == devchain.anvil.block_number()


def test_a_lagging_node_removes_no_live_mint_through_the_asset(
    devchain: DevChain, pg_engine: Engine, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RPC_MAX_ATTEMPTS", "2")
    store = MintStore(pg_engine, DEFAULT_AUTHOR)
    first = mint_live(devchain, store, 40)
    start = first // SIZE * SIZE
    end = (devchain.anvil.block_number() // SIZE) * SIZE - 1  # the last complete window
    live = table_rows(pg_engine)
    keys = [partition_key(lo, lo + SIZE - 1) for lo in range(start, end, SIZE)]
    with FaultProxy(devchain.anvil.url) as proxy, instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
        proxy.lag_logs(LAG)
        resources = local_resources(devchain, pg_url, start, SIZE, rpc_url=proxy.url)
        failed = materialize(
            [mint_events_asset],
            instance=instance,
            resources=resources,
            tags=range_tags(keys),
            raise_on_error=False,
        )
        assert not failed.success
        assert table_rows(pg_engine) == live and removed(pg_engine) == 0
        assert store.last_processed_block() is None
        proxy.lag_logs(None)
        ok = materialize(
            [mint_events_asset], instance=instance, resources=resources, tags=range_tags(keys)
        )
    assert ok.success
    assert table_rows(pg_engine) == chain_rows(devchain.mints()) and removed(pg_engine) == 0


def test_the_loop_waits_for_a_lagging_node_to_catch_up(
    devchain: DevChain, pg_engine: Engine
) -> None:
    store = MintStore(pg_engine, DEFAULT_AUTHOR)
    start = mint_live(devchain, store, 60)
    head = devchain.anvil.block_number()
    store = MintStore(pg_engine, DEFAULT_AUTHOR, start_block=start)
    with FaultProxy(devchain.anvil.url) as proxy:
        proxy.lag_logs(LAG, catch_up_after=2)
        with RpcClient(proxy.url, backoff_base=0.01) as client:
            report = backfill_range(client, store, devchain.glisk, start, head)
    assert report.lagging_answers == 2 and report.removed == 0
    assert (report.logs_found, report.duplicates) == (60, 60)
    assert table_rows(pg_engine) == chain_rows(devchain.mints())
    assert store.last_processed_block() == head


def test_the_lag_error_names_the_node_and_its_lag(devchain: DevChain) -> None:
    devchain.anvil.mine_empty(LAG + 5)
    head = devchain.anvil.block_number()
    with FaultProxy(devchain.anvil.url) as proxy:
        proxy.lag_logs(LAG)
        with (
            RpcClient(proxy.url, backoff_base=0.01, max_attempts=2) as client,
            pytest.raises(ProviderLagError) as error,
        ):
            list(client.iter_logs(devchain.glisk, "0x" + "00" * 32, 0, head))
    message = str(error.value)
    assert f"does not have block {head} (its head is block {head - LAG})" in message
    # the endpoint named, without its path (a provider key may be there)
    assert "2 times" in message and redact(proxy.url) in message
    assert proxy.url.rsplit("/", 1)[1] not in message


def test_an_answer_lacking_a_log_of_a_canonical_block_removes_nothing(
    devchain: DevChain, pg_engine: Engine
) -> None:
    """The second line of defence: a node that has the block but answers without one of
    its logs (or a lag the guard did not see): the row's block hash is unchanged on the
    chain, so the reconcile fails and writes nothing."""
    store = MintStore(pg_engine, DEFAULT_AUTHOR)
    start = mint_live(devchain, store, 6)
    head = devchain.anvil.block_number()
    records = [decode_rpc_log(log) for log in chain_logs(devchain.anvil, devchain.glisk, start)]
    with RpcClient(devchain.anvil.url) as client:
        with pytest.raises(
            UnprovenRemovalError, match="lacks 2 logs of blocks still on the canonical"
        ):
            store.reconcile_range(
                records[:-2], start_block=start, end_block=head, canonical=client.block_hashes
            )
        assert client.stats.proofs == 1  # one block held the two missing logs
    assert table_rows(pg_engine) == chain_rows(devchain.mints()) and removed(pg_engine) == 0
    assert store.last_processed_block() is None


# --- a reorg across a window / chunk boundary ---------------------------------------------


def straddling_reorg(devchain: DevChain, store: MintStore) -> tuple[int, int]:
    """Mints at blocks B-1 and B (B a window start) delivered live; then a reorg of both:
    the new fork's block B-1 holds one bigger mint whose ids cover those of the lost row
    at B, and block B is empty (never delivered: Alchemy skips empty blocks). Returns
    (B, the final block after some more empty blocks)."""
    anvil = devchain.anvil
    boundary = (anvil.block_number() // SIZE + 2) * SIZE
    anvil.mine_empty(boundary - 1 - anvil.block_number() - 1)  # next block is B - 1
    mint_batches(
        anvil,
        devchain.glisk,
        [Mint(DEV_ACCOUNTS[1], DEV_ACCOUNTS[2], 3, 3 * DEFAULT_MINT_PRICE)] * 2,
        per_block=1,
    )
    assert anvil.block_number() == boundary
    deliver(devchain, store, boundary - 1)
    lost_ids = token_ids(store.engine)
    bigger = mint_tx(devchain.glisk, DEV_ACCOUNTS[4], DEV_ACCOUNTS[5], 6, 6 * DEFAULT_MINT_PRICE)
    anvil.rpc("anvil_reorg", [2, [[bigger, 0]]])
    anvil.mine_empty(2 * SIZE)
    (mint,) = [m for m in devchain.mints() if m.block_number >= boundary - 1]
    assert mint.block_number == boundary - 1 and mint.quantity == 6
    assert set(lost_ids) <= set(range(mint.start_token_id, mint.start_token_id + 6))
    return boundary, anvil.block_number()


def test_a_reorg_across_a_window_boundary_reconciles_in_the_asset(
    devchain: DevChain, pg_engine: Engine, pg_url: str
) -> None:
    store = MintStore(pg_engine, DEFAULT_AUTHOR)
    boundary, final = straddling_reorg(devchain, store)
    start = boundary - SIZE
    resources = local_resources(devchain, pg_url, start, SIZE)
    below = partition_key(start, boundary - 1)
    above = partition_key(boundary, boundary + SIZE - 1)
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, [below, above])
        # the window below alone first, as a backfill's first run does
        result = materialize(
            [mint_events_asset], instance=instance, resources=resources, partition_key=below
        )
        assert result.success
        (event,) = result.asset_materializations_for_node("mint_events")
        assert event.metadata["removed"].value == 2  # both lost rows, each proven
        assert event.metadata["removal_proofs"].value == 2  # blocks B - 1 and B
    assert table_rows(pg_engine) == chain_rows(devchain.mints())
    assert removed(pg_engine) == 2 and store.last_processed_block() == boundary - 1
    assert final >= boundary + SIZE


def test_a_reorg_across_a_chunk_boundary_reconciles_in_the_cli(
    devchain: DevChain, pg_engine: Engine, cli_env: dict[str, str]
) -> None:
    store = MintStore(pg_engine, DEFAULT_AUTHOR)
    boundary, _ = straddling_reorg(devchain, store)
    with FaultProxy(devchain.anvil.url) as proxy:
        proxy.limit_range(SIZE, "alchemy")  # a provider cap: chunks end at B - 1
        env = {**cli_env, "RPC_URL": proxy.url, "RPC_INITIAL_BLOCK_RANGE": str(SIZE)}
        out = recover(env, "--from-block", str(boundary - SIZE))
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert table_rows(pg_engine) == chain_rows(devchain.mints()) and removed(pg_engine) == 2
