"""The webhook goes silent and webhook_silence_sensor fills the tip, end to end: the real
sidecar receiving signed deliveries (devtools/replay.py), anvil, PostgreSQL and a real
Dagster instance. Then a tip reorg after the silence, corrected once its window is final,
and the sensor standing down when deliveries resume."""

from __future__ import annotations

import time

import pytest
from dagster import build_sensor_context, instance_for_test, materialize
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from sqlalchemy import Engine, func, select

from devtools.anvil import DEFAULT_MINT_PRICE, DEV_ACCOUNTS
from devtools.history import Mint, mint_batches, mint_tx
from devtools.oracle import chain_mints, chain_rows, table_rows
from devtools.replay import chain_deliveries
from glisk_pipeline.db.schema import mint_events
from glisk_pipeline.defs.assets import mint_events as mint_events_asset
from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from glisk_pipeline.defs.silence_sensor import webhook_silence_sensor
from glisk_pipeline.windows import PARTITIONS_NAME, new_windows
from tests.fixtures_chain import DevChain
from tests.webhook.helpers import DEFAULT_AUTHOR, Service

SIZE, CONFIRMATIONS = 100, 10


def mint(devchain: DevChain, quantities: list[int], minter: int = 1) -> None:
    """One block per mint (the webhook delivers block by block)."""
    for q in quantities:
        mint_batches(
            devchain.anvil,
            devchain.glisk,
            [Mint(DEV_ACCOUNTS[minter], DEV_ACCOUNTS[2], q, q * DEFAULT_MINT_PRICE)],
        )


def on_chain(devchain: DevChain, from_block: int) -> set:
    """The chain's mints from `from_block`, as rows to compare with the tables'."""
    return chain_rows(chain_mints(devchain.anvil, devchain.glisk, from_block))


def deliver(webhook: Service, devchain: DevChain, from_block: int) -> int:
    """Replay the chain's blocks from `from_block` as Alchemy would; returns how many."""
    sent = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk, from_block)
    for payload in sent:
        assert webhook.post(payload).status_code == 200
    return len(sent)


@pytest.mark.slow
def test_silence_is_filled_and_a_later_tip_reorg_is_corrected_once_final(
    webhook: Service,
    devchain: DevChain,
    pg_engine: Engine,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    anvil = devchain.anvil
    start = anvil.block_number() + 1
    resources = {
        "chain": ChainResource(
            rpc_url=anvil.url, network="LOCAL", contract_address=devchain.glisk,
            start_block=start, partition_size=SIZE, confirmations=CONFIRMATIONS,
        ),
        "database": DatabaseResource(
            database_url=pg_url, default_author_wallet=DEFAULT_AUTHOR, start_block=start
        ),
    }  # fmt: skip
    with instance_for_test() as instance:
        cursor: str | None = None

        def tick(silence_s: int) -> str:
            nonlocal cursor
            monkeypatch.setenv("GLISK_WEBHOOK_SILENCE_SECONDS", str(silence_s))
            with build_sensor_context(
                instance=instance, cursor=cursor, resources=resources
            ) as context:
                result = webhook_silence_sensor(context)
            cursor = result.cursor
            assert not result.run_requests
            return result.skip_reason.skip_message if result.skip_reason else ""

        # 1. The webhook delivers: the sensor does nothing.
        mint(devchain, [1, 2, 3])
        assert deliver(webhook, devchain, start) == 3
        assert tick(3600).startswith("webhook alive")
        assert table_rows(pg_engine) == on_chain(devchain, start)

        # 2. Silent (Alchemy paused the endpoint) while mints continue.
        last_delivered = anvil.block_number()
        mint(devchain, [4, 5, 6, 7], minter=3)
        mined_at = time.time()
        assert table_rows(pg_engine) != on_chain(devchain, start)
        time.sleep(1.5)  # past a 1 s silence threshold
        message = tick(1)
        assert "no webhook delivery for" in message and "filled blocks" in message
        assert table_rows(pg_engine) == on_chain(devchain, start)  # every mint, one tick
        with pg_engine.connect() as conn:
            filled_at = conn.execute(
                select(func.max(mint_events.c.detected_at)).where(
                    mint_events.c.block_number > last_delivered
                )
            ).scalar_one()
        # a figure for the notes, not an assertion: mined -> stored while the webhook is
        # silent (here: the 1 s threshold, the 1.5 s wait, and one tick)
        print(f"detection lag while silent: {filled_at.timestamp() - mined_at:.2f} s")

        # 3. A tip reorg after the silence: the last two blocks replaced by one other mint.
        lost = on_chain(devchain, anvil.block_number() - 1)
        replacement = mint_tx(
            devchain.glisk, DEV_ACCOUNTS[7], DEV_ACCOUNTS[8], 9, 9 * DEFAULT_MINT_PRICE
        )
        anvil.rpc("anvil_reorg", [2, [[replacement, 0]]])
        # add-only at the tip: the lost fork's rows stay live, and the new fork's mint
        # claims their token ids, which is left to the window's reconcile
        assert "token conflict" in tick(1)
        assert len(lost) == 2 and lost <= table_rows(pg_engine)

        # 4. Once the window is final and materialized, the tables equal the chain.
        anvil.mine_empty(SIZE + CONFIRMATIONS)
        keys = new_windows(
            start_block=start, size=SIZE, final_block=anvil.block_number() - CONFIRMATIONS,
            after_block=None, limit=100,
        )  # fmt: skip
        instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
        result = materialize(
            [mint_events_asset],
            instance=instance,
            resources=resources,
            tags={
                ASSET_PARTITION_RANGE_START_TAG: keys[0],
                ASSET_PARTITION_RANGE_END_TAG: keys[-1],
            },
        )
        assert result.success
        assert table_rows(pg_engine) == on_chain(devchain, start)
        with pg_engine.connect() as conn:
            removed = conn.execute(
                select(func.count()).select_from(mint_events).where(mint_events.c.removed)
            ).scalar_one()
        assert removed == len(lost) == 2

        # 5. Deliveries resume: the sensor stands down and forgets where it stopped.
        mint(devchain, [2])
        assert deliver(webhook, devchain, anvil.block_number()) == 1
        assert tick(3600).startswith("webhook alive") and cursor == ""
        assert table_rows(pg_engine) == on_chain(devchain, start)
