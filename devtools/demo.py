"""`make demo`: the whole recovery path on a throwaway local chain, with no configuration.

1. start anvil, deploy GliskNFT and a decoy, start `dagster dev` on a temporary instance
   (it takes ~15 s to come up), mine a realistic history meanwhile (devchain);
2. migrate a fresh app database (embedded SQLite by default) and register some authors;
3. run chain_head_sensor's logic against that instance until it has added every final
   block window as a partition;
4. launch a backfill of all partitions over GraphQL, as the UI's "Materialize all" does,
   wait until its runs have succeeded and every partition is materialized, then
   materialize mint_stats;
5. compare the tables with the chain and print a summary; exit 1 on any mismatch.

Everything it starts (anvil, dagster dev and its run workers, temp dirs) is stopped and
removed on exit. `--dagster-pg-url` / `--database-url` point it at PostgreSQL instead
(the end-to-end test does). Dev-chain code: never imported by production paths.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from devtools.devchain import (
    DEFAULT_MINT_PRICE,
    Anvil,
    ChainMint,
    History,
    chain_logs,
    decode_mint,
    deploy,
    realistic_history,
)
from glisk_pipeline.db.engine import make_engine
from glisk_pipeline.db.migrate import upgrade
from glisk_pipeline.db.schema import mint_events, mint_stats, tokens
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.windows import PARTITIONS_NAME

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AUTHOR = "0x" + "d0" * 20
ANVIL_FINALITY = 64  # anvil's `finalized` tag trails the head by 64 blocks

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class DagsterDev:
    """`dagster dev` (webserver + daemon) in its own session; stop() ends all of it."""

    def __init__(
        self, home: Path, env: dict[str, str], log_path: Path | None, port: int | None = None
    ) -> None:
        """log_path None: its output goes to this process's stdout (make dev)."""
        self.home, self.env, self.log_path = home, env, log_path
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
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
        answer.raise_for_status()
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


# --- the sensor's logic, applied to an instance ---------------------------------------


def add_partitions_with_sensor(instance: Any, chain: Any) -> tuple[int, int, int]:
    """Tick chain_head_sensor until it adds nothing; apply its partition requests like the
    daemon does. Returns (partitions added, ticks, run requests)."""
    from dagster import build_sensor_context

    from glisk_pipeline.defs.sensors import chain_head_sensor

    cursor, added, ticks, runs = None, 0, 0, 0
    while True:
        context = build_sensor_context(instance=instance, cursor=cursor, resources={"chain": chain})
        result = chain_head_sensor(context)
        ticks += 1
        cursor = result.cursor
        keys = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
        if not keys:
            return added, ticks, runs
        instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
        added += len(keys)
        runs += len(result.run_requests or [])


# --- comparing the tables with the chain -----------------------------------------------


def compare_with_chain(engine: Engine, chain_mints: list[ChainMint]) -> list[str]:
    """Mismatches between the live rows and the chain's BatchMinted logs (empty: equal)."""
    problems: list[str] = []
    e = mint_events.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                e.block_number,
                e.block_hash,
                e.tx_hash,
                e.log_index,
                e.minter,
                e.author_wallet,
                e.start_token_id,
                e.quantity,
                e.total_paid,
            ).where(~e.removed)
        ).all()
        token_ids = set(conn.execute(select(tokens.c.token_id)).scalars())
        stats_events, stats_tokens = conn.execute(
            select(func.sum(mint_stats.c.events), func.sum(mint_stats.c.tokens))
        ).one()
        stats_paid = sum(conn.execute(select(mint_stats.c.total_paid)).scalars(), 0)
    stored = {tuple(r) for r in rows}
    expected = {
        (
            m.block_number,
            m.block_hash,
            m.tx_hash,
            m.log_index,
            m.minter,
            m.prompt_author,
            m.start_token_id,
            m.quantity,
            m.total_paid,
        )
        for m in chain_mints
    }
    if stored != expected:
        problems.append(
            f"mint_events: {len(expected - stored)} chain logs missing, "
            f"{len(stored - expected)} rows not on chain"
        )
    want_tokens = {
        t for m in chain_mints for t in range(m.start_token_id, m.start_token_id + m.quantity)
    }
    if token_ids != want_tokens:
        problems.append(
            f"tokens: {len(want_tokens - token_ids)} missing, {len(token_ids - want_tokens)} extra"
        )
    paid = sum(m.total_paid for m in chain_mints)
    if (stats_events or 0, stats_tokens or 0, stats_paid) != (
        len(chain_mints),
        len(want_tokens),
        paid,
    ):
        problems.append(
            f"mint_stats: {stats_events} events / {stats_tokens} tokens / {stats_paid} wei, "
            f"chain {len(chain_mints)} / {len(want_tokens)} / {paid}"
        )
    return problems


