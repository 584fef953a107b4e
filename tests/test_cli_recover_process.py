"""The recovery CLI as an operator runs it: a subprocess against anvil and PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from devtools.history import History, realistic_history
from devtools.local_chain import DEFAULT_AUTHOR
from devtools.oracle import chain_rows, table_rows, token_ids
from glisk_pipeline.cli import recover_events
from glisk_pipeline.db.schema import mint_events
from tests.support.fixtures_chain import DevChain

CLI = [sys.executable, "-m", "glisk_pipeline.cli.recover_events"]


@pytest.fixture
def history(devchain: DevChain) -> History:
    return realistic_history(
        devchain.anvil, devchain.glisk, devchain.decoy, n_batches=600, n_blocks=400, seed=9
    )


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return cli_env


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_full_run_equals_chain(env, history, devchain, pg_engine) -> None:
    out = run(env, "--from-block", "0", "--to-block", str(history.to_block), "--batch-size", "100")
    assert out.returncode == 0, out.stderr
    n = history.to_block // 100 + 1
    assert f"Processing blocks 0 - 99 (batch 1/{n})" in out.stdout
    assert f"{len(history.mints)} events found, {len(history.mints)} stored" in out.stdout
    assert table_rows(pg_engine) == chain_rows(devchain.mints())
    # a second run without --from-block resumes after the checkpoint: nothing left to do
    again = run(env, "--to-block", str(history.to_block))
    assert again.returncode == 0 and "Nothing to do" in again.stdout


def test_dry_run_writes_nothing(env, history, pg_engine) -> None:
    out = run(env, "--from-block", "0", "--dry-run", "-v")
    assert out.returncode == 4, out.stderr  # something is missing: documented exit 4
    n = len(history.mints)
    assert f"{n} logs on chain: 0 present, {n} missing, 0 differ" in out.stdout
    assert "chunk 0 - " in out.stdout
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mint_events)).scalar_one() == 0


def test_interrupt_then_resume_without_gap_or_duplicate(env, history, devchain, pg_engine) -> None:
    proc = subprocess.Popen(
        [*CLI, "--from-block", "0", "--to-block", str(history.to_block), "--batch-size", "4"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = 0
    for line in proc.stdout:
        seen += line.startswith("Processing blocks")
        if seen == 10:
            proc.send_signal(signal.SIGINT)
            break
    proc.communicate(timeout=60)
    assert proc.returncode == 2
    partial = len(table_rows(pg_engine))
    assert 0 < partial < len(history.mints)
    resumed = run(env, "--to-block", str(history.to_block), "--batch-size", "100")
    assert resumed.returncode == 0, resumed.stderr
    first = int(resumed.stdout.split("Recovering blocks ")[1].split()[0])
    assert first > 0  # resumed from the checkpoint, not from scratch
    assert table_rows(pg_engine) == chain_rows(devchain.mints())
    assert token_ids(pg_engine) == list(range(1, history.tokens_minted + 1))


@pytest.mark.parametrize(
    ("changes", "args", "code", "needle"),
    [
        ({}, [], 1, "--from-block"),
        ({"GLISK_NFT_CONTRACT_ADDRESS": "0x12"}, ["--from-block", "0"], 1, "GLISK_NFT_CONTRACT"),
        (
            {"NETWORK": "BASE_MAINNET", "GLISK_ALLOW_START_BLOCK_ZERO": "true"},
            ["--from-block", "0"],
            1,
            "8453",
        ),
        ({}, ["--from-block", "0", "--to-block", "99999999"], 1, "beyond the chain head"),
        (
            {"DATABASE_URL": "postgresql://postgres:pw-secret@127.0.0.1:9/x"},
            ["--from-block", "0"],
            1,
            "database",
        ),
        (
            {"RPC_URL": "http://127.0.0.1:9", "RPC_MAX_ATTEMPTS": "2"},
            ["--from-block", "0"],
            1,
            "gave up",
        ),
    ],
)
def test_errors_and_exit_codes(
    env, history, monkeypatch, capsys, changes, args, code, needle
) -> None:
    # in-process: the same main() as the subprocess runs, without 2 s of imports per case
    for key, value in {**env, **changes}.items():
        monkeypatch.setenv(key, value)
    assert recover_events.main(args) == code
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and "pw-secret" not in err


def test_bad_argument_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        recover_events.main(["--to-block", "soon"])
    # 1, not argparse's 2: the CLI's contract reserves 2 for "partial"
    assert exit_.value.code == 1 and "--to-block" in capsys.readouterr().err


def test_blocks_past_the_final_head_are_added_but_not_checkpointed(
    env, history, devchain, pg_engine
) -> None:
    from glisk_pipeline.db.store import MintStore

    env = {**env, "GLISK_CONFIRMATIONS": "100"}
    out = run(env, "--from-block", "0", "--to-block", "latest", "--batch-size", "1000")
    assert out.returncode == 0, out.stderr
    assert table_rows(pg_engine) == chain_rows(devchain.mints())  # everything added
    checkpoint = MintStore(pg_engine, DEFAULT_AUTHOR).last_processed_block()
    assert checkpoint == devchain.anvil.block_number() - 100  # only the final part
    again = run(env)  # default --to-block final: nothing left
    assert again.returncode == 0 and "Nothing to do" in again.stdout
