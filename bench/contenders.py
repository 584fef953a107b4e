"""B1's contenders: the project's path (in-process, and the recovery CLI as a whole
process), the seed's naive path, and the two ceilings. Each takes (rpc_url, database_url,
contract, from_block, to_block) and returns counts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg
from sqlalchemy import select
from sqlalchemy.orm import DeclarativeBase, Session
from web3 import Web3

from devtools.anvil import artifact
from devtools.local_chain import DEFAULT_AUTHOR
from glisk_pipeline.chain.decoder import BATCH_MINTED_TOPIC0
from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.db.engine import make_engine
from glisk_pipeline.db.schema import authors, mint_events, tokens
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.sync.backfill import backfill_range

Counts = dict[str, Any]


def project(
    rpc: str, db: str, contract: str, lo: int, hi: int, batch_limit: int | None = None
) -> Counts:
    """Exactly what the asset and the CLI run: RpcClient + decoder + MintStore. With
    `batch_limit`, as RPC_BATCH_LIMIT sets it (0: no JSON-RPC batches at all); clients
    configured differently keep separate batch policies, so no contender inherits one."""
    engine = make_engine(db)
    try:
        with RpcClient(rpc, batch_limit=batch_limit) as client:
            report = backfill_range(client, MintStore(engine, DEFAULT_AUTHOR, lo), contract, lo, hi)
    finally:
        engine.dispose()
    return {"events": report.logs_found, "tokens": report.tokens, "rpc_calls": report.rpc_calls}


_CLI_DONE = re.compile(r"Done: (\d+) events found, .*; (\d+) RPC calls .* in ([0-9.]+)s")


def cli_process(rpc: str, db: str, contract: str, lo: int, hi: int) -> Counts:
    """The recovery CLI as an operator runs it, start-up included (interpreter, imports,
    settings, the schema-revision check): `python -m glisk_pipeline.cli.recover_events`
    in a fresh process. Its token count is read from the database afterwards (the CLI
    does not print it), outside the timed part. `loop_s`: the time its own summary gives
    for the recovery loop (start-up and the closing supply proof excluded)."""
    env = {
        **os.environ,
        "DATABASE_URL": db,
        "RPC_URL": rpc,
        "NETWORK": "LOCAL",
        "GLISK_NFT_CONTRACT_ADDRESS": contract,
        "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
        "GLISK_START_BLOCK": str(lo),
        "GLISK_CONFIRMATIONS": "0",  # the whole history is final, as for the other paths
    }
    cli = [sys.executable, "-m", "glisk_pipeline.cli.recover_events"]
    out = subprocess.run(
        [*cli, "--from-block", str(lo), "--to-block", str(hi)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    done = _CLI_DONE.search(out.stdout)
    if out.returncode != 0 or done is None:
        raise RuntimeError(f"recovery CLI exited {out.returncode}: {out.stderr.strip()[-500:]}")
    return {
        "events": int(done[1]),
        "tokens": None,
        "rpc_calls": int(done[2]),
        "loop_s": float(done[3]),
    }


# --- the seed's original implementation -------------------------------------------------


class _Base(DeclarativeBase):
    pass


class _Author(_Base):
    __table__ = authors


class _MintEvent(_Base):
    __table__ = mint_events


class _Token(_Base):
    __table__ = tokens


class _CountingProvider(Web3.HTTPProvider):
    calls = 0

    def make_request(self, method: Any, params: Any) -> Any:
        type(self).calls += 1
        return super().make_request(method, params)


def baseline(rpc: str, db: str, contract: str, lo: int, hi: int) -> Counts:
    """Fixed 1,000-block windows, w3.eth.get_logs, web3's event decoder, a header per new
    block, then per log: exists() check, ORM insert of the event and its tokens, commit."""
    _CountingProvider.calls = 0
    w3 = Web3(_CountingProvider(rpc))
    event = w3.eth.contract(
        address=Web3.to_checksum_address(contract), abi=artifact("GliskNFT")["abi"]
    ).events.BatchMinted()
    engine = make_engine(db)
    events = n_tokens = 0
    stamps: dict[int, datetime] = {}
    try:
        with Session(engine) as session:
            default = _default_author(session)
            for start in range(lo, hi + 1, 1000):
                logs = w3.eth.get_logs(
                    {
                        "address": Web3.to_checksum_address(contract),
                        "topics": [BATCH_MINTED_TOPIC0],
                        "fromBlock": start,
                        "toBlock": min(hi, start + 999),
                    }
                )
                for raw in logs:
                    ev = event.process_log(raw)
                    tx, idx = ev.transactionHash.to_0x_hex(), ev.logIndex
                    exists = session.execute(
                        select(_MintEvent.id).where(
                            _MintEvent.tx_hash == tx, _MintEvent.log_index == idx
                        )
                    ).first()
                    if exists:
                        continue
                    if ev.blockNumber not in stamps:
                        ts = w3.eth.get_block(ev.blockNumber)["timestamp"]
                        stamps[ev.blockNumber] = datetime.fromtimestamp(ts, UTC)
                    args = ev.args
                    author = args.promptAuthor.lower()
                    author_id = session.execute(
                        select(_Author.id).where(_Author.wallet_address == author)
                    ).scalar_one_or_none()
                    row = _MintEvent(
                        tx_hash=tx,
                        log_index=idx,
                        block_number=ev.blockNumber,
                        block_hash=ev.blockHash.to_0x_hex(),
                        block_timestamp=stamps[ev.blockNumber],
                        contract_address=ev.address.lower(),
                        minter=args.minter.lower(),
                        author_wallet=author,
                        start_token_id=args.startTokenId,
                        quantity=args.quantity,
                        total_paid=args.totalPaid,
                        source="backfill",
                    )
                    session.add(row)
                    session.flush()
                    for token_id in range(args.startTokenId, args.startTokenId + args.quantity):
                        session.add(
                            _Token(
                                token_id=token_id,
                                mint_event_id=row.id,
                                minter_address=args.minter.lower(),
                                author_id=author_id or default,
                                mint_timestamp=stamps[ev.blockNumber],
                            )
                        )
                    session.commit()
                    events += 1
                    n_tokens += args.quantity
    finally:
        engine.dispose()
    return {"events": events, "tokens": n_tokens, "rpc_calls": _CountingProvider.calls}


def _default_author(session: Session) -> int:
    found = session.execute(
        select(_Author.id).where(_Author.wallet_address == DEFAULT_AUTHOR)
    ).scalar_one_or_none()
    if found is None:
        session.add(row := _Author(wallet_address=DEFAULT_AUTHOR))
        session.commit()
        found = row.id
    return found


# --- ceilings ---------------------------------------------------------------------------

_EVENT_COLS = "tx_hash, log_index, block_number, block_hash, block_ts, minter, author, start_token, quantity, total_paid"  # noqa: E501
_TOKEN_COLS = "token_id, tx_hash, log_index, minter, mint_ts"
_CEILING_DDL = """
CREATE TABLE {p}events (tx_hash text, log_index int, block_number bigint, block_hash text,
  block_ts timestamptz, minter text, author text, start_token bigint, quantity int,
  total_paid numeric(78,0){uq_events});
