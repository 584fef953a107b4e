"""The one BatchMinted decoder, for both ways a log reaches us.

`BatchMinted(address indexed minter, address indexed promptAuthor,
             uint256 indexed startTokenId, uint256 quantity, uint256 totalPaid)`

The event's ABI is the source of truth for its signature and topic0 (derived once, at
import, by glisk_pipeline/chain/keccak.py; tests compare both with eth-utils and the ABI with
the compiled contract's). Decoding itself is plain hex slicing
over that fixed layout: web3's event decoder (`ContractEvent.process_log`, web3 8) costs
~230 µs a log, `eth_abi.decode` ~37 µs, slicing + `int(x, 16)` ~1 µs. Both input shapes
(an `eth_getLogs` log and an Alchemy Custom-Webhook GraphQL log) produce the same
`MintRecord`, so the webhook and the backfill write byte-identical rows for the same log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from glisk_pipeline.chain.keccak import event_signature, topic0

if TYPE_CHECKING:
    from eth_typing import ABIEvent  # a TypedDict; importing eth-typing costs ~12 ms

# As GliskNFT's compiled ABI declares it (a test compares the two). The slicing below
# relies on this layout: three indexed 32-byte topics, two uint256 words of data.
BATCH_MINTED_ABI: ABIEvent = {
    "type": "event",
    "name": "BatchMinted",
    "anonymous": False,
    "inputs": [
        {"name": "minter", "type": "address", "indexed": True},
        {"name": "promptAuthor", "type": "address", "indexed": True},
        {"name": "startTokenId", "type": "uint256", "indexed": True},
        {"name": "quantity", "type": "uint256", "indexed": False},
        {"name": "totalPaid", "type": "uint256", "indexed": False},
    ],
}
EVENT_SIGNATURE = event_signature(BATCH_MINTED_ABI)
BATCH_MINTED_TOPIC0 = topic0(EVENT_SIGNATURE)
# GliskNFT caps a batch at 50; anything far above that is not a GliskNFT log and would
# make us write an absurd number of token rows.
MAX_QUANTITY = 10_000
_HEX_RE = re.compile(r"0[xX][0-9a-fA-F]*\Z")
# The database columns' ranges: a value past them is not a real log, and must fail here
# with a DecodeError rather than as a database error halfway through a batch.
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1
MAX_TIMESTAMP = 10**11  # year ~5100; PostgreSQL's to_timestamp overflows far above it


class DecodeError(ValueError):
    """A log that is not a well-formed BatchMinted log; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class MintRecord:
    """One BatchMinted log, normalised: lowercase 0x-hex strings, exact integers."""

    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    block_timestamp: int  # unix seconds, the block's own time
    contract_address: str
    minter: str
    author_wallet: str
    start_token_id: int
    quantity: int
    total_paid: int  # wei, exact

    @property
    def token_ids(self) -> range:
        return range(self.start_token_id, self.start_token_id + self.quantity)

    @property
    def key(self) -> tuple[str, int]:
        return (self.tx_hash, self.log_index)


# Already canonical (lowercase, 0x, the right length), as providers send it: returned as
# is, one regex match instead of the checks and the copy below (decoding 3,992 logs:
# ~18 -> ~12 µs a log, best of 5, measured).
_CANONICAL = {
    None: re.compile(r"0x[0-9a-f]*\Z"),
    20: re.compile(r"0x[0-9a-f]{40}\Z"),
    32: re.compile(r"0x[0-9a-f]{64}\Z"),
}


def _hex(value: Any, field: str, nbytes: int | None = None) -> str:
    """Lowercase 0x-hex string, checked; `nbytes` fixes the length."""
    canonical = _CANONICAL.get(nbytes)
    if canonical is not None and isinstance(value, str) and canonical.match(value):
        return value
    if not isinstance(value, str) or value[:2] not in ("0x", "0X"):
        raise DecodeError(f"{field}: expected a 0x-hex string, got {type(value).__name__}")
    if _HEX_RE.match(value) is None:  # a regex: half the cost of a set check per field
        raise DecodeError(f"{field}: not hex")
    if nbytes is not None and len(value) != 2 + 2 * nbytes:
        raise DecodeError(f"{field}: expected {nbytes} bytes, got {(len(value) - 2) / 2:g}")
    return "0x" + value[2:].lower()


def _quantity(value: Any, field: str) -> int:
    """A JSON-RPC quantity (hex string) or a JSON integer, as int."""
    if isinstance(value, str) and _CANONICAL[None].match(value) and len(value) > 2:
        return int(value, 16)  # int() takes the 0x prefix with base 16
    if isinstance(value, bool):
        raise DecodeError(f"{field}: expected an integer")
    if isinstance(value, int):
        if value < 0:
            raise DecodeError(f"{field}: negative")
        return value
    return int(_hex(value, field), 16) if value not in ("0x", "0X") else 0


