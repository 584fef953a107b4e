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

from glisk_pipeline.chain.decoder import from_contract
from glisk_pipeline.chain.keccak import selector
from glisk_pipeline.chain.provider_errors import RpcError, StateUnavailable
from glisk_pipeline.chain.rpc import Incomplete, RpcClient
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
        self._asked: list[int] = []
        self._unavailable: set[int] = set()

    @classmethod
    def from_settings(cls, client: RpcClient, settings: Settings) -> SupplyTiling:
        return cls(client, settings.contract_address, settings.supply_function)

    def next_id(self, block: int) -> int:
        """The contract's next token id at `block` (FIRST_TOKEN_ID before it had code)."""
        if block < 0:
            return FIRST_TOKEN_ID
        if block in self._unavailable:
            self._unavailable.discard(block)
            raise StateUnavailable(f"eth_call at block {block}: no state for it on this node")
        if block not in self._next:
            result = self._client.eth_call(self._contract, self._data, block)
            self._next[block] = self._parse(block, result)
        return self._next[block]

    def calls(self, start: int, end: int) -> list[tuple[str, list[Any]]]:
        """The counter's eth_calls this range still needs (usually one: at `end`)."""
        wanted = dict.fromkeys((start - 1, end))
        self._asked = [b for b in wanted if b >= 0 and b not in self._next]
        call = {"to": self._contract, "data": self._data}
        return [("eth_call", [call, hex(b)]) for b in self._asked]

    def answers(self, results: list[Any]) -> None:
        for block, result in zip(self._asked, results, strict=True):
            if isinstance(result, str):
                self._next[block] = self._parse(block, result)
            else:  # the node has no state there (pruned): asking again alone would not help
                self._unavailable.add(block)

    def _parse(self, block: int, result: str) -> int:
        if result in ("0x", ""):
            return FIRST_TOKEN_ID
        try:
            return int(result, 16) + self._offset
        except ValueError:
            raise RpcError(f"eth_call at block {block}: not a uint256: {result[:80]!r}") from None

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
        return from_contract(log, self._contract)


def _id_range(log: dict[str, Any]) -> tuple[int, int]:
    """(startTokenId, quantity) of a BatchMinted log, by slicing (no ABI decode)."""
    topics = log.get("topics") or []
    data = str(log.get("data", ""))
    if len(topics) < 4 or len(data) < 66:
        raise RpcError(f"not a BatchMinted log: {str(log)[:120]}")
    return int(topics[3], 16), int(data[2:66], 16)
