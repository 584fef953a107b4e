"""Every provider's eth_getLogs limit format: `classify` reads what the message states (a
block cap, a result cap, a suggested range), and a backfill behind each format, through
the fault proxy in front of anvil, ends with the tables equal to the chain in about
range / cap requests where a cap is stated."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devtools.history import realistic_history
from devtools.local_chain import DEFAULT_AUTHOR
from devtools.oracle import chain_logs, chain_mints, compare_with_chain
from glisk_pipeline.chain.provider_errors import Kind, classify
from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.cli import recover_events
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.sync.backfill import backfill_range
from tests.support.faultproxy import FaultProxy
from tests.support.fixtures_chain import DevChain
from tests.support.provider_messages import RECORDED, UNSEEN, Recorded

BY_ID = {case.provider: case for case in (*RECORDED, *UNSEEN)}


def error_of(case: Recorded) -> dict:
    error: dict = {"code": case.code, "message": case.message}
    if case.data is not None:
        error["data"] = case.data
    return error


@pytest.mark.parametrize("case", RECORDED, ids=lambda c: c.provider)
def test_each_recorded_format_is_read_as_stated(case: Recorded) -> None:
    failure = classify(status=case.status, error=error_of(case))
    assert failure.kind is Kind.RANGE
    assert (failure.cap, failure.suggested, failure.max_results, failure.per_blocks) == (
        case.cap,
        case.suggested,
        case.max_results,
        case.per_blocks,
    )
    # the reason inside `data` is named in the error
    reasons = case.data.values() if isinstance(case.data, dict) else [case.data or ""]
    assert all(str(reason) in failure.message for reason in reasons if isinstance(reason, str))


@pytest.mark.parametrize("case", UNSEEN, ids=lambda c: c.provider)
def test_unseen_wording_about_range_results_or_size_shrinks(case: Recorded) -> None:
    failure = classify(status=200, error=error_of(case))
    assert (failure.kind, failure.cap, failure.per_blocks) == (Kind.RANGE, None, case.per_blocks)


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (-32005, "limit exceeded", Kind.RATE_LIMIT),  # Infura's rate limit, same code
        (-32005, "daily request count exceeded, request rate limited", Kind.RATE_LIMIT),
        (429, "Your app has exceeded its compute units per second capacity", Kind.RATE_LIMIT),
        (-32011, "no backend is currently healthy to serve traffic", Kind.TRANSIENT),
        (
            -32000,
            "upstream connect error or disconnect/reset before headers: connection timeout",
            Kind.TRANSIENT,
        ),
        (-32000, "execution reverted", Kind.FATAL),
        (-32601, "method not found", Kind.FATAL),
        (-32602, "invalid argument 0: hex string without 0x prefix", Kind.FATAL),
        (-32000, "max fee per gas less than block base fee", Kind.FATAL),
        (3, "execution reverted: index out of range, max 10", Kind.FATAL),
        (-32600, 'Too many ["eth_getLogs"] methods in the batch', Kind.FATAL),
    ],
)
def test_errors_not_about_the_range_keep_their_kind(code, message, kind) -> None:
    assert classify(status=200, error={"code": code, "message": message}).kind is kind


def test_an_error_given_as_a_bare_string_is_read() -> None:
    failure = classify(status=400, error="please limit the query to at most 500 blocks")
    assert (failure.kind, failure.cap) == (Kind.RANGE, 500)


# --- end to end: backfill behind each format ----------------------------------------------

BLOCK_CAP = 40  # blocks, for formats whose number the proxy can restate
EMPTY_TAIL = 2_000  # empty blocks after the mints (anvil mines ~3 ms each)


@dataclass(frozen=True)
class Minted:
    chain: DevChain
    mints_end: int  # the last block with mints
    head: int
    result_cap: int  # logs: a few times the densest block


@pytest.fixture(scope="module")
def minted(deployed_chain: DevChain) -> Iterator[Minted]:
    """One history for every case of the module (rolled back at the end)."""
    anvil = deployed_chain.anvil
    snapshot = anvil.rpc("evm_snapshot")
    history = realistic_history(
        anvil, deployed_chain.glisk, deployed_chain.decoy, n_batches=300, n_blocks=400, seed=24
    )
    per_block: dict[str, int] = {}
    for log in chain_logs(anvil, deployed_chain.glisk, 0, history.to_block):
        per_block[log["blockNumber"]] = per_block.get(log["blockNumber"], 0) + 1
    anvil.rpc("anvil_mine", [hex(EMPTY_TAIL)])
    head = int(anvil.rpc("eth_blockNumber"), 16)
    yield Minted(deployed_chain, history.to_block, head, 3 * max(per_block.values()))
    if not anvil.rpc("evm_revert", [snapshot]):
        raise RuntimeError("evm_revert failed: later tests would see this module's blocks")


def enforced(case: Recorded, minted: Minted) -> tuple[int, int]:
    """(n the proxy enforces, last block to backfill). A restatable cap is enforced at
    BLOCK_CAP over the mints; a fixed one at its own value over the whole chain; a
    result cap over the whole chain, so a sparse stretch follows the dense one."""
    if case.per == "results":
        return minted.result_cap, minted.head
    if case.cap is not None and case.template is None and case.data_template is None:
        return case.cap, minted.head
    return BLOCK_CAP, minted.mints_end


@pytest.fixture(scope="module")
def shared_proxy(minted: Minted) -> Iterator[FaultProxy]:
    """One proxy for the module's cases (each sets its own limit and clears the counts)."""
    with FaultProxy(minted.chain.anvil.url) as proxy:
        proxy.strip_timestamps = True
        yield proxy