def _topic_address(topic: str, field: str) -> str:
    if topic[2:26].strip("0"):
        raise DecodeError(f"{field}: topic is not a left-padded address")
    return "0x" + topic[26:]


def decode_fields(
    *,
    address: Any,
    topics: Any,
    data: Any,
    tx_hash: Any,
    log_index: Any,
    block_number: Any,
    block_hash: Any,
    block_timestamp: Any,
) -> MintRecord:
    """Decode a BatchMinted log from its fields, whatever shape carried them: hex strings
    (0x, any case) or integers for the numbers. Every field is checked; a DecodeError
    names the first bad one. `decode_rpc_log` and `decode_webhook_log` pick the fields
    out of their raw dicts; the webhook sidecar hands over its validated model's fields."""
    if not isinstance(topics, list) or len(topics) != 4:
        n = len(topics) if isinstance(topics, list) else "no"
        raise DecodeError(f"topics: BatchMinted has 4 topics, got {n}")
    t0, t1, t2, t3 = (
        t if isinstance(t, str) and _CANONICAL[32].match(t) else _hex(t, f"topics[{i}]", 32)
        for i, t in enumerate(topics)
    )
    if t0 != BATCH_MINTED_TOPIC0:
        raise DecodeError("topics[0]: not the BatchMinted event signature")
    body = _hex(data, "data")[2:]
    if len(body) != 128:
        raise DecodeError(f"data: BatchMinted carries 64 bytes, got {len(body) / 2:g}")
    quantity = int(body[:64], 16)
    if not 1 <= quantity <= MAX_QUANTITY:
        raise DecodeError(f"data: quantity {quantity} outside 1..{MAX_QUANTITY}")
    start_token_id = int(t3, 16)
    if start_token_id + quantity > INT64_MAX:
        raise DecodeError("topics[3]: startTokenId beyond the 64-bit token id range")
    return MintRecord(
        tx_hash=_hex(tx_hash, "transactionHash", 32),
        log_index=_bounded(log_index, "logIndex", INT32_MAX),
        block_number=_bounded(block_number, "blockNumber", INT64_MAX),
        block_hash=_hex(block_hash, "blockHash", 32),
        block_timestamp=_bounded(block_timestamp, "blockTimestamp", MAX_TIMESTAMP),
        contract_address=_hex(address, "address", 20),
        minter=_topic_address(t1, "topics[1]"),
        author_wallet=_topic_address(t2, "topics[2]"),
        start_token_id=start_token_id,
        quantity=quantity,
        total_paid=int(body[64:], 16),
    )


def _bounded(value: Any, field: str, maximum: int) -> int:
    number = _quantity(value, field)
    if number > maximum:
        raise DecodeError(f"{field}: {number} is out of range")
    return number


def from_contract(log: dict[str, Any], contract: str) -> bool:
    """Whether an eth_getLogs log was emitted by `contract` (lowercase) and is not marked
    removed: a provider filters by address for us, but a wrong log must never be stored."""
    return str(log.get("address", "")).lower() == contract and not log.get("removed")


def decode_rpc_log(log: dict[str, Any]) -> MintRecord:
    """Decode an `eth_getLogs` log. `blockTimestamp` must be present (the RPC client adds
    it from the block header for providers that omit it)."""
    if not isinstance(log, dict):
        raise DecodeError("log: expected an object")
    if log.get("blockTimestamp") is None:
        raise DecodeError("blockTimestamp: missing (fetch the block header first)")
    return decode_fields(
        address=log.get("address"),
        topics=log.get("topics"),
        data=log.get("data"),
        tx_hash=log.get("transactionHash"),
        log_index=log.get("logIndex"),
        block_number=log.get("blockNumber"),
        block_hash=log.get("blockHash"),
        block_timestamp=log.get("blockTimestamp"),
    )


def decode_webhook_log(log: dict[str, Any], block: dict[str, Any]) -> MintRecord:
    """Decode an Alchemy Custom-Webhook (GraphQL) log; block fields come from the
    enclosing `event.data.block` ({number, hash, timestamp})."""
    if not isinstance(log, dict) or not isinstance(block, dict):
        raise DecodeError("log: expected an object")
    account = log.get("account") or {}
    transaction = log.get("transaction") or {}
    return decode_fields(
        address=account.get("address") if isinstance(account, dict) else None,
        topics=log.get("topics"),
        data=log.get("data"),
        tx_hash=transaction.get("hash") if isinstance(transaction, dict) else None,
        log_index=log.get("index"),
        block_number=block.get("number"),
        block_hash=block.get("hash"),
        block_timestamp=block.get("timestamp"),
    )
