"""glisk_pipeline/chain/keccak.py gives eth-utils' answers (the core no longer imports eth-utils:
it cost ~50 ms of every command's start-up)."""

from __future__ import annotations

import random

import pytest
from eth_utils import (
    abi_to_signature,
    event_abi_to_log_topic,
    function_signature_to_4byte_selector,
    is_checksum_address,
    to_checksum_address,
)

from glisk_pipeline.chain.decoder import BATCH_MINTED_ABI, BATCH_MINTED_TOPIC0, EVENT_SIGNATURE
from glisk_pipeline.chain.keccak import event_signature, has_valid_checksum, selector, topic0
from glisk_pipeline.settings import normalize_address

# EIP-55's own examples
EIP55_EXAMPLES = (
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
)


def test_event_signature_and_topic0_are_eth_utils() -> None:
    assert (
        EVENT_SIGNATURE == event_signature(BATCH_MINTED_ABI) == abi_to_signature(BATCH_MINTED_ABI)
    )
    assert "0x" + event_abi_to_log_topic(BATCH_MINTED_ABI).hex() == BATCH_MINTED_TOPIC0
    assert topic0("Transfer(address,address,uint256)") == (
        "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    )


def test_tuple_inputs_are_refused_not_guessed() -> None:
    abi = {**BATCH_MINTED_ABI, "inputs": [{"name": "t", "type": "tuple", "indexed": False}]}
    with pytest.raises(ValueError, match="tuple"):
        event_signature(abi)  # type: ignore[arg-type]


@pytest.mark.parametrize("signature", ["nextTokenId()", "totalSupply()", "balanceOf(address)"])
def test_selector_is_eth_utils(signature: str) -> None:
    assert selector(signature) == "0x" + function_signature_to_4byte_selector(signature).hex()


def test_eip55_examples_are_valid() -> None:
    for address in EIP55_EXAMPLES:
        assert has_valid_checksum(address)
        assert not has_valid_checksum(address.swapcase().replace("0X", "0x"))


def test_checksums_agree_with_eth_utils_on_random_addresses() -> None:
    rng = random.Random(55)
    for _ in range(500):
        checksummed = to_checksum_address("0x" + rng.randbytes(20).hex())
        assert has_valid_checksum(checksummed)
        # one letter's case flipped: what a typo in a pasted address looks like
        letters = [i for i, c in enumerate(checksummed) if i >= 2 and c.isalpha()]
        if not letters:
            continue
        i = rng.choice(letters)
        flipped = checksummed[:i] + checksummed[i].swapcase() + checksummed[i + 1 :]
        assert has_valid_checksum(flipped) == is_checksum_address(flipped) is False
        # the settings accept the checksummed form and refuse the flipped one when mixed-case
        assert normalize_address(checksummed) == checksummed.lower()
        digits = flipped[2:]
        if digits not in (digits.lower(), digits.upper()):
            with pytest.raises(ValueError, match="EIP-55"):
                normalize_address(flipped)
