"""The webhook goes silent and webhook_silence_sensor requests runs that fill the tip, end
to end: the real sidecar receiving signed deliveries (devtools/replay.py), anvil,
PostgreSQL and a real Dagster instance (the sensor evaluated with build_sensor_context, its
run requests executed as the daemon would, with their run_key). Then a tip reorg after the
silence, corrected once its window is final, and the sensor standing down when deliveries
resume."""

from __future__ import annotations

import os
import time

import pytest
from dagster import (
    DagsterRunStatus,
    Definitions,
    RunRequest,
    SensorResult,
    build_sensor_context,
    instance_for_test,
    materialize,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    RUN_KEY_TAG,
)
from sqlalchemy import Engine, func, select

from devtools.anvil import DEFAULT_MINT_PRICE, DEV_ACCOUNTS
from devtools.history import Mint, mint_batches, mint_tx
from devtools.oracle import chain_mints, chain_rows, table_rows
from devtools.replay import chain_deliveries
from glisk_pipeline.db.schema import mint_events
from glisk_pipeline.defs.backfill.assets import mint_events as mint_events_asset
from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from glisk_pipeline.defs.silence.fill import mint_events_tip
from glisk_pipeline.defs.silence.sensor import webhook_silence_sensor
from glisk_pipeline.windows import PARTITIONS_NAME, new_windows
from tests.support.fixtures_chain import DevChain
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


def asked(request: RunRequest) -> dict:
    """The fill's config in a run request: from_block, to_block, reason."""
    return request.run_config["ops"]["mint_events_tip"]["config"]


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

        def tick(silence_s: int) -> SensorResult:
            """One evaluation, its cursor kept as the daemon keeps it."""
            nonlocal cursor
            monkeypatch.setenv("GLISK_WEBHOOK_SILENCE_SECONDS", str(silence_s))
            with build_sensor_context(
                instance=instance, cursor=cursor, resources=resources
            ) as context:
                result = webhook_silence_sensor(context)
            cursor = result.cursor
            return result

        def skipped(result: SensorResult) -> str:
            assert not result.run_requests and result.skip_reason
            return result.skip_reason.skip_message or ""

        def run_fill(result: SensorResult) -> dict[str, object]:
            """The requested fill run, as the daemon launches it; its metadata."""
            (request,) = result.run_requests
            run = materialize(
                [mint_events_tip],
                instance=instance,
                resources=resources,
                run_config=request.run_config,
                tags={**request.tags, RUN_KEY_TAG: request.run_key},
            )
            assert run.success
            (event,) = run.asset_materializations_for_node("mint_events_tip")
            return {k: v.value for k, v in event.metadata.items()}

        tip_job = Definitions(
            assets=[mint_events_tip], resources=resources
        ).resolve_implicit_global_asset_job_def()

        def pretend_run(result: SensorResult, status: DagsterRunStatus) -> str:
            """A run of the request in `status`, without running it; returns its id."""
            (request,) = result.run_requests
            return instance.create_run_for_job(
                tip_job,
                run_config=request.run_config,
                tags={RUN_KEY_TAG: request.run_key},
                status=status,
            ).run_id

        # 1. The webhook delivers: the sensor does nothing.
        mint(devchain, [1, 2, 3])
        assert deliver(webhook, devchain, start) == 3
        assert skipped(tick(3600)).startswith("webhook alive")
        assert table_rows(pg_engine) == on_chain(devchain, start)

        # 2. Silent (Alchemy paused the endpoint) while mints continue.
        last_delivered = anvil.block_number()
        mint(devchain, [4, 5, 6, 7], minter=3)
        mined_at = time.time()
        before = table_rows(pg_engine)
        assert before != on_chain(devchain, start)
        time.sleep(1.5)  # past a 1 s silence threshold
        first = tick(1)
        (request,) = first.run_requests
        low, high = asked(request)["from_block"], anvil.block_number()
        assert asked(request)["to_block"] == high
        assert "no webhook delivery for" in asked(request)["reason"]
        # the sensor decided and requested: it stored nothing (what Preview shows)
        assert table_rows(pg_engine) == before
        # the fill run failed: the same blocks are asked for again, under a new run_key
        pretend_run(first, DagsterRunStatus.FAILURE)
        retry = tick(1)
        (again,) = retry.run_requests
        assert again.run_key != request.run_key
        assert asked(again)["from_block"] == low
        # while that run is going (or waits for a slot of the rpc pool), no second fill
        going = pretend_run(retry, DagsterRunStatus.STARTED)
        assert "is STARTED: waiting for it" in skipped(tick(1))
        instance.delete_run(going)
        fill = run_fill(retry)
        assert table_rows(pg_engine) == on_chain(devchain, start)  # every mint, one run
        assert fill["block_range"] == f"{low}-{high}"
        # no checkpoint yet: it read from the start block, the delivered three included
        assert (fill["logs_found"], fill["stored"], fill["duplicates"]) == (7, 4, 3)
        assert fill["rpc_calls"] >= 1
        with pg_engine.connect() as conn:
            filled_at = conn.execute(
                select(func.max(mint_events.c.detected_at)).where(
                    mint_events.c.block_number > last_delivered
                )
            ).scalar_one()
        # a figure for the notes, not an assertion: mined -> stored while the webhook is
        # silent (here: the 1 s threshold, the 1.5 s wait, the ticks and one in-process run)
        print(f"detection lag while silent: {filled_at.timestamp() - mined_at:.2f} s")

        # 3. A tip reorg after the silence: the last two blocks replaced by one other mint.
        lost = on_chain(devchain, anvil.block_number() - 1)
        replacement = mint_tx(
            devchain.glisk, DEV_ACCOUNTS[7], DEV_ACCOUNTS[8], 9, 9 * DEFAULT_MINT_PRICE
        )
        anvil.rpc("anvil_reorg", [2, [[replacement, 0]]])
        # the last fill succeeded: the next one re-reads from a little below where it ended
        reread = tick(1)
        (request,) = reread.run_requests
        assert asked(request)["from_block"] == max(low, high + 1 - 64)
        # add-only at the tip: the lost fork's rows stay live, and the new fork's mint
        # claims their token ids, which is left to the window's reconcile
        assert "held by another live event" in str(run_fill(reread)["token_conflict"])
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
        assert skipped(tick(3600)).startswith("webhook alive") and cursor == ""
        assert table_rows(pg_engine) == on_chain(devchain, start)


