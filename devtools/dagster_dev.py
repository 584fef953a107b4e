"""The `dagster dev` driver: start it on a throwaway instance, launch a partition backfill over
GraphQL as the UI's "Materialize all" does, poll it to the end, stop every process it forked.

Also the sensor's logic applied to an instance (add_partitions_with_sensor) and the ingest
figures the runs reported. Used by the demo (devtools/demo.py) and the end-to-end test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devtools.anvil import REPO_ROOT, free_port
from glisk_pipeline.windows import PARTITIONS_NAME

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions runs { runId status } }
    ... on PythonError { message }
  }
}"""
BACKFILL_RUNS = """
query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) {
    __typename
    ... on Runs { results { runId status } }
    ... on PythonError { message }
  }
}"""
MATERIALIZED = """
query Materialized($path: [String!]!, $partitions: [String!]) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset { assetMaterializations(partitions: $partitions) { partition runId } }
  }
}"""
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
SUCCEEDED = {"COMPLETED", "COMPLETED_SUCCESS"}
RUN_FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass
class BackfillOutcome:
    """How a backfill ended, as wait_backfill saw it.

    `status` is Dagster's own backfill status at that moment: the backfill daemon marks a
    backfill COMPLETED only on its next loop (every 30 s, hard-coded in Dagster), so it can
    still read REQUESTED when every run has already succeeded."""

    status: str
    runs: dict[str, str]  # run id -> run status, every run tagged with the backfill id
    missing: list[str]  # requested partitions with no materialization from those runs

    @property
    def ok(self) -> bool:
        return (
            bool(self.runs)
            and all(s == "SUCCESS" for s in self.runs.values())
            and not self.missing
            and self.status not in DONE - SUCCEEDED
        )


# --- dagster dev as a child process --------------------------------------------------


