"""End to end: `dagster dev` (webserver + daemon) in a subprocess, a backfill of >= 20
partitions launched over GraphQL, tables compared with the chain, every process stopped.

Runs the demo's machinery (devtools.demo) with PostgreSQL for both the app tables and
Dagster's storage (dagster.yaml), and the demo itself as a smoke test on the embedded
default (SQLite + Dagster's local storage)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devtools.anvil import REPO_ROOT
from devtools.demo import DemoOptions, run_demo
from glisk_pipeline.db.migrate import upgrade

pytestmark = pytest.mark.slow


@pytest.fixture
def fresh_pg(fresh_databases: tuple[str, str]) -> tuple[str, str]:
    """fresh_databases with the app schema migrated."""
    upgrade(fresh_databases[0])
    return fresh_databases


def test_backfill_over_graphql_on_postgres(fresh_pg: tuple[str, str]) -> None:
    app_url, dagster_url = fresh_pg
    options = DemoOptions(
        batches=400,
        blocks=2200,
        partition_size=100,
        partitions_per_run=6,  # >= 4 runs: proves the multi_run backfill policy
        database_url=app_url,
        dagster_pg_url=dagster_url,
    )
    summary = run_demo(options, say=print)
    assert summary.problems == []
    assert summary.leftover_pids == []
    assert summary.partitions >= 20
    # Every run tagged with the backfill succeeded and every partition has a
    # materialization from them; Dagster's own status may still read REQUESTED (its
    # backfill daemon marks completion on a 30 s loop), never a failure.
    assert summary.backfill_ok
    assert summary.backfill_status in ("REQUESTED", "COMPLETED", "COMPLETED_SUCCESS")
    assert summary.runs == -(-summary.partitions // 6)
    assert summary.db_events == summary.chain_events == 400
    assert summary.db_tokens == summary.chain_tokens


def test_demo_smoke_on_the_embedded_default() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.demo",
            "--batches",
            "60",
            "--blocks",
            "500",
            "--partition-size",
            "100",
            "--partitions-per-run",
            "20",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK: the tables equal the chain" in result.stdout
    # a finished backfill reads as finished, and the summary is not interleaved with the
    # in-process mint_stats run's DEBUG lines
    assert "backfill      COMPLETED: all runs succeeded" in result.stdout
    assert "REQUESTED" not in result.stdout
    assert not [line for line in result.stderr.splitlines() if "mint_stats" in line]


def test_make_dev_names_and_writes_its_settings(tmp_path) -> None:
    from devtools.anvil import free_port

    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.demo", "--dev", "--port", str(free_port()),
         "--batches", "20", "--blocks", "120", "--partition-size", "100"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    try:
        banner: list[str] = []
        for line in proc.stdout:
            banner.append(line.rstrip("\n"))
            if line.startswith("Dagster UI:"):
                break
        env_line = next(line for line in banner if "also in " in line)
        env_file = Path(env_line.split("also in ")[1].split(":")[0])
        written = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        for name in ("DATABASE_URL", "RPC_URL", "GLISK_NFT_CONTRACT_ADDRESS", "GLISK_START_BLOCK"):
            assert f"  {name}={written[name]}" in banner
        assert written["RPC_URL"].startswith("http://127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def _processes_with_env(name: str, value: str) -> list[int]:
    """Pids of this user's live processes whose environment holds name=value."""
    wanted = f"{name}={value}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if wanted in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
    return found


def test_make_dev_started_from_a_script_stops_on_sigterm(tmp_path) -> None:
    """A non-interactive shell starts a background job with SIGINT ignored, and Dagster
    copies SIGINT's disposition to SIGTERM: started that way, `make dev` must still stop,
    every process of it, on SIGTERM to the PID its banner prints, with no SIGKILL."""
    from devtools.anvil import free_port

    log, port = tmp_path / "dev.log", free_port()
    script = (
        f"{sys.executable} -m devtools.demo --dev --port {port} --batches 20 --blocks 120 "
        f"--partition-size 100 >{log} 2>&1 & wait"
    )
    shell = subprocess.Popen(
        ["bash", "-c", script],
        cwd=REPO_ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        start_new_session=True,
    )
    home = "unknown yet"
    try:
        deadline = time.monotonic() + 120
        while "stops everything" not in (log.read_text() if log.exists() else ""):
            assert shell.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        banner = log.read_text()
        pid = int(banner.split("kill -TERM ")[1].split()[0].rstrip(","))
        # the UI's own words, and no psql pointed at a SQLite file
        assert "Catalog > mint_events" in banner and "Assets >" not in banner
        assert "DATABASE_URL=sqlite:" in banner and "psql" not in banner
        env_file = Path(banner.split("also in ")[1].split(":")[0])
        home = dict(line.split("=", 1) for line in env_file.read_text().splitlines())[
            "DAGSTER_HOME"
        ]
        with httpx.Client(timeout=5) as http:
            while True:  # webserver and daemon up: every process that must stop exists
                with contextlib.suppress(httpx.TransportError):
                    if http.get(f"http://127.0.0.1:{port}/server_info").status_code == 200:
                        break
                assert shell.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.25)
        assert len(_processes_with_env("DAGSTER_HOME", home)) >= 3
        os.kill(pid, signal.SIGTERM)
        assert shell.wait(timeout=90) == 0, log.read_text()[-3000:]
        assert "did not stop" not in log.read_text()
        assert _processes_with_env("DAGSTER_HOME", home) == []
    finally:  # on failure: what this test started, by pid
        for leftover in _processes_with_env("DAGSTER_HOME", home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
