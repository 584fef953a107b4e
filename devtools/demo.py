"""`make demo`: the whole recovery path on a throwaway local chain, with no configuration.

1. start anvil, deploy GliskNFT and a decoy, start `dagster dev` on a temporary instance
   (it takes ~15 s to come up), mine a realistic history meanwhile (devtools/history.py);
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
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from devtools.anvil import Anvil
from devtools.dagster_dev import (
    DagsterDev,
    add_partitions_with_sensor,
    dagster_pg_env,
    ingest_figures,
    prepare_home,
)
from devtools.local_chain import DEFAULT_AUTHOR, DemoOptions, build_local_chain, temp_dir
from devtools.oracle import chain_mints, compare_with_chain
from glisk_pipeline.db.engine import make_engine
from glisk_pipeline.db.schema import mint_events, tokens
from glisk_pipeline.windows import PARTITIONS_NAME

__all__ = ["DemoOptions", "DemoSummary", "dev_session", "main", "run_demo"]


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


def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> DemoSummary:
    from dagster import DagsterInstance, materialize

    from glisk_pipeline.defs.backfill.assets import mint_events as mint_events_asset
    from glisk_pipeline.defs.backfill.assets import mint_stats as mint_stats_asset
    from glisk_pipeline.defs.resources import ChainResource, DatabaseResource

    summary = DemoSummary()
    began = time.monotonic()
    with temp_dir() as tmp, Anvil() as anvil:
        say(f"anvil on {anvil.url}; workspace {tmp}")
        home = tmp / "dagster_home"
        prepare_home(home, postgres=options.dagster_pg_url is not None)
        (tmp / "tmp").mkdir()
        with (
            dagster_pg_env(options.dagster_pg_url),
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
                dagster_pg_env(options.dagster_pg_url),
                DagsterInstance.from_config(str(home)) as instance,
            ):
                database = DatabaseResource(
                    database_url=database_url, default_author_wallet=DEFAULT_AUTHOR
                )
                added, summary.sensor_ticks, _ = add_partitions_with_sensor(
                    instance, chain, database
                )
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
            dagster_pg_env(options.dagster_pg_url),
            DagsterInstance.from_config(str(home)) as instance,
        ):
            summary.ingest_events, summary.ingest_s = ingest_figures(instance)
            stats_run = materialize(
                [mint_events_asset, mint_stats_asset],
                selection=[mint_stats_asset],
                instance=instance,
                resources={"database": DatabaseResource(database_url=database_url), "chain": chain},
                # warnings only: its DEBUG lines would land in the middle of the summary
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
            if not stats_run.success:
                summary.problems.append("mint_stats materialization failed")

        with engine.connect() as conn:
            summary.db_events = conn.execute(
                select(func.count()).select_from(mint_events).where(~mint_events.c.removed)
            ).scalar_one()
            summary.db_tokens = conn.execute(select(func.count()).select_from(tokens)).scalar_one()
        summary.problems += compare_with_chain(engine, chain_mints(anvil, contract, start_block))
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

    from glisk_pipeline.defs.resources import ChainResource, DatabaseResource

    # Ctrl-C and SIGTERM (`kill PID`) take the same clean path, even when a script started
    # us in the background with SIGINT ignored (Python then leaves it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: signal.default_int_handler(signal.SIGINT, None))
    with temp_dir() as tmp, Anvil() as anvil:
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
                database = DatabaseResource(
                    database_url=local.database_url, default_author_wallet=DEFAULT_AUTHOR
                )
                add_partitions_with_sensor(instance, chain, database)
                keys = instance.get_dynamic_partitions(PARTITIONS_NAME)
        env = {**os.environ, **local.env, "DAGSTER_HOME": str(home), "PYTHONWARNINGS": "ignore"}
        partitions = (
            f"{len(keys)} block_ranges partitions added ({keys[0]} .. {keys[-1]})"
            if keys
            else "no partitions yet: turn chain_head_sensor on to add them"
        )
        env_file = write_env_file(tmp / "dev.env", {**local.env, "DAGSTER_HOME": str(home)})
        print(banner(local.env, env_file, port, home, postgres, partitions), flush=True)
        dev = DagsterDev(home, env, None, port=port).spawn()
        try:
            assert dev.proc is not None
            code = dev.proc.wait()
        except KeyboardInterrupt:
            code = 0
        finally:
            left = dev.stop()
            if dev.killed:
                print("dagster dev did not stop on SIGINT: its processes were killed", flush=True)
            if left:
                print(f"still running after stop: {left}", flush=True)
        return code


def banner(
    settings: dict[str, str],
    env_file: Path,
    port: int,
    home: Path,
    postgres: bool,
    partitions: str,
) -> str:
    """What `make dev` prints before the UI starts: the settings, where they are written,
    and the way round the UI in its own words."""
    database = settings["DATABASE_URL"]
    # psql only reads PostgreSQL; the default app database is a SQLite file
    readers = (
        "glisk, psql, make webhook and the replay"
        if database.startswith("postgresql")
        else ("glisk, make webhook and the replay (sqlite3 opens the file)")
    )
    names = ("DATABASE_URL", "RPC_URL", "GLISK_NFT_CONTRACT_ADDRESS", "GLISK_START_BLOCK")
    return (
        f"\nThis chain and database (also in {env_file}: `set -a; . {env_file}; set +a`\n"
        f"  points {readers} at them):\n"
        + "".join(f"  {name}={settings[name]}\n" for name in names)
        + f"\nDagster UI: http://127.0.0.1:{port}  (storage: "
        f"{'PostgreSQL from DAGSTER_PG_URL' if postgres else 'local, in ' + str(home)})\n"
        f"  {partitions}.\n"
        "  Catalog > mint_events > Materialize... > select partitions > Launch backfill;\n"
        "  then materialize mint_stats. Automation > chain_head_sensor: adds new final\n"
        "  windows as partitions and requests their runs.\n"
        f"  Ctrl-C, or kill -TERM {os.getpid()} (or -INT), stops everything.\n"
    )


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
