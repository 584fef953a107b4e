"""The Dagster side of the benchmarks: B1's whole-range `materialize` of mint_events, B3's
chain_head_sensor tick time against many existing partitions, and B3's sensor cold start
(range runs vs one run per window).

Both use a real, persistent Dagster instance (`instance_for_test`: a temp DAGSTER_HOME on
Dagster's local storage; `build_sensor_context` refuses an ephemeral one)."""

from __future__ import annotations

import time
from typing import Any

from bench.common import Chain, Timer, oracle_problems, rate, stored_counts, throwaway_db
from devtools.local_chain import DEFAULT_AUTHOR

MATERIALIZE_PARTITION_SIZE = 1_000  # blocks per partition in B1's materialize contender
SENSOR_PARTITION_SIZE = 100
SENSOR_NEW_PER_TICK = 5  # complete windows the chain is ahead of the last partition


def materialize_range(chain: Chain, lo: int, hi: int) -> dict[str, Any]:
    """mint_events over every partition of [lo, hi] in ONE in-process run (a partition key
    range, as a multi_run backfill's run gets it), into a fresh database. Timed: the
    `materialize` call (run start-up, resource set-up, the fetch and store, Dagster's event
    writes); not timed: the instance and the partition keys, which exist beforehand."""
    from dagster import AssetSelection, instance_for_test, materialize
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from glisk_pipeline.defs.backfill.assets import mint_events
    from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
    from glisk_pipeline.windows import PARTITIONS_NAME, new_windows, window_of

    size = MATERIALIZE_PARTITION_SIZE
    # Complete the last window (empty blocks, no events) so every window is final.
    _, last_end = window_of(hi, size)
    head = chain.anvil.block_number()
    chain.anvil.mine_empty(max(0, last_end - head))
    keys = new_windows(
        start_block=lo, size=size, final_block=last_end, after_block=None, limit=100_000
    )
    resources = {
        "chain": ChainResource(
            rpc_url=chain.anvil.url,
            network="LOCAL",
            contract_address=chain.contract,
            start_block=lo,
            partition_size=size,
            confirmations=0,
        ),
    }
    with instance_for_test() as instance, throwaway_db("materialize") as db:
        instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
        resources["database"] = DatabaseResource(
            database_url=db, default_author_wallet=DEFAULT_AUTHOR, start_block=lo
        )
        with Timer() as t:
            result = materialize(
                [mint_events],
                # the asset alone: its checks are timed apart
                selection=AssetSelection.assets(mint_events).without_checks(),
                instance=instance,
                resources=resources,
                tags={
                    ASSET_PARTITION_RANGE_START_TAG: keys[0],
                    ASSET_PARTITION_RANGE_END_TAG: keys[-1],
                },
            )
        if not result.success:
            raise RuntimeError("materialize of the whole range failed")
        # the run's figures are on its last window only (each window has its own)
        (event,) = [
            e
            for e in result.asset_materializations_for_node("mint_events")
            if "run_logs_found" in e.metadata
        ]
        meta = {k: v.value for k, v in event.metadata.items()}
        stored_ev, stored_tok = stored_counts(db)
        mismatches = oracle_problems(db, chain.history.mints)
    events = meta["run_logs_found"]  # the whole run (logs_found is each window's own)
    tokens = stored_tok
    return {
        "events": events,
        "tokens": tokens,
        "rpc_calls": meta["run_rpc_calls"],
        "partitions": len(keys),
        "seconds": round(t.s, 3),
        "asset_duration_s": meta["run_duration_s"],  # the asset's own timing of its ingest
        "events_per_s": rate(events, t.s),
        "tokens_per_s": rate(tokens, t.s),
        "stored_events": stored_ev,
        "stored_tokens": stored_tok,
        "oracle_mismatches": mismatches,
        "note": f"one run over {len(keys)} partitions of {size} blocks (mint_events only)",
    }


