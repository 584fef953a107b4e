"""The supply proof and the targeted repair on real anvil + PostgreSQL: the tables against
the contract's own nextTokenId(), what `glisk status` and the Dagster check say, and
`glisk repair` storing exactly the missing mints."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from dagster import AssetCheckSeverity, AssetSelection, instance_for_test, materialize
from sqlalchemy import Engine, select

from devtools.history import History, realistic_history
from devtools.oracle import compare_with_chain
from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.cli import recover_events, repair, status
from glisk_pipeline.db.schema import mint_events
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.settings import ConfigError, load_settings
from glisk_pipeline.verify.supply import prove
from tests.support.cli import GLISK, use
from tests.support.factories import delete_mints
from tests.support.faultproxy import FaultProxy
from tests.support.fixtures_chain import DevChain


@pytest.fixture
def history(devchain: DevChain) -> History:
    return realistic_history(
        devchain.anvil, devchain.glisk, devchain.decoy, n_batches=80, n_blocks=60, seed=15
    )


def recover_then_delete(monkeypatch, cli_env, history: History, engine: Engine, picks: list[int]):
    """Recover the whole history, then delete the mints at `picks` (indexes in token order)."""
    use(monkeypatch, cli_env)
    assert recover_events.main(["--from-block", "0"]) == 0
    mints = sorted(history.mints, key=lambda m: m.start_token_id)
    gone = [mints[i] for i in picks]
    delete_mints(engine, [m.start_token_id for m in gone])
    return gone


def proof_now(monkeypatch, cli_env, engine: Engine, **env: str):
    use(monkeypatch, cli_env, **env)
    settings = load_settings()
    with RpcClient.from_settings(settings) as client:
        final = client.final_block(settings.GLISK_CONFIRMATIONS)
        checkpoint = MintStore(engine, "0x" + "0" * 40).last_processed_block()
        return prove(client, engine, settings, final, checkpoint)


def test_healthy_history_passes_and_status_says_so(
    cli_env, history, devchain, pg_engine, monkeypatch, capsys
) -> None:
    use(monkeypatch, cli_env)
    assert recover_events.main(["--from-block", "0"]) == 0
    proof = proof_now(monkeypatch, cli_env, pg_engine)
    assert proof.consistent and not proof.advisory and not proof.failing
    assert proof.next_id == history.tokens_minted + 1 and proof.live_ids == history.tokens_minted
    # the alternative function gives the same number
    alt = proof_now(monkeypatch, cli_env, pg_engine, GLISK_SUPPLY_FUNCTION="totalSupply() + 1")
    assert alt.next_id == proof.next_id and alt.consistent
    capsys.readouterr()
    assert status.main(["--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["integrity"]["supply"]["consistent"] is True
    assert s["integrity"]["token_ids_contiguous"]["passed"] is True
    assert status.main(["--prometheus"]) == 0
    metrics = capsys.readouterr().out
    assert "glisk_supply_proof_ok 1" in metrics and "glisk_supply_missing_ids 0" in metrics


def test_a_bad_supply_function_is_a_config_error_naming_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("GLISK_SUPPLY_FUNCTION", "nextTokenId(uint256)")
    with pytest.raises(ConfigError, match="GLISK_SUPPLY_FUNCTION"):
        load_settings()


def test_deleted_rows_fail_naming_the_ids_and_repair_restores_exactly_them(
    cli_env, history, devchain, pg_engine, monkeypatch, capsys
) -> None:
    gone = recover_then_delete(monkeypatch, cli_env, history, pg_engine, [5, 30, -1])
    # two gaps inside, and the tail

    proof = proof_now(monkeypatch, cli_env, pg_engine)
    assert proof.failing
    assert [(r.first, r.last) for r in proof.missing] == [
        (m.start_token_id, m.start_token_id + m.quantity - 1) for m in gone
    ]
    capsys.readouterr()
    assert status.main([]) == 4  # failing: documented exit code
    out = capsys.readouterr().out
    assert f"ids {gone[0].start_token_id}-" in out and "run `glisk repair`" in out

    with FaultProxy(devchain.anvil.url) as proxy:
        use(monkeypatch, cli_env, RPC_URL=proxy.url)
        assert repair.main(["--dry-run"]) == 4
        assert compare_with_chain(pg_engine, devchain.mints(), with_stats=False) != []
        before = len(proxy.requests)
        assert repair.main([]) == 0
        out = capsys.readouterr().out
        getlogs = [r for r in proxy.requests[before:] if isinstance(r, list)]
    # three gaps of one batch each: 3 eth_getLogs queries through the client's guarded
    # path, each beside the last block's header and the node's head (an answer from a node
    # behind the head is refused)
    assert "Found 3 missing mints with 3 eth_getLogs queries by startTokenId" in out
    assert len(getlogs) == 3
    assert all(
        [c["method"] for c in batch] == ["eth_getLogs", "eth_getBlockByNumber", "eth_blockNumber"]
        for batch in getlogs
    )
    assert "Stored 3 mints" in out and "all present" in out
    assert compare_with_chain(pg_engine, devchain.mints(), with_stats=False) == []


def test_a_provider_that_drops_logs_is_refused_and_a_hole_fails_the_dagster_check(
    cli_env, history, devchain, pg_engine, monkeypatch, tmp_path, capsys
) -> None:
    from dagster import DagsterInstance

    from glisk_pipeline.defs.backfill.assets import mint_events as asset
    from glisk_pipeline.defs.backfill.supply_check import SUPPLY_MATCHES_CONTRACT
    from glisk_pipeline.defs.resources import ChainResource, DatabaseResource

    mints = sorted(history.mints, key=lambda m: m.start_token_id)
    dropped = [mints[10], mints[11]]  # one gap of two batches
    first, last = dropped[0].start_token_id, dropped[1].start_token_id + dropped[1].quantity - 1
    with FaultProxy(devchain.anvil.url) as proxy:
        proxy.drop_logs({m.start_token_id for m in dropped})
        use(monkeypatch, cli_env, RPC_URL=proxy.url, RPC_MAX_ATTEMPTS="2")
        # the answers do not tile the contract's counter: refused, nothing stored
        assert recover_events.main(["--from-block", "0"]) == 1
        assert proxy.dropped >= 2
    assert f"ids {first}-{last} missing in the answer" in capsys.readouterr().err
    assert compare_with_chain(pg_engine, [], with_stats=False) == []
    # the same hole arriving another way (rows lost after an honest recovery)
    use(monkeypatch, cli_env)
    assert recover_events.main(["--from-block", "0"]) == 0
    delete_mints(pg_engine, [m.start_token_id for m in dropped])
    resources = {
        "chain": ChainResource(
            rpc_url=devchain.anvil.url, network="LOCAL", contract_address=devchain.glisk,
            start_block=0, partition_size=10_000, confirmations=0,
        ),
        "database": DatabaseResource(
            database_url=cli_env["DATABASE_URL"],
            default_author_wallet=cli_env["GLISK_DEFAULT_AUTHOR_WALLET"],
        ),
    }  # fmt: skip
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as instance:
        result = materialize(
            [asset],
            selection=AssetSelection.checks(SUPPLY_MATCHES_CONTRACT.key),
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    assert f"ids {first}-{last}" in evaluation.metadata["missing_ranges"].text
    assert evaluation.metadata["partitions_to_rematerialize"].text == "000000000000-000000009999"
    assert "glisk repair" in evaluation.description
    # glisk status reads the check's latest result from the instance, and fails on it
    out = subprocess.run(
        [*GLISK, "status", "--json"],
        env={**cli_env, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 4, out.stderr
    s = json.loads(out.stdout)
    (check,) = [c for c in s["checks"] if c["name"] == "supply_matches_contract"]
    assert check["passed"] is False and check["severity"] == "ERROR"
    assert {"supply_matches_contract"} <= set(s["failing"])
    # repair: one gap of two batches = two rounds of one query
    use(monkeypatch, cli_env)
    assert repair.main([]) == 0
    assert compare_with_chain(pg_engine, devchain.mints(), with_stats=False) == []


def test_pruned_state_is_reported_and_compared_near_the_head(
    cli_env, history, devchain, pg_engine, monkeypatch
) -> None:
    use(monkeypatch, cli_env)
    assert recover_events.main(["--from-block", "0"]) == 0
    devchain.anvil.mine_empty(150)  # anvil keeps the state of the last 100 blocks only
    proof = proof_now(monkeypatch, cli_env, pg_engine, GLISK_CONFIRMATIONS="140")
    assert proof.advisory and proof.block == devchain.anvil.block_number() - 4
    assert "no state at the final block" in proof.notes[0]
    assert proof.consistent and not proof.failing
    # a mint missing in the middle of final history is still a data failure
    mints = sorted(history.mints, key=lambda m: m.start_token_id)
    delete_mints(pg_engine, [mints[3].start_token_id])
    proof = proof_now(monkeypatch, cli_env, pg_engine, GLISK_CONFIRMATIONS="140")
    assert proof.advisory and proof.failing
    assert [r.first for r in proof.missing] == [mints[3].start_token_id]


def test_first_id_is_the_counter_before_the_start_block(
    cli_env, devchain, pg_engine, monkeypatch
) -> None:
    before = realistic_history(
        devchain.anvil, devchain.glisk, devchain.decoy, n_batches=20, n_blocks=20, seed=2
    )
    start = devchain.anvil.block_number() + 1
    realistic_history(
        devchain.anvil, devchain.glisk, devchain.decoy, n_batches=20, n_blocks=20, seed=3
    )
    use(monkeypatch, cli_env, GLISK_START_BLOCK=str(start))
    assert recover_events.main(["--from-block", str(start)]) == 0
    proof = proof_now(monkeypatch, cli_env, pg_engine, GLISK_START_BLOCK=str(start))
    assert proof.first_id == before.tokens_minted + 1
    assert proof.consistent, proof.summary()
    # the state before the start block pruned, and the first mint after it deleted: the
    # first id comes from the first BatchMinted log instead, and the missing head shows
    devchain.anvil.mine_empty(150)
    first = before.tokens_minted + 1
    delete_mints(pg_engine, [first])
    proof = proof_now(monkeypatch, cli_env, pg_engine, GLISK_START_BLOCK=str(start))
    assert "no state at block" in proof.notes[0] and proof.first_id == first
    assert [r.first for r in proof.missing] == [first] and proof.failing


def unanswering_port() -> socket.socket:
    """A listening socket nobody accepts from: connects, then silence (a black hole)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    return sock


