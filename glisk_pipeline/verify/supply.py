"""The supply proof: the tables checked against the contract's own counter.

GliskNFT is ERC721Enumerable with ids contiguous from 1 and no burn, so at any block B the
live token ids of the mints at blocks <= B must be exactly [first, next - 1], where next is
`nextTokenId()` at B (GLISK_SUPPLY_FUNCTION) and first is `nextTokenId()` at the block
before GLISK_START_BLOCK (1 where the contract did not exist yet: `eth_call` returns `0x`).
That is an independent proof of completeness: the table compared with itself
(`token_ids_contiguous`) cannot see a missing tail, which is what a lagging node leaves.

Missing ids are a data failure only where their mints lie at or below the checkpoint
(last_processed_block, at most the final block): above it the backfill has yet to come,
so they are reported (and `glisk repair` adds them now) without failing. A missing range
that may straddle the checkpoint is cut at `nextTokenId()` at the checkpoint (one more
eth_call, only then). Extra ids in final blocks always fail.

B is the final block. An `eth_call` at a past block needs that block's state: archive
nodes (hosted providers) serve it, a self-hosted full node keeps only recent state. When
the state at B is gone, the proof says so (not a data failure) and compares at the newest
block whose state the node has (head - STATE_FALLBACK_DEPTH), counting only rows at or
below it; that comparison is advisory, and only findings at or below the final block
fail it. When the state before GLISK_START_BLOCK is gone, first is the startTokenId of
the first BatchMinted log at or after it (logs need no state; only the blocks before the
lowest stored event are read).

Costs: one eth_call (two when GLISK_START_BLOCK > 0), one more plus `eth_blockNumber`
when the final block's state is gone, and a few indexed queries over mint_events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from glisk_pipeline.chain.decoder import BATCH_MINTED_TOPIC0, from_contract
from glisk_pipeline.chain.keccak import selector
from glisk_pipeline.chain.provider_errors import RpcError, StateUnavailable
from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.db.queries import ids_outside, live_id_breaks, live_id_totals
from glisk_pipeline.db.schema import mint_events as events_t
from glisk_pipeline.listing import listed, shown
from glisk_pipeline.settings import Settings
from glisk_pipeline.windows import partition_key, window_of

# A full node keeps the state of its newest blocks (geth: 128); a few below the head is held
# by every synced node behind a load balancer, and not about to be reorganised away.
STATE_FALLBACK_DEPTH = 4


@dataclass(frozen=True, slots=True)
class IdRange:
    """Token ids [first, last]; their mints lie in blocks [from_block, to_block]."""

    first: int
    last: int
    from_block: int
    to_block: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        ids = f"id {self.first}" if self.first == self.last else f"ids {self.first}-{self.last}"
        blocks = (
            f"block {self.from_block}"
            if self.from_block == self.to_block
            else f"blocks {self.from_block}-{self.to_block}"
        )
        return f"{ids} ({blocks})"


@dataclass(slots=True)
class SupplyProof:
    final_block: int
    block: int | None  # the block compared at; None: no state available to compare with
    first_id: int | None = None
    next_id: int | None = None
    live_ids: int = 0  # live token ids the tables hold at blocks <= block
    missing: list[IdRange] = field(default_factory=list)
    extra: list[IdRange] = field(default_factory=list)  # beyond the range, or held twice
    advisory: bool = False  # compared below or above the final block (its state is gone)
    # Ids missing only in blocks at or below this one are a data failure: the checkpoint
    # (capped at the final block) says the index is complete there. Above it the backfill
    # has yet to come (the webhook may have missed them): reported, `glisk repair` adds them.
    horizon: int = -1
    notes: list[str] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)

    @property
    def compared(self) -> bool:
        return self.block is not None

    @property
    def consistent(self) -> bool:
        return not (self.missing or self.extra)

    @property
    def failing(self) -> bool:
        """A data failure: ids missing whose mints lie at or below the horizon (the
        checkpoint, at most the final block), or extra ids in final blocks. Findings above
        them are the index still catching up, or the tip still arriving or reorganising."""
        return any(r.to_block <= self.horizon for r in self.missing) or any(
            r.to_block <= self.final_block for r in self.extra
        )

    def summary(self) -> str:
        if not self.compared:
            return "not compared: " + "; ".join(self.notes)
        head = (
            f"at block {self.block}{' (advisory)' if self.advisory else ''}: contract ids "
            f"{self.first_id}-{(self.next_id or 1) - 1}, tables {self.live_ids}"
        )
        if self.consistent:
            return f"{head}, all present"
        parts = []
        for label, ranges in (("missing", self.missing), ("extra", self.extra)):
            if ranges:
                count = sum(r.size for r in ranges)
                parts.append(f"{count} {label} ({shown(ranges)})")
        return f"{head}; " + "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "final_block": self.final_block,
            "block": self.block,
            "advisory": self.advisory,
            "first_id": self.first_id,
            "next_token_id": self.next_id,
            "live_ids": self.live_ids,
            "consistent": self.consistent if self.compared else None,
            "failing": self.failing,
            "checkpoint_horizon": self.horizon,
            "missing_ids": sum(r.size for r in self.missing),
            "extra_ids": sum(r.size for r in self.extra),
            **listed("missing_ranges", [str(r) for r in self.missing]),
            **listed("extra_ranges", [str(r) for r in self.extra]),
            **listed("partitions_to_rematerialize", self.partitions),
            "notes": self.notes,
        }


# --- the contract's side --------------------------------------------------------------------


def supply_call_data(settings: Settings) -> str:
    signature, _ = settings.supply_function
    return selector(signature)


def next_token_id(client: RpcClient, settings: Settings, block: int) -> int | None:
    """The contract's next token id at `block` (GLISK_SUPPLY_FUNCTION); None where the
    contract had no code yet. Raises StateUnavailable when the node lacks that state."""
    result = client.eth_call(settings.contract_address, supply_call_data(settings), block)
    if result in ("0x", ""):
        return None
    try:
        value = int(result, 16)
    except ValueError:
        raise RpcError(f"eth_call at block {block}: not a uint256: {result[:80]!r}") from None
    return value + settings.supply_function[1]


# --- the tables' side -----------------------------------------------------------------------


def contiguity_breaks(
    engine: Engine, checkpoint: int | None
) -> tuple[list[IdRange], list[IdRange]]:
    """(gaps, overlaps) between the live events' id ranges: an overlap anywhere (a row of
    a lost fork still live), a gap where the event after it is at or below the checkpoint
    (above it the index may still be catching up). The tables against themselves; the
    supply proof adds the contract's bounds."""
    gaps: list[IdRange] = []
    overlaps: list[IdRange] = []
    for start, stop, block, prev_end, prev_block in live_id_breaks(engine):
        if prev_end is None:
            continue
        if start <= prev_end:
            overlaps.append(IdRange(start, min(stop, prev_end), block, block))
        elif checkpoint is not None and block <= checkpoint:
            low = prev_block if prev_block is not None else block
            gaps.append(IdRange(prev_end + 1, start - 1, low, block))
    return gaps, overlaps


