"""B2's lower-bound contender: the least a webhook handler can do per delivery, never
shipped. A bare ASGI app under uvicorn (2 workers, as the sidecar): raw-body HMAC,
orjson, an async psycopg pool (min 4 / max 8), and per delivery one transaction with, for
each log, one `INSERT ... ON CONFLICT DO NOTHING RETURNING id` and one `executemany` of
its token rows. No validation beyond the signature, no reorg or ordering logic, no
metrics or logs: what the sidecar is measured against.

Run: `BENCH_DATABASE_URL=... BENCH_KEY=... uvicorn bench.lower_bound:app --workers 2`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from glisk_pipeline.db.engine import libpq_conninfo

_EVENT = """
INSERT INTO mint_events (tx_hash, log_index, block_number, block_hash, block_timestamp,
    contract_address, minter, author_wallet, start_token_id, quantity, total_paid, source)
VALUES (%s, %s, %s, %s, to_timestamp(%s), %s, %s, %s, %s, %s, %s, 'webhook')
ON CONFLICT (tx_hash, log_index) DO NOTHING RETURNING id
"""
_TOKEN = """
INSERT INTO tokens (token_id, mint_event_id, minter_address, author_id, mint_timestamp)
VALUES (%s, %s, %s, %s, to_timestamp(%s)) ON CONFLICT (token_id) DO NOTHING
"""
_AUTHOR = """
INSERT INTO authors (wallet_address) VALUES (%s)
ON CONFLICT (wallet_address) DO UPDATE SET wallet_address = EXCLUDED.wallet_address
RETURNING id
"""

_state: dict[str, Any] = {}


async def _startup() -> None:
    pool = AsyncConnectionPool(
        libpq_conninfo(os.environ["BENCH_DATABASE_URL"]), min_size=4, max_size=8, open=False
    )
    await pool.open(wait=True)
    async with pool.connection() as conn:
        cur = await conn.execute(_AUTHOR, (os.environ["BENCH_DEFAULT_AUTHOR"],))
        _state["author_id"] = (await cur.fetchone())[0]  # type: ignore[index]
    _state["pool"] = pool
    _state["key"] = os.environ["BENCH_KEY"].encode()


async def _store(payload: dict[str, Any]) -> bool:
    block = payload["event"]["data"]["block"]
    stored = False
    async with _state["pool"].connection() as conn, conn.transaction():
        for log in block["logs"]:
            topics, data = log["topics"], log["data"]
            minter, start = "0x" + topics[1][26:], int(topics[3], 16)
            quantity = int(data[2:66], 16)
            cur = await conn.execute(
                _EVENT,
                (
                    log["transaction"]["hash"],
                    log["index"],
                    block["number"],
                    block["hash"],
                    block["timestamp"],
                    log["account"]["address"],
                    minter,
                    "0x" + topics[2][26:],
                    start,
                    quantity,
                    int(data[66:130], 16),
                ),
            )
            row = await cur.fetchone()
            if row is None:
                continue  # already stored
            stored = True
            await cur.executemany(
                _TOKEN,
                [
                    (start + i, row[0], minter, _state["author_id"], block["timestamp"])
                    for i in range(quantity)
                ],
            )
    return stored


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            if message["type"] == "lifespan.startup":
                await _startup()
                await send({"type": "lifespan.startup.complete"})
        await _state["pool"].close()
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    signature = dict(scope["headers"]).get(b"x-alchemy-signature", b"")
    expected = hmac.new(_state["key"], body, hashlib.sha256).hexdigest().encode()
    if scope["path"] == "/healthz":
        status = 200
    elif not hmac.compare_digest(expected, signature):
        status = 401
    else:
        status = 200 if await _store(orjson.loads(body)) else 409
    answer = b'{"status":%d}' % status
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer})
