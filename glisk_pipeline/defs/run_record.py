"""What the runs and sensors record for the exporter (glisk_pipeline/run_metrics.py):
each run's RPC figures and success (`recorded_run`, around a run's work), each failed run
and its reason (`run_failure_recorder`, a run failure sensor: it also sees runs that
failed before their code ran, e.g. a run pod that never started), each sensor tick
(`note_tick`). Recording never fails the work it records: a database error is logged."""
# No `from __future__ import annotations`: Dagster reads the context and resource
# parameter annotations at definition time and needs real classes, not strings.

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dagster import (
    DagsterEventType,
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorEvaluationContext,
    run_failure_sensor,
)
from dagster._utils.error import SerializableErrorInfo
from sqlalchemy.exc import SQLAlchemyError

from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.defs.resources import DatabaseResource
from glisk_pipeline.run_metrics import (
    RunRpc,
    failure_reason,
    run_failed,
    run_finished,
    run_kind,
    sensor_ticked,
)


def _record(
    database: DatabaseResource,
    warn: Callable[[str], object],
    increments: dict[str, int],
    values: dict[str, int],
) -> None:
    try:
        database.store().record_metrics(increments, values)
    except SQLAlchemyError as exc:
        warn(f"metrics not recorded: {type(exc).__name__}")


@contextmanager
def recorded_run(
    database: DatabaseResource, warn: Callable[[str], object], kind: str, client: RpcClient
) -> Iterator[None]:
    """Record the RPC calls, retries and lagging answers `client` makes inside the block,
    whether it succeeds or raises, and a success when it returns."""
    before = RunRpc(client.stats.calls, client.stats.retries, client.stats.lagging)
    succeeded = False
    try:
        yield
        succeeded = True
    finally:
        rpc = RunRpc(
            client.stats.calls - before.calls,
            client.stats.retries - before.retries,
            client.stats.lagging - before.lagging,
        )
        increments, values = run_finished(kind, rpc, succeeded=succeeded, now=time.time())
        _record(database, warn, increments, values)


def note_tick(context: SensorEvaluationContext, database: DatabaseResource, sensor: str) -> None:
    """The sensor's tick time (a stale one: the sensor or the daemon stopped)."""
    _record(database, context.log.warning, {}, sensor_ticked(sensor, now=time.time()))


def _class_names(error: SerializableErrorInfo | None) -> Iterator[str]:
    while error is not None:
        yield error.cls_name or ""
        yield from _class_names(error.context)
        error = error.cause


def _run_assets(context: RunFailureSensorContext) -> list[str]:
    """The assets the run was for: its selection, or (a run of a whole asset job has
    none) the assets it planned to materialize."""
    run = context.dagster_run
    if run.asset_selection:
        return [key.path[-1] for key in run.asset_selection]
    planned = context.instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    return [
        r.event_log_entry.dagster_event.asset_key.path[-1]
        for r in planned
        if r.event_log_entry.dagster_event is not None
        and r.event_log_entry.dagster_event.asset_key is not None
    ]


@run_failure_sensor(
    name="run_failure_recorder",
    # On by default: it only writes two system_state rows per failed run, no RPC call.
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=(
        "Counts each failed run of this code location by kind (backfill, tip_fill, "
        "stats) and reason (provider_lag, unproven_removal, rpc, token_conflict, other) "
        "for the metrics exporter (`glisk exporter`)"
    ),
)
def run_failure_recorder(context: RunFailureSensorContext, database: DatabaseResource) -> None:
    kind = run_kind(_run_assets(context))
    names: list[str] = []
    for event in context.get_step_failure_events():
        if event.event_type == DagsterEventType.STEP_FAILURE:
            names += _class_names(event.step_failure_data.error)
    names += _class_names(getattr(context.failure_event.event_specific_data, "error", None))
    increments, values = run_failed(kind, failure_reason(names), now=time.time())
    _record(database, context.log.warning, increments, values)
