"""Keccak-256 and what the core derives from it: an event's signature and topic0, a
function's 4-byte selector, and the EIP-55 checksum of an address.

eth-utils has all of these, but importing it (with eth-typing, cytoolz and its pydantic
helpers) cost ~50 ms of every `glisk` command's start-up (measured, `python -X importtime`,
bytecode compiled; ~0.3 s without); eth-hash's keccak, the one eth-utils itself calls,
costs ~8 ms with its first hash. tests/test_keccak.py checks each function here against
eth-utils.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eth_hash.auto import keccak

if TYPE_CHECKING:
    from eth_typing import ABIEvent


def event_signature(abi: ABIEvent) -> str:
    """`Name(type,...)`, the canonical signature of an event whose inputs are elementary
    types (a tuple would need its components spelled out: refused rather than guessed)."""
    types = [item["type"] for item in abi["inputs"]]
    if any(t.startswith("tuple") for t in types):
        raise ValueError(f"{abi['name']}: tuple inputs are not supported")
    return f"{abi['name']}({','.join(types)})"


def topic0(signature: str) -> str:
    """An event's first topic: 0x + keccak256 of its signature, lowercase hex."""
    return "0x" + keccak(signature.encode()).hex()


def selector(signature: str) -> str:
    """A function's selector, e.g. `nextTokenId()`: 0x + the first 4 bytes of its hash."""
    return "0x" + keccak(signature.encode())[:4].hex()


def has_valid_checksum(address: str) -> bool:
    """EIP-55, for `0x` + 40 hex digits: each letter is uppercase exactly where the same
    position of keccak256(the lowercase hex digits) is a nibble >= 8."""
    digits = address[2:]
    digest = keccak(digits.lower().encode()).hex()
    expected = "".join(
        c.upper() if int(h, 16) >= 8 else c for c, h in zip(digits.lower(), digest, strict=False)
    )
    return digits == expected
