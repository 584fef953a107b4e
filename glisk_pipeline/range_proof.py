"""The completeness proof of one eth_getLogs answer: its logs against the contract's own
counter, with no batch and no trust that two calls reach the same node.

Token ids are assigned contiguously, in chain order, and never burned, so the BatchMinted
logs of blocks [start, end] must account for exactly the ids [next(start - 1), next(end) - 1],
where next(B) is `nextTokenId()` at block B (GLISK_SUPPLY_FUNCTION): one `eth_call` per
range, as the counter at start - 1 is the previous range's at its end. A node behind the
head (its logs clamped, no error), a node whose log index lost some logs, or one that cut
the newest off all leave ids unaccounted, and the answer is refused (RpcClient asks again,
then fails with ProviderLagError). An answer from another fork than the counter's cannot
pass unless both forks minted the same ids; ranges are reconciled only where final, and a
row still leaves only with proof its block's hash changed (db/store/proof.py).

Where the contract had no code yet, next is 1 (GliskNFT's ids start at 1). Where the node
has no state at a block (a pruned full node), the check raises StateUnavailable, and the
client accepts the answer only under its same-batch header guard.
"""

from __future__ import annotations

from typing import Any

from glisk_pipeline.keccak import selector
from glisk_pipeline.provider_errors import RpcError
from glisk_pipeline.rpc import Incomplete, RpcClient
from glisk_pipeline.settings import Settings

FIRST_TOKEN_ID = 1  # the next id before the contract's first mint


class SupplyTiling:
    """A RangeCheck (rpc.py) for one backfill run: remembers the counter at each range's
    end for the next range's start."""

    def __init__(
        self, client: RpcClient, contract: str, function: tuple[str, int] = ("nextTokenId()", 0)
    ) -> None:
        self._client = client
        self._contract = contract.lower()
        self._data = selector(function[0])
        self._offset = function[1]
        self._next: dict[int, int] = {}
        self.calls = 0

    @classmethod
    def from_settings(cls, client: RpcClient, settings: Settings) -> SupplyTiling:
        return cls(client, settings.contract_address, settings.supply_function)

    def next_id(self, block: int) -> int:
        """The contract's next token id at `block` (FIRST_TOKEN_ID before it had code)."""
        if block < 0:
            return FIRST_TOKEN_ID
        if block not in self._next:
            self.calls += 1
            result = self._client.eth_call(self._contract, self._data, block)
            if result in ("0x", ""):
                value = FIRST_TOKEN_ID
            else:
                try:
                    value = int(result, 16) + self._offset
                except ValueError:
                    raise RpcError(
                        f"eth_call at block {block}: not a uint256: {result[:80]!r}"
                    ) from None
            self._next[block] = value
        return self._next[block]

    def __call__(self, start: int, end: int, logs: list[dict[str, Any]]) -> None:
        try:
            expected, after = self.next_id(start - 1), self.next_id(end)
            ranges = sorted(_id_range(log) for log in logs if self._ours(log))
            for first, quantity in ranges:
                if first != expected:
                    what = "missing" if first > expected else "held twice"
                    low, high = min(first, expected), max(first, expected) - 1
                    raise Incomplete(
                        f"ids {low}-{high} {what} in the answer's logs of blocks {start}-{end}"
                    )
                expected = first + quantity
            if expected != after:
                raise Incomplete(
                    f"the contract counted ids up to {after - 1} at block {end}, the answer's "
                    f"logs of blocks {start}-{end} account for ids up to {expected - 1}"
                )
        except Incomplete:
            # either answer may be the stale one: ask both again
            self._next.pop(start - 1, None)
            self._next.pop(end, None)
            raise

    def _ours(self, log: dict[str, Any]) -> bool:
        return str(log.get("address", "")).lower() == self._contract


def _id_range(log: dict[str, Any]) -> tuple[int, int]:
    """(startTokenId, quantity) of a BatchMinted log, by slicing (no ABI decode)."""
    topics = log.get("topics") or []
    data = str(log.get("data", ""))
    if len(topics) < 4 or len(data) < 66:
        raise RpcError(f"not a BatchMinted log: {str(log)[:120]}")
    return int(topics[3], 16), int(data[2:66], 16)
