"""A tiny JSON-RPC server for a synthetic chain of N blocks: anvil cannot mine 1,000,000
blocks cheaply (~3 ms each), so B3's sparse-range figure is measured against this shim.
It serves what the RpcClient asks for (eth_chainId, eth_blockNumber, eth_getLogs,
eth_getBlockByNumber, and eth_call of nextTokenId() at any block, which the completeness
proof reads once a range: 1 plus the ids its logs minted up to that block), with no range
limit (like anvil and Alchemy's paid tier), and counts
calls. Logs carry blockTimestamp, as anvil's do."""

from __future__ import annotations

import bisect
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from glisk_pipeline.chain import BATCH_MINTED_TOPIC0
from glisk_pipeline.keccak import selector


def synthetic_logs(
    contract: str, n_blocks: int, n_events: int, seed: int = 3
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    blocks = sorted(rng.randrange(n_blocks) for _ in range(n_events))
    logs, token = [], 1
    for i, number in enumerate(blocks):
        quantity = rng.randint(1, 50)
        logs.append(
            {
                "address": contract,
                "topics": [
                    BATCH_MINTED_TOPIC0,
                    "0x" + rng.randbytes(20).hex().rjust(64, "0"),
                    "0x" + rng.randbytes(20).hex().rjust(64, "0"),
                    f"0x{token:064x}",
                ],
                "data": f"0x{quantity:064x}{quantity * 10**15:064x}",
                "blockNumber": hex(number),
                "blockHash": "0x" + f"{number:064x}",
                "blockTimestamp": hex(1_700_000_000 + 2 * number),
                "transactionHash": "0x" + rng.randbytes(32).hex(),
                "transactionIndex": "0x0",
                "logIndex": hex(i),
                "removed": False,
            }
        )
        token += quantity
    return logs


class SparseChain:
    def __init__(self, n_blocks: int, logs: list[dict[str, Any]]) -> None:
        self.head = n_blocks - 1
        self.logs = logs
        self.keys = [int(log["blockNumber"], 16) for log in logs]
        # nextTokenId() after the first k logs: next_ids[k]
        self.next_ids = [1]
        for log in logs:
            self.next_ids.append(self.next_ids[-1] + int(log["data"][2:66], 16))
        self.calls = 0
        chain = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                req = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                chain.calls += 1
                body = orjson.dumps(
                    [chain.answer(r) for r in req] if isinstance(req, list) else chain.answer(req)
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        method, params = req["method"], req.get("params", [])
        if method == "eth_chainId":
            result: Any = "0x7a69"
        elif method == "eth_blockNumber":
            result = hex(self.head)
        elif method == "eth_getLogs":
            lo, hi = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
            result = self.logs[
                bisect.bisect_left(self.keys, lo) : bisect.bisect_right(self.keys, hi)
            ]
        elif method == "eth_getBlockByNumber":
            n = self.head if params[0] in ("latest", "finalized", "safe") else int(params[0], 16)
            result = {
                "number": hex(n),
                "hash": f"0x{n:064x}",
                "timestamp": hex(1_700_000_000 + 2 * n),
            }
        elif method == "eth_call" and params[0].get("data") == selector("nextTokenId()"):
            minted = bisect.bisect_right(self.keys, int(params[1], 16))
            result = f"0x{self.next_ids[minted]:064x}"
        else:
            return {
                "jsonrpc": "2.0",
                "id": req.get("id"),
                "error": {"code": -32601, "message": "method not found"},
            }
        return {"jsonrpc": "2.0", "id": req.get("id"), "result": result}

    def __enter__(self) -> SparseChain:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
