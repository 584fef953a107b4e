"""Targeted repair: store exactly the mints the supply proof found missing, add-only.

Token ids are assigned per batch, contiguously and in chain order, so a missing id range
starting at token `a` starts with one BatchMinted log whose `startTokenId` (the third
indexed topic) is `a`. One `eth_getLogs` with `topics=[BatchMinted, null, null, a]` over
[GLISK_START_BLOCK, the proof's block] finds it however long the chain is (the node's
topic index answers, not a scan). When that batch ends before the range does, the next
batch starts right after it: another query. Each query goes through the client's one
guarded eth_getLogs (`RpcClient.get_logs_checked`: with the last block's header in the
same batch where the endpoint batches, so an answer from a node behind the head is
refused and asked again, not read as "not found"). A provider that refuses the wide range
(a block-range cap) gets the blocks between the events around each gap instead, through
the adaptive loop.

What is found is stored through the one store (`MintStore.store`): add-only, never a
reconcile, nothing removed and no checkpoint moved. A batch the node does not return
(a lagging node, a pruned log index) is reported, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glisk_pipeline.chain.decoder import (
    BATCH_MINTED_TOPIC0,
    MintRecord,
    decode_rpc_log,
    from_contract,
)
from glisk_pipeline.chain.provider_errors import RangeError
from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.verify.supply import IdRange, SupplyProof


@dataclass(slots=True)
class RepairReport:
    ranges: list[IdRange]
    found: list[MintRecord] = field(default_factory=list)
    not_found: list[int] = field(default_factory=list)  # batch starts the node did not return
    scanned: list[IdRange] = field(default_factory=list)  # read by range (a capped provider)
    queries: int = 0  # eth_getLogs queries sent
    http_requests: int = 0  # HTTP requests (a JSON-RPC batch counts once)
    stored: int = 0
    duplicates: int = 0
    tokens: int = 0


def topic_of(token_id: int) -> str:
    return "0x" + format(token_id, "064x")


def find_missing(
    client: RpcClient, contract: str, proof: SupplyProof, from_block: int
) -> RepairReport:
    """The BatchMinted logs that start each missing range and its continuation."""
    assert proof.block is not None
    contract = contract.lower()
    report = RepairReport(ranges=list(proof.missing))
    calls = client.stats.calls
    pending = [(r.first, r) for r in proof.missing]
    while pending:
        try:
            answers = [
                _by_start_id(client, contract, a, from_block, proof.block) for a, _ in pending
            ]
        except RangeError:
            # a provider that caps the block range (Alchemy's free tier: 10 blocks) refuses
            # [start, final]: read the blocks around each gap instead, adaptively
            for r in {r for _, r in pending}:
                _scan_around(client, contract, r, max(from_block, r.from_block), report)
            break
        report.queries += len(pending)
        found = []
        for (a, r), logs in zip(pending, answers, strict=True):
            live = [log for log in logs if from_contract(log, contract)]
            if not live:
                report.not_found.append(a)
                continue
            found.append((r, live[0]))
        client.fill_timestamps([log for _, log in found], from_block, proof.block)
        pending = []
        for r, log in found:
            record = decode_rpc_log(log)
            report.found.append(record)
            after = record.start_token_id + record.quantity
            if after <= r.last:  # the range holds more batches: the next one starts here
                pending.append((after, r))
    report.http_requests = client.stats.calls - calls
    report.found.sort(key=lambda m: m.start_token_id)
    return report


def _by_start_id(
    client: RpcClient, contract: str, start_id: int, from_block: int, to_block: int
) -> list[dict[str, Any]]:
    """The BatchMinted logs of `contract` in [from_block, to_block] whose startTokenId
    is `start_id` (the third indexed topic)."""
    flt = {
        "address": contract,
        "topics": [BATCH_MINTED_TOPIC0, None, None, topic_of(start_id)],
        "fromBlock": hex(from_block),
        "toBlock": hex(to_block),
    }
    logs, _ = client.get_logs_checked(flt, from_block, to_block)
    return logs


def _scan_around(
    client: RpcClient, contract: str, r: IdRange, from_block: int, report: RepairReport
) -> None:
    """The mints of `r` from the blocks between the events around it (ids are assigned in
    chain order), through the adaptive eth_getLogs loop."""
    wanted = range(r.first, r.last + 1)
    for chunk in client.iter_logs(contract, BATCH_MINTED_TOPIC0, from_block, r.to_block):
        for log in chunk.logs:
            if not from_contract(log, contract):
                continue
            record = decode_rpc_log(log)
            if record.start_token_id in wanted:
                report.found.append(record)
    report.scanned.append(r)


def store_found(store: MintStore, report: RepairReport, final_block: int) -> None:
    """Add the found mints through the one store. Mints above the final block (an
    advisory proof compares near the head) never revive a row marked removed."""
    final = [m for m in report.found if m.block_number <= final_block]
    tip = [m for m in report.found if m.block_number > final_block]
    for records, revive in ((final, True), (tip, False)):
        if records:
            result = store.store(records, source="backfill", revive=revive)
            report.stored += result.stored
            report.duplicates += result.duplicates
            report.tokens += result.tokens
