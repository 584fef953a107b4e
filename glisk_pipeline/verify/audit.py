"""Compare the chain's BatchMinted logs with the tables over a block range, read-only:
what `glisk recover --dry-run` reports before anything is written.

Each log of the chain is `present` (a live row with the same fields), `missing` (no row,
or a row marked removed: a recovery would store or revive it) or `differs` (a live row
whose fields disagree, e.g. another block hash after a reorg). A live row in the range
that the chain does not have is `not_on_chain`: a recovery marks it removed where the
blocks are final.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from sqlalchemy import Engine, select

from glisk_pipeline.chain.decoder import (
    BATCH_MINTED_TOPIC0,
    MintRecord,
    decode_rpc_log,
    from_contract,
)
from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.db.schema import mint_events

# The fields a row must agree on with the chain's log (the key is tx_hash + log_index).
COMPARED = (
    "block_number",
    "block_hash",
    "block_timestamp",
    "contract_address",
    "minter",
    "author_wallet",
    "start_token_id",
    "quantity",
    "total_paid",
)


@dataclass(frozen=True, slots=True)
class Finding:
    block_number: int
    tx_hash: str
    log_index: int
    detail: str = ""  # which fields differ, or that the row is marked removed

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"block {self.block_number} tx {self.tx_hash} log {self.log_index}{extra}"


@dataclass(slots=True)
class AuditReport:
    from_block: int
    to_block: int
    on_chain: int = 0
    present: int = 0
    missing: list[Finding] = field(default_factory=list)
    differs: list[Finding] = field(default_factory=list)
    not_on_chain: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.differs or self.not_on_chain)

    def blocks(self) -> list[int]:
        """Every block with a finding, ascending."""
        found = self.missing + self.differs + self.not_on_chain
        return sorted({f.block_number for f in found})

    def merge(self, other: AuditReport) -> None:
        self.on_chain += other.on_chain
        self.present += other.present
        self.missing += other.missing
        self.differs += other.differs
        self.not_on_chain += other.not_on_chain


def compare(records: Iterable[MintRecord], rows: Iterable[dict[str, object]]) -> AuditReport:
    """Classify the chain's `records` against the table `rows` of the same block range."""
    by_key = {(str(r["tx_hash"]), int(r["log_index"])): r for r in rows}  # type: ignore[call-overload]
    report = AuditReport(0, 0)
    seen: set[tuple[str, int]] = set()
    for record in records:
        report.on_chain += 1
        seen.add(record.key)
        row = by_key.get(record.key)
        finding = Finding(record.block_number, record.tx_hash, record.log_index)
        if row is None:
            report.missing.append(finding)
        elif row["removed"]:
            report.missing.append(replace(finding, detail="marked removed"))
        else:
            wrong = [name for name in COMPARED if getattr(record, name) != row[name]]
            if wrong:
                report.differs.append(replace(finding, detail="differs: " + ", ".join(wrong)))
            else:
                report.present += 1
    for key, row in sorted(by_key.items(), key=lambda kv: (kv[1]["block_number"], kv[0])):
        if key not in seen and not row["removed"]:
            report.not_on_chain.append(Finding(int(row["block_number"]), key[0], key[1]))  # type: ignore[call-overload]
    return report


def table_rows(engine: Engine, from_block: int, to_block: int) -> list[dict[str, object]]:
    t = mint_events
    query = select(t.c.tx_hash, t.c.log_index, t.c.removed, *(t.c[name] for name in COMPARED))
    query = query.where(t.c.block_number.between(from_block, to_block))
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:  # the record's form: unix seconds
        row["block_timestamp"] = int(row["block_timestamp"].timestamp())
    return rows


def audit_range(
    client: RpcClient,
    engine: Engine,
    contract: str,
    from_block: int,
    to_block: int,
    *,
    on_chunk: Callable[[AuditReport], None] | None = None,
) -> AuditReport:
    """Fetch the range's logs chunk by chunk (the same client and decoder as a recovery)
    and compare each chunk with the rows of its blocks. Writes nothing."""
    contract = contract.lower()
    report = AuditReport(from_block, to_block)
    for chunk in client.iter_logs(contract, BATCH_MINTED_TOPIC0, from_block, to_block):
        records = [decode_rpc_log(log) for log in chunk.logs if from_contract(log, contract)]
        part = compare(records, table_rows(engine, chunk.from_block, chunk.to_block))
        part.from_block, part.to_block = chunk.from_block, chunk.to_block
        report.merge(part)
        if on_chunk is not None:
            on_chunk(part)
    return report