# --- the demo --------------------------------------------------------------------------


@dataclass
class DemoOptions:
    batches: int = 2000
    blocks: int = 4000
    partition_size: int = 200
    partitions_per_run: int = 10
    seed: int = 7
    database_url: str | None = None  # default: a SQLite file in the temp dir
    dagster_pg_url: str | None = None  # default: Dagster's local storage in the temp dir


@dataclass
class DemoSummary:
    chain_events: int = 0
    chain_tokens: int = 0
    db_events: int = 0
    db_tokens: int = 0
    partitions: int = 0
    sensor_ticks: int = 0
    runs: int = 0
    backfill_status: str = ""  # Dagster's own status when the runs were seen done
    backfill_ok: bool = False  # every run succeeded, every partition materialized
    ingest_events: int = 0  # logs the runs fetched and reconciled
    ingest_s: float = 0.0  # time inside backfill_range, summed over runs
    mining_s: float = 0.0
    backfill_s: float = 0.0
    total_s: float = 0.0
    leftover_pids: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.leftover_pids

    @property
    def events_per_s(self) -> float:
        return self.db_events / self.backfill_s if self.backfill_s else 0.0


@contextlib.contextmanager
def _temp_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="glisk-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _dagster_pg_env(url: str | None) -> Iterator[None]:
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
    metadata: each partition carries its window's logs_found, each run its run_duration_s
    (the same on every partition of the run: counted once)."""
    from dagster import AssetKey

    logs, per_run = 0, {}
    result = instance.fetch_materializations(AssetKey("mint_events"), limit=10_000)
    for record in result.records:
        meta = record.asset_materialization.metadata
        logs += meta["logs_found"].value
        per_run[record.run_id] = meta["run_duration_s"].value
    return logs, sum(per_run.values())


@dataclass
class LocalChain:
    contract: str
    start_block: int
    database_url: str
    history: History
    mining_s: float
    env: dict[str, str]  # the app settings for this chain (NETWORK, RPC_URL, ...)


def build_local_chain(
    anvil: Anvil,
    options: DemoOptions,
    tmp: Path,
    say: Callable[[str], None],
    on_deployed: Callable[[dict[str, str]], None] | None = None,
) -> LocalChain:
    """Deploy, mine a realistic history, migrate the app database, register authors.
    `on_deployed(env)` is called with the app settings as soon as the contract exists,
    before the (slow) mining: the demo starts `dagster dev` there."""
    contract = deploy(anvil, "GliskNFT", DEFAULT_MINT_PRICE)
    start_block = anvil.block_number()  # the deployment block
    database_url = options.database_url or f"sqlite:///{tmp / 'glisk.db'}"
    env = {
        "NETWORK": "LOCAL",
        "RPC_URL": anvil.url,
        "GLISK_NFT_CONTRACT_ADDRESS": contract,
        "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
        "GLISK_START_BLOCK": str(start_block),
        "GLISK_PARTITION_SIZE": str(options.partition_size),
        "GLISK_PARTITIONS_PER_RUN": str(options.partitions_per_run),
        "DATABASE_URL": database_url,
    }
    if on_deployed is not None:
        on_deployed(env)
    decoy = deploy(anvil, "DecoyNFT")
    t0 = time.monotonic()
    history = realistic_history(
        anvil,
        contract,
        decoy,
        n_batches=options.batches,
        n_blocks=options.blocks,
        seed=options.seed,
    )
    # Let the last window become complete and final under anvil's `finalized` tag.
    anvil.mine_empty(options.partition_size + ANVIL_FINALITY)
    mining_s = time.monotonic() - t0
    say(
        f"chain: {len(history.mints)} mints ({history.tokens_minted} tokens) over blocks "
        f"{history.from_block}-{history.to_block}, plus decoys and reverts ({mining_s:.1f}s)"
    )
    upgrade(database_url)
    engine = make_engine(database_url)
    store = MintStore(engine, DEFAULT_AUTHOR, start_block=start_block)
    for wallet in history.registered_authors:
        store.register_author(wallet)
    engine.dispose()
    return LocalChain(contract, start_block, database_url, history, mining_s, env)


def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> DemoSummary:
    from dagster import DagsterInstance, materialize

    from glisk_pipeline.defs.assets import mint_events as mint_events_asset
    from glisk_pipeline.defs.assets import mint_stats as mint_stats_asset
    from glisk_pipeline.defs.resources import ChainResource, DatabaseResource

    summary = DemoSummary()
    began = time.monotonic()
    with _temp_dir() as tmp, Anvil() as anvil:
        say(f"anvil on {anvil.url}; workspace {tmp}")
        home = tmp / "dagster_home"
        prepare_home(home, postgres=options.dagster_pg_url is not None)
        (tmp / "tmp").mkdir()
        with (
            _dagster_pg_env(options.dagster_pg_url),
            DagsterInstance.from_config(str(home)),
        ):
            pass  # create Dagster's storage here, before dagster dev's processes race for it
        devs: list[DagsterDev] = []

        def start_dagster_dev(settings_env: dict[str, str]) -> None:
            # As soon as the contract exists (the code location reads its address from the
            # environment): dagster dev's ~15 s start-up overlaps the mining.
            env = {
                **os.environ,
                **settings_env,
                "DAGSTER_HOME": str(home),
                "TMPDIR": str(tmp / "tmp"),
                "PYTHONWARNINGS": "ignore",
            }
            if options.dagster_pg_url:
                env["DAGSTER_PG_URL"] = options.dagster_pg_url
            devs.append(DagsterDev(home, env, tmp / "dagster-dev.log").spawn())

        try:
            local = build_local_chain(anvil, options, tmp, say, on_deployed=start_dagster_dev)
            contract, start_block = local.contract, local.start_block
            database_url = local.database_url
            engine = make_engine(database_url)
            summary.mining_s = local.mining_s
            summary.chain_events = len(local.history.mints)
            summary.chain_tokens = local.history.tokens_minted

            # The sensor's logic, against the same instance dagster dev uses.
            chain = ChainResource(
                rpc_url=anvil.url,
                network="LOCAL",
                contract_address=contract,
                start_block=start_block,
                partition_size=options.partition_size,
            )
            with (
                _dagster_pg_env(options.dagster_pg_url),
                DagsterInstance.from_config(str(home)) as instance,
            ):
                added, summary.sensor_ticks, _ = add_partitions_with_sensor(instance, chain)
                keys = instance.get_dynamic_partitions(PARTITIONS_NAME)
            summary.partitions = len(keys)
            say(
                f"sensor: {added} partitions added in {summary.sensor_ticks} ticks "
                f"({keys[0]} .. {keys[-1]})"
            )

            dev = devs[0]
            t0 = time.monotonic()
            dev.wait_ready()
            say(
                f"dagster dev on {dev.url} (waited {time.monotonic() - t0:.1f}s more for it); "
                f"launching a backfill of {len(keys)} partitions"
            )
            t0 = time.monotonic()
            # mint_events only: an unpartitioned asset in the same backfill waits for the
            # backfill daemon's next 30 s loop; mint_stats is materialized right after.
            backfill_id = dev.launch_backfill(keys, [["mint_events"]])
            outcome = dev.wait_backfill(backfill_id, keys, ["mint_events"])
            summary.backfill_s = time.monotonic() - t0
            summary.backfill_status = outcome.status
            summary.backfill_ok = outcome.ok
            summary.runs = len(outcome.runs)
            if not outcome.ok:
                failed = [r for r, status in outcome.runs.items() if status != "SUCCESS"]
                summary.problems.append(
                    f"backfill {outcome.status}, failed runs {failed}, "
                    f"{len(outcome.missing)} partitions not materialized"
                )
                say(dev.log_tail())
        finally:
            for dev in devs:
                summary.leftover_pids += dev.stop()

        with (
            _dagster_pg_env(options.dagster_pg_url),
            DagsterInstance.from_config(str(home)) as instance,
        ):
            summary.ingest_events, summary.ingest_s = ingest_figures(instance)
            stats_run = materialize(
                [mint_events_asset, mint_stats_asset],
                selection=[mint_stats_asset],
                instance=instance,
                # warnings only: its DEBUG lines would land in the middle of the summary
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                resources={"database": DatabaseResource(database_url=database_url), "chain": chain},
            )
            if not stats_run.success:
                summary.problems.append("mint_stats materialization failed")

        with engine.connect() as conn:
            summary.db_events = conn.execute(
                select(func.count()).select_from(mint_events).where(~mint_events.c.removed)
            ).scalar_one()
            summary.db_tokens = conn.execute(select(func.count()).select_from(tokens)).scalar_one()
        chain_mints = [decode_mint(log) for log in chain_logs(anvil, contract, start_block)]
        summary.problems += compare_with_chain(engine, chain_mints)
        engine.dispose()
    summary.total_s = time.monotonic() - began
    return summary


def dev_session(options: DemoOptions, port: int = 3000, add_partitions: bool = True) -> int:
    """`make dev`: `dagster dev` in the foreground against a fresh local chain and database
    (everything under one temp dir, removed on exit). The block_ranges partitions are added
    first with the sensor's logic (unless add_partitions is False), so a backfill can be
    launched from the UI at once. Ctrl-C, or SIGINT/SIGTERM to this process's PID, stops
    dagster dev (all of its processes), anvil, and removes the temp dir."""
    from dagster import DagsterInstance

    from glisk_pipeline.defs.resources import ChainResource

    # SIGTERM (`kill PID`) takes the same clean path as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: signal.default_int_handler(signal.SIGINT, None))
    with _temp_dir() as tmp, Anvil() as anvil:
        local = build_local_chain(anvil, options, tmp, print)
        postgres = bool(os.environ.get("DAGSTER_PG_URL"))
        home = tmp / "dagster_home"
        prepare_home(home, postgres=postgres)
        keys: list[str] = []
        if add_partitions:
            chain = ChainResource(
                rpc_url=anvil.url,
                network="LOCAL",
                contract_address=local.contract,
                start_block=local.start_block,
                partition_size=options.partition_size,
            )
            with DagsterInstance.from_config(str(home)) as instance:
                add_partitions_with_sensor(instance, chain)
                keys = instance.get_dynamic_partitions(PARTITIONS_NAME)
        env = {**os.environ, **local.env, "DAGSTER_HOME": str(home), "PYTHONWARNINGS": "ignore"}
        partitions = (
            f"{len(keys)} block_ranges partitions added ({keys[0]} .. {keys[-1]})"
            if keys
            else "no partitions yet: turn chain_head_sensor on to add them"
        )
        env_file = write_env_file(tmp / "dev.env", {**local.env, "DAGSTER_HOME": str(home)})
        print(
            f"\nThis chain and database (also in {env_file}: `set -a; . {env_file}` points\n"
            "  glisk, psql, make webhook and the replay at them):\n"
            + "".join(
                f"  {name}={local.env[name]}\n"
                for name in (
                    "DATABASE_URL",
                    "RPC_URL",
                    "GLISK_NFT_CONTRACT_ADDRESS",
                    "GLISK_START_BLOCK",
                )
            )
            + f"\nDagster UI: http://127.0.0.1:{port}  (storage: "
            f"{'PostgreSQL from DAGSTER_PG_URL' if postgres else 'local, in ' + str(home)})\n"
            f"  {partitions}.\n"
            "  Assets > mint_events > Materialize > select partitions > Launch backfill;\n"
            "  then materialize mint_stats. Automation > chain_head_sensor: adds new final\n"
            "  windows as partitions and requests their runs.\n"
            f"  Ctrl-C (or kill -INT {os.getpid()}) stops everything.\n",
            flush=True,
        )
        dev = DagsterDev(home, env, None, port=port).spawn()
        try:
            assert dev.proc is not None
            code = dev.proc.wait()
        except KeyboardInterrupt:
            code = 0
        finally:
            left = dev.stop()
            if left:
                print(f"still running after stop: {left}", flush=True)
        return code


def write_env_file(path: Path, values: dict[str, str]) -> Path:
    """A `.env`-style file (NAME=value lines) of the dev session's settings."""
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    return path


