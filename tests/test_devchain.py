"""The dev chain itself: contracts, batched minting, the realistic history, process cleanup."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from devtools.anvil import (
    DEFAULT_MINT_PRICE,
    DEV_ACCOUNTS,
    Anvil,
    anvil_binary,
    artifact,
    call_uint,
    receipts,
)
from devtools.history import History, Mint, mint_batches, realistic_history
from devtools.oracle import BATCH_BURNED_TOPIC0, BATCH_MINTED_TOPIC0, chain_logs, decode_mint

# Until tests/conftest.py imports the chain fixtures, this module brings them (drop the * then).
from tests.support.fixtures_chain import DevChain

PRICE = DEFAULT_MINT_PRICE


def test_topic0_is_the_glisk_batch_minted_signature() -> None:
    # The oracle computes it itself; this is the contract's value, as block explorers show it.
    assert BATCH_MINTED_TOPIC0 == (
        "0x20c0d4a5bab7118059cf1d2fd0403c4f29a05e446d435b347f90b80778374c54"
    )
    events = [e for e in artifact("GliskNFT")["abi"] if e["type"] == "event"]
    assert [(e["name"], [i["indexed"] for i in e["inputs"]]) for e in events] == [
        ("BatchMinted", [True, True, True, False, False])
    ]


def test_fresh_contract_starts_at_token_1(devchain: DevChain) -> None:
    assert call_uint(devchain.anvil, devchain.glisk, "nextTokenId()") == 1
    assert call_uint(devchain.anvil, devchain.glisk, "totalSupply()") == 0
    assert call_uint(devchain.anvil, devchain.glisk, "mintPrice()") == PRICE


def test_mint_batches_logs_every_mint_with_contiguous_ids(devchain: DevChain) -> None:
    node, glisk = devchain.anvil, devchain.glisk
    accounts = DEV_ACCOUNTS
    mints = [
        Mint(accounts[i % 10], accounts[(i * 7) % 10], 1 + i % 50, PRICE * (1 + i % 50) + i % 3)
        for i in range(2_000)
    ]
    start = node.block_number() + 1
    began = time.perf_counter()
    hashes = mint_batches(node, glisk, mints, per_block=10, empty_blocks_between=1)
    rate = len(mints) / (time.perf_counter() - began)
    print(f"mint_batches: {rate:.0f} tx/s")

    logs = chain_logs(node, glisk, start)
    assert len(logs) == len(mints) == len(set(hashes))
    assert node.block_number() - start + 1 == 399  # 200 blocks of mints, 199 empty ones between
    records = [decode_mint(log) for log in logs]
    # fifo ordering: the chain holds the mints in the order they were sent.
    assert [r.tx_hash for r in records] == hashes
    sent = [(m.minter.lower(), m.prompt_author.lower(), m.quantity, m.value_wei) for m in mints]
    assert [(r.minter, r.prompt_author, r.quantity, r.total_paid) for r in records] == sent
    next_id = 1
    for log, record in zip(logs, records, strict=True):
        assert log["topics"][0] == BATCH_MINTED_TOPIC0
        assert record.start_token_id == next_id
        next_id += record.quantity
    assert call_uint(node, glisk, "totalSupply()") == next_id - 1


def test_failing_mints_are_mined_with_status_0_and_no_log(devchain: DevChain) -> None:
    node, glisk, minter = devchain.anvil, devchain.glisk, DEV_ACCOUNTS[1]
    bad = [(minter, minter, 0, 0), (minter, minter, 51, PRICE * 51), (minter, minter, 2, PRICE)]
    answers = receipts(node, mint_batches(node, glisk, bad))
    assert [(r["status"], r["logs"]) for r in answers] == [("0x0", [])] * 3
    assert call_uint(node, glisk, "nextTokenId()") == 1
    assert chain_logs(node, glisk) == []


def test_realistic_history(devchain: DevChain) -> None:
    node, glisk, decoy = devchain.anvil, devchain.glisk, devchain.decoy
    history = realistic_history(node, glisk, decoy, n_batches=2_000, n_blocks=400, seed=7)

    assert node.block_number() == history.to_block == history.from_block + 399
    logs = chain_logs(node, glisk, history.from_block, history.to_block)
    assert [decode_mint(log) for log in logs] == history.mints
    assert len(history.mints) == 2_000
    assert [m.start_token_id for m in history.mints[:1]] == [1]
    assert call_uint(node, glisk, "totalSupply()") == history.tokens_minted
    assert {m.quantity for m in history.mints} == set(range(1, 51))
    assert any(m.total_paid > 2**63 for m in history.mints)
    assert any(m.total_paid > PRICE * m.quantity for m in history.mints)
    # Mints made through a contract: minter is the decoy, the log is not first in its tx.
    through = [m for m in history.mints if m.minter == decoy]
    assert through and all(m.log_index > 0 for m in through)
    assert len(history.active_blocks) < 400  # empty stretches between
    stamps = {int(log["blockTimestamp"], 16) - int(log["blockNumber"], 16) * 2 for log in logs}
    assert len(stamps) == 1  # Base-like 2 s blocks

    # Look-alikes: the same topic0 from another address, and another name with the same layout.
    fakes = chain_logs(node, decoy, history.from_block, history.to_block)
    assert fakes and {log["address"] for log in fakes} == {decoy} != {glisk}
    by_topic_only = node.rpc(
        "eth_getLogs",
        [{"topics": [BATCH_MINTED_TOPIC0], "fromBlock": hex(history.from_block)}],
    )
    assert len(by_topic_only) == len(logs) + len(fakes)
    assert chain_logs(node, decoy, history.from_block, topic0=BATCH_BURNED_TOPIC0)

    reverted = receipts(node, history.reverted_tx_hashes)
    assert len(reverted) >= 3 and all(r["status"] == "0x0" and not r["logs"] for r in reverted)
    assert set(history.registered_authors) < set(history.authors)
    assert len(history.authors) == 300 and len(history.minters) == 30


def test_same_seed_same_history(devchain: DevChain) -> None:
    node = devchain.anvil

    def shape(h: History) -> list[tuple[object, ...]]:
        return [(m.block_number - h.from_block, *m[5:]) for m in h.mints]

    snapshot = node.rpc("evm_snapshot")
    first = realistic_history(node, devchain.glisk, devchain.decoy, n_batches=300, n_blocks=90)
    node.rpc("evm_revert", [snapshot])
    again = realistic_history(node, devchain.glisk, devchain.decoy, n_batches=300, n_blocks=90)
    assert shape(first) == shape(again)


def test_stop_kills_the_process_and_removes_its_home() -> None:
    node = Anvil().start()
    pid, home = node.pid, node._home
    assert home is not None and home.is_dir()
    node.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not home.exists()
    with pytest.raises(RuntimeError):
        node.rpc("eth_chainId")


def test_missing_binary_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANVIL_BIN", str(Path("/nonexistent/anvil")))
    with pytest.raises(FileNotFoundError, match="make setup"):
        anvil_binary()
