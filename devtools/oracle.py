"""The chain-vs-tables oracle: what the chain's BatchMinted logs say, and where the tables differ.

The one comparison used by the demo, the tests and the benchmarks. It reads the chain and
decodes with eth_abi, on purpose independent of the pipeline's decoder
(glisk_pipeline/chain/decoder.py slices hex) so that tests can compare the two; it reads the
tables with plain SELECTs.

    chain_logs(anvil, contract, from_block, to_block) -> raw eth_getLogs dicts (BatchMinted only)
    decode_mint(log) -> ChainMint;  chain_mints(anvil, contract, from_block, to_block)
    chain_rows(mints) == table_rows(engine)       the mint_events rows, as comparable tuples
    token_ids(engine)                              the tokens table's ids, ascending
    compare_with_chain(engine, mints) -> [problem] mint_events, tokens (and mint_stats)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from eth_abi import decode as abi_decode
from eth_utils import keccak
from sqlalchemy import Engine, func, select

from devtools.anvil import Anvil
from glisk_pipeline.db.schema import mint_events, mint_stats, tokens

# Computed from the signature here, not imported from the pipeline: the oracle checks it.
BATCH_MINTED_TOPIC0 = (
    "0x" + keccak(text="BatchMinted(address,address,uint256,uint256,uint256)").hex()
)
BATCH_BURNED_TOPIC0 = (
    "0x" + keccak(text="BatchBurned(address,address,uint256,uint256,uint256)").hex()
)
# A mint_events row as the oracle compares it (the row's other columns are bookkeeping).
ROW_COLUMNS = (
    "tx_hash",
    "log_index",
    "block_number",
    "block_hash",
    "minter",
    "author_wallet",
    "start_token_id",
    "quantity",
    "total_paid",
)


class ChainMint(NamedTuple):
    """One genuine BatchMinted as the chain says it: lowercase addresses and hashes, exact ints.

    Named apart from the pipeline's chain.MintRecord on purpose: this is the test oracle.
    """

    block_number: int
    block_hash: str
    block_timestamp: int
    tx_hash: str
    log_index: int
    minter: str
    prompt_author: str
    start_token_id: int
    quantity: int
    total_paid: int

    def row(self) -> tuple[Any, ...]:
        """The values of ROW_COLUMNS, as a mint_events row should hold them."""
        return (
            self.tx_hash, self.log_index, self.block_number, self.block_hash, self.minter,
            self.prompt_author, self.start_token_id, self.quantity, self.total_paid,
        )  # fmt: skip


def decode_mint(log: dict[str, Any]) -> ChainMint:
    """eth_abi decoding, independent of the pipeline's hex slicing: tests compare the two."""
    topics = [bytes.fromhex(t[2:]) for t in log["topics"]]
    (minter,) = abi_decode(["address"], topics[1])
    (author,) = abi_decode(["address"], topics[2])
    (start,) = abi_decode(["uint256"], topics[3])
    quantity, total_paid = abi_decode(["uint256", "uint256"], bytes.fromhex(log["data"][2:]))
    return ChainMint(
        block_number=int(log["blockNumber"], 16),
        block_hash=log["blockHash"].lower(),
        block_timestamp=int(log["blockTimestamp"], 16),
        tx_hash=log["transactionHash"].lower(),
        log_index=int(log["logIndex"], 16),
        minter=minter.lower(),
        prompt_author=author.lower(),
        start_token_id=start,
        quantity=quantity,
        total_paid=total_paid,
    )


def chain_logs(
    anvil: Anvil,
    contract: str,
    from_block: int = 0,
    to_block: int | None = None,
    topic0: str = BATCH_MINTED_TOPIC0,
) -> list[dict[str, Any]]:
    """What the chain says: raw eth_getLogs dicts for `contract` and `topic0` (anvil has no
    range or result limit)."""
    query = {
        "address": contract,
        "topics": [topic0],
        "fromBlock": hex(from_block),
        "toBlock": "latest" if to_block is None else hex(to_block),
    }
    return anvil.rpc("eth_getLogs", [query])


def chain_mints(
    anvil: Anvil, contract: str, from_block: int = 0, to_block: int | None = None
) -> list[ChainMint]:
    """Every genuine BatchMinted of `contract` in the range, in chain order."""
    return [decode_mint(log) for log in chain_logs(anvil, contract, from_block, to_block)]


def chain_rows(mints: Iterable[ChainMint]) -> set[tuple[Any, ...]]:
    return {m.row() for m in mints}


def table_rows(engine: Engine) -> set[tuple[Any, ...]]:
    """The live (not removed) mint_events rows, as ROW_COLUMNS tuples."""
    columns = [mint_events.c[name] for name in ROW_COLUMNS]
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).where(~mint_events.c.removed)).all()
    return {tuple(row) for row in rows}


def token_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(tokens.c.token_id).order_by(tokens.c.token_id)).scalars())


def compare_with_chain(
    engine: Engine, mints: list[ChainMint], *, with_stats: bool = True
) -> list[str]:
    """Mismatches between the tables and the chain's BatchMinted logs (empty: equal).

    with_stats=False leaves mint_stats out (for callers that do not build it)."""
    problems: list[str] = []
    stored, expected = table_rows(engine), chain_rows(mints)
    if stored != expected:
        problems.append(
            f"mint_events: {len(expected - stored)} chain logs missing, "
            f"{len(stored - expected)} rows not on chain"
        )
    have_tokens = set(token_ids(engine))
    want_tokens = {t for m in mints for t in range(m.start_token_id, m.start_token_id + m.quantity)}
    if have_tokens != want_tokens:
        problems.append(
            f"tokens: {len(want_tokens - have_tokens)} missing, "
            f"{len(have_tokens - want_tokens)} extra"
        )
    if with_stats:
        with engine.connect() as conn:
            events, n_tokens = conn.execute(
                select(func.sum(mint_stats.c.events), func.sum(mint_stats.c.tokens))
            ).one()
            paid = sum(conn.execute(select(mint_stats.c.total_paid)).scalars(), 0)
        chain_paid = sum(m.total_paid for m in mints)
        if (events or 0, n_tokens or 0, paid) != (len(mints), len(want_tokens), chain_paid):
            problems.append(
                f"mint_stats: {events} events / {n_tokens} tokens / {paid} wei, "
                f"chain {len(mints)} / {len(want_tokens)} / {chain_paid}"
            )
    return problems
