"""The `glisk` operator command against anvil, PostgreSQL and a real Dagster instance:
status (lags, liveness, exit codes, partitions), authors (add, list, import), recover's
dry run (what is missing, present or different), and the CLI's usage-error contract."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eth_utils import to_checksum_address
from sqlalchemy import Engine, delete, func, select, update

from devtools.history import History, realistic_history
from devtools.local_chain import DEFAULT_AUTHOR
from glisk_pipeline.cli import authors as authors_cli
from glisk_pipeline.cli import recover_events, status
from glisk_pipeline.db.schema import authors, mint_events, tokens, webhook_blocks
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.windows import partition_key
from tests.support.cli import GLISK, use
from tests.support.factories import make_records
from tests.support.fixtures_chain import DevChain


@pytest.fixture
def small_history(devchain: DevChain) -> History:
    return realistic_history(
        devchain.anvil, devchain.glisk, devchain.decoy, n_batches=120, n_blocks=120, seed=4
    )


# --- usage errors: exit 1, one line naming the argument (2 means "partial") ---------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--from-block", "abc"], "--from-block"),
        (["--from-block", "-5"], "--from-block"),
        (["--to-block", "-1"], "--to-block"),
        (["--to-block", "soon"], "--to-block"),
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "x"], "--batch-size"),
    ],
)
def test_usage_errors_exit_1_with_one_line(capsys, args, needle) -> None:
    with pytest.raises(SystemExit) as exit_:
        recover_events.main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_from_block_past_to_block_is_an_error(cli_env, small_history, monkeypatch, capsys) -> None:
    use(monkeypatch, cli_env)
    assert recover_events.main(["--from-block", "100", "--to-block", "50"]) == 1
    err = capsys.readouterr().err
    assert "--from-block 100" in err and "--to-block 50" in err


def test_schema_not_at_head_goes_to_stderr(cli_env, monkeypatch, capsys, tmp_path) -> None:
    use(monkeypatch, cli_env, DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    assert recover_events.main(["--from-block", "0"]) == 1
    out = capsys.readouterr()
    assert "latest revision" in out.err and "latest revision" not in out.out


# --- recover --dry-run ----------------------------------------------------------------------


def test_dry_run_reports_missing_differing_and_foreign_rows(
    cli_env, small_history, devchain, pg_engine, monkeypatch, capsys
) -> None:
    use(monkeypatch, cli_env)
    end = str(small_history.to_block)
    assert recover_events.main(["--from-block", "0", "--to-block", end]) == 0
    capsys.readouterr()
    with pg_engine.begin() as conn:
        rows = conn.execute(
            select(mint_events.c.id, mint_events.c.block_number).order_by(mint_events.c.id)
        ).all()
        gone, changed = rows[3], rows[10]
        conn.execute(delete(tokens).where(tokens.c.mint_event_id == gone.id))
        conn.execute(delete(mint_events).where(mint_events.c.id == gone.id))
        conn.execute(update(mint_events).where(mint_events.c.id == changed.id).values(quantity=999))
    # a live row of a lost fork, inside the range, with token ids past the chain's
    (foreign,) = make_records(1, first_token=10**6, first_block=small_history.to_block - 1)
    MintStore(pg_engine, DEFAULT_AUTHOR).store([foreign], source="webhook")
    with pg_engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(mint_events)).scalar_one()

    assert recover_events.main(["--from-block", "0", "--to-block", end, "--dry-run"]) == 4
    out = capsys.readouterr().out
    n = len(small_history.mints)
    assert f"{n} logs on chain: {n - 2} present, 1 missing, 1 differ; 1 live rows not on chain" in (
        out
    )
    assert f"missing: block {gone.block_number} " in out
    assert "differs: quantity" in out
    assert f"not on chain: block {foreign.block_number} tx {foreign.tx_hash}" in out
    blocks = sorted({gone.block_number, changed.block_number, foreign.block_number})
    assert f"Blocks to recover (3): {', '.join(map(str, blocks))}" in out
    keys = sorted({partition_key(b - b % 10_000, b - b % 10_000 + 9_999) for b in blocks})
    assert f"Partitions to re-materialize ({len(keys)}): {', '.join(keys)}" in out
    assert f"Run: glisk recover --from-block {blocks[0]} --to-block {blocks[-1]}" in out
    assert "glisk repair" not in out  # rows differ: only a recover reconciles them
    with pg_engine.connect() as conn:  # read-only
        assert conn.execute(select(func.count()).select_from(mint_events)).scalar_one() == before


def test_dry_run_of_a_complete_range_says_nothing_to_recover(
    cli_env, small_history, monkeypatch, capsys
) -> None:
    use(monkeypatch, cli_env)
    assert recover_events.main(["--from-block", "0"]) == 0
    capsys.readouterr()
    assert recover_events.main(["--from-block", "0", "--dry-run", "-v"]) == 0
    out = capsys.readouterr().out
    n = len(small_history.mints)
    assert f"{n} logs on chain: {n} present, 0 missing" in out and "chunk 0 - " in out
    assert "Nothing to recover" in out


# --- authors ----------------------------------------------------------------------------------


def authors_rows(engine: Engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                authors.c.wallet_address,
                authors.c.twitter_handle,
                authors.c.farcaster_handle,
                authors.c.prompt_text,
            )
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_authors_add_update_and_list(cli_env, pg_engine, monkeypatch, capsys) -> None:
    use(monkeypatch, cli_env)
    wallet = to_checksum_address("0x" + "ab" * 20)  # mixed case, a valid EIP-55 checksum
    assert authors_cli.main(["add", wallet, "--twitter", "alice", "--prompt", "a cat"]) == 0
    assert "registered author " + wallet.lower() in capsys.readouterr().out
    # re-adding with one field updates it and keeps the others
    assert authors_cli.main(["add", wallet.lower(), "--farcaster", "alice.eth"]) == 0
    assert "updated" in capsys.readouterr().out
    assert authors_rows(pg_engine)[wallet.lower()] == ("alice", "alice.eth", "a cat")
    assert authors_cli.main(["list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["wallet_address"] == wallet.lower() and listed["twitter_handle"] == "alice"
    assert authors_cli.main(["add", "0x12"]) == 1
    assert "wallet_address" in capsys.readouterr().err


def test_authors_import_is_idempotent_and_all_or_nothing(
    cli_env, pg_engine, monkeypatch, capsys, tmp_path: Path
) -> None:
    use(monkeypatch, cli_env)
    good = tmp_path / "authors.csv"
    good.write_text(
        "wallet,twitter,prompt\n"
        f"0x{'AA' * 20},alice,a cat\n"
        f"0x{'bb' * 20},,a dog\n"
        f"0x{'aa' * 20},alice,a cat\n"  # the same wallet again, identical: fine
    )
    assert authors_cli.main(["import", str(good)]) == 0
    assert "imported 2 authors: 2 new" in capsys.readouterr().out
    assert authors_cli.main(["import", str(good)]) == 0
    assert "imported 2 authors: 0 new, 2 already registered" in capsys.readouterr().out
    assert authors_rows(pg_engine)["0x" + "aa" * 20] == ("alice", None, "a cat")

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "wallet_address,twitter_handle\n"
        f"0x{'cc' * 20},carol\n"
        "0x12,dave\n"
        f"0x{'dd' * 20},e\x00ve\n"
        f"0x{'cc' * 20},someone-else\n"
    )
    assert authors_cli.main(["import", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].strip() for line in err[:3]] == ["line 3", "line 4", "line 5"]
    assert "nothing imported: 3 problem(s)" in err[-1]
    assert "0x" + "cc" * 20 not in authors_rows(pg_engine)  # nothing half-imported


# --- status -----------------------------------------------------------------------------------


def deliver(pg_engine: Engine, block: int, block_hash: str, at: datetime | None = None) -> None:
    """A webhook delivery for `block` (heartbeat) through the store, arriving at `at`."""
    MintStore(pg_engine, DEFAULT_AUTHOR).store_block_delivery(
        block_number=block, block_hash=block_hash, sequence_number=block, records=[]
    )
    if at is not None:
        with pg_engine.begin() as conn:
            conn.execute(update(webhook_blocks).values(received_at=at))


def test_status_reports_lags_and_exits_3_past_a_threshold(
    cli_env, small_history, devchain, pg_engine, monkeypatch, capsys
) -> None:
    use(monkeypatch, cli_env, GLISK_CONFIRMATIONS="20")
    head = devchain.anvil.block_number()
    assert recover_events.main([]) == 1  # no checkpoint yet: names --from-block
    assert recover_events.main(["--from-block", "0"]) == 0  # up to the final block
    block = devchain.anvil.rpc("eth_getBlockByNumber", [hex(head - 2), False])
    deliver(pg_engine, head - 2, block["hash"])
    capsys.readouterr()

    assert status.main(["--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["chain"]["head"] == head and s["chain"]["final"] == head - 20
    assert s["checkpoint"]["last_processed_block"] == head - 20
    assert s["checkpoint"]["behind_head_blocks"] == 20
    times = [
        int(devchain.anvil.rpc("eth_getBlockByNumber", [hex(b), False])["timestamp"], 16)
        for b in (head - 20, head)
    ]
    assert s["checkpoint"]["behind_head_seconds"] == times[1] - times[0] > 0
    assert s["webhook"]["last_block"] == head - 2 and s["webhook"]["behind_head_blocks"] == 2
    assert s["webhook"]["last_delivery_age_seconds"] < 300
    final_mints = sum(1 for m in small_history.mints if m.block_number <= head - 20)
    assert s["rows"] == {"webhook": 0, "backfill": final_mints, "removed": 0}
    assert s["partitions"] is None and s["problems"] == []

    # the chain moves on, the checkpoint does not: past GLISK_LAG_ERROR_BLOCKS
    devchain.anvil.mine_empty(50)
    use(monkeypatch, cli_env, GLISK_CONFIRMATIONS="20", GLISK_LAG_ERROR_BLOCKS="40")
    assert status.main([]) == 3
    out = capsys.readouterr().out
    assert "LAGGING     checkpoint 50 blocks behind the final block" in out

    # the webhook's last delivery is old while the chain advanced: silent
    deliver(pg_engine, head - 2, block["hash"], at=datetime.now(UTC) - timedelta(minutes=10))
    monkeypatch.delenv("GLISK_LAG_ERROR_BLOCKS")
    use(monkeypatch, cli_env, GLISK_CONFIRMATIONS="20", GLISK_WEBHOOK_SILENCE_SECONDS="300")
    assert status.main(["--json"]) == 3
    (problem,) = json.loads(capsys.readouterr().out)["problems"]
    assert problem.startswith("webhook silent: no webhook delivery for 6")
    assert "advanced 52 blocks" in problem


def test_status_errors_are_one_line(cli_env, monkeypatch, capsys) -> None:
    use(monkeypatch, cli_env, RPC_URL="http://127.0.0.1:9", RPC_MAX_ATTEMPTS="1")
    assert status.main([]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_glisk_status_reads_partitions_from_the_dagster_instance(
    cli_env, small_history, devchain, pg_engine, tmp_path: Path, monkeypatch
) -> None:
    from dagster import DagsterInstance, materialize

    from glisk_pipeline.defs.backfill.assets import mint_events as mint_events_asset
    from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
    from glisk_pipeline.windows import PARTITIONS_NAME, partition_key

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    head = devchain.anvil.block_number()
    keys = [partition_key(a, a + 24) for a in range(0, head - 24, 25)]
    assert len(keys) >= 3

    def resources(rpc_url: str) -> dict[str, object]:
        chain = ChainResource(
            rpc_url=rpc_url, network="LOCAL", contract_address=devchain.glisk,
            start_block=0, partition_size=25, confirmations=0,
        )  # fmt: skip
        database = DatabaseResource(
            database_url=cli_env["DATABASE_URL"], default_author_wallet=DEFAULT_AUTHOR
        )
        return {"chain": chain, "database": database}

    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
        ok = materialize(
            [mint_events_asset],
            instance=instance,
            resources=resources(devchain.anvil.url),
            partition_key=keys[0],
        )
        assert ok.success
        monkeypatch.setenv("RPC_MAX_ATTEMPTS", "1")
        failed = materialize(  # the node is unreachable for this run: it fails
            [mint_events_asset], instance=instance, resources=resources("http://127.0.0.1:9"),
            partition_key=keys[1], raise_on_error=False,
        )  # fmt: skip
        assert not failed.success

    out = subprocess.run(
        [*GLISK, "status", "--json"],
        env={**cli_env, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode in (0, 3), out.stderr
    parts = json.loads(out.stdout)["partitions"]
    assert parts["added"] == len(keys)
    assert (parts["materialized"], parts["failed"]) == (1, 1)
    assert parts["missing"] == len(keys) - 2 and parts["failed_keys"] == [keys[1]]


def test_glisk_lists_its_commands() -> None:
    out = subprocess.run([*GLISK, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for name in ("status", "authors", "recover"):
        assert f"  {name}" in out.stdout


def test_tip_range_reads_above_the_checkpoint_with_an_overlap_and_a_cap() -> None:
    from glisk_pipeline.sync.tip import MAX_BLOCKS_PER_FILL, REORG_OVERLAP, tip_range

    assert tip_range(head=500, checkpoint=None, start_block=100, filled_to=None) == (100, 500)
    assert tip_range(head=500, checkpoint=299, start_block=100, filled_to=None) == (300, 500)
    # the next tick re-reads a little below where the last one stopped
    assert tip_range(head=900, checkpoint=299, start_block=100, filled_to=500) == (
        500 + 1 - REORG_OVERLAP,
        900,
    )
    assert tip_range(head=299, checkpoint=299, start_block=100, filled_to=None) is None
    low, high = tip_range(head=10**7, checkpoint=0, start_block=0, filled_to=None)
    assert high - low + 1 == MAX_BLOCKS_PER_FILL