def compare_ids(
    engine: Engine,
    *,
    block: int,
    first: int,
    next_id: int,
    start_block: int,
) -> tuple[int, list[IdRange], list[IdRange]]:
    """(live ids, missing, extra) of the live events at blocks <= block against the
    contract's range [first, next_id - 1]."""
    live_ids, _, high, top_block = live_id_totals(engine, block)
    missing: list[IdRange] = []
    extra = [IdRange(a, b, n, n) for a, b, n in ids_outside(engine, block, first, next_id)]
    last = next_id - 1
    for start, stop, row_block, prev_end, prev_block in live_id_breaks(engine, block):
        if prev_end is None:  # the first event: ids before it are missing
            lo, from_block = first, start_block
        elif start <= prev_end:  # held twice
            dup = IdRange(start, min(stop, prev_end), row_block, row_block)
            extra.append(dup)
            continue
        else:
            lo, from_block = prev_end + 1, prev_block if prev_block is not None else start_block
        lo, hi = max(lo, first), min(start - 1, last)  # the parts outside are extra, above
        if lo <= hi:
            missing.append(IdRange(lo, hi, from_block, row_block))
    if high is None:  # no live rows at all
        if first <= last:
            missing.append(IdRange(first, last, start_block, block))
    elif high < last:  # the tail
        assert top_block is not None
        missing.append(IdRange(max(high + 1, first), last, top_block, block))
    extra.sort(key=lambda r: r.first)
    return live_ids, missing, extra


def windows_of(ranges: list[IdRange], *, size: int, start_block: int) -> list[str]:
    """Every window holding a block between the events around each range (ids are
    assigned in chain order, so the missing mints lie there), ascending, each once."""
    starts: set[int] = set()
    for r in ranges:
        first, _ = window_of(max(r.from_block, start_block), size)
        last, _ = window_of(max(r.to_block, start_block), size)
        starts.update(range(first, last + 1, size))
    return [partition_key(s, s + size - 1) for s in sorted(starts)]


# --- the proof ------------------------------------------------------------------------------


