"""B3: how cost grows. Sparse 1M-block ranges (against bench.sparse_shim), the same range
behind a provider's 1,000-block cap (requests against the ideal range / cap), webhook latency
with 0 vs 1M existing rows, chain_head_sensor ticks vs existing partitions, and a sensor
cold start over 200 windows in range runs vs one run per window."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text

from bench.b2_webhook import CONTRACT, PATH, service
from bench.common import Timer, throwaway_db
from bench.contenders import project
from bench.dagster_paths import sensor_cold_start, sensor_ticks
from bench.deliveries import Factory
from bench.loadgen import fixed_rate
from bench.sparse_shim import SparseChain, synthetic_logs
from glisk_pipeline.chain.decoder import BATCH_MINTED_TOPIC0
from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.db.engine import make_engine


def sparse(n_blocks: int, n_events: int) -> dict[str, Any]:
    out: dict[str, Any] = {"blocks": n_blocks}
    for label, events in (("empty", 0), (f"{n_events}_events", n_events)):
        logs = synthetic_logs(CONTRACT, n_blocks, events)
        with SparseChain(n_blocks, logs) as chain, throwaway_db("sparse") as db, Timer() as t:
            counts = project(chain.url, db, CONTRACT, 0, n_blocks - 1)
        out[label] = {**counts, "server_calls": chain.calls, "seconds": round(t.s, 3)}
    out["fixed_1000_block_windows_would_need"] = -(-n_blocks // 1000)
    return out


def capped(n_blocks: int, n_events: int, block_cap: int) -> dict[str, Any]:
    """eth_getLogs requests for [0, n_blocks) behind a stated block cap (Coinbase's
    message), against the ideal ceil(n_blocks / block_cap)."""
    logs = synthetic_logs(CONTRACT, n_blocks, n_events)
    chain = SparseChain(n_blocks, logs, block_cap)
    with chain, RpcClient(chain.url) as client, Timer() as t:
        chunks = client.iter_logs(CONTRACT, BATCH_MINTED_TOPIC0, 0, n_blocks - 1)
        found = sum(len(chunk.logs) for chunk in chunks)
    ideal = -(-n_blocks // block_cap)
    return {
        "blocks": n_blocks,
        "block_cap": block_cap,
        "events": found,
        "get_logs_requests": chain.get_logs,
        "refused": chain.refused,
        "ideal_requests": ideal,
        "ratio_to_ideal": round(chain.get_logs / ideal, 3),
        "seconds": round(t.s, 3),
    }


# 1M rows in seconds: generate_series server-side, one token per event, ids far away from
# the ones the load generator uses (those start at 1, at block 1,000,001).
_BULK = """
INSERT INTO mint_events (tx_hash, log_index, block_number, block_hash, block_timestamp,
  contract_address, minter, author_wallet, start_token_id, quantity, total_paid, source)
SELECT '0x' || lpad(to_hex(g), 64, '0'), 0, g, '0x' || lpad(to_hex(g), 64, 'a'),
  to_timestamp(1600000000 + g), :contract, '0x' || lpad(to_hex(g), 40, '0'),
  '0x' || lpad(to_hex(g % 300), 40, '0'), 10000000000 + g, 1, 1000000000000000, 'backfill'
FROM generate_series(1, :n) AS g;
INSERT INTO tokens (token_id, mint_event_id, minter_address, author_id, mint_timestamp)
SELECT start_token_id, id, minter, 1, block_timestamp FROM mint_events
WHERE start_token_id > 10000000000;
"""


def webhook_vs_rows(rows: int, seconds: float, warmup: int, per_s: float = 200) -> dict[str, Any]:
    out: dict[str, Any] = {"per_s": per_s, "rows_loaded": rows}
    with throwaway_db("b3wh") as db, service(db) as svc:
        url, factory = svc.url + PATH, Factory(CONTRACT)
        asyncio.run(fixed_rate(url, factory.make(warmup), per_s))  # warm-up
        out["0_rows"] = asyncio.run(
            fixed_rate(url, factory.make(int(per_s * seconds)), per_s)
        ).summary()
        engine = make_engine(db)
        with Timer() as t, engine.begin() as conn:
            for stmt in _BULK.strip().split(";\n"):
                conn.execute(text(stmt), {"contract": CONTRACT, "n": rows})
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
            out["rows_in_mint_events"] = conn.execute(
                text("SELECT count(*) FROM mint_events")
            ).scalar_one()
        engine.dispose()
        out["bulk_load_s"] = round(t.s, 1)
        asyncio.run(fixed_rate(url, factory.make(warmup), per_s))  # same warm-up after the load
        out[f"{rows}_rows"] = asyncio.run(
            fixed_rate(url, factory.make(int(per_s * seconds)), per_s)
        ).summary()
    return out


def run(
    n_blocks: int = 1_000_000,
    n_events: int = 20_000,
    block_cap: int = 1_000,
    rows: int = 1_000_000,
    seconds: float = 5.0,
    warmup: int = 200,
    sensor_partitions: tuple[int, ...] = (10, 1_000, 10_000),
    cold_windows: int = 200,
    cold_per_run: int = 50,
    cold_process_samples: int = 3,
) -> dict[str, Any]:
    return {
        "sparse": sparse(n_blocks, n_events),
        "sparse_behind_block_cap": capped(n_blocks, n_events, block_cap),
        "webhook_vs_rows": webhook_vs_rows(rows, seconds, warmup),
        "sensor": sensor_ticks(sensor_partitions),
        "sensor_cold_start": sensor_cold_start(cold_windows, cold_per_run, cold_process_samples),
    }