def session_pids(sid: int) -> list[int]:
    """Live processes of a session (dagster dev, its webserver, daemon, code server and run
    workers all stay in the session it was started in)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":  # fields[3]: session id
                pids.append(int(stat.parent.name))
    return pids


def default_signal_dispositions() -> None:
    """SIGINT and SIGTERM back to their defaults, in a child before it execs. A shell
    starts a background job with SIGINT ignored and an ignored signal stays ignored across
    exec; Dagster then maps SIGTERM to SIGINT's disposition (setup_interrupt_handlers), so
    dagster dev started from a script would ignore both and only SIGKILL would stop it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class DagsterDev:
    """`dagster dev` (webserver + daemon) in its own session; stop() ends all of it."""

    def __init__(
        self, home: Path, env: dict[str, str], log_path: Path | None, port: int | None = None
    ) -> None:
        """log_path None: its output goes to this process's stdout (make dev)."""
        self.home, self.env, self.log_path = home, env, log_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = False  # stop() had to SIGKILL what SIGINT did not stop
        self.http = httpx.Client(timeout=30.0)

    def spawn(self) -> DagsterDev:
        """Start it without waiting (it takes ~15 s to answer on 2 cores): the demo mines
        its chain meanwhile."""
        cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml")]
        cmd += ["-h", "127.0.0.1", "-p", str(self.port)]
        with open(self.log_path or os.devnull, "wb") as log:
            # Own session: every process it forks can be found (session_pids) and stopped,
            # and a terminal's Ctrl-C reaches only us: stop() forwards it.
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log if self.log_path else None,
                stderr=subprocess.STDOUT if self.log_path else None,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # only signal.signal runs between fork and exec: safe beside threads
                preexec_fn=default_signal_dispositions,
            )
        return self

    def wait_ready(self, timeout: float = 90.0) -> DagsterDev:
        assert self.proc is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited at start:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if self.http.get(f"{self.url}/server_info").status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise TimeoutError(f"dagster dev did not answer:\n{self.log_tail()}")
            time.sleep(0.25)

    def start(self, timeout: float = 90.0) -> DagsterDev:
        return self.spawn().wait_ready(timeout)

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None:
            return "(dagster dev's output is above)"
        return self.log_path.read_text(errors="replace")[-chars:]

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        answer = self.http.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}
        )
        if answer.status_code != 200:  # the body says why (a resolver's error)
            raise RuntimeError(f"GraphQL HTTP {answer.status_code}: {answer.text[:4000]}")
        body = answer.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def launch_backfill(self, partition_names: list[str], asset_paths: list[list[str]]) -> str:
        params = {
            "partitionNames": partition_names,
            "assetSelection": [{"path": p} for p in asset_paths],
            "title": "glisk demo: all block windows",
        }
        result = self.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"launchPartitionBackfill: {result}")
        return result["backfillId"]

    def wait_backfill(
        self,
        backfill_id: str,
        partitions: list[str],
        asset_path: list[str],
        timeout: float = 600.0,
    ) -> BackfillOutcome:
        """Wait until the backfill is done: Dagster marks it finished, or every run tagged
        with its id (`dagster/backfill`) has finished and every requested partition has a
        materialization from one of them. The second test does not wait for the backfill
        daemon's next 30 s loop."""
        deadline = time.monotonic() + timeout
        tags = [{"key": "dagster/backfill", "value": backfill_id}]
        while True:
            state = self.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            if state["__typename"] != "PartitionBackfill":
                raise RuntimeError(f"partitionBackfillOrError: {state}")
            found = self.graphql(BACKFILL_RUNS, {"tags": tags})["runsOrError"]
            if found["__typename"] != "Runs":
                raise RuntimeError(f"runsOrError: {found}")
            runs = {r["runId"]: r["status"] for r in found["results"]}
            finished = bool(runs) and set(runs.values()) <= RUN_FINISHED
            missing = partitions
            if finished:
                missing = self._unmaterialized(asset_path, partitions, set(runs))
            outcome = BackfillOutcome(state["status"], runs, missing)
            if state["status"] in DONE or (finished and not missing):
                return outcome
            if finished and any(s != "SUCCESS" for s in runs.values()):
                return outcome  # a run failed: the backfill cannot complete successfully
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill {backfill_id} still {state['status']}: {runs}")
            time.sleep(0.5)

    def _unmaterialized(
        self, asset_path: list[str], partitions: list[str], run_ids: set[str]
    ) -> list[str]:
        found = self.graphql(MATERIALIZED, {"path": asset_path, "partitions": partitions})
        asset = found["assetOrError"]
        if asset["__typename"] != "Asset":
            return partitions
        done = {m["partition"] for m in asset["assetMaterializations"] if m["runId"] in run_ids}
        return [p for p in partitions if p not in done]

    def stop(self, timeout: float = 30.0) -> list[int]:
        """SIGINT (dagster dev's clean shutdown), then SIGKILL to whatever of its session is
        left. Returns the pids still alive afterwards (should be none)."""
        self.http.close()
        if self.proc is None:
            return []
        sid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        deadline = time.monotonic() + 10
        while session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if session_pids(sid):
            self.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sid, signal.SIGKILL)
            time.sleep(0.5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.proc = None
        return session_pids(sid)


def prepare_home(home: Path, *, postgres: bool) -> None:
    """A DAGSTER_HOME with the repo's instance config: PostgreSQL or local storage."""
    home.mkdir(parents=True, exist_ok=True)
    source = "dagster.yaml" if postgres else "dagster.embedded.yaml"
    shutil.copyfile(REPO_ROOT / source, home / "dagster.yaml")


@contextlib.contextmanager
def dagster_pg_env(url: str | None) -> Iterator[None]:
    """dagster.yaml reads DAGSTER_PG_URL from the environment: set it while we open the
    instance in this process."""
    saved = os.environ.get("DAGSTER_PG_URL")
    if url:
        os.environ["DAGSTER_PG_URL"] = url
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_PG_URL", None)
        else:
            os.environ["DAGSTER_PG_URL"] = saved


def ingest_figures(instance: Any) -> tuple[int, float]:
    """(logs, seconds) summed over the mint_events runs, from their materialization
    metadata: each partition carries its window's logs_found, and each run's last window
    its run_duration_s."""
    from dagster import AssetKey

    logs, seconds = 0, 0.0
    result = instance.fetch_materializations(AssetKey("mint_events"), limit=10_000)
    for record in result.records:
        meta = record.asset_materialization.metadata
        logs += meta["logs_found"].value
        if "run_duration_s" in meta:
            seconds += meta["run_duration_s"].value
    return logs, seconds


# --- the sensor's logic, applied to an instance ---------------------------------------


def add_partitions_with_sensor(instance: Any, chain: Any, database: Any) -> tuple[int, int, int]:
    """Tick chain_head_sensor until it adds nothing; apply its partition requests like the
    daemon does. Returns (partitions added, ticks, run requests)."""
    from dagster import build_sensor_context

    from glisk_pipeline.defs.backfill.sensors import chain_head_sensor

    cursor, added, ticks, runs = None, 0, 0, 0
    while True:
        resources = {"chain": chain, "database": database}
        with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
            result = chain_head_sensor(ctx)
        ticks += 1
        cursor = result.cursor
        keys = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
        if not keys:
            return added, ticks, runs
        instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
        added += len(keys)
        runs += len(result.run_requests or [])
