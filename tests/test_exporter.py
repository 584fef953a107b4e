"""`glisk exporter` as a real process on real anvil and PostgreSQL: it serves what
`glisk status --prometheus` prints, computes at most once per cache period, and answers a
scrape within its timeout when the node does not answer. And what the Dagster runs and
sensors record for it (system_state through the store): a tip fill's RPC calls and success,
a failed run's kind and reason (run_failure_recorder on a real failed run), a sensor's tick.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    RunConfig,
    build_run_status_sensor_context,
    build_sensor_context,
    instance_for_test,
    materialize,
)
from sqlalchemy import Engine

from devtools.history import realistic_history
from devtools.local_chain import DEFAULT_AUTHOR
from glisk_pipeline.cli import recover_events
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.defs.backfill.sensors import chain_head_sensor
from glisk_pipeline.defs.run_record import run_failure_recorder
from glisk_pipeline.defs.silence.fill import ASSET_NAME, TipBlocks, mint_events_tip
from glisk_pipeline.run_metrics import failure_reason, run_kind
from tests.support.fixtures_chain import DevChain
from tests.support.pipeline_support import local_resources
from tests.webhook.helpers import Service

EXPORTER = [sys.executable, "-m", "glisk_pipeline.cli", "exporter", "--port", "{port}"]


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


@pytest.fixture
def exporter_env(cli_env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in cli_env.items() if not k.startswith("WEBHOOK_")}


@pytest.fixture
def history(devchain: DevChain, cli_env: dict[str, str], monkeypatch) -> None:
    """Mints on the chain, backfilled up to the final block (the checkpoint at the head)."""
    realistic_history(
        devchain.anvil, devchain.glisk, devchain.decoy, n_batches=30, n_blocks=40, seed=7
    )
    for key, value in cli_env.items():
        monkeypatch.setenv(key, value)
    assert recover_events.main(["--from-block", "0"]) == 0


@pytest.fixture
def run_exporter(tmp_path: Path) -> Iterator:
    started: list[Service] = []

    def start(env: dict[str, str], *args: str) -> Service:
        service = Service(env, tmp_path, argv=[*EXPORTER, *args])
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def test_exporter_serves_the_status_gauges_computed_once_per_cache_period(
    history, exporter_env, run_exporter
) -> None:
    exporter = run_exporter(exporter_env, "--cache-seconds", "2")
    first = exporter.http.get("/metrics")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/plain; version=0.0.4")
    status = subprocess.run(
        [sys.executable, "-m", "glisk_pipeline.cli", "status", "--prometheus"],
        env=exporter_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    served, printed = samples(first.text), samples(status.stdout)
    assert printed["glisk_supply_proof_ok"] == 1 and printed["glisk_status_exit_code"] == 0
    assert printed["glisk_checkpoint_behind_final_blocks"] == 0
    assert {k: served[k] for k in printed} == printed  # the same gauges, the same values
    assert served["glisk_config_partition_size_blocks"] == 10_000  # the settings' default
    assert served["glisk_exporter_collections_total"] == 1
    # a second scrape within the cache period computes nothing
    again = samples(exporter.http.get("/metrics").text)
    assert again["glisk_exporter_collections_total"] == 1
    time.sleep(2.2)
    assert samples(exporter.http.get("/metrics").text)["glisk_exporter_collections_total"] == 2
    assert exporter.http.get("/healthz").text == "ok\n"
    assert exporter.http.get("/other").status_code == 404


def test_a_scrape_answers_within_its_timeout_while_the_node_does_not_answer(
    exporter_env, run_exporter
) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    try:
        env = {**exporter_env, "RPC_URL": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        exporter = run_exporter(env, "--timeout-seconds", "1", "--cache-seconds", "1")
        started = time.monotonic()
        first = samples(exporter.http.get("/metrics").text)
        assert time.monotonic() - started < 3  # the computation waits on 2 s RPC timeouts
        assert first["glisk_exporter_collections_total"] == 0
        assert "glisk_status_exit_code" not in first  # nothing computed yet
        assert first['glisk_runs_failed_total{kind="backfill",reason="rpc"}'] == 0
        deadline = time.monotonic() + 30
        while True:
            later = samples(exporter.http.get("/metrics").text)
            if later["glisk_exporter_collections_total"] >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert later["glisk_status_exit_code"] == 1  # the node unreachable
        assert "glisk_supply_proof_ok" not in later
    finally:
        silent.close()


def metrics(engine: Engine) -> dict[str, int]:
    return MintStore(engine, DEFAULT_AUTHOR).read_metrics()


def test_runs_record_rpc_calls_success_and_failures_with_their_reason(
    devchain: DevChain, pg_url: str, pg_engine: Engine, monkeypatch
) -> None:
    realistic_history(
        devchain.anvil, devchain.glisk, devchain.decoy, n_batches=10, n_blocks=20, seed=3
    )
    head = devchain.anvil.block_number()
    blocks = RunConfig({ASSET_NAME: TipBlocks(from_block=0, to_block=head, reason="test")})
    with instance_for_test() as instance:
        before = time.time()
        ok = materialize(
            [mint_events_tip],
            instance=instance,
            resources=local_resources(devchain, pg_url, 0, 10_000),
            run_config=blocks,
        )
        assert ok.success
        (event,) = ok.get_asset_materialization_events()
        rpc_calls = event.materialization.metadata["rpc_calls"].value
        recorded = metrics(pg_engine)
        assert recorded['glisk_runs_succeeded_total{kind="tip_fill"}'] == 1
        assert recorded['glisk_runs_rpc_calls_total{kind="tip_fill"}'] == rpc_calls > 0
        assert before <= recorded['glisk_runs_last_success_timestamp_seconds{kind="tip_fill"}'] + 1
        assert 'glisk_runs_rpc_calls_total{kind="backfill"}' not in recorded

        monkeypatch.setenv("RPC_MAX_ATTEMPTS", "1")
        unreachable = local_resources(devchain, pg_url, 0, 10_000, rpc_url="http://127.0.0.1:9")
        failed = materialize(
            [mint_events_tip], instance=instance, resources=unreachable, run_config=blocks,
            raise_on_error=False,
        )  # fmt: skip
        assert not failed.success
        assert 'glisk_runs_failed_total{kind="tip_fill",reason="rpc"}' not in metrics(pg_engine)
        with build_run_status_sensor_context(
            sensor_name="run_failure_recorder",
            dagster_event=failed.get_run_failure_event(),
            dagster_instance=instance,
            dagster_run=failed.dagster_run,
            resources={"database": unreachable["database"]},
        ) as context:
            run_failure_recorder(context.for_run_failure())
        recorded = metrics(pg_engine)
        assert not failed.dagster_run.asset_selection  # its kind comes from its planned assets
        assert recorded['glisk_runs_failed_total{kind="tip_fill",reason="rpc"}'] == 1
        failed_at = recorded['glisk_runs_last_failure_timestamp_seconds{kind="tip_fill"}']
        assert before - 1 <= failed_at <= time.time() + 1
        assert recorded['glisk_runs_succeeded_total{kind="tip_fill"}'] == 1  # unchanged

        # a sensor's tick
        with build_sensor_context(
            instance=instance, resources=local_resources(devchain, pg_url, 0, 10_000)
        ) as context:
            chain_head_sensor(context)
        tick = metrics(pg_engine)[
            'glisk_sensor_last_tick_timestamp_seconds{sensor="chain_head_sensor"}'
        ]
        assert before - 1 <= tick <= time.time() + 1


def test_failure_reasons_and_run_kinds() -> None:
    wrapped = ["DagsterExecutionStepExecutionError", "ProviderLagError", "RpcError"]
    assert failure_reason(wrapped) == "provider_lag"
    assert failure_reason(["DagsterExecutionStepExecutionError", "UnprovenRemovalError"]) == (
        "unproven_removal"
    )
    assert failure_reason(["Failure", "RangeError"]) == "rpc"
    assert failure_reason(["KeyError"]) == "other"
    assert run_kind(["mint_events"]) == "backfill"
    assert run_kind(["mint_stats", "mint_events_tip"]) == "tip_fill"
    assert run_kind([]) == "other"


def test_counters_add_and_gauges_overwrite(engine: Engine) -> None:
    store = MintStore(engine, DEFAULT_AUTHOR)
    key = 'metric:glisk_runs_rpc_calls_total{kind="backfill"}'
    stamp = 'metric:glisk_runs_last_success_timestamp_seconds{kind="backfill"}'
    store.record_metrics({key: 5}, {stamp: 100})
    store.record_metrics({key: 7}, {stamp: 90})
    assert store.read_metrics() == {key[len("metric:") :]: 12, stamp[len("metric:") :]: 90}
    assert store.last_processed_block() is None  # other system_state keys are not metrics