def test_status_with_the_chain_down_still_prints_the_database_and_names_the_endpoint(
    cli_env, history, pg_engine, monkeypatch, tmp_path
) -> None:
    from dagster import DagsterInstance

    from glisk_pipeline.windows import PARTITIONS_NAME, partition_key

    use(monkeypatch, cli_env)
    assert recover_events.main(["--from-block", "0"]) == 0
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    keys = [partition_key(a, a + 99) for a in range(0, 1600, 100)]
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
    with unanswering_port() as hole:
        port = hole.getsockname()[1]
        env = {
            **cli_env,
            "RPC_URL": f"http://127.0.0.1:{port}/v2/secret-key",
            "DAGSTER_HOME": str(home),
        }
        # deadline: the backfill's client would wait 30 s x 6 attempts here
        runs = [
            subprocess.run(
                [*GLISK, "status", *flag], env=env, capture_output=True, text=True, timeout=30
            )
            for flag in (["--json"], [])
        ]
    for out in runs:
        assert out.returncode == 1
        assert "secret-key" not in out.stdout + out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    s = json.loads(runs[0].stdout)
    assert s["unreachable"] == [f"http://127.0.0.1:{port}"]
    assert f"127.0.0.1:{port}" in s["problems"][0]
    assert s["rows"]["backfill"] == len(history.mints)
    assert s["checkpoint"]["last_processed_block"] == history.to_block
    assert s["integrity"]["token_ids_contiguous"]["passed"] is True
    # the Dagster facts are there too, with the cut list's full length beside it
    assert s["partitions"]["missing"] == 16 and len(s["partitions"]["missing_keys"]) == 10
    assert {c["name"] for c in s["checks"]} >= {"supply_matches_contract"}
    text = runs[1].stdout
    assert f"rows        webhook 0, backfill {len(history.mints)}" in text
    assert "… and 6 more" in text and "status      ERROR" in text


