"""The node's head and blocks: chain id, head, the final block, eth_call at a block, block
hashes (the removal proof) and block timestamps, over the transport."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from glisk_pipeline.chain.provider_errors import (
    Retry,
    RpcError,
    StateUnavailable,
    state_unavailable,
)
from glisk_pipeline.chain.transport import Transport


class HeadCalls(Transport):
    """Single calls and header batches about the chain itself (not its logs)."""

    def chain_id(self) -> int:
        return int(self.call("eth_chainId"), 16)

    def check_chain_id(self, expected: int | None) -> int:
        actual = self.chain_id()
        if expected is not None and actual != expected:
            raise RpcError(
                f"chain id mismatch: {self.endpoint} serves chain {actual}, NETWORK expects "
                f"{expected}"
            )
        return actual

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def final_block(self, confirmations: int | None) -> int:
        """The highest block we treat as final: the chain's `finalized` block, or
        head - confirmations when GLISK_CONFIRMATIONS is set. -1 when none is."""
        if confirmations is not None:
            return self.block_number() - confirmations
        try:
            block = self.call("eth_getBlockByNumber", ["finalized", False])
        except RpcError as exc:
            raise RpcError(
                f"{exc}; this node has no 'finalized' block: set GLISK_CONFIRMATIONS"
            ) from None
        return int(block["number"], 16) if block else -1

    def eth_call(self, to: str, data: str, block: int) -> str:
        """`eth_call` of `data` on `to` with the block number as the tag: the raw 0x-hex
        result, `0x` where `to` had no code at that block. A node without that block's
        state raises StateUnavailable on the first answer (pruned state does not come back
        by retrying); other failures are retried like any call."""
        self._ids += 1
        what = f"eth_call at block {block}"
        payload = {
            "jsonrpc": "2.0",
            "id": self._ids,
            "method": "eth_call",
            "params": [{"to": to, "data": data}, hex(block)],
        }
        try:
            body = self._post_once(payload)
        except Retry as retry:
            if state_unavailable(retry.failure.message):
                raise StateUnavailable(f"{what}: {retry.failure.message}") from None
            body = self._send(payload, what)
        except RpcError as exc:
            if state_unavailable(str(exc)):
                raise StateUnavailable(f"{what}: {exc}") from None
            raise RpcError(f"{what}: {exc}") from None
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, str):
            raise RpcError(f"{what}: unexpected response from {self.endpoint}")
        return result

    def block_hashes(self, numbers: Sequence[int]) -> dict[int, str | None]:
        """The canonical hash at each block number (None where the node lacks the block),
        in JSON-RPC batches: the proof that a stored row's block left the chain."""
        wanted = sorted(set(numbers))
        headers = self.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in wanted],
            what=f"block hashes of {len(wanted)} blocks",
        )
        self.stats.proofs += len(wanted)
        return {
            n: (str(h["hash"]).lower() if isinstance(h, dict) and h.get("hash") else None)
            for n, h in zip(wanted, headers, strict=True)
        }

    def fill_timestamps(self, logs: list[dict[str, Any]], start: int, end: int) -> None:
        """Providers that omit blockTimestamp cost one header per block with logs: fetch
        them in JSON-RPC batches, never one call each. [start, end]: the range the logs
        came from (for the error)."""
        missing = sorted({log["blockNumber"] for log in logs if not log.get("blockTimestamp")})
        if not missing:
            return
        headers = self.batch(
            [("eth_getBlockByNumber", [n, False]) for n in missing],
            what=f"block headers {start}-{end}",
        )
        stamps = {}
        for number, header in zip(missing, headers, strict=True):
            if not header:
                raise RpcError(f"block {int(number, 16)} not found while reading {start}-{end}")
            stamps[number] = header["timestamp"]
        for log in logs:
            if not log.get("blockTimestamp"):
                log["blockTimestamp"] = stamps[log["blockNumber"]]
