"""What a delivery means for the store: the BatchMinted logs of our contract in it,
decoded, and the block (or heartbeat) they belong to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from glisk_pipeline.chain.decoder import BATCH_MINTED_TOPIC0, DecodeError, MintRecord, decode_fields
from webhook_service.models import (
    MAX_BIGINT,
    AlchemyDelivery,
    GraphqlLog,
    PayloadError,
    RpcLog,
)

LOGS_PATH = "event.data.block.logs"


@dataclass(frozen=True, slots=True)
class BlockDelivery:
    """The matching mints of one delivery, and the block they (or the heartbeat) belong to.
    `block_number`/`block_hash` are None when the delivery names no block."""

    block_number: int | None
    block_hash: str | None
    sequence_number: int | None
    records: list[MintRecord]
    ignored: int  # logs that were not BatchMinted logs of our contract
    webhook_id: str = ""  # sequence numbers are per webhook
    created_at: datetime | None = None


def _matches(log: GraphqlLog | RpcLog, contract: str) -> bool:
    """Our contract, the BatchMinted signature, a successful transaction, still canonical.
    Cheap string checks only: decoding happens for the logs that pass."""
    if isinstance(log, GraphqlLog):
        address, ok = log.account.address, log.transaction.status == 1 and not log.removed
    else:
        address, ok = log.address, not log.removed
    return (
        ok
        and address.lower() == contract
        and bool(log.topics)
        and (log.topics[0].lower() == BATCH_MINTED_TOPIC0)
    )


class TooManyTokens(PayloadError):
    """A delivery whose logs would create more token rows than the configured bound."""


def interpret(
    delivery: AlchemyDelivery, contract: str, max_tokens: int | None = None
) -> BlockDelivery:
    """The records to store. Raises PayloadError for a matching log that does not decode
    or that contradicts the delivery's block, TooManyTokens past `max_tokens` token rows;
    every other log is ignored, never stored."""
    block = delivery.event.data.block
    number, block_hash, timestamp = block.number, block.hash, block.timestamp
    records: list[MintRecord] = []
    ignored = tokens = 0
    for i, log in enumerate(block.logs):
        if not _matches(log, contract):
            ignored += 1
            continue
        where = f"{LOGS_PATH}.{i}"
        if isinstance(log, RpcLog):
            # An eth_getLogs log carries its own block; it must agree with the envelope.
            number = _agree(number, log.blockNumber, f"{where}.blockNumber")
            block_hash = _agree(
                block_hash and block_hash.lower(),
                log.blockHash and log.blockHash.lower(),
                f"{where}.blockHash",
            )
            timestamp = _agree(timestamp, log.blockTimestamp, f"{where}.blockTimestamp")
        for value, name in ((number, "number"), (block_hash, "hash"), (timestamp, "timestamp")):
            if value is None:
                raise PayloadError(f"event.data.block.{name}: required for a BatchMinted log")
        try:
            record = _decode(log, number, block_hash, timestamp)
        except DecodeError as exc:
            raise PayloadError(f"{where}: {exc}") from None
        if record.start_token_id + record.quantity - 1 > MAX_BIGINT:
            raise PayloadError(f"{where}.topics.3: startTokenId out of range")
        tokens += record.quantity
        if max_tokens is not None and tokens > max_tokens:
            # Refused before the database: 1.5M token rows ran into the statement timeout
            # (a 500) on every retry. A backfill stores such a block instead.
            raise TooManyTokens(
                f"{LOGS_PATH}: more than {max_tokens} tokens in one delivery "
                "(WEBHOOK_MAX_TOKENS_PER_DELIVERY)"
            )
        records.append(record)
    return BlockDelivery(
        block_number=number,
        block_hash=block_hash.lower() if block_hash else None,
        sequence_number=delivery.event.sequenceNumber,
        records=records,
        ignored=ignored,
        webhook_id=delivery.webhookId or "",
        created_at=delivery.createdAt,
    )


def _agree(envelope: Any, own: Any, field: str) -> Any:
    if own is None:
        return envelope
    if envelope is not None and own != envelope:
        raise PayloadError(f"{field}: differs from the delivery's block")
    return own


def _decode(
    log: GraphqlLog | RpcLog, number: int | None, block_hash: str | None, ts: int | None
) -> MintRecord:
    """The block fields are checked by the caller (naming the missing one) and, like every
    field, by decode_fields."""
    if isinstance(log, GraphqlLog):
        address, tx_hash, index = log.account.address, log.transaction.hash, log.index
    else:
        address, tx_hash, index = log.address, log.transactionHash, log.logIndex
    return decode_fields(
        address=address,
        topics=log.topics,
        data=log.data,
        tx_hash=tx_hash,
        log_index=index,
        block_number=number,
        block_hash=block_hash,
        block_timestamp=ts,
    )
