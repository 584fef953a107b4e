"""The Dagster side of the benchmarks: B1's whole-range `materialize` of mint_events and
B3's chain_head_sensor tick time against many existing partitions.

Both use a real, persistent Dagster instance (`instance_for_test`: a temp DAGSTER_HOME on
Dagster's local storage; `build_sensor_context` refuses an ephemeral one)."""

from __future__ import annotations

import time
from typing import Any

from bench.common import DEFAULT_AUTHOR, Chain, Timer, rate, throwaway_db

MATERIALIZE_PARTITION_SIZE = 1_000  # blocks per partition in B1's materialize contender
SENSOR_PARTITION_SIZE = 100
SENSOR_NEW_PER_TICK = 5  # complete windows the chain is ahead of the last partition


def materialize_range(chain: Chain, lo: int, hi: int) -> dict[str, Any]:
    """mint_events over every partition of [lo, hi] in ONE in-process run (a partition key
    range, as a multi_run backfill's run gets it), into a fresh database. Timed: the
    `materialize` call (run start-up, resource set-up, the fetch and store, Dagster's event
    writes); not timed: the instance and the partition keys, which exist beforehand."""
    from dagster import instance_for_test, materialize
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from glisk_pipeline.defs.assets import mint_events
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
                instance=instance,
                resources=resources,
                tags={
                    ASSET_PARTITION_RANGE_START_TAG: keys[0],
                    ASSET_PARTITION_RANGE_END_TAG: keys[-1],
                },
            )
        if not result.success:
            raise RuntimeError("materialize of the whole range failed")
        (event, *_) = result.asset_materializations_for_node("mint_events")
        meta = {k: v.value for k, v in event.metadata.items()}
        from bench.b1_backfill import _stored

        stored_ev, stored_tok = _stored(db)
    events = meta["run_logs_found"]  # the whole run (logs_found is each window's own)
    tokens = stored_tok
    return {
        "events": events,
        "tokens": tokens,
        "rpc_calls": meta["rpc_calls"],
        "partitions": len(keys),
        "seconds": round(t.s, 3),
        "asset_duration_s": meta["run_duration_s"],  # the asset's own timing of its ingest
        "events_per_s": rate(events, t.s),
        "tokens_per_s": rate(tokens, t.s),
        "stored_events": stored_ev,
        "stored_tokens": stored_tok,
        "note": f"one run over {len(keys)} partitions of {size} blocks (mint_events only)",
    }


def sensor_ticks(counts: tuple[int, ...] = (10, 1_000, 10_000)) -> dict[str, Any]:
    """One chain_head_sensor tick with N partitions already in the instance, the chain
    SENSOR_NEW_PER_TICK windows ahead: with the cursor the daemon keeps (steady state) and
    without one (first tick, or a cursor reset in the UI: it lists the existing keys).
    Timed: the sensor evaluation, its one RPC call included (a local shim)."""
    from dagster import build_sensor_context, instance_for_test

    from bench.sparse_shim import SparseChain
    from glisk_pipeline.defs.resources import ChainResource
    from glisk_pipeline.defs.sensors import chain_head_sensor
    from glisk_pipeline.windows import PARTITIONS_NAME, new_windows

    size = SENSOR_PARTITION_SIZE
    out: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for n in counts:
        existing_end = n * size - 1
        with (
            SparseChain((n + SENSOR_NEW_PER_TICK) * size, []) as shim,
            instance_for_test() as instance,
        ):
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
                context = build_sensor_context(
                    instance=instance, cursor=cursor, resources={"chain": chain}
                )
                with Timer() as t:
                    result = chain_head_sensor(context)
                added = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
                if len(added) != SENSOR_NEW_PER_TICK or len(result.run_requests) != len(added):
                    raise RuntimeError(f"sensor tick at {n} partitions added {len(added)}")
                out[f"{n}_{label}"] = round(t.s, 4)
            details[f"{n}_partitions"] = {"add_existing_keys_s": round(setup_s, 2)}
    return {"ticks_s": out, "details": details, "new_windows_per_tick": SENSOR_NEW_PER_TICK}
