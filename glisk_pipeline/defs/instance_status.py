"""The block_ranges partitions and the latest result of each asset check as the Dagster
instance sees them, for `glisk status`.

Read through Dagster's instance API (the instance of $DAGSTER_HOME), never its tables, so
it works on any run/event storage. The CLI imports this module only when DAGSTER_HOME is
set: the rest of the CLI never loads Dagster.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetKey,
    AssetPartitionStatus,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
)

from glisk_pipeline.defs.backfill.partitions import block_ranges
from glisk_pipeline.listing import SHOWN
from glisk_pipeline.windows import PARTITIONS_NAME

MINT_EVENTS = AssetKey("mint_events")


def partition_summary(instance: DagsterInstance | None = None) -> dict[str, Any]:
    """Counts of added / materialized / failed / in progress / missing partitions of
    mint_events, with the first keys of the failed and missing ones."""
    own = instance is None
    instance = instance or DagsterInstance.get()
    try:
        keys = list(instance.get_dynamic_partitions(PARTITIONS_NAME))
        statuses = instance.get_status_by_partition(MINT_EVENTS, keys, block_ranges)
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
            # cut to SHOWN; the counts above say how many there are in all
            "failed_keys": by_state["failed"][:SHOWN],
            "missing_keys": missing[:SHOWN],
        }
    finally:
        if own:
            instance.dispose()


def check_results(instance: DagsterInstance) -> list[dict[str, Any]]:
    """The latest execution of each asset check on mint_events: passed (None while it
    runs or when it never completed), severity, description, when."""
    # Lazily: only this function needs the check specs (and the modules they import).
    from glisk_pipeline.defs.backfill.checks import mint_event_checks

    keys = [spec.key for spec in mint_event_checks]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    results = []
    for key in sorted(keys, key=lambda k: k.name):
        record = latest.get(key)
        evaluation = _evaluation(record.event) if record is not None else None
        results.append(
            {
                "name": key.name,
                "status": record.status.value if record is not None else "NEVER_RUN",
                "passed": evaluation.passed if evaluation is not None else None,
                "severity": evaluation.severity.value if evaluation is not None else None,
                "description": evaluation.description if evaluation is not None else None,
                "at": datetime.fromtimestamp(record.create_timestamp, UTC).isoformat()
                if record is not None
                else None,
                "run_id": record.run_id if record is not None else None,
            }
        )
    return results


def _evaluation(event: Any) -> Any:
    """The AssetCheckEvaluation a stored event carries (None for a planned one)."""
    dagster_event = getattr(event, "dagster_event", None)
    data = getattr(dagster_event, "event_specific_data", None)
    return data if hasattr(data, "passed") else None


def instance_facts() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(partition_summary, check_results) of the instance of $DAGSTER_HOME."""
    instance = DagsterInstance.get()
    try:
        return partition_summary(instance), check_results(instance)
    finally:
        instance.dispose()


def judged_windows(instance: DagsterInstance) -> tuple[list[str], set[str]]:
    """(every block_ranges key in order, the keys whose mint_events are materialized)."""
    keys = list(instance.get_dynamic_partitions(PARTITIONS_NAME))
    statuses = instance.get_status_by_partition(MINT_EVENTS, keys, block_ranges) or {}
    done = {k for k, state in statuses.items() if state == AssetPartitionStatus.MATERIALIZED}
    return keys, done


def logs_found_by_window(instance: DagsterInstance) -> dict[str, int]:
    """{partition key: logs_found of its latest materialization}, for the windows whose
    latest materialization recorded it (two queries: the latest event id per partition,
    then those events)."""
    asset_key = MINT_EVENTS
    latest = instance.get_latest_storage_id_by_partition(
        asset_key, DagsterEventType.ASSET_MATERIALIZATION
    )
    ids = list(latest.values())
    found: dict[str, int] = {}
    for i in range(0, len(ids), 1000):
        batch = ids[i : i + 1000]
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key, storage_ids=batch), limit=len(batch)
        ).records
        for record in records:
            materialization = record.asset_materialization
            entry = materialization.metadata.get("logs_found") if materialization else None
            if materialization and materialization.partition and entry is not None:
                found[materialization.partition] = int(entry.value)  # type: ignore[arg-type]
    return found
