"""`chain_head_sensor`: keeps block_ranges up with the chain's final head.

Each tick reads the final block (one RPC call), adds the complete windows after the last
one it added (ascending, at most GLISK_SENSOR_MAX_PARTITIONS_PER_TICK), and requests runs
over them: consecutive ranges of at most GLISK_PARTITIONS_PER_RUN windows, so a cold start
over thousands of windows is tens of runs, not thousands, each paying Dagster's run
start-up (7-9 s a run as a process on a 2-core machine, a pod each on Kubernetes). At the
live edge a tick finds one window and requests one single-partition run. Each
request's run_key names its first and last window, so a repeated request never runs twice.

A range request is what a multi_run backfill launches (the asset's BackfillPolicy): tags
dagster/asset_partition_range_start|end, which the daemon copies onto the run and the asset
reads as context.partition_key_range. A sensor's run request does not go through the
backfill policy, so the sensor cuts the ranges itself, with the same setting. The keys are
added by the tick's dynamic_partitions_requests, which the daemon applies before it creates
the tick's runs.

The cursor holds the end block of the last window added, so a tick costs the same with 10
partitions or 100,000: existing keys are listed only when there is no cursor yet (first
tick, or a reset in the UI). Failed partitions are not retried here: the UI's "backfill
failed and missing" (or a new request) covers them.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# parameter annotations at definition time and needs real classes, not strings.

import json
from dataclasses import dataclass

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

# Not re-exported by `dagster`; if they move, this import fails at load, loudly, where a
# copied string would silently become a tag no run reads.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from glisk_pipeline.defs.backfill.assets import mint_events
from glisk_pipeline.defs.backfill.partitions import block_ranges
from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from glisk_pipeline.defs.run_record import note_tick
from glisk_pipeline.windows import (
    PARTITIONS_NAME,
    last_end,
    new_windows,
    parse_key,
)

SENSOR_NAME = "chain_head_sensor"


def range_requests(keys: list[str], per_run: int) -> list[RunRequest]:
    """Runs over consecutive slices of `keys` (ascending), at most `per_run` keys each; a
    slice of one key is a plain single-partition request."""
    requests = []
    for i in range(0, len(keys), per_run):
        first, last = keys[i], keys[min(i + per_run, len(keys)) - 1]
        if first == last:
            requests.append(RunRequest(run_key=first, partition_key=first))
        else:
            tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
            requests.append(RunRequest(run_key=f"{first}..{last}", tags=tags))
    return requests


@dataclass(frozen=True)
class TickPlan:
    final_block: int
    new_keys: list[str]
    cursor: str


def load_cursor(cursor: str | None) -> int | None:
    """End block of the last window added (None: none recorded)."""
    if not cursor:
        return None
    return int(json.loads(cursor)["last_end"])


def plan_tick(
    context: SensorEvaluationContext, *, final_block: int, start_block: int, size: int, limit: int
) -> TickPlan:
    after = load_cursor(context.cursor)
    if after is None:  # no cursor: learn where the existing keys end (once)
        after = last_end(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    keys = new_windows(
        start_block=start_block, size=size, final_block=final_block, after_block=after, limit=limit
    )
    end = parse_key(keys[-1])[1] if keys else after
    cursor = json.dumps({"last_end": end}) if end is not None else (context.cursor or "")
    return TickPlan(final_block, keys, cursor)


@sensor(
    name=SENSOR_NAME,
    target=[mint_events],
    minimum_interval_seconds=30,
    # Off until an operator turns it on: it launches runs against a paid RPC provider.
    default_status=DefaultSensorStatus.STOPPED,
    description=(
        "Adds the newly final block windows as partitions and requests runs over them, "
        "up to GLISK_PARTITIONS_PER_RUN windows per run"
    ),
)
def chain_head_sensor(
    context: SensorEvaluationContext, chain: ChainResource, database: DatabaseResource
) -> SensorResult:
    note_tick(context, database, SENSOR_NAME)
    settings = chain.settings()
    with chain.client() as client:
        final_block = client.final_block(settings.GLISK_CONFIRMATIONS)
    plan = plan_tick(
        context,
        final_block=final_block,
        start_block=settings.start_block,
        size=settings.GLISK_PARTITION_SIZE,
        limit=settings.GLISK_SENSOR_MAX_PARTITIONS_PER_TICK,
    )
    if not plan.new_keys:
        # Still store the cursor: a tick without one lists the existing keys.
        return SensorResult(
            skip_reason=SkipReason(f"no new complete window at or below block {final_block}"),
            cursor=plan.cursor,
        )
    context.log.info(
        f"final block {final_block}: adding {len(plan.new_keys)} partitions "
        f"{plan.new_keys[0]} .. {plan.new_keys[-1]}"
    )
    return SensorResult(
        run_requests=range_requests(plan.new_keys, settings.GLISK_PARTITIONS_PER_RUN),
        dynamic_partitions_requests=[block_ranges.build_add_request(plan.new_keys)],
        cursor=plan.cursor,
    )