def sensor_ticks(counts: tuple[int, ...] = (10, 1_000, 10_000)) -> dict[str, Any]:
    """One chain_head_sensor tick with N partitions already in the instance, the chain
    SENSOR_NEW_PER_TICK windows ahead: with the cursor the daemon keeps (steady state) and
    without one (first tick, or a cursor reset in the UI: it lists the existing keys).
    Timed: the sensor evaluation, its one RPC call included (a local shim)."""
    from dagster import build_sensor_context, instance_for_test

    from bench.sparse_shim import SparseChain
    from glisk_pipeline.defs.backfill.sensors import chain_head_sensor
    from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
    from glisk_pipeline.windows import PARTITIONS_NAME, new_windows

    size = SENSOR_PARTITION_SIZE
    out: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for n in counts:
        existing_end = n * size - 1
        with (
            SparseChain((n + SENSOR_NEW_PER_TICK) * size, []) as shim,
            instance_for_test() as instance,
            throwaway_db("ticks") as db,
        ):
            # the sensor records its tick time there (what the exporter serves)
            database = DatabaseResource(database_url=db, default_author_wallet=DEFAULT_AUTHOR)
            keys = new_windows(
                start_block=0, size=size, final_block=existing_end, after_block=None, limit=n
            )
            started = time.perf_counter()
            instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
            setup_s = time.perf_counter() - started
            chain = ChainResource(
                rpc_url=shim.url,
                network="LOCAL",
                contract_address="0x" + "11" * 20,
                start_block=0,
                partition_size=size,
                confirmations=0,
            )
            for label, cursor in (
                ("partitions", f'{{"last_end": {existing_end}}}'),
                ("partitions_no_cursor", None),
            ):
                resources = {"chain": chain, "database": database}
                with (
                    build_sensor_context(
                        instance=instance, cursor=cursor, resources=resources
                    ) as context,
                    Timer() as t,
                ):
                    result = chain_head_sensor(context)
                added = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
                runs = -(-len(added) // chain.settings().GLISK_PARTITIONS_PER_RUN)
                if len(added) != SENSOR_NEW_PER_TICK or len(result.run_requests) != runs:
                    raise RuntimeError(f"sensor tick at {n} partitions added {len(added)}")
                out[f"{n}_{label}"] = round(t.s, 4)
            details[f"{n}_partitions"] = {"add_existing_keys_s": round(setup_s, 2)}
    return {"ticks_s": out, "details": details, "new_windows_per_tick": SENSOR_NEW_PER_TICK}


COLD_PARTITION_SIZE = 100
COLD_EVENTS_PER_WINDOW = 10


def sensor_cold_start(
    n_windows: int = 200, per_run: int = 50, process_samples: int = 3
) -> dict[str, Any]:
    """A cold start: the first chain_head_sensor tick over n_windows final windows (a
    synthetic chain on the sparse shim, COLD_EVENTS_PER_WINDOW logs a window), then every
    run it requests materialized in process on the same instance, into a fresh database.
    Twice in the same bench run: range runs (GLISK_PARTITIONS_PER_RUN = per_run) and one
    run per window (per_run = 1, the sensor's former behaviour). Timed: the materialize
    calls, not the tick. An in-process run skips what a launched run adds (a process and
    its imports, or a pod): that start-up is timed on a few single-window runs as
    `dagster asset materialize` processes (process_samples of them; 0: skipped), and the
    launched totals estimated with it."""
    from dagster import AssetSelection, build_sensor_context, instance_for_test, materialize

    from bench.b2_webhook import CONTRACT
    from bench.common import stored_counts
    from bench.sparse_shim import SparseChain, synthetic_logs
    from glisk_pipeline.defs.backfill.assets import mint_events
    from glisk_pipeline.defs.backfill.sensors import chain_head_sensor
    from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
    from glisk_pipeline.windows import PARTITIONS_NAME

    size = COLD_PARTITION_SIZE
    n_events = n_windows * COLD_EVENTS_PER_WINDOW
    out: dict[str, Any] = {"windows": n_windows, "per_run": per_run, "events": n_events}
    with SparseChain(
        n_windows * size, synthetic_logs(CONTRACT, n_windows * size, n_events)
    ) as shim:

        def chain(runs_of: int = per_run) -> ChainResource:
            return ChainResource(
                rpc_url=shim.url,
                network="LOCAL",
                contract_address=CONTRACT,
                start_block=0,
                partition_size=size,
                confirmations=0,
                sensor_max_partitions_per_tick=n_windows,
                partitions_per_run=runs_of,
            )

        for label, runs_of in (("range_runs", per_run), ("one_per_window", 1)):
            with instance_for_test() as instance, throwaway_db("cold") as db:
                database = DatabaseResource(
                    database_url=db, default_author_wallet=DEFAULT_AUTHOR, start_block=0
                )
                with build_sensor_context(
                    instance=instance, resources={"chain": chain(runs_of), "database": database}
                ) as context:
                    tick = chain_head_sensor(context)
                keys = [k for r in tick.dynamic_partitions_requests for k in r.partition_keys]
                instance.add_dynamic_partitions(PARTITIONS_NAME, keys)  # the daemon's part
                resources = {
                    "chain": chain(),
                    "database": DatabaseResource(
                        database_url=db, default_author_wallet=DEFAULT_AUTHOR, start_block=0
                    ),
                }
                with Timer() as t:
                    for request in tick.run_requests:
                        result = materialize(
                            [mint_events],
                            selection=AssetSelection.assets(mint_events).without_checks(),
                            instance=instance,
                            resources=resources,
                            partition_key=request.partition_key,
                            tags=request.tags,
                        )
                        if not result.success:
                            raise RuntimeError(f"cold start run {request.run_key} failed")
                stored_ev, _ = stored_counts(db)
            if len(keys) != n_windows or stored_ev != n_events:
                raise RuntimeError(f"cold start {label}: {len(keys)} windows, {stored_ev} events")
            out[label] = {"runs": len(tick.run_requests), "seconds": round(t.s, 2)}
        if process_samples:
            out["process_run_s"] = _process_runs(shim.url, CONTRACT, size, process_samples)
    ranged, single = out["range_runs"], out["one_per_window"]
    out["in_process_time_ratio"] = round(single["seconds"] / ranged["seconds"], 1)
    if not process_samples:
        return out
    # What a launched run adds to an in-process one, times the runs each way.
    startup = out["process_run_s"] - single["seconds"] / single["runs"]
    for row in (ranged, single):
        row["launched_estimate_s"] = round(row["seconds"] + row["runs"] * startup, 1)
    out["launched_estimate_ratio"] = round(
        single["launched_estimate_s"] / ranged["launched_estimate_s"], 1
    )
    return out


def _process_runs(rpc_url: str, contract: str, size: int, samples: int) -> float:
    """Mean wall time of a single-window run as a whole `dagster asset materialize` process
    (interpreter, imports, the code location, the run, its event writes)."""
    import os
    import subprocess
    import sys

    from dagster import instance_for_test

    from glisk_pipeline.windows import PARTITIONS_NAME, partition_key

    keys = [partition_key(i * size, (i + 1) * size - 1) for i in range(samples)]
    with instance_for_test() as instance, throwaway_db("process") as db:
        instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
        env = {
            **os.environ,
            "DAGSTER_HOME": instance.root_directory,
            "DATABASE_URL": db,
            "RPC_URL": rpc_url,
            "NETWORK": "LOCAL",
            "GLISK_NFT_CONTRACT_ADDRESS": contract,
            "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
            "GLISK_START_BLOCK": "0",
            "GLISK_PARTITION_SIZE": str(size),
            "GLISK_CONFIRMATIONS": "0",
        }
        cli = [sys.executable, "-m", "dagster", "asset", "materialize"]
        cli += ["-m", "glisk_pipeline.definitions", "--select", "mint_events"]
        total = 0.0
        for key in keys:
            with Timer() as t:
                subprocess.run([*cli, "--partition", key], env=env, check=True, capture_output=True)
            total += t.s
    return round(total / len(keys), 2)
