"""The one fetch → decode → store loop, shared by the Dagster asset, the CLI and the
benchmarks: so what the benchmark measures is exactly what production runs.

Each chunk the RPC client yields covers its block range completely, so it is reconciled
on its own (`MintStore.reconcile_range`): memory stays bounded by one chunk whatever the
range, and the checkpoint advances with every chunk stored. The next chunk is fetched
and decoded while the current one is written (one chunk ahead, no more), so a provider's
latency, the decoding and the database's work overlap instead of adding up.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TypeVar, cast

from glisk_pipeline.chain.decoder import (
    BATCH_MINTED_TOPIC0,
    MintRecord,
    decode_rpc_log,
    from_contract,
)
from glisk_pipeline.chain.rpc import LogChunk, RangeCheck, RpcClient
from glisk_pipeline.db.store import MintStore, StoreResult
from glisk_pipeline.verify.range_proof import SupplyTiling

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChunkReport:
    from_block: int
    to_block: int
    found: int
    stored: int
    duplicates: int
    removed: int
    tokens: int
    proven_blocks: int = 0
    proof: str = ""  # how the answer it came from was proven complete (rpc.PROOF_*)


@dataclass(slots=True)
class BackfillReport:
    from_block: int
    to_block: int
    logs_found: int = 0
    stored: int = 0
    duplicates: int = 0
    removed: int = 0
    tokens: int = 0
    rpc_calls: int = 0
    rpc_retries: int = 0
    lagging_answers: int = 0  # eth_getLogs answers refused: the node lacked the range
    proven_blocks: int = 0  # block hashes read to prove removals
    final_chunk_size: int = 0
    # eth_getLogs ranges by how they were proven complete: "supply" (their logs tile the
    # contract's nextTokenId() over the range) or "header" (same-batch header, where the
    # node has no state to count with)
    proofs: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    chunks: list[ChunkReport] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.logs_found / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out.pop("chunks")
        out["events_per_s"] = round(self.events_per_s, 1)
        return out


def backfill_range(
    client: RpcClient,
    store: MintStore,
    contract: str,
    from_block: int,
    to_block: int,
    *,
    final_block: int | None = None,
    dry_run: bool = False,
    on_chunk: Callable[[ChunkReport], None] | None = None,
    check: RangeCheck | None = None,
) -> BackfillReport:
    """Make the tables equal the chain for [from_block, to_block] (or, with dry_run,
    only fetch and decode). Raises RpcError / StoreError; chunks stored before a failure
    stay stored and checkpointed.

    Only final blocks are reconciled (rows not on the chain marked removed, range
    checkpointed): pass `final_block` when the range may reach past it, and the blocks
    above it are only added to (a lagging provider's empty answer for a fresh block must
    not remove what the webhook stored). None means the whole range is final.

    Every eth_getLogs answer is proven complete by `check` before it is used: by default
    the supply tiling (range_proof.py) with nextTokenId(); callers with settings pass
    `SupplyTiling.from_settings` for GLISK_SUPPLY_FUNCTION."""
    contract = contract.lower()
    if check is None:
        check = SupplyTiling(client, contract)
    report = BackfillReport(from_block, to_block)
    calls, retries, lagging = client.stats.calls, client.stats.retries, client.stats.lagging
    proven = client.stats.proven.copy()
    started = time.perf_counter()
    last_final = to_block if final_block is None else min(to_block, final_block)
    try:
        logs = client.iter_logs(contract, BATCH_MINTED_TOPIC0, from_block, to_block, check=check)
        for chunk, records in prefetch(_decoded(logs, contract)):
            part = _write(client, store, chunk, records, last_final, dry_run)
            report.chunks.append(part)
            report.logs_found += part.found
            report.stored += part.stored
            report.duplicates += part.duplicates
            report.removed += part.removed
            report.tokens += part.tokens
            report.proven_blocks += part.proven_blocks
            if on_chunk is not None:
                on_chunk(part)
    finally:
        report.rpc_calls = client.stats.calls - calls
        report.rpc_retries = client.stats.retries - retries
        report.lagging_answers = client.stats.lagging - lagging
        report.final_chunk_size = client.stats.chunk_size
        report.proofs = dict(client.stats.proven - proven)
        report.duration_s = time.perf_counter() - started
    return report


def _decoded(
    chunks: Iterator[LogChunk], contract: str
) -> Iterator[tuple[LogChunk, list[MintRecord]]]:
    """Each chunk with its decoded records. Runs in the prefetch worker, so decoding
    (~12 µs a log) overlaps the store's write of the previous chunk instead of adding
    to it."""
    for chunk in chunks:
        records = [decode_rpc_log(log) for log in chunk.logs if from_contract(log, contract)]
        yield chunk, records


def _write(
    client: RpcClient,
    store: MintStore,
    chunk: LogChunk,
    records: list[MintRecord],
    last_final: int,
    dry_run: bool,
) -> ChunkReport:
    start, end = chunk.from_block, chunk.to_block
    if dry_run:
        return ChunkReport(start, end, len(records), 0, 0, 0, 0, proof=chunk.proof)
    result = StoreResult()
    if start <= last_final:  # the final part: the chain is the truth for it
        final_end = min(end, last_final)
        final = [r for r in records if r.block_number <= final_end]
        result.merge(
            store.reconcile_range(
                final,
                start_block=start,
                end_block=final_end,
                # a row leaves the live set only if its block's hash changed (store/proof.py)
                canonical=client.block_hashes,
            )
        )
    fresh = [r for r in records if r.block_number > last_final]
    if fresh:
        # not final: add what is missing, but never revive a row a reorg removed (this
        # node's view may be the older fork)
        result.merge(store.store(fresh, source="backfill", revive=False))
    return ChunkReport(
        start,
        end,
        len(records),
        result.stored,
        result.duplicates,
        result.removed,
        result.tokens,
        result.proven_blocks,
        chunk.proof,
    )


_DONE = object()


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Run `items` in a worker thread, at most `depth` items ahead of the consumer.
    The worker's exceptions are re-raised here; if the consumer stops early (an error,
    an interrupt), the worker stops after the item it is producing."""
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield cast(T, item)  # neither _DONE nor an exception: one of `items`
    finally:
        stop.set()
        # Wait for the worker to finish the item in hand (bounded by the RPC client's
        # timeout and attempts): it uses the caller's client, which must not be closed
        # or reused under it.
        worker.join()
