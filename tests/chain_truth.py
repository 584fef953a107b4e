"""What the chain says vs what the tables say, for tests that compare the two."""

from __future__ import annotations

from sqlalchemy import Engine, select

from devtools.devchain import chain_logs
from glisk_pipeline.chain import decode_rpc_log
from glisk_pipeline.db.schema import mint_events, tokens
from tests.fixtures_chain import DevChain


def chain_rows(devchain: DevChain, from_block: int = 0, to_block: int | None = None) -> set:
    """(tx_hash, log_index, block_number, block_hash, minter, author, start, qty, paid)"""
    return {
        _row(decode_rpc_log(log))
        for log in chain_logs(devchain.anvil, devchain.glisk, from_block, to_block)
    }


def _row(r) -> tuple:
    return (
        r.tx_hash, r.log_index, r.block_number, r.block_hash, r.minter, r.author_wallet,
        r.start_token_id, r.quantity, r.total_paid,
    )  # fmt: skip


def table_rows(engine: Engine) -> set:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                mint_events.c.tx_hash, mint_events.c.log_index, mint_events.c.block_number,
                mint_events.c.block_hash, mint_events.c.minter, mint_events.c.author_wallet,
                mint_events.c.start_token_id, mint_events.c.quantity, mint_events.c.total_paid,
            ).where(~mint_events.c.removed)
        ).all()  # fmt: skip
    return {tuple(row) for row in rows}


def token_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(tokens.c.token_id).order_by(tokens.c.token_id)).scalars())