def print_summary(s: DemoSummary, say: Callable[[str], None] = print) -> None:
    rows = [
        ("mint events", s.chain_events, s.db_events),
        ("tokens", s.chain_tokens, s.db_tokens),
    ]
    say("")
    say(f"{'':14}{'chain':>10}{'tables':>10}")
    for name, chain, db in rows:
        say(f"{name:14}{chain:>10}{db:>10}{'' if chain == db else '   MISMATCH'}")
    say(f"partitions    {s.partitions} (sensor ticks {s.sensor_ticks}); backfill runs {s.runs}")
    # Dagster marks a backfill COMPLETED on its daemon's next loop (every 30 s): when every
    # run succeeded and every partition is materialized, it is done whatever it still reads.
    status = "COMPLETED" if s.backfill_ok else s.backfill_status
    say(
        f"backfill      {status}: {'all runs succeeded' if s.backfill_ok else 'FAILED'} in "
        f"{s.backfill_s:.1f}s ({s.events_per_s:,.0f} events/s end to end, run start-up "
        "included)"
    )
    if s.ingest_s:
        say(
            f"ingest        {s.ingest_events} logs in {s.ingest_s:.2f}s inside the runs "
            f"({s.ingest_events / s.ingest_s:,.0f} events/s fetch+decode+store)"
        )
    say(f"total         {s.total_s:.1f}s (mining {s.mining_s:.1f}s)")
    if s.leftover_pids:
        say(f"LEFT RUNNING: {s.leftover_pids}")
    for problem in s.problems:
        say(f"MISMATCH: {problem}")
    say("OK: the tables equal the chain" if s.ok else "FAILED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="glisk-pipeline demo (see module docstring)")
    defaults = DemoOptions()
    parser.add_argument("--batches", type=int, default=defaults.batches)
    parser.add_argument("--blocks", type=int, default=defaults.blocks)
    parser.add_argument("--partition-size", type=int, default=defaults.partition_size)
    parser.add_argument("--partitions-per-run", type=int, default=defaults.partitions_per_run)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--database-url", help="app tables (default: a temp SQLite file)")
    parser.add_argument("--dagster-pg-url", help="Dagster storage (default: temp local)")
    parser.add_argument("--dev", action="store_true", help="serve the Dagster UI instead")
    parser.add_argument("--port", type=int, default=3000, help="UI port with --dev")
    parser.add_argument(
        "--no-partitions",
        action="store_true",
        help="with --dev: add no partitions (let chain_head_sensor add them)",
    )
    args = parser.parse_args(argv)
    options = DemoOptions(
        batches=args.batches,
        blocks=args.blocks,
        partition_size=args.partition_size,
        partitions_per_run=args.partitions_per_run,
        seed=args.seed,
        database_url=args.database_url,
        dagster_pg_url=args.dagster_pg_url,
    )
    if args.dev:
        return dev_session(options, port=args.port, add_partitions=not args.no_partitions)
    summary = run_demo(options, say=lambda line: print(line, flush=True))
    print_summary(summary)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
