"""The proof rule of a final reconcile: which contradicted rows may leave the live set.

A row leaves it only when the chain's hash at the row's block number differs from the
row's (its block left the canonical chain). An answer that merely lacks a row's log
proves nothing: a node behind the head answers `[]` for blocks it does not have, and a
load balancer may send each request to another node. So a contradicted row on a block
that is still canonical fails the reconcile (the answer was incomplete), and so does one
on a block the node cannot show; nothing is written either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from glisk_pipeline.db.store.reconcile import LiveRow
from glisk_pipeline.db.store.results import TokenConflictError, UnprovenRemovalError


class NeedProof(Exception):
    """Internal to the store: the transaction needs the chain's hashes at `blocks` (read
    outside it, then the transaction runs again)."""

    def __init__(self, blocks: set[int]) -> None:
        super().__init__(f"proof needed for {len(blocks)} blocks")
        self.blocks = blocks


@dataclass(slots=True)
class Settlement:
    """What one reconcile of [start_block, end_block] has learned across its attempts."""

    start_block: int
    end_block: int
    proofs: dict[int, str | None] = field(default_factory=dict)  # block -> canonical hash
    holders: dict[int, str] = field(default_factory=dict)  # row id -> the log claiming its ids
    proven_blocks: int = 0

    def hold(self, held: list[tuple[str, LiveRow]]) -> None:
        """Rows elsewhere holding token ids that logs of this range claim."""
        for claim, row in held:
            self.holders.setdefault(row.id, claim)

    def judge(self, stale: list[LiveRow], holders: list[LiveRow]) -> list[LiveRow]:
        """The rows to remove: every contradicted row and conflict holder, each proven off
        the canonical chain. Raises NeedProof for blocks not read yet, and
        UnprovenRemovalError / TokenConflictError where the chain says otherwise."""
        rows = {row.id: row for row in [*stale, *holders]}
        need = {row.block_number for row in rows.values()} - set(self.proofs)
        if need:
            raise NeedProof(need)
        span = f"blocks {self.start_block}-{self.end_block}"
        lacking = [row for row in rows.values() if self.proofs[row.block_number] is None]
        if lacking:
            raise UnprovenRemovalError(
                f"reconciling {span}: cannot prove that block {lacking[0].block_number} left "
                f"the chain, the node asked does not have it (it lags); {len(lacking)} live "
                f"rows kept, e.g. {lacking[0]}; nothing written, checkpoint unchanged"
            )
        canonical = [row for row in stale if self.proofs[row.block_number] == row.block_hash]
        if canonical:
            raise UnprovenRemovalError(
                f"reconciling {span}: the eth_getLogs answer lacks {len(canonical)} logs of "
                f"blocks still on the canonical chain, e.g. {canonical[0]}: the node that "
                "answered lags or dropped logs; nothing removed, nothing written, checkpoint "
                "unchanged"
            )
        for row in holders:
            if self.proofs[row.block_number] == row.block_hash:
                raise TokenConflictError(
                    f"reconciling {span}: log {self.holders[row.id]} claims token ids held by "
                    f"live event {row}, whose block is still canonical: both cannot be on "
                    "the chain; nothing written"
                )
        return list(rows.values())