def backfill_behind(
    case: Recorded, minted: Minted, proxy: FaultProxy, pg_engine
) -> tuple[int, int, int]:
    """(eth_getLogs requests, refusals, blocks) of a backfill from block 0 behind `case`."""
    n, last = enforced(case, minted)
    store = MintStore(pg_engine, DEFAULT_AUTHOR)
    proxy.requests.clear()
    proxy.faults.clear()
    proxy.limit_message(
        n,
        case.template or case.message,
        case.code,
        case.data_template if case.data_template is not None else case.data,
        case.status,
        case.per,
    )
    with RpcClient(proxy.url, backoff_base=0.01, timeout=5.0) as client:
        backfill_range(client, store, minted.chain.glisk, 0, last)
    requests, refusals = proxy.count("eth_getLogs"), proxy.faults.count("range")
    mints = chain_mints(minted.chain.anvil, minted.chain.glisk, 0, last)
    assert compare_with_chain(pg_engine, mints, with_stats=False) == []
    return requests, refusals, last + 1


# Every format but one whose fixed cap (10,000 blocks) is wider than the test chain.
END_TO_END = [case for case in (*RECORDED, *UNSEEN) if case.provider != "merkle-10k"]


@pytest.mark.parametrize("case", END_TO_END, ids=lambda c: c.provider)
def test_backfill_behind_each_format_equals_the_chain(
    case: Recorded, minted, shared_proxy, pg_engine
) -> None:
    n, _ = enforced(case, minted)
    requests, refusals, blocks = backfill_behind(case, minted, shared_proxy, pg_engine)
    assert refusals >= 1  # the limit was met
    if case.cap is not None:  # a stated cap: jumped to at the first refusal, then held
        assert refusals == 1
        assert requests <= 1.2 * math.ceil(blocks / n) + 3
    elif case.per == "blocks":  # halving to a width >= half the limit, held as a ceiling
        assert requests <= 2 * math.ceil(blocks / n) + 12
    else:
        # a result cap is not a block ceiling: past the dense stretch the range grows
        # back, so the 2,000 empty blocks cost a handful of requests, not 2,000 / width
        assert requests <= 60, (requests, refusals)


def test_glisk_recover_behind_coinbase_limit(cli_env, devchain, pg_engine, monkeypatch, capsys):
    history = realistic_history(
        devchain.anvil, devchain.glisk, devchain.decoy, n_batches=120, n_blocks=240, seed=7
    )
    coinbase = BY_ID["coinbase"]
    with FaultProxy(devchain.anvil.url) as proxy:
        proxy.strip_timestamps = True
        proxy.limit_message(BLOCK_CAP, coinbase.template or "", coinbase.code)
        for key, value in {**cli_env, "RPC_URL": proxy.url, "RPC_MAX_ATTEMPTS": "2"}.items():
            monkeypatch.setenv(key, value)
        assert recover_events.main(["--from-block", "0"]) == 0, capsys.readouterr().err
        requests, refusals = proxy.count("eth_getLogs"), proxy.faults.count("range")
    mints = chain_mints(devchain.anvil, devchain.glisk, 0, history.to_block)
    assert compare_with_chain(pg_engine, mints, with_stats=False) == []
    head = int(devchain.anvil.rpc("eth_blockNumber"), 16)
    # one refusal (not six rate-limit retries of the same range), then full-width ranges
    assert refusals == 1
    assert requests <= 1.2 * math.ceil((head + 1) / BLOCK_CAP) + 3
