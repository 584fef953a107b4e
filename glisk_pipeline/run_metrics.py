"""The operational metrics the Dagster runs and sensors record and the exporter serves:
RPC calls, retries and provider-lag refusals per run kind, succeeded and failed runs (the
failure's reason), and each sensor's last tick. They are written as system_state rows by
the store (MintStore.record_metrics), so they survive the run pods that made them and one
exporter serves every run's counts; run metadata shows the same figures per run.

Run kinds: `backfill` (mint_events windows), `tip_fill` (mint_events_tip), `stats`
(mint_stats), `other`. Failure reasons, from the failed steps' exception classes:
`provider_lag` (ProviderLagError: the node kept answering without the range),
`unproven_removal` (UnprovenRemovalError), `rpc` (another RpcError: the provider failed or
refused), `token_conflict` (TokenConflictError), `other`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from glisk_pipeline.db.store.counters import PREFIX, metric_key

# name -> (type, help)
METRICS: dict[str, tuple[str, str]] = {
    "glisk_runs_rpc_calls_total": (
        "counter",
        "RPC requests sent by Dagster runs (a JSON-RPC batch counts once), by run kind",
    ),
    "glisk_runs_rpc_retries_total": (
        "counter",
        "RPC requests Dagster runs repeated after a rate limit or a transient failure",
    ),
    "glisk_runs_lagging_answers_total": (
        "counter",
        "eth_getLogs answers refused because the node lacked the range (provider lag)",
    ),
    "glisk_runs_succeeded_total": ("counter", "Dagster runs that finished their work"),
    "glisk_runs_last_success_timestamp_seconds": (
        "gauge",
        "Unix time at which a run of this kind last finished its work",
    ),
    "glisk_runs_failed_total": (
        "counter",
        "Dagster runs that failed, by run kind and reason (recorded by run_failure_recorder)",
    ),
    "glisk_runs_last_failure_timestamp_seconds": (
        "gauge",
        "Unix time at which a run of this kind last failed",
    ),
    "glisk_sensor_last_tick_timestamp_seconds": (
        "gauge",
        "Unix time of the sensor's last evaluation (stale: the sensor or the daemon stopped)",
    ),
}

RUN_KINDS = ("backfill", "tip_fill", "stats", "other")
# asset name -> run kind
ASSET_KINDS = {"mint_events": "backfill", "mint_events_tip": "tip_fill", "mint_stats": "stats"}
# exception class name -> failure reason, the first found in a failure's chain
REASONS = {
    "ProviderLagError": "provider_lag",
    "UnprovenRemovalError": "unproven_removal",
    "TokenConflictError": "token_conflict",
}
RPC_ERRORS = {"RpcError", "RangeError", "StateUnavailable"}
REASON_NAMES = (*REASONS.values(), "rpc", "other")


@dataclass(frozen=True, slots=True)
class RunRpc:
    """A run's RPC figures (RpcStats differences over the run)."""

    calls: int = 0
    retries: int = 0
    lagging: int = 0


def run_kind(asset_names: Iterable[str]) -> str:
    kinds = {ASSET_KINDS.get(name, "other") for name in asset_names}
    for kind in RUN_KINDS:  # a mixed run counts as its most important kind
        if kind in kinds:
            return kind
    return "other"


def failure_reason(class_names: Iterable[str]) -> str:
    """The reason of a failure whose exception chain holds these classes."""
    names = list(class_names)
    for name in names:
        if name in REASONS:
            return REASONS[name]
    return "rpc" if RPC_ERRORS & set(names) else "other"


def run_finished(
    kind: str, rpc: RunRpc, *, succeeded: bool, now: float
) -> tuple[dict[str, int], dict[str, int]]:
    """(increments, values) to record when a run's work ends, successfully or not."""
    labels = {"kind": kind}
    increments = {
        metric_key("glisk_runs_rpc_calls_total", labels): rpc.calls,
        metric_key("glisk_runs_rpc_retries_total", labels): rpc.retries,
        metric_key("glisk_runs_lagging_answers_total", labels): rpc.lagging,
    }
    values = {}
    if succeeded:
        increments[metric_key("glisk_runs_succeeded_total", labels)] = 1
        values[metric_key("glisk_runs_last_success_timestamp_seconds", labels)] = int(now)
    return increments, values


def run_failed(kind: str, reason: str, *, now: float) -> tuple[dict[str, int], dict[str, int]]:
    return (
        {metric_key("glisk_runs_failed_total", {"kind": kind, "reason": reason}): 1},
        {metric_key("glisk_runs_last_failure_timestamp_seconds", {"kind": kind}): int(now)},
    )


def sensor_ticked(sensor: str, *, now: float) -> dict[str, int]:
    return {metric_key("glisk_sensor_last_tick_timestamp_seconds", {"sensor": sensor}): int(now)}


def zero_counters() -> dict[str, int]:
    """Every counter of every run kind (and failure reason) at 0: a series that first
    appears at 1 is invisible to increase() and rate(), so each exists from the start."""
    out = {}
    for kind in RUN_KINDS:
        for name in (
            "glisk_runs_rpc_calls_total", "glisk_runs_rpc_retries_total",
            "glisk_runs_lagging_answers_total", "glisk_runs_succeeded_total",
        ):  # fmt: skip
            out[metric_key(name, {"kind": kind})[len(PREFIX) :]] = 0
        for reason in REASON_NAMES:
            labels = {"kind": kind, "reason": reason}
            out[metric_key("glisk_runs_failed_total", labels)[len(PREFIX) :]] = 0
    return out


def render(series: Mapping[str, int]) -> str:
    """Prometheus text of the recorded series (`name{labels}` -> value) over
    zero_counters(); names this module does not define are left out."""
    by_name: dict[str, list[str]] = {name: [] for name in METRICS}
    for sample, value in sorted({**zero_counters(), **series}.items()):
        name = sample.split("{", 1)[0]
        if name in by_name:
            by_name[name].append(f"{sample} {value}")
    lines: list[str] = []
    for name, samples in by_name.items():
        kind, help_ = METRICS[name]
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples]
    return "\n".join(lines) + "\n"