CREATE TABLE {p}tokens (token_id bigint{pk_tokens}, tx_hash text, log_index int,
  minter text, mint_ts timestamptz);
"""


def fetch_sliced(rpc: str, contract: str, lo: int, hi: int) -> list[tuple[Any, ...]]:
    """One eth_getLogs for the whole range, orjson, hex slicing: no validation at all."""
    payload = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_getLogs",
        "params": [
            {
                "address": contract,
                "topics": [BATCH_MINTED_TOPIC0],
                "fromBlock": hex(lo),
                "toBlock": hex(hi),
            }
        ],
    }
    with httpx.Client(timeout=120, headers={"Content-Type": "application/json"}) as http:
        logs = orjson.loads(http.post(rpc, content=orjson.dumps(payload)).content)["result"]
    rows = []
    for log in logs:
        t, d = log["topics"], log["data"]
        rows.append(
            (
                log["transactionHash"],
                int(log["logIndex"], 16),
                int(log["blockNumber"], 16),
                log["blockHash"],
                datetime.fromtimestamp(int(log["blockTimestamp"], 16), UTC),
                "0x" + t[1][26:],
                "0x" + t[2][26:],
                int(t[3], 16),
                int(d[2:66], 16),
                int(d[66:130], 16),
            )
        )
    return rows


def _pg_dsn(db: str) -> str:
    return db.replace("postgresql+psycopg://", "postgresql://")


def _token_rows(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(tid, e[0], e[1], e[5], e[4]) for e in events for tid in range(e[7], e[7] + e[8])]


def ceiling(rpc: str, db: str, contract: str, lo: int, hi: int, *, idempotent: bool) -> Counts:
    """(a) idempotent: COPY into temp staging, INSERT ... ON CONFLICT DO NOTHING into tables
    with the same UNIQUE constraints; (b) raw: plain COPY into unconstrained tables."""
    with psycopg.connect(_pg_dsn(db), autocommit=True) as conn:
        conn.execute(
            _CEILING_DDL.format(
                p="ceil_",
                uq_events=", UNIQUE (tx_hash, log_index)" if idempotent else "",
                pk_tokens=" PRIMARY KEY" if idempotent else "",
            )
        )
    events = fetch_sliced(rpc, contract, lo, hi)
    toks = _token_rows(events)
    with psycopg.connect(_pg_dsn(db)) as conn, conn.cursor() as cur:
        target = "ceil_"
        if idempotent:
            cur.execute(
                "CREATE TEMP TABLE stage_events (LIKE ceil_events) ON COMMIT DROP;"
                "CREATE TEMP TABLE stage_tokens (LIKE ceil_tokens) ON COMMIT DROP"
            )
            target = "stage_"
        with cur.copy(f"COPY {target}events ({_EVENT_COLS}) FROM STDIN") as copy:
            for row in events:
                copy.write_row(row)
        with cur.copy(f"COPY {target}tokens ({_TOKEN_COLS}) FROM STDIN") as copy:
            for row in toks:
                copy.write_row(row)
        if idempotent:
            cur.execute("INSERT INTO ceil_events SELECT * FROM stage_events ON CONFLICT DO NOTHING")
            cur.execute("INSERT INTO ceil_tokens SELECT * FROM stage_tokens ON CONFLICT DO NOTHING")
        conn.commit()
    return {"events": len(events), "tokens": len(toks), "rpc_calls": 1}
