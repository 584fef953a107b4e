"""The block_ranges partitions as the Dagster instance sees them, for `glisk status`.

Read through Dagster's instance API (the instance of $DAGSTER_HOME), never its tables, so
it works on any run/event storage. The CLI imports this module only when DAGSTER_HOME is
set: the rest of the CLI never loads Dagster.
"""

from __future__ import annotations

from typing import Any

from dagster import AssetKey, AssetPartitionStatus, DagsterInstance

from glisk_pipeline.defs.partitions import block_ranges
from glisk_pipeline.windows import PARTITIONS_NAME

SHOWN = 10  # keys listed per state


def partition_summary(instance: DagsterInstance | None = None) -> dict[str, Any]:
    """Counts of added / materialized / failed / in progress / missing partitions of
    mint_events, with the first keys of the failed and missing ones."""
    own = instance is None
    instance = instance or DagsterInstance.get()
    try:
        keys = list(instance.get_dynamic_partitions(PARTITIONS_NAME))
        statuses = instance.get_status_by_partition(AssetKey("mint_events"), keys, block_ranges)
        statuses = statuses or {}
        by_state: dict[str, list[str]] = {"materialized": [], "failed": [], "in_progress": []}
        missing = []
        for key in keys:
            state = statuses.get(key)
            if state == AssetPartitionStatus.MATERIALIZED:
                by_state["materialized"].append(key)
            elif state == AssetPartitionStatus.FAILED:
                by_state["failed"].append(key)
            elif state == AssetPartitionStatus.IN_PROGRESS:
                by_state["in_progress"].append(key)
            else:
                missing.append(key)
        return {
            "added": len(keys),
            "materialized": len(by_state["materialized"]),
            "failed": len(by_state["failed"]),
            "in_progress": len(by_state["in_progress"]),
            "missing": len(missing),
            "failed_keys": by_state["failed"][:SHOWN],
            "missing_keys": missing[:SHOWN],
        }
    finally:
        if own:
            instance.dispose()