def test_cut_lists_say_how_many_were_left_out(capsys) -> None:
    from dagster import DagsterInstance

    from glisk_pipeline.cli.status_output import print_text
    from glisk_pipeline.defs.instance_status import partition_summary
    from glisk_pipeline.verify.status import empty_status
    from glisk_pipeline.windows import PARTITIONS_NAME, partition_key

    with instance_for_test() as instance:
        assert isinstance(instance, DagsterInstance)
        keys = [partition_key(a, a + 99) for a in range(0, 1600, 100)]
        instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
        parts = partition_summary(instance)
    assert parts["missing"] == 16 and len(parts["missing_keys"]) == 10
    s = empty_status()
    s["partitions"] = parts
    print_text(s, "OK")
    assert f"missing: {', '.join(keys[:10])}, … and 6 more" in capsys.readouterr().out
    # and in the checks' metadata
    from glisk_pipeline.defs.backfill.check_metadata import shown_text

    assert shown_text(keys).text.splitlines()[10:] == ["… and 6 more"]


def test_repair_through_a_provider_that_caps_the_block_range(
    cli_env, history, devchain, pg_engine, monkeypatch, capsys
) -> None:
    recover_then_delete(monkeypatch, cli_env, history, pg_engine, [7, 40])
    with FaultProxy(devchain.anvil.url) as proxy:
        proxy.limit_range(10, "alchemy")  # Alchemy's free tier: [start, final] is refused
        use(monkeypatch, cli_env, RPC_URL=proxy.url)
        capsys.readouterr()
        assert repair.main([]) == 0
    out = capsys.readouterr().out
    assert "refused the wide range: read the blocks around 2 gaps" in out
    assert compare_with_chain(pg_engine, devchain.mints(), with_stats=False) == []


