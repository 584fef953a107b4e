"""Keccak-256 and what the core derives from it: an event's signature and topic0, a
function's 4-byte selector, and the EIP-55 checksum of an address.

eth-utils has all of these, but importing it (with eth-typing, cytoolz and its pydantic
helpers) cost ~50 ms of every `glisk` command's start-up (measured, `python -X importtime`,
bytecode compiled; ~0.3 s without); eth-hash's keccak, the one eth-utils itself calls,
costs ~20-28 ms with its first hash, on pycryptodome's ctypes bindings (see
_load_backend). tests/test_keccak.py checks each function here against eth-utils.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from eth_hash.auto import keccak

if TYPE_CHECKING:
    from eth_typing import ABIEvent


def _load_backend() -> None:
    """Load eth-hash's backend (pycryptodome) on its ctypes bindings, with its first hash.
    Where cffi is installed (cryptography brings it), pycryptodome binds its C code through
    cffi instead, whose declarations pycparser parses at import: 93-169 ms of every
    `glisk` command's start-up against 20-28 ms through ctypes (measured on a loaded
    machine). The hash is pycryptodome's same C code either way; other users of cffi in
    the process are unaffected (the block lasts for this one import)."""
    if "Crypto.Util._raw_api" in sys.modules:  # bound already, one way or the other
        keccak(b"")
        return
    held = sys.modules.get("cffi", _ABSENT)
    sys.modules["cffi"] = None  # type: ignore[assignment]  # `import cffi` raises ImportError
    try:
        keccak(b"")
    finally:
        if held is _ABSENT:
            del sys.modules["cffi"]
        else:
            sys.modules["cffi"] = held  # type: ignore[assignment]


_ABSENT = object()
_load_backend()


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
