"""The decoder against logs the contract really emitted on anvil, and malformed input."""

from __future__ import annotations

import copy

import pytest

from devtools.anvil import DEV_ACCOUNTS, artifact, random_address
from devtools.history import Mint, mint_batches
from devtools.oracle import chain_logs, decode_mint
from devtools.replay import as_webhook
from glisk_pipeline.chain.decoder import (
    BATCH_MINTED_ABI,
    BATCH_MINTED_TOPIC0,
    EVENT_SIGNATURE,
    DecodeError,
    MintRecord,
    decode_rpc_log,
    decode_webhook_log,
)
from tests.support.fixtures_chain import DevChain


@pytest.fixture
def minted(devchain: DevChain) -> list[dict]:
    import random

    rng = random.Random(5)
    authors = [random_address(rng) for _ in range(30)]  # checksummed, mixed case
    mints = [
        Mint(DEV_ACCOUNTS[i % 10], authors[i % 30], 1 + i % 50, 10**15 * 60 + i) for i in range(600)
    ]
    mint_batches(devchain.anvil, devchain.glisk, mints, per_block=100)
    return chain_logs(devchain.anvil, devchain.glisk)


def test_topic0_is_the_event_signature_hash() -> None:
    assert EVENT_SIGNATURE == "BatchMinted(address,address,uint256,uint256,uint256)"
    assert BATCH_MINTED_TOPIC0 == (
        "0x20c0d4a5bab7118059cf1d2fd0403c4f29a05e446d435b347f90b80778374c54"
    )


def test_event_abi_is_the_contracts() -> None:
    """The decoder's ABI (and so its slicing layout) is the one the contract compiles to."""
    (compiled,) = [e for e in artifact("GliskNFT")["abi"] if e.get("name") == "BatchMinted"]
    fields = ("name", "type", "indexed")
    assert compiled["type"] == BATCH_MINTED_ABI["type"] == "event"
    assert compiled["anonymous"] is BATCH_MINTED_ABI["anonymous"] is False
    assert [tuple(i[f] for f in fields) for i in compiled["inputs"]] == [
        tuple(i[f] for f in fields) for i in BATCH_MINTED_ABI["inputs"]
    ]


def test_rpc_logs_decode_like_the_oracle(minted: list[dict]) -> None:
    assert len(minted) == 600
    records = [decode_rpc_log(log) for log in minted]
    for record, log in zip(records, minted, strict=True):
        oracle = decode_mint(log)  # eth_abi-based, independent of our slicing
        assert (record.minter, record.author_wallet) == (oracle.minter, oracle.prompt_author)
        assert (record.start_token_id, record.quantity) == (oracle.start_token_id, oracle.quantity)
        assert record.total_paid == oracle.total_paid
        assert record.block_timestamp == int(log["blockTimestamp"], 16)
    ids = [t for r in records for t in r.token_ids]
    assert ids == list(range(1, len(ids) + 1))
    assert {r.quantity for r in records} == set(range(1, 51))


def test_webhook_shape_gives_identical_records(devchain: DevChain, minted: list[dict]) -> None:
    blocks = {}
    for log in minted[::37]:
        number = log["blockNumber"]
        if number not in blocks:
            blocks[number] = devchain.anvil.rpc("eth_getBlockByNumber", [number, False])
        gql_log, gql_block = as_webhook(log, blocks[number])
        assert decode_webhook_log(gql_log, gql_block) == decode_rpc_log(log)


def _broken(log: dict, **changes) -> dict:
    out = copy.deepcopy(log)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda log: _broken(log, topics=log["topics"][:3]), "4 topics"),
        (
            lambda log: _broken(log, topics=[log["topics"][0][:-2] + "zz", *log["topics"][1:]]),
            "hex",
        ),
        (lambda log: _broken(log, topics=["0x" + "11" * 32, *log["topics"][1:]]), "signature"),
        (lambda log: _broken(log, data=log["data"][:-2]), "64 bytes"),
        (lambda log: _broken(log, data="0x"), "64 bytes"),
        (lambda log: _broken(log, transactionHash="0x1234"), "transactionHash"),
        (lambda log: _broken(log, blockTimestamp=None), "blockTimestamp"),
        (lambda log: _broken(log, logIndex="zz"), "logIndex"),
        (lambda log: _broken(log, address=12), "address"),
        (
            lambda log: _broken(
                log, topics=[*log["topics"][:1], "0x" + "ff" * 32, *log["topics"][2:]]
            ),
            "address",
        ),
        (lambda log: _broken(log, data="0x" + "00" * 64), "quantity"),
        (lambda log: _broken(log, logIndex=hex(2**31)), "logIndex"),
        (lambda log: _broken(log, blockNumber=hex(2**63)), "blockNumber"),
        (
            lambda log: _broken(log, topics=[*log["topics"][:3], "0x" + "7f" + "ff" * 31]),
            "startTokenId",
        ),
    ],
)
def test_malformed_logs_raise_typed_errors(minted: list[dict], change, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_rpc_log(change(minted[0]))


def test_record_is_never_half_filled() -> None:
    with pytest.raises(DecodeError):
        decode_webhook_log({"topics": None}, {"number": 1})
    with pytest.raises(DecodeError):
        decode_rpc_log("not a log")
    assert MintRecord.__slots__  # frozen, slotted: no attribute can be added later