def test_compare_ids_names_missing_extra_and_doubled_ids(engine: Engine) -> None:
    """The SQL side alone, on both dialects: rows against a contract range [first, next)."""
    from dataclasses import replace

    from glisk_pipeline.verify.supply import compare_ids, contiguity_breaks
    from tests.support.factories import make_records

    records = make_records(12, first_token=1, first_block=100)  # blocks 100-103
    ids = [(r.start_token_id, r.start_token_id + r.quantity - 1) for r in records]
    kept = [r for i, r in enumerate(records) if i not in (0, 5, 11)]  # head, middle, tail gone
    # a row of a lost fork holding record 7's ids again
    twin = replace(records[7], tx_hash="0x" + "f" * 64, block_number=104)
    MintStore(engine, "0x" + "0" * 40).store(kept, source="backfill")
    with engine.begin() as conn:  # the store refuses doubled ids; a corrupt table has them
        conn.execute(mint_events.insert().values(
            tx_hash=twin.tx_hash, log_index=0, block_number=104, block_hash=twin.block_hash,
            block_timestamp=select(mint_events.c.block_timestamp).limit(1).scalar_subquery(),
            contract_address=twin.contract_address, minter=twin.minter,
            author_wallet=twin.author_wallet, start_token_id=twin.start_token_id,
            quantity=twin.quantity, total_paid=twin.total_paid, source="webhook",
        ))  # fmt: skip
    # the contract says the last id is inside record 10: record 10's tail is extra
    next_id = ids[10][0] + 1
    live, missing, extra = compare_ids(engine, block=200, first=1, next_id=next_id, start_block=100)
    assert [(r.first, r.last) for r in missing] == [ids[0], ids[5]]
    assert missing[0].from_block == 100 and missing[1].from_block <= records[5].block_number
    assert [(r.first, r.last) for r in extra] == [ids[7], (ids[10][0] + 1, ids[10][1])] or [
        (r.first, r.last) for r in extra
    ] == [ids[7]]  # record 10 may be a single id
    gaps, overlaps = contiguity_breaks(engine, checkpoint=200)
    assert [(g.first, g.last) for g in gaps] == [ids[5]] and [
        (o.first, o.last) for o in overlaps
    ] == [ids[7]]
    assert live == sum(r.quantity for r in kept) + twin.quantity