SILENCE_SENSOR = {
    "repositoryLocationName": "glisk_pipeline",
    "repositoryName": "__repository__",
    "sensorName": "webhook_silence_sensor",
}
START_SENSOR = """
mutation Start($s: SensorSelector!) { startSensor(sensorSelector: $s) {
  __typename ... on Sensor { sensorState { id status } } ... on PythonError { message } } }"""
FILL_RUNS = """
query { runsOrError(filter: {tags: [{key: "dagster/sensor_name",
                                     value: "webhook_silence_sensor"}]}) {
  __typename ... on Runs { results { runId status creationTime startTime endTime } } } }"""
STOP_SENSOR = """
mutation Stop($id: String!) { stopSensor(id: $id) { __typename } }"""
PREVIEW_TICK = """
mutation Preview($s: SensorSelector!, $c: String) {
  sensorDryRun(selectorData: $s, cursor: $c) { __typename
  ... on PythonError { message stack }
  ... on DryRunInstigationTick { evaluationResult { runRequests { runKey runConfigYaml }
                                                    skipReason error { message } } } } }"""
SENSOR_CURSOR = """
query Cursor($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename
  ... on Sensor { sensorState { typeSpecificData { ... on SensorData { lastCursor } } } } } }"""
TIP_MATERIALIZATIONS = """
query { assetOrError(assetKey: {path: ["mint_events_tip"]}) { __typename
  ... on Asset { assetMaterializations { runId metadataEntries { label
    ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } } } } }"""