def prove(
    client: RpcClient,
    engine: Engine,
    settings: Settings,
    final_block: int,
    checkpoint: int | None,
) -> SupplyProof:
    """The proof at the final block (see the module docstring); `checkpoint` is
    last_processed_block, below which the index claims to be complete."""
    horizon = min(final_block, checkpoint if checkpoint is not None else -1)
    proof = SupplyProof(final_block=final_block, block=final_block, horizon=horizon)
    start_block = settings.start_block
    try:
        next_id = next_token_id(client, settings, final_block)
    except StateUnavailable:
        head = client.block_number()
        fallback = max(0, head - STATE_FALLBACK_DEPTH)
        proof.notes.append(
            f"the node has no state at the final block {final_block}; compared at "
            f"block {fallback} (head - {STATE_FALLBACK_DEPTH}) instead, advisory"
        )
        proof.advisory, proof.block = True, fallback
        try:
            next_id = next_token_id(client, settings, fallback)
        except StateUnavailable:
            proof.notes.append(f"the node has no state at block {fallback} either")
            proof.block = None
            return proof
    assert proof.block is not None
    if next_id is None:
        raise RpcError(
            f"GLISK_NFT_CONTRACT_ADDRESS {settings.contract_address} has no code at block "
            f"{proof.block}: wrong address or network?"
        )
    first = _first_id(client, engine, settings, proof, next_id)
    live_ids, missing, extra = compare_ids(
        engine, block=proof.block, first=first, next_id=next_id, start_block=start_block
    )
    proof.first_id, proof.next_id, proof.live_ids = first, next_id, live_ids
    proof.missing, proof.extra = _split_at_horizon(client, settings, proof, missing), extra
    proof.partitions = windows_of(
        missing + extra, size=settings.GLISK_PARTITION_SIZE, start_block=start_block
    )
    return proof


def _split_at_horizon(
    client: RpcClient, settings: Settings, proof: SupplyProof, missing: list[IdRange]
) -> list[IdRange]:
    """A missing range whose mints may lie on both sides of the horizon is cut where the
    contract's counter stood at the horizon: one more eth_call, only when there is one."""
    h = proof.horizon
    if not any(r.from_block <= h < r.to_block for r in missing):
        return missing
    try:
        at_horizon = next_token_id(client, settings, h)
    except StateUnavailable:
        proof.notes.append(
            f"ids missing around the checkpoint {h} not split at it (the node has no state "
            "there); "
            "counted as not yet backfilled"
        )
        return missing
    split: list[IdRange] = []
    for r in missing:
        if at_horizon is None or not r.from_block <= h < r.to_block:
            split.append(r)
            continue
        if r.first < at_horizon:
            split.append(IdRange(r.first, min(r.last, at_horizon - 1), r.from_block, h))
        if r.last >= at_horizon:
            split.append(IdRange(max(r.first, at_horizon), r.last, h + 1, r.to_block))
    return split


def _first_id(
    client: RpcClient, engine: Engine, settings: Settings, proof: SupplyProof, next_id: int
) -> int:
    """The contract's next token id just before GLISK_START_BLOCK (1 before it existed)."""
    start = settings.start_block
    if start == 0:
        return 1
    try:
        before = next_token_id(client, settings, start - 1)
    except StateUnavailable:
        assert proof.block is not None
        first = first_logged_id(client, engine, settings, proof.block, next_id)
        proof.notes.append(
            f"the node has no state at block {start - 1}: first id {first} read from the first "
            f"BatchMinted log at or after block {start} instead"
        )
        return first
    return 1 if before is None else before


def first_logged_id(
    client: RpcClient, engine: Engine, settings: Settings, block: int, next_id: int
) -> int:
    """startTokenId of the first BatchMinted log in [GLISK_START_BLOCK, block]: logs need no
    state, and ids grow in chain order. Only the blocks before the lowest stored event are
    read, its own included (usually few: the deployment to the first mint)."""
    contract = settings.contract_address
    with engine.connect() as conn:
        lowest = conn.execute(
            select(events_t.c.block_number, events_t.c.start_token_id)
            .where(~events_t.c.removed, events_t.c.block_number <= block)
            .order_by(events_t.c.start_token_id)
            .limit(1)
        ).first()
    upto = lowest[0] if lowest is not None else block  # its block may hold earlier mints
    if upto >= settings.start_block:
        chunks = client.iter_logs(contract, BATCH_MINTED_TOPIC0, settings.start_block, upto)
        for chunk in chunks:
            for log in chunk.logs:
                if from_contract(log, contract) and len(log["topics"]) == 4:
                    return int(log["topics"][3], 16)
    # no log up to the lowest stored event (a node without the logs?), or none at all
    return int(lowest[1]) if lowest is not None else next_id