@pytest.mark.parametrize(
    "message",
    [
        "missing trie node 8e1d5b1b0c4d (path ) <nil>",  # geth, erigon
        "historical state 0x1f2e... is not available",  # geth's path scheme
        "header not found",
        "BlockOutOfRangeError: block height is 306 but requested was 2",  # anvil
    ],
)
def test_state_unavailable_messages_are_recognised(message: str) -> None:
    from glisk_pipeline.chain.provider_errors import state_unavailable

    assert state_unavailable(message)
    assert not state_unavailable("execution reverted")


def test_an_eth_call_without_state_is_not_retried(devchain: DevChain) -> None:
    from glisk_pipeline.chain.provider_errors import StateUnavailable

    devchain.anvil.mine_empty(150)  # block 1's state is pruned (anvil keeps 100)
    with FaultProxy(devchain.anvil.url) as proxy, RpcClient(proxy.url, max_attempts=6) as client:
        with pytest.raises(StateUnavailable, match="eth_call at block 1"):
            client.eth_call(devchain.glisk, "0x75794a3c", 1)  # nextTokenId()
        assert proxy.count("eth_call") == 1
        head = devchain.anvil.block_number()
        assert int(client.eth_call(devchain.glisk, "0x75794a3c", head), 16) >= 1


def test_a_failed_dagster_check_fails_status_unless_status_evaluates_it_itself() -> None:
    from glisk_pipeline.cli.status import exit_code, judge_checks
    from glisk_pipeline.verify.status import empty_status

    def result(name: str, passed: bool, severity: str) -> dict[str, object]:
        return {"name": name, "status": "FAILED", "passed": passed, "severity": severity,
                "description": "d", "at": "2026-12-02T00:00:00+00:00", "run_id": "r"}  # fmt: skip

    s = empty_status()
    # an older failure of a check status has just evaluated itself (it passed): shown only
    s["checks"] = [result("supply_matches_contract", False, "ERROR")]
    judge_checks(s)
    assert exit_code(s) == 0
    s["checks"].append(result("partitions_cover_checkpoint", False, "WARN"))
    judge_checks(s)
    assert exit_code(s) == 0 and len(s["warnings"]) == 1
    s["checks"].append(result("tokens_match_quantity", False, "ERROR"))
    judge_checks(s)
    assert exit_code(s) == 4 and s["failing"] == ["tokens_match_quantity"]


def test_repair_through_a_lagging_node_stores_nothing_until_it_has_caught_up(
    cli_env, history, devchain, pg_engine, monkeypatch, capsys
) -> None:
    gone = recover_then_delete(monkeypatch, cli_env, history, pg_engine, [3, -1])
    devchain.anvil.mine_empty(5)
    with FaultProxy(devchain.anvil.url) as proxy:
        # eth_getLogs (and its batch) from a node 30 blocks behind; eth_call, heads current
        proxy.lag_logs(30)
        use(monkeypatch, cli_env, RPC_URL=proxy.url, RPC_MAX_ATTEMPTS="2")
        capsys.readouterr()
        assert repair.main([]) == 1
        err = capsys.readouterr().err
        assert "does not have block" in err and "Traceback" not in err
        assert len(compare_with_chain(pg_engine, devchain.mints(), with_stats=False)) > 0
        assert proxy.lagging_answers == 2  # asked again once, as RPC_MAX_ATTEMPTS says
        # the same guarded path as every backfill: it asks again until the node caught up
        proxy.lag_logs(30, catch_up_after=1)
        assert repair.main([]) == 0
    assert f"Stored {len(gone)} mints" in capsys.readouterr().out
    assert compare_with_chain(pg_engine, devchain.mints(), with_stats=False) == []
