"""Decoded records for store tests that need no chain (the decoder is tested on anvil)."""

from __future__ import annotations

import random

from glisk_pipeline.chain import MintRecord


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
