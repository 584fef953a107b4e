"""The RPC client against anvil behind a fault-injecting proxy: whatever the provider
does, the fetched set equals the chain, with the expected retries."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.history import History, realistic_history
from devtools.oracle import chain_logs
from glisk_pipeline.chain.decoder import BATCH_MINTED_TOPIC0
from glisk_pipeline.chain.rpc import Kind, RpcClient, RpcError, classify, split_chunk
from tests.support.faultproxy import FaultProxy
from tests.support.fixtures_chain import DevChain


@pytest.fixture
def history(devchain: DevChain) -> History:
    return realistic_history(
        devchain.anvil, devchain.glisk, devchain.decoy, n_batches=1_500, n_blocks=600, seed=11
    )


@pytest.fixture
def proxy(devchain: DevChain) -> Iterator[FaultProxy]:
    with FaultProxy(devchain.anvil.url) as p:
        yield p


def fetch(client: RpcClient, contract: str, history: History) -> list[tuple[str, str]]:
    chunks = list(
        client.iter_logs(contract, BATCH_MINTED_TOPIC0, history.from_block, history.to_block)
    )
    # chunks tile the range exactly: no gap, no overlap
    assert chunks[0].from_block == history.from_block and chunks[-1].to_block == history.to_block
    assert all(a.to_block + 1 == b.from_block for a, b in itertools.pairwise(chunks))
    return [(log["transactionHash"], log["logIndex"]) for c in chunks for log in c.logs]


def truth(devchain: DevChain, history: History) -> list[tuple[str, str]]:
    logs = chain_logs(devchain.anvil, devchain.glisk, history.from_block, history.to_block)
    return [(log["transactionHash"], log["logIndex"]) for log in logs]


def client_for(proxy: FaultProxy, **kw) -> RpcClient:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("timeout", 1.0)
    return RpcClient(proxy.url, **kw)


@pytest.mark.parametrize("style", ["alchemy", "infura"])
def test_too_many_results_follows_suggested_range(devchain, history, proxy, style) -> None:
    proxy.limit_results(300, style)
    with client_for(proxy) as client:
        got = fetch(client, devchain.glisk, history)
        assert got == truth(devchain, history)
        assert client.stats.shrinks >= 1 and client.stats.retries == 0
    assert len(got) == len(history.mints) >= 1_500


@pytest.mark.parametrize("style", ["alchemy", "infura", "quicknode", "base"])
def test_block_range_cap_is_learned(devchain, history, proxy, style) -> None:
    proxy.limit_range(50, style)
    with client_for(proxy) as client:
        assert fetch(client, devchain.glisk, history) == truth(devchain, history)
        calls = proxy.count("eth_getLogs")
    span = history.to_block - history.from_block + 1
    errors = proxy.faults.count("range")
    if style == "base":
        # no number in the message: halving finds a working span (>= half the real limit)
        # in log2 steps and keeps it as the ceiling
        assert errors <= 6
        assert calls - errors <= span // 25 + 2
    else:
        # the stated cap becomes the ceiling: one error, then full-width chunks
        assert errors == 1
        assert calls - errors <= span // 50 + 2


def test_retries_every_transient_fault_then_succeeds(devchain, history, proxy) -> None:
    faults = ("429", "rpc429", "503", "timeout", "reset", "truncate", "nobackend")
    proxy.script(*faults)
    with client_for(proxy, max_attempts=len(faults) + 1) as client:
        assert fetch(client, devchain.glisk, history) == truth(devchain, history)
        # a read timeout on a range wider than a block narrows it instead of a retry
        assert client.stats.retries == len(faults) - 1 and client.stats.shrinks == 1
        assert client.stats.slept_s >= 1.0  # the 429's Retry-After: 1 was honoured
    assert proxy.faults[: len(faults)] == list(faults)


def test_a_read_timeout_on_a_wide_range_narrows_it(devchain, history, proxy) -> None:
    # Every eth_getLogs over more than 50 blocks answers after the client's timeout: the
    # same width retried would time out forever.
    proxy.limit_range(50, "slow")
    with client_for(proxy, timeout=0.3, max_attempts=2) as client:
        assert fetch(client, devchain.glisk, history) == truth(devchain, history)
        assert client.stats.shrinks >= 1 and client.stats.retries == 0
        assert client.stats.chunk_size <= 50  # kept as a ceiling: no timeout per success


def test_gives_up_after_bounded_attempts_naming_the_range(devchain, history, proxy) -> None:
    proxy.script(*["503"] * 10)
    with client_for(proxy, max_attempts=3) as client, pytest.raises(RpcError) as err:
        fetch(client, devchain.glisk, history)
    assert f"eth_getLogs {history.from_block}-" in str(err.value)
    assert "3 attempts" in str(err.value)
    assert len(proxy.requests) == 3


def test_non_retryable_error_fails_at_once(devchain, proxy) -> None:
    with client_for(proxy) as client, pytest.raises(RpcError, match=r"(?i)invalid|unknown|parse"):
        client.call("eth_getLogs", [{"fromBlock": "0xzz"}])
    assert len(proxy.requests) == 1


def test_missing_block_timestamps_are_batched(devchain, history, proxy) -> None:
    proxy.strip_timestamps = True
    with client_for(proxy) as client:
        chunks = list(
            client.iter_logs(
                devchain.glisk, BATCH_MINTED_TOPIC0, history.from_block, history.to_block
            )
        )
    stamps = {log["blockNumber"]: log["blockTimestamp"] for c in chunks for log in c.logs}
    real = chain_logs(devchain.anvil, devchain.glisk, history.from_block, history.to_block)
    assert stamps == {log["blockNumber"]: log["blockTimestamp"] for log in real}
    batches = [
        r
        for r in proxy.requests
        if isinstance(r, list) and all(i["method"] == "eth_getBlockByNumber" for i in r)
    ]
    # one batch request per 100 blocks with logs, not one call per block
    assert 1 <= len(batches) <= len(stamps) // 100 + len(chunks)


def test_rate_limited_batch_items_are_retried(devchain, history, proxy) -> None:
    proxy.strip_timestamps = True
    proxy.script("ok", "item429")  # eth_getLogs passes, the header batch is rate-limited
    with client_for(proxy) as client:
        chunks = list(
            client.iter_logs(
                devchain.glisk, BATCH_MINTED_TOPIC0, history.from_block, history.to_block
            )
        )
        assert client.stats.retries == 1
    assert proxy.faults == ["item429"]
    assert all(log["blockTimestamp"] for chunk in chunks for log in chunk.logs)


def test_chain_id_mismatch_names_both_and_hides_the_url(devchain) -> None:
    url = devchain.anvil.url + "/?apikey=sekrit"
    with RpcClient(url) as client:
        assert client.check_chain_id(None) == 31337
        with pytest.raises(RpcError) as err:
            client.check_chain_id(8453)
    assert "31337" in str(err.value) and "8453" in str(err.value)
    assert "sekrit" not in str(err.value)


def test_final_block_by_tag_and_by_confirmations(devchain) -> None:
    devchain.anvil.mine_empty(100)
    with RpcClient(devchain.anvil.url) as client:
        head = client.block_number()
        assert client.final_block(5) == head - 5
        assert client.final_block(None) == head - 64  # anvil: finalized = head - 64


def test_sparse_history_costs_few_calls(devchain: DevChain) -> None:
    devchain.anvil.mine_empty(1_000)
    with RpcClient(devchain.anvil.url, initial_block_range=50) as client:
        head = client.block_number()
        list(client.iter_logs(devchain.glisk, BATCH_MINTED_TOPIC0, 0, head))
        # empty answers double the range: 50, 100, 200, ... not head/50 fixed windows
        assert client.stats.calls <= 6 < head // 50


# Provider messages as seen in the wild (Alchemy, Infura, QuickNode, public Base RPC), as data.
@pytest.mark.parametrize(
    ("status", "error", "kind", "suggested", "cap"),
    [
        (
            200,
            {
                "code": -32602,
                "message": "Log response size exceeded. ... this block range "
                "should work: [0xd043b8, 0x0]",
            },
            Kind.RANGE,
            (0, 0xD043B8),
            None,
        ),
        (
            400,
            {
                "code": -32600,
                "message": "Under the Free tier plan, you can make eth_getLogs "
                "requests with up to a 10 block range. Based on your parameters, this block range "
                "should work: [0x1180fca, 0x1180fd3]. ...",
            },
            Kind.RANGE,
            (0x1180FCA, 0x1180FD3),
            10,
        ),
        (
            200,
            {
                "code": -32000,
                "message": "Query timeout exceeded. Consider reducing your block "
                "range. ... this block range should work: [0x5223c98, 0x5223e80]",
            },
            Kind.RANGE,
            (0x5223C98, 0x5223E80),
            None,
        ),
        (
            200,
            {
                "code": -32005,
                "message": "query returned more than 10000 results. Try with this "
                "block range [0xBDE5F8, 0x102DBCC].",
            },
            Kind.RANGE,
            (0xBDE5F8, 0x102DBCC),
            None,
        ),
        (
            200,
            {"code": -32602, "message": "range 1000000 exceeds limit of 10000"},
            Kind.RANGE,
            None,
            10_000,
        ),
        (
            200,
            {"code": -32614, "message": "eth_getLogs is limited to a 10,000 range"},
            Kind.RANGE,
            None,
            10_000,
        ),
        (200, {"code": -32000, "message": "block range too large"}, Kind.RANGE, None, None),
        (429, None, Kind.RATE_LIMIT, None, None),
        (
            200,
            {
                "code": 429,
                "message": "Your app has exceeded its compute units per second capacity...",
            },
            Kind.RATE_LIMIT,
            None,
            None,
        ),
        (
            200,
            {"code": -32005, "message": "daily request count exceeded, request rate limited"},
            Kind.RATE_LIMIT,
            None,
            None,
        ),
        (
            200,
            {"code": -32011, "message": "no backend is currently healthy to serve traffic"},
            Kind.TRANSIENT,
            None,
            None,
        ),
        (503, None, Kind.TRANSIENT, None, None),
        (200, {"code": -32005, "message": "limit exceeded"}, Kind.RATE_LIMIT, None, None),
        (200, {"code": -32000, "message": "header not found"}, Kind.TRANSIENT, None, None),
        (
            200,
            {"code": -32000, "message": "block range extends beyond current head block"},
            Kind.TRANSIENT,
            None,
            None,
        ),
        (200, {"code": -32602, "message": "invalid block range params"}, Kind.FATAL, None, None),
        (
            200,
            {"code": -32602, "message": "invalid argument 0: hex string without 0x prefix"},
            Kind.FATAL,
            None,
            None,
        ),
    ],
)
def test_classify_provider_errors(status, error, kind, suggested, cap) -> None:
    failure = classify(status=status, error=error)
    assert (failure.kind, failure.suggested, failure.cap) == (kind, suggested, cap)


@given(
    blocks=st.lists(st.integers(min_value=0, max_value=60), max_size=300),
    limit=st.integers(min_value=1, max_value=40),
)
def test_split_chunk_tiles_the_range_and_never_splits_a_block(blocks, limit) -> None:
    start, end = 0, 60
    logs = [{"blockNumber": hex(b), "i": i} for i, b in enumerate(sorted(blocks))]
    chunks = list(split_chunk(start, end, logs, limit))
    assert chunks[0].from_block == start and chunks[-1].to_block == end
    assert all(a.to_block + 1 == b.from_block for a, b in itertools.pairwise(chunks))
    assert [log for c in chunks for log in c.logs] == logs
    for c in chunks:
        assert all(c.from_block <= int(log["blockNumber"], 16) <= c.to_block for log in c.logs)
        per_block = {log["blockNumber"] for log in c.logs}
        biggest = max((blocks.count(int(b, 16)) for b in per_block), default=0)
        assert len(c.logs) <= max(limit, 1) + biggest  # over the limit only by one block


def test_dense_history_is_cut_into_bounded_chunks(devchain, history) -> None:
    with RpcClient(devchain.anvil.url, max_chunk_logs=400) as client:
        chunks = list(
            client.iter_logs(
                devchain.glisk, BATCH_MINTED_TOPIC0, history.from_block, history.to_block
            )
        )
    assert len(chunks) >= 2  # 1,500 logs, at most ~400 per chunk
    assert max(len(c.logs) for c in chunks) <= 400 + 400  # a block holds at most 400 mints
    assert sum(len(c.logs) for c in chunks) == len(history.mints)
