"""Decoded records for store tests that need no chain (the decoder is tested on anvil)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from sqlalchemy import Engine, delete, select

from glisk_pipeline.chain.decoder import MintRecord
from glisk_pipeline.db.schema import mint_events, tokens
from glisk_pipeline.db.store.api import CanonicalHashes


def address(i: int) -> str:
    return "0x" + f"{i:040x}"


def make_records(
    n: int,
    *,
    first_token: int = 1,
    first_block: int = 100,
    seed: int = 7,
    authors: int = 10,
    block_hash_salt: str = "b",
) -> list[MintRecord]:
    rng = random.Random(seed)
    records = []
    token = first_token
    for i in range(n):
        quantity = rng.randint(1, 50)
        block = first_block + i // 3
        records.append(
            MintRecord(
                tx_hash="0x" + f"{seed:08x}{i:056x}",
                log_index=i % 3,
                block_number=block,
                block_hash="0x" + block_hash_salt * 8 + f"{block:056x}",
                block_timestamp=1_700_000_000 + 2 * block,
                contract_address=address(0xC0FFEE),
                minter=address(1000 + rng.randrange(20)),
                author_wallet=address(2000 + rng.randrange(authors)),
                start_token_id=token,
                quantity=quantity,
                total_paid=rng.randrange(10**15, 10**18) * quantity,
            )
        )
        token += quantity
    return records


def block_hash(block: int, salt: str = "b") -> str:
    """The hash make_records gives `block` (salt "b"); another salt is another fork."""
    return "0x" + salt * 8 + f"{block:056x}"


def chain_of(*records: MintRecord, replaced: str = "c") -> CanonicalHashes:
    """The proof a final reconcile asks for (the canonical hash at each block number),
    for store tests that need no node: a block holding one of `records` has that
    record's hash; every other block was replaced by a fork whose hashes (salt
    `replaced`) no stored row has. The wiring to a real node's eth_getBlockByNumber is
    tested on anvil (tests/test_lagging_nodes_and_reorgs.py)."""
    hashes = {r.block_number: r.block_hash for r in records}

    def canonical(numbers: Sequence[int]) -> Mapping[int, str | None]:
        return {n: hashes.get(n, block_hash(n, replaced)) for n in numbers}

    return canonical


def delete_mints(engine: Engine, start_ids: list[int]) -> None:
    with engine.begin() as conn:
        ids = select(mint_events.c.id).where(mint_events.c.start_token_id.in_(start_ids))
        conn.execute(delete(tokens).where(tokens.c.mint_event_id.in_(ids)))
        conn.execute(delete(mint_events).where(mint_events.c.start_token_id.in_(start_ids)))
