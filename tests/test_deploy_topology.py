"""The production topology, each role its own process, as deploy/ runs them.

One-shot migration; a gRPC code server (`dagster code-server start`), `dagster-webserver`
and `dagster-daemon run` on deploy/workspace.yaml and the project's PostgreSQL-backed
dagster.yaml; two webhook sidecars (2 workers each) on different ports sharing the app
database. Then: chain_head_sensor turned on over GraphQL adds the final windows and its runs
succeed; a backfill launched over GraphQL succeeds; every delivery of the chain is replayed
to both sidecars at once and each log is stored once; the tables equal the chain. Every
process is stopped by its own PID.

The backfill daemon looks for new backfills every 30 s (hard-coded in Dagster 1.13), so
most of this test's ~2 minutes is waiting for that loop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from devtools.anvil import free_port
from devtools.dagster_dev import DagsterDev
from devtools.oracle import chain_logs, compare_with_chain, decode_mint
from devtools.replay import chain_deliveries, signed
from glisk_pipeline.db.engine import make_engine
from tests.support.deploy_support import (
    REPO,
    ROLES,
    RoleProcess,
    history_windows,
    live_mints,
    local_argv,
)
from tests.support.fixtures_chain import DevChain

pytestmark = pytest.mark.slow

SIZE = 100  # blocks per partition
SECRET = "whsec_topology_0123456789"
DEFAULT_AUTHOR = "0x" + "d0" * 20
LOCATION = {"repositoryLocationName": "glisk_pipeline", "repositoryName": "__repository__"}
SENSOR = {**LOCATION, "sensorName": "chain_head_sensor"}

WORKSPACE = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
RELOAD = """
mutation { reloadRepositoryLocation(repositoryLocationName: "glisk_pipeline") { __typename } }"""
START_SENSOR = """
mutation Start($s: SensorSelector!) { startSensor(sensorSelector: $s) {
  __typename ... on Sensor { sensorState { id status } } ... on PythonError { message } } }"""
STOP_SENSOR = """
mutation Stop($id: String!) { stopSensor(id: $id) {
  __typename ... on PythonError { message } } }"""
SENSOR_RUNS = """
query { runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "chain_head_sensor"}]}) {
  __typename ... on Runs { results { runId status tags { key value } } } } }"""


@contextlib.contextmanager
def topology(env: dict[str, str], log_dir: Path) -> Iterator[dict[str, RoleProcess]]:
    """Start every long-running role; on exit stop each by its PID and check none is left."""
    procs: dict[str, RoleProcess] = {}
    code, web, hooks = env["DAGSTER_CODE_SERVER_PORT"], free_port(), [free_port(), free_port()]
    plan: list[tuple[str, list[str], dict[str, str], int | None]] = [
        ("code-server", [*ROLES["code-server"], "-h", "127.0.0.1", "-p", code], {}, None),
        ("webserver", [*ROLES["webserver"], "-h", "127.0.0.1", "-p", str(web)], {}, web),
        ("daemon", ROLES["daemon"], {}, None),
        *[
            (f"webhook-{i}", ROLES["webhook"], {"WEBHOOK_PORT": str(port)}, port)
            for i, port in enumerate(hooks)
        ],
    ]
    try:
        for name, argv, extra, port in plan:
            url = f"http://127.0.0.1:{port}" if port else ""
            procs[name] = RoleProcess(name, argv, {**env, **extra}, log_dir, url)
        yield procs
    except BaseException:
        print("\n".join(p.log_tail() for p in procs.values()))
        for p in procs.values():
            p.stop()
        raise
    began = time.monotonic()
    leftovers = {name: p.stop() for name, p in procs.items()}
    killed = [name for name, p in procs.items() if p.killed]
    print(f"stopped in {lap(began):.1f}s")
    assert not any(leftovers.values()), f"still running after stop: {leftovers}"
    assert not killed, f"{killed} needed SIGKILL: a supervisor's SIGTERM would not stop them"


def lap(since: float) -> float:
    return time.monotonic() - since


def wait_until(what: str, check: Any, procs: dict[str, RoleProcess], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        dead = [name for name, p in procs.items() if not p.alive()]
        assert not dead, f"{dead} exited while waiting for {what}"
        with contextlib.suppress(httpx.TransportError):
            result = check()
            if result:
                return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def location_loaded(dagster: DagsterDev) -> bool:
    data = dagster.graphql(WORKSPACE, {})["workspaceOrError"]
    (entry,) = data["locationEntries"]
    loaded = entry["locationOrLoadError"]
    if loaded and loaded["__typename"] == "PythonError":
        # the webserver came up before the code server answered: ask it to load again
        dagster.graphql(RELOAD, {})
        return False
    return entry["loadStatus"] == "LOADED" and loaded is not None


def run_partitions(run: dict[str, Any], keys: list[str]) -> list[str]:
    """The partition keys a run covers: one key, or a range (the sensor's catch-up runs)."""
    tags = {t["key"]: t["value"] for t in run["tags"]}
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    first = keys.index(tags["dagster/asset_partition_range_start"])
    last = keys.index(tags["dagster/asset_partition_range_end"])
    return keys[first : last + 1]


def sensor_runs(dagster: DagsterDev, keys: list[str]) -> dict[str, str] | None:
    """partition -> run status once the sensor's runs cover `keys` and have all finished;
    failures raise."""
    found = dagster.graphql(SENSOR_RUNS, {})["runsOrError"]["results"]
    statuses = {key: run["status"] for run in found for key in run_partitions(run, keys)}
    failed = [key for key, status in statuses.items() if status in ("FAILURE", "CANCELED")]
    assert not failed, f"sensor runs failed for {failed}"
    if set(statuses) != set(keys) or set(statuses.values()) != {"SUCCESS"}:
        return None
    return statuses


def sensor_covers(
    dagster: DagsterDev, keys: list[str], wait: Callable[[str, Any, float], Any], timeout: float
) -> dict[str, str]:
    """Turn chain_head_sensor on over GraphQL, wait (with `wait(what, check, timeout)`, the
    caller's liveness-aware poll) until its runs cover `keys` and have all succeeded, and
    turn it off again. Returns partition -> run status."""
    started = dagster.graphql(START_SENSOR, {"s": SENSOR})["startSensor"]
    assert started["__typename"] == "Sensor", started
    runs: dict[str, str] = wait("the sensor's runs", lambda: sensor_runs(dagster, keys), timeout)
    stopped = dagster.graphql(STOP_SENSOR, {"id": started["sensorState"]["id"]})
    assert stopped["stopSensor"]["__typename"] == "StopSensorMutationResult", stopped
    assert sorted(runs) == keys
    return runs


def test_production_topology(
    devchain: DevChain, fresh_databases: tuple[str, str], tmp_path: Path
) -> None:
    app_url, dagster_url = fresh_databases
    anvil = devchain.anvil
    # Backfill path: a history whose windows are all complete (and final: confirmations 0).
    start, windows = history_windows(devchain, SIZE, n_batches=60, n_blocks=200, seed=5)
    assert len(windows) >= 3

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    (tmp_path / "tmp").mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "TMPDIR": str(tmp_path / "tmp"),
        "PYTHONWARNINGS": "ignore",
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": dagster_url,
        "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
        "DAGSTER_CODE_SERVER_PORT": str(free_port()),
        "DATABASE_URL": app_url,
        "DATABASE_POOL_SIZE": "2",
        "DATABASE_MAX_OVERFLOW": "2",
        "NETWORK": "LOCAL",
        "RPC_URL": anvil.url,
        "GLISK_NFT_CONTRACT_ADDRESS": devchain.glisk,
        "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
        "GLISK_START_BLOCK": str(start),
        "GLISK_PARTITION_SIZE": str(SIZE),
        "GLISK_CONFIRMATIONS": "0",
        "GLISK_PARTITIONS_PER_RUN": "50",
        "ALCHEMY_WEBHOOK_SECRET": SECRET,
        "WEBHOOK_HOST": "127.0.0.1",
        "WEBHOOK_WORKERS": "2",
    }

    # Migrations run once, by the one-shot role, before anything else starts.
    migrate = subprocess.run(
        local_argv(ROLES["migrate"]),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "schema at" in migrate.stdout

    with topology(env, tmp_path) as procs:
        # DagsterDev's GraphQL helpers, pointed at our webserver (it starts nothing itself)
        dagster = DagsterDev(home, env, None, port=int(procs["webserver"].url.rsplit(":", 1)[1]))
        sidecars = [httpx.Client(base_url=procs[f"webhook-{i}"].url, timeout=30) for i in (0, 1)]
        try:
            began = time.monotonic()
            wait_until("the code location", lambda: location_loaded(dagster), procs, 120)
            for client in sidecars:
                ready = lambda c=client: c.get("/readyz").status_code == 200  # noqa: E731
                wait_until("/readyz", ready, procs, 60)
            t_up = time.monotonic()

            # 1. the sensor, turned on over GraphQL, adds the windows and runs them (ranges of
            #    up to GLISK_PARTITIONS_PER_RUN windows per run)
            runs = sensor_covers(
                dagster, windows, lambda what, check, t: wait_until(what, check, procs, t), 150
            )
            print(
                f"\nup in {t_up - began:.1f}s; sensor: {len(runs)} partitions in {lap(t_up):.1f}s"
            )
            t_sensor = time.monotonic()

            # 2. a backfill of those partitions over GraphQL (one run: 50 partitions per run)
            backfill_id = dagster.launch_backfill(windows, [["mint_events"]])
            outcome = dagster.wait_backfill(backfill_id, windows, ["mint_events"], timeout=150)
            assert outcome.ok, outcome
            assert len(outcome.runs) == 1
            t_backfill = time.monotonic()
            print(f"backfill: {outcome.status} in {lap(t_sensor):.1f}s")

            # 3. the live path: new mints past the backfilled range, then every delivery of
            # the chain sent to both sidecars at the same time
            mints = live_mints(devchain, 30)
            deliveries = chain_deliveries(anvil.rpc_batch, devchain.glisk, start)
            requests = [(i, c, signed(p, SECRET)) for i, p in enumerate(deliveries) for c in (0, 1)]

            def post(item: tuple[int, int, tuple[bytes, dict[str, str]]]) -> tuple[int, Any]:
                _, sidecar, (body, headers) = item
                answer = sidecars[sidecar].post("/webhooks/alchemy", content=body, headers=headers)
                return answer.status_code, answer.json()

            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(post, requests))
            print(f"replay: {len(requests)} deliveries in {lap(t_backfill):.1f}s")
            # the pool settings hold: 2 sidecars x 2 workers x (2 + 2) at most
            app_connections = _connections(app_url)
            assert 0 < app_connections <= 2 * 2 * (2 + 2), app_connections
            print(f"app database connections after the replay: {app_connections}")
        finally:
            for client in sidecars:
                client.close()
            dagster.http.close()

    assert {status for status, _ in answers} <= {200, 409}, answers
    stored = [
        (event["tx_hash"], event["log_index"])
        for status, body in answers
        if status == 200
        for event in body.get("events", [])
    ]
    assert len(stored) == len(set(stored)) == len(mints)  # each new log stored by one sidecar

    chain_mints = [decode_mint(log) for log in chain_logs(anvil, devchain.glisk, start)]
    assert len(chain_mints) == 60 + len(mints)
    assert _mismatches(app_url, chain_mints) == []


def _connections(app_url: str) -> int:
    """Backends connected to the app database, other than the one asking."""
    engine = make_engine(app_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            query = "select count(*) from pg_stat_activity where datname = current_database()"
            return conn.execute(text(query + " and pid <> pg_backend_pid()")).scalar_one()
    finally:
        engine.dispose()


def _mismatches(app_url: str, chain_mints: list[Any]) -> list[str]:
    engine: Engine = make_engine(app_url)
    try:
        # mint_stats is not built here
        return compare_with_chain(engine, chain_mints, with_stats=False)
    finally:
        engine.dispose()
