"""Try the sidecar without Alchemy: turn a node's BatchMinted logs into signed Alchemy
GraphQL deliveries and POST them, one per block, as Alchemy would.

    python -m devtools.replay --rpc-url http://127.0.0.1:8545 \
        --url http://127.0.0.1:8000/webhooks/alchemy [--from-block N] [--to-block M]

Contract and signing key default to GLISK_NFT_CONTRACT_ADDRESS and the first key of
ALCHEMY_WEBHOOK_SECRET. The tests build their deliveries with the same functions.
A development tool: the service itself never imports it.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

import httpx
import orjson

from glisk_pipeline.chain.decoder import BATCH_MINTED_TOPIC0
from webhook_service.signature import sign

RpcBatch = Callable[[Sequence[tuple[str, Sequence[Any]]]], list[Any]]
# Alchemy's sequenceNumbers are above 2^53; ours too, so exactness is exercised locally.
SEQUENCE_BASE = 10**17


def as_webhook(
    log: dict[str, Any], block: dict[str, Any], receipt: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An eth_getLogs log and its eth_getBlockByNumber block in Alchemy's GraphQL shape:
    (log, block). The receipt, when given, supplies the transaction's status/from/to."""
    transaction: dict[str, Any] = {"hash": log["transactionHash"], "status": 1}
    if receipt is not None:
        transaction.update(
            index=int(receipt["transactionIndex"], 16),
            status=int(receipt["status"], 16),
            **{"from": {"address": receipt["from"]}},
            to={"address": receipt["to"]} if receipt.get("to") else None,
        )
    gql_log = {
        "account": {"address": log["address"]},
        "topics": log["topics"],
        "data": log["data"],
        "index": int(log["logIndex"], 16),
        "transaction": transaction,
    }
    gql_block = {
        "number": int(block["number"], 16),
        "hash": block["hash"],
        "timestamp": int(block["timestamp"], 16),
    }
    return gql_log, gql_block


def delivery(
    block: dict[str, Any],
    gql_logs: Sequence[dict[str, Any]] = (),
    *,
    sequence_number: int | None = None,
    webhook_id: str = "wh_local_replay",
) -> dict[str, Any]:
    """An Alchemy Custom Webhook delivery for one block (GraphQL-shaped `block`, as
    as_webhook returns it) carrying `gql_logs` (none: a heartbeat)."""
    if sequence_number is None:
        sequence_number = SEQUENCE_BASE + block["number"]
    return {
        "webhookId": webhook_id,
        "id": f"whevt_{uuid.uuid4().hex[:16]}",
        # when the event was created, as Alchemy stamps it (it orders deliveries of
        # different webhooks for the same block)
        "createdAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "type": "GRAPHQL",
        "event": {
            "data": {"block": {**block, "logs": list(gql_logs)}},
            "sequenceNumber": str(sequence_number),  # a string, as Alchemy sends it
        },
    }


def signed(payload: dict[str, Any], key: str | bytes) -> tuple[bytes, dict[str, str]]:
    """Body bytes and the headers Alchemy would send with them."""
    body = orjson.dumps(payload)
    return body, {"content-type": "application/json", "x-alchemy-signature": sign(body, key)}


def chain_deliveries(
    rpc_batch: RpcBatch,
    contract: str | None,
    from_block: int = 0,
    to_block: int | None = None,
    topic0: str | None = BATCH_MINTED_TOPIC0,
) -> list[dict[str, Any]]:
    """One delivery per block holding matching logs, in block order. By default the logs
    an Alchemy query filtered on `contract` and BatchMinted would carry; `contract=None`
    and `topic0=None` widen it to every log (an operator's broader query)."""
    query: dict[str, Any] = {
        "fromBlock": hex(from_block),
        "toBlock": "latest" if to_block is None else hex(to_block),
    }
    if contract is not None:
        query["address"] = contract
    if topic0 is not None:
        query["topics"] = [topic0]
    (logs,) = rpc_batch([("eth_getLogs", [query])])
    by_block = [(n, list(g)) for n, g in groupby(logs, key=lambda log: log["blockNumber"])]
    blocks = rpc_batch([("eth_getBlockByNumber", [n, False]) for n, _ in by_block])
    tx_hashes = sorted({log["transactionHash"] for log in logs})
    receipts = dict(
        zip(
            tx_hashes,
            rpc_batch([("eth_getTransactionReceipt", [h]) for h in tx_hashes]) if logs else [],
            strict=True,
        )
    )
    out = []
    for block, (_, block_logs) in zip(blocks, by_block, strict=True):
        pairs = [as_webhook(log, block, receipts[log["transactionHash"]]) for log in block_logs]
        out.append(delivery(pairs[0][1], [gql_log for gql_log, _ in pairs]))
    return out


class JsonRpc:
    """Minimal JSON-RPC batch client (the replay tool needs nothing more)."""

    def __init__(self, url: str) -> None:
        self.url, self.client = url, httpx.Client(timeout=60)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        if not calls:
            return []
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
            for i, (m, p) in enumerate(calls)
        ]
        answers = sorted(self.client.post(self.url, json=payload).json(), key=lambda a: a["id"])
        for answer in answers:
            if "error" in answer:
                raise RuntimeError(f"{calls[answer['id']][0]}: {answer['error']}")
        return [a["result"] for a in answers]


def main(argv: list[str] | None = None) -> int:
    from glisk_pipeline.settings import ConfigError, load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpc-url", required=True, help="JSON-RPC node, e.g. anvil")
    parser.add_argument("--url", default="http://127.0.0.1:8000/webhooks/alchemy")
    parser.add_argument("--contract", help="default: GLISK_NFT_CONTRACT_ADDRESS")
    parser.add_argument("--from-block", type=int, default=0)
    parser.add_argument("--to-block", type=int)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        settings.require("ALCHEMY_WEBHOOK_SECRET")
        contract = (args.contract or settings.contract_address).lower()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    key = settings.webhook_signing_keys[0]
    rpc = JsonRpc(args.rpc_url)
    with httpx.Client(timeout=10) as http:
        for payload in chain_deliveries(rpc.batch, contract, args.from_block, args.to_block):
            body, headers = signed(payload, key)
            answer = http.post(args.url, content=body, headers=headers)
            block = payload["event"]["data"]["block"]
            print(f"block {block['number']}: {answer.status_code} {answer.text[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