@pytest.mark.slow
def test_under_dagster_dev_the_silence_fill_is_a_run_of_the_catalog(
    webhook: Service, devchain: DevChain, pg_engine: Engine, pg_url: str, tmp_path
) -> None:
    """The sensor turned on in a real `dagster dev` (daemon, run queue, rpc pool): a mint
    the paused webhook never delivers is stored by a run the sensor requested, which shows
    under Runs and as a mint_events_tip materialization. Prints the detection lag and its
    parts (the README's figure)."""
    from devtools.dagster_dev import DagsterDev, prepare_home

    anvil, threshold = devchain.anvil, 10
    start = anvil.block_number() + 1
    home = tmp_path / "dagster_home"
    prepare_home(home, postgres=False)
    (tmp_path / "tmp").mkdir()
    env = {
        **os.environ,
        "NETWORK": "LOCAL",
        "RPC_URL": anvil.url,
        "GLISK_NFT_CONTRACT_ADDRESS": devchain.glisk,
        "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
        "GLISK_START_BLOCK": str(start),
        "DATABASE_URL": pg_url,
        "GLISK_WEBHOOK_SILENCE_SECONDS": str(threshold),
        "DAGSTER_HOME": str(home),
        "TMPDIR": str(tmp_path / "tmp"),
        "PYTHONWARNINGS": "ignore",
    }
    dev = DagsterDev(home, env, tmp_path / "dagster-dev.log").start()
    try:
        started = dev.graphql(START_SENSOR, {"s": SILENCE_SENSOR})["startSensor"]
        assert started["__typename"] == "Sensor", started
        # The webhook delivers two mints, then goes silent (paused) just before two more:
        # the worst case, a mint right after the last delivery.
        mint(devchain, [1, 2])
        assert deliver(webhook, devchain, start) == 2
        mint(devchain, [3, 4], minter=3)
        mined_at = time.time()
        deadline = time.monotonic() + threshold + 30 + 120
        while table_rows(pg_engine) != on_chain(devchain, start):
            assert time.monotonic() < deadline, dev.log_tail()
            time.sleep(0.5)
        with pg_engine.connect() as conn:
            stored_at = conn.execute(select(func.max(mint_events.c.detected_at))).scalar_one()
        while True:  # the rows are stored; the run that stored them ends right after
            runs = dev.graphql(FILL_RUNS, {})["runsOrError"]["results"]
            done = [r for r in runs if r["status"] == "SUCCESS"]
            if done:
                break
            assert time.monotonic() < deadline, runs
            time.sleep(0.5)
        first = min(done, key=lambda r: r["creationTime"])
        entries = dev.graphql(TIP_MATERIALIZATIONS, {})["assetOrError"]["assetMaterializations"]
        (filled,) = [m for m in entries if m["runId"] == first["runId"]]
        meta = {e["label"]: e.get("intValue", e.get("text")) for e in filled["metadataEntries"]}
        assert meta["stored"] == 2 and meta["rpc_calls"] >= 1
        print(
            f"\ndetection lag while silent: {stored_at.timestamp() - mined_at:.1f} s "
            f"(threshold {threshold} s; mint -> run requested "
            f"{first['creationTime'] - mined_at:.1f} s, requested -> started "
            f"{first['startTime'] - first['creationTime']:.1f} s, started -> stored "
            f"{stored_at.timestamp() - first['startTime']:.1f} s)"
        )

        # "Preview tick result" (the UI's dry run) decides and shows the request, and
        # stores nothing: with the sensor stopped, a new mint stays missing.
        stopped = dev.graphql(STOP_SENSOR, {"id": started["sensorState"]["id"]})
        assert stopped["stopSensor"]["__typename"] == "StopSensorMutationResult", stopped
        mint(devchain, [5], minter=4)
        # with the sensor's cursor, as the UI's Preview passes it
        sensor = dev.graphql(SENSOR_CURSOR, {"s": SILENCE_SENSOR})["sensorOrError"]
        cursor = sensor["sensorState"]["typeSpecificData"]["lastCursor"]
        assert cursor and "filled_to" in cursor
        preview = dev.graphql(PREVIEW_TICK, {"s": SILENCE_SENSOR, "c": cursor})["sensorDryRun"]
        assert preview["__typename"] == "DryRunInstigationTick", preview
        (request,) = preview["evaluationResult"]["runRequests"]
        assert "mint_events_tip" in request["runConfigYaml"]
        rows = table_rows(pg_engine)
        assert on_chain(devchain, start) - rows == on_chain(devchain, anvil.block_number())
        after = dev.graphql(FILL_RUNS, {})["runsOrError"]["results"]
        assert {r["runId"] for r in after} == {r["runId"] for r in runs}
    finally:
        assert dev.stop() == []
