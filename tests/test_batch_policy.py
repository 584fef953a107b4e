"""JSON-RPC batch policies and completeness without batches (real anvil behind the fault
proxy, real PostgreSQL, the CLI in process, the asset through real Dagster):
- every way real endpoints refuse a batch is read as what they accept, remembered, and
  the work is split or sent singly: `glisk recover`, the asset, `glisk repair` and
  `glisk status` all serve with index = chain, and say which proof they used;
- an answer counts only with proof it is complete, even where a batch's items reach
  different nodes: a log index lagging its own headers, or missing logs, is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from dagster import instance_for_test, materialize
from sqlalchemy import Engine

from devtools.history import History, realistic_history
from devtools.oracle import compare_with_chain
from glisk_pipeline.chain.batch_policy import DEFAULT_BATCH_LIMIT, BatchPolicy
from glisk_pipeline.chain.provider_errors import BatchRefusal, batch_refusal, response_too_large
from glisk_pipeline.chain.rpc import ProviderLagError, RpcClient
from glisk_pipeline.cli import recover_events, repair, status
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.defs.backfill.assets import mint_events as mint_events_asset
from glisk_pipeline.sync.backfill import backfill_range
from glisk_pipeline.windows import PARTITIONS_NAME, partition_key
from tests.support.cli import use
from tests.support.dagster_runs import range_tags
from tests.support.factories import delete_mints
from tests.support.faultproxy import FaultProxy
from tests.support.fixtures_chain import DevChain
from tests.support.pipeline_support import local_resources

SENT = ["eth_getLogs", "eth_getBlockByNumber", "eth_blockNumber"]


# --- the refusals, as endpoints word them -------------------------------------------------


@pytest.mark.parametrize(
    ("status_code", "body", "expected"),
    [
        pytest.param(
            200,
            [{"jsonrpc": "2.0", "id": None, "error": {"code": -32600,
              "message": 'Too many ["eth_getLogs"] methods in the batch'}}],
            BatchRefusal('Too many ["eth_getLogs"] methods in the batch', methods=("eth_getLogs",)),
            id="ankr-gnosis-method-in-batch",
        ),
        pytest.param(
            200,
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32000,
             "message": "batch limit 2 exceeded: 3 requests given"}},
            BatchRefusal("batch limit 2 exceeded: 3 requests given", limit=2),
            id="erigon-batch-limit",
        ),
        pytest.param(
            200,
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32600,
             "message": "batch requests are not supported"}},
            BatchRefusal("batch requests are not supported", none=True),
            id="no-batches",
        ),
        pytest.param(
            200,
            [{"jsonrpc": "2.0", "id": None, "error": {"code": -32600,
              "message": "Unsupported methods [eth_blockNumber] in batch call"}}],
            BatchRefusal(
                "Unsupported methods [eth_blockNumber] in batch call", methods=("eth_blockNumber",)
            ),
            id="alchemy-unsupported-in-batch",
        ),
        pytest.param(413, None, BatchRefusal("HTTP 413 to a batch of 3"), id="http-413"),
        pytest.param(400, None, BatchRefusal("HTTP 400 to a batch of 3"), id="http-400"),
    ],
)  # fmt: skip
def test_batch_refusals_are_read_as_what_the_endpoint_accepts(
    status_code: int, body: object, expected: BatchRefusal
) -> None:
    assert batch_refusal(status_code, body, SENT) == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([{"jsonrpc": "2.0", "id": 0, "result": []}] * 3, id="served"),
        pytest.param(
            {"jsonrpc": "2.0", "id": None, "error": {"code": 429,
             "message": "Your app has exceeded its compute units per second capacity"}},
            id="rate-limit-is-not-a-policy",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32011,
             "message": "no backend is currently healthy to serve traffic"}},
            id="outage-is-not-a-policy",
        ),
    ],
)  # fmt: skip
def test_what_is_not_a_batch_refusal(body: object) -> None:
    assert batch_refusal(200, body, SENT) is None


def test_a_policy_only_narrows_and_ends() -> None:
    policy = BatchPolicy("http://node")
    assert policy.batchable(SENT)
    policy.learn(BatchRefusal("batch too large"), sent=3)  # no figure stated: halve
    assert policy.limit == 1 and not policy.batchable(SENT[:2])
    policy = BatchPolicy("http://node")
    policy.learn(BatchRefusal("x", methods=("eth_getLogs",)), sent=3)
    assert not policy.batchable(SENT) and policy.batchable(SENT[1:])
    policy.learn(BatchRefusal("x", limit=500), sent=600)
    assert policy.limit == DEFAULT_BATCH_LIMIT  # a stated limit never widens it
    assert response_too_large({"code": -32003, "message": "response too large"})


# --- end to end through the fault proxy ---------------------------------------------------

# (proxy style, its figure, what the client learns)
POLICIES = [
    pytest.param("no_getlogs", 0, "sent singly: eth_getLogs", id="getlogs-refused-in-batch"),
    pytest.param("limit", 10, "batches of at most 10 calls", id="erigon-limit-10"),
    pytest.param("none", 0, "every call is sent on its own", id="no-batches"),
    pytest.param("http413", 10, "batches of at most", id="http-413-past-10"),
    pytest.param("response_size", 20_000, "batches of at most", id="geth-response-size"),
]


@pytest.fixture
def history(devchain: DevChain) -> History:
    # blocks with logs well beyond one batch of headers (logs lack blockTimestamp below)
    return realistic_history(
        devchain.anvil, devchain.glisk, devchain.decoy, n_batches=150, n_blocks=120, seed=24
    )


@pytest.fixture
def proxy(devchain: DevChain) -> Iterator[FaultProxy]:
    with FaultProxy(devchain.anvil.url) as p:
        p.strip_timestamps = True  # as many nodes send them: headers must be read
        yield p


@pytest.mark.parametrize(("style", "n", "learned"), POLICIES)
def test_recover_status_and_repair_serve_behind_every_batch_policy(
    cli_env, history, devchain, pg_engine, proxy, monkeypatch, capsys, style, n, learned
) -> None:
    proxy.batch_policy(style, n)
    use(monkeypatch, cli_env, RPC_URL=proxy.url)
    assert recover_events.main(["--from-block", "0"]) == 0
    out = capsys.readouterr().out
    assert compare_with_chain(pg_engine, devchain.mints(), with_stats=False) == []
    assert proxy.batch_refusals >= 1
    assert "by the contract's nextTokenId()" in out and learned in out
    assert "Supply proof at block" in out and "all present" in out

    mints = sorted(history.mints, key=lambda m: m.start_token_id)
    delete_mints(pg_engine, [mints[7].start_token_id, mints[-1].start_token_id])
    assert status.main(["--json"]) == 4
    s = json.loads(capsys.readouterr().out)
    assert s["integrity"]["supply"]["missing_ids"] == mints[7].quantity + mints[-1].quantity
    assert repair.main([]) == 0
    assert compare_with_chain(pg_engine, devchain.mints(), with_stats=False) == []
    capsys.readouterr()
    assert status.main([]) == 0


def test_the_asset_materializes_two_windows_without_batches(
    devchain: DevChain, pg_engine: Engine, pg_url: str, proxy: FaultProxy, history: History
) -> None:
    proxy.batch_policy("none")
    size = 50  # two windows inside the history (keys must be final)
    start = history.from_block // size * size
    keys = [partition_key(lo, lo + size - 1) for lo in (start, start + size)]
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
        resources = local_resources(devchain, pg_url, start, size, rpc_url=proxy.url)
        result = materialize(
            [mint_events_asset], instance=instance, resources=resources, tags=range_tags(keys)
        )
    assert result.success
    in_windows = [m for m in devchain.mints() if m.block_number < start + 2 * size]
    assert compare_with_chain(pg_engine, in_windows, with_stats=False) == []
    materializations = result.asset_materializations_for_node("mint_events")
    proofs = {m.partition: m.metadata["completeness_proof"].value for m in materializations}
    assert set(proofs) == set(keys)
    assert all(p.startswith("supply x") for p in proofs.values()), proofs


@pytest.mark.parametrize("batches", [True, False], ids=["batched", "no-batches"])
def test_a_log_index_lagging_its_own_headers_is_refused(
    devchain: DevChain, pg_engine: Engine, proxy: FaultProxy, history: History, batches: bool
) -> None:
    # The header in the logs' own batch is current (a proxy split the batch, or the node's
    # log index lags its chain): only the contract's counter shows the missing tail.
    devchain.anvil.mine_empty(5)
    proxy.lag_index(30)
    if not batches:
        proxy.batch_policy("none")
    store = MintStore(pg_engine, "0x" + "0" * 40)
    head = devchain.anvil.block_number()
    with RpcClient(proxy.url, backoff_base=0.01, max_attempts=2) as client:
        with pytest.raises(ProviderLagError, match="the contract counted ids up to"):
            backfill_range(client, store, devchain.glisk, 0, head)
        assert store.last_processed_block() is None
        assert compare_with_chain(pg_engine, [], with_stats=False) == []
        proxy.lag_index(None)  # caught up
        report = backfill_range(client, store, devchain.glisk, 0, head)
    assert set(report.proofs) == {"supply"}
    assert compare_with_chain(pg_engine, devchain.mints(), with_stats=False) == []


def test_a_node_missing_the_newest_log_is_refused(
    cli_env, devchain: DevChain, pg_engine: Engine, proxy: FaultProxy, history: History,
    monkeypatch, capsys,
) -> None:  # fmt: skip
    newest = max(history.mints, key=lambda m: m.start_token_id)
    proxy.drop_logs({newest.start_token_id})
    use(monkeypatch, cli_env, RPC_URL=proxy.url, RPC_MAX_ATTEMPTS="2")
    assert recover_events.main(["--from-block", "0"]) == 1
    err = capsys.readouterr().err
    assert f"counted ids up to {newest.start_token_id + newest.quantity - 1}" in err
    assert MintStore(pg_engine, "0x" + "0" * 40).last_processed_block() is None
