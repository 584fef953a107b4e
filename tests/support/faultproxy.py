"""A small fault-injecting JSON-RPC proxy in front of anvil: real HTTP on loopback that
behaves like real providers do at their limits (messages copied from what Alchemy, Infura,
QuickNode and the public Base RPC answer).

Anvil itself has no eth_getLogs limits, so this is how tests reproduce them:
- `limit_range(n, style)`: ranges wider than n blocks fail as that provider says it
  (style "slow": they answer only after `timeout_sleep`, past the client's timeout);
- `limit_results(n, style)`: responses with more than n logs fail, with a suggested range;
- `limit_message(n, message, code, ...)`: any provider's limit format (see "provider limit
  formats" below): more than n blocks (or n logs) fail with that message, code and `data`;
- `script(...)`: the next requests fail once each: 429 (+Retry-After), JSON-RPC 429 inside
  HTTP 200, 503, a timeout, a connection reset, truncated JSON;
- `strip_timestamps`: drop blockTimestamp from logs, as providers that lack it do;
- `drop_logs(ids)`: eth_getLogs answers silently leave out the BatchMinted logs whose
  startTokenId is in `ids`, as a faulty provider node that lost them would;
- `lag_logs(n)`: a load-balanced provider one of whose nodes is n blocks behind: every
  request carrying eth_getLogs reaches that node (its logs clamped to its head with no
  error, as geth-style nodes answer; headers past its head null), while other requests
  (eth_blockNumber, eth_getBlockByNumber alone) reach a current node.
- `lag_index(n)`: a node whose log index is n blocks behind its own headers: eth_getLogs
  clamped to head - n with no error, while headers and eth_blockNumber (even in the same
  batch) are current, as behind a proxy that splits a batch among upstreams;
- `batch_policy(style, n)`: JSON-RPC batches refused as real nodes and providers refuse
  them (BATCH_POLICIES).
JSON-RPC batches are answered item by item, with the same faults per eth_getLogs item.
Every request is recorded (`requests`), every injected fault counted (`faults`).
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson

ALCHEMY_TOO_MANY = (
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block "
    "range and no limit on the response size, or you can request any block range with a cap "
    "of 10K logs in the response. Based on your parameters and the response size limit, this "
    "block range should work: [{a}, {b}]"
)
ALCHEMY_FREE_TIER = (
    "Under the Free tier plan, you can make eth_getLogs requests with up to a {n} block range. "
    "Based on your parameters, this block range should work: [{a}, {b}]. Upgrade to PAYG "
    "for expanded block range."
)
INFURA_TOO_MANY = "query returned more than {n} results. Try with this block range [{a}, {b}]."
INFURA_RANGE = "range {span} exceeds limit of {n}"
QUICKNODE_RANGE = "eth_getLogs is limited to a {n:,} range"
BASE_PUBLIC = "block range too large"

# How endpoints refuse batches, by style (n: the limit where the style has one):
BATCH_POLICIES = {
    # Ankr/Gnosis-style: a batch holding eth_getLogs, answered with an array of one error
    "no_getlogs": '[{"jsonrpc":"2.0","id":null,"error":{"code":-32600,'
    '"message":"Too many [\\"eth_getLogs\\"] methods in the batch"}}]',
    # Erigon's --rpc.batch.limit: ONE error object answering the array
    "limit": '{"jsonrpc":"2.0","id":null,"error":{"code":-32000,'
    '"message":"batch limit {n} exceeded: {got} requests given"}}',
    # gateways without batches
    "none": '{"jsonrpc":"2.0","id":null,"error":{"code":-32600,'
    '"message":"batch requests are not supported"}}',
    # an HTTP 413 past n items, no JSON-RPC body
    "http413": "Request Entity Too Large",
    # geth's --rpc.batchresponsemaxsize: items past n answered "response too large"
    "response_size": "",
}


class FaultProxy:
    def __init__(self, upstream: str, *, timeout_sleep: float = 1.5) -> None:
        self.upstream = upstream
        self.timeout_sleep = timeout_sleep
        self.requests: list[Any] = []
        self.faults: list[str] = []
        self.strip_timestamps = False
        self._range: tuple[int, str] | None = None
        self._results: tuple[int, str] | None = None
        self._script: deque[str] = deque()
        self._lag: int | None = None
        self._index_lag: int | None = None
        self._batch: tuple[str, int] | None = None
        self.batch_refusals = 0
        self._limit: dict[str, Any] | None = None
        self._lag_answers_left: int | None = None
        self.lagging_answers = 0  # eth_getLogs answers clamped by the lagging node
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=30, headers={"Content-Type": "application/json"})
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once, no 40 ms ACK wait

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy._handle(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A path of its own: a later proxy on a reused port is another endpoint to the
        # client, which keeps what it learned of an endpoint's batches per URL.
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}/{uuid.uuid4().hex[:12]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- configuration ------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def limit_range(self, blocks: int, style: str = "alchemy") -> None:
        self._range = (blocks, style)

    def limit_results(self, logs: int, style: str = "alchemy") -> None:
        self._results = (logs, style)

    def lag_logs(self, blocks: int | None, *, catch_up_after: int | None = None) -> None:
        """Serve eth_getLogs (and whatever shares its batch) from a node `blocks` behind
        the head; after `catch_up_after` answers that lacked blocks it has caught up.
        None: every node current again."""
        self._lag, self._lag_answers_left = blocks, catch_up_after

    def lag_index(self, blocks: int | None) -> None:
        """eth_getLogs answers clamped to head - `blocks`; everything else current."""
        self._index_lag = blocks

    def batch_policy(self, style: str | None, n: int = 10) -> None:
        """Refuse batches as `style` does (BATCH_POLICIES); None: take any batch."""
        assert style is None or style in BATCH_POLICIES, style
        self._batch = None if style is None else (style, n)

    def script(self, *faults: str) -> None:
        """Faults for the next requests, one each: '429', 'rpc429', 'item429' (every item
        of a batch rate-limited), '503', 'timeout', 'reset', 'truncate', 'nobackend'."""
        self._script.extend(faults)

    def count(self, method: str) -> int:
        """Requests that called `method` (a batch counts once if any item did)."""
        return sum(
            1
            for r in self.requests
            if any(item.get("method") == method for item in (r if isinstance(r, list) else [r]))
        )

    # --- serving ------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        payload = orjson.loads(body)
        with self._lock:
            self.requests.append(payload)
            fault = self._script.popleft() if self._script else None
        if fault is not None and fault != "ok":  # 'ok': let this one through
            self.faults.append(fault)
            if self._inject(handler, fault, payload):
                return
        if isinstance(payload, list) and self._refuse_batch(handler, payload):
            return
        items = payload if isinstance(payload, list) else [payload]
        clamped = self._clamp_index(items)
        answers = {**self._answer_locally(items), **clamped}
        if self._limit is not None and self._limit["http_status"] != 200:
            refused = [a for a in answers.values() if "error" in a]
            if refused:  # the whole HTTP request fails, with one error object
                self._reply(handler, self._limit["http_status"], {**refused[0], "id": None})
                return
        forward = [item for item in items if item.get("id") not in answers]
        if not isinstance(payload, list) and not answers:  # a plain call: pass it through
            upstream = self._http.post(self.upstream, content=orjson.dumps(payload))
            self._send(handler, upstream.status_code, self._strip(upstream.content))
            return
        if forward:
            upstream = self._http.post(self.upstream, content=orjson.dumps(forward))
            if upstream.status_code != 200:
                self._send(handler, upstream.status_code, upstream.content)
                return
            for item in orjson.loads(self._strip(upstream.content)):
                answers[item.get("id")] = item
        out = [answers[item.get("id")] for item in items]
        if isinstance(payload, list) and self._batch and self._batch[0] == "response_size":
            out = self._cut_response(out, self._batch[1])
        self._reply(handler, 200, out if isinstance(payload, list) else out[0])

    def _refuse_batch(self, handler: BaseHTTPRequestHandler, batch: list[Any]) -> bool:
        if self._batch is None or len(batch) < 2:
            return False
        style, n = self._batch
        methods = [item.get("method") for item in batch]
        refused = {
            "no_getlogs": "eth_getLogs" in methods,
            "limit": len(batch) > n,
            "none": True,
            "http413": len(batch) > n,
        }.get(style, False)
        if not refused:
            return False
        with self._lock:
            self.batch_refusals += 1
        text = BATCH_POLICIES[style].replace("{n}", str(n)).replace("{got}", str(len(batch)))
        self._send(handler, 413 if style == "http413" else 200, text.encode())
        return True

    def _cut_response(self, out: list[Any], max_bytes: int) -> list[Any]:
        """Items past `max_bytes` of response answered "response too large" (geth)."""
        size, cut = 0, []
        for item in out:
            size += len(orjson.dumps(item))
            if size > max_bytes:
                error = {"code": -32003, "message": "response too large"}
                item = {"jsonrpc": "2.0", "id": item.get("id"), "error": error}
            cut.append(item)
        if size > max_bytes:
            with self._lock:
                self.batch_refusals += 1
        return cut

    def _clamp_index(self, items: list[Any]) -> dict[Any, Any]:
        """lag_index: every eth_getLogs item's toBlock cut to head - n (in place); the
        answers, by id, of items that lie wholly above it (no logs, no error)."""
        if self._index_lag is None or not any(i.get("method") == "eth_getLogs" for i in items):
            return {}
        head = self._http.post(self.upstream, json=_req("eth_blockNumber")).json()["result"]
        top = max(0, int(head, 16) - self._index_lag)
        empty = {}
        for item in items:
            if item.get("method") == "eth_getLogs":
                flt = item["params"][0]
                if int(flt["toBlock"], 16) > top:
                    with self._lock:
                        self.lagging_answers += 1
                    if int(flt["fromBlock"], 16) > top:
                        empty[item.get("id")] = {
                            "jsonrpc": "2.0",
                            "id": item.get("id"),
                            "result": [],
                        }
                    else:
                        flt["toBlock"] = hex(top)
        return empty

    def _answer_locally(self, items: list[Any]) -> dict[Any, Any]:
        """Answers the proxy makes itself, by request id: provider limits on eth_getLogs,
        and what a lagging node says. A lagging node's clamped eth_getLogs goes upstream
        with its toBlock rewritten (the caller's item is changed in place)."""
        answers: dict[Any, Any] = {}
        node_head = None
        if self._lag is not None and any(i.get("method") == "eth_getLogs" for i in items):
            head = int(
                self._http.post(self.upstream, json=_req("eth_blockNumber")).json()["result"], 16
            )
            node_head = max(0, head - self._lag)
        lacked = False
        for item in items:
            rid, method, params = item.get("id"), item.get("method"), item.get("params") or []
            if method == "eth_getLogs":
                error = self._check_logs(item)
                if error is not None:
                    self.faults.append("range")
                    answers[rid] = {"jsonrpc": "2.0", "id": rid, "error": error}
                elif node_head is not None:
                    flt = params[0]
                    if int(flt["toBlock"], 16) > node_head:
                        lacked = True
                        if int(flt["fromBlock"], 16) > node_head:
                            answers[rid] = {"jsonrpc": "2.0", "id": rid, "result": []}
                        else:
                            flt["toBlock"] = hex(node_head)
            elif node_head is not None and method == "eth_blockNumber":
                answers[rid] = {"jsonrpc": "2.0", "id": rid, "result": hex(node_head)}
            elif node_head is not None and method == "eth_getBlockByNumber":
                tag = params[0] if params else "latest"
                if tag.startswith("0x") and int(tag, 16) > node_head:
                    answers[rid] = {"jsonrpc": "2.0", "id": rid, "result": None}
                elif not tag.startswith("0x"):  # latest/safe/finalized: its own head
                    item["params"] = [hex(node_head), *params[1:]]
        if lacked:
            with self._lock:
                self.lagging_answers += 1
                if self._lag_answers_left is not None:
                    self._lag_answers_left -= 1
                    if self._lag_answers_left <= 0:
                        self._lag = None
        return answers

    def _strip(self, data: bytes) -> bytes:
        data = self._drop_chosen_logs(data)
        if not self.strip_timestamps or b"blockTimestamp" not in data:
            return data
        decoded = orjson.loads(data)
        for item in decoded if isinstance(decoded, list) else [decoded]:
            result = item.get("result")
            for log in result if isinstance(result, list) else []:
                log.pop("blockTimestamp", None)
        return orjson.dumps(decoded)

    def _inject(self, handler: BaseHTTPRequestHandler, fault: str, payload: Any) -> bool:
        rid = payload.get("id") if isinstance(payload, dict) else None
        if fault == "429":
            self._send(handler, 429, b'{"error":"rate limited"}', {"Retry-After": "1"})
        elif fault == "rpc429":
            error = {
                "code": 429,
                "message": "Your app has exceeded its compute units per second "
                "capacity. If you have retries enabled, you can safely ignore this message.",
            }
            self._reply(handler, 200, {"jsonrpc": "2.0", "id": rid, "error": error})
        elif fault == "503":
            self._send(handler, 503, b"Service Unavailable")
        elif fault == "nobackend":
            error = {"code": -32011, "message": "no backend is currently healthy to serve traffic"}
            self._reply(handler, 200, {"jsonrpc": "2.0", "id": rid, "error": error})
        elif fault == "item429":  # a batch whose items each fail with a rate limit
            error = {"code": 429, "message": "Your app has exceeded its compute units per second"}
            items = payload if isinstance(payload, list) else [payload]
            self._reply(
                handler, 200, [{"jsonrpc": "2.0", "id": i["id"], "error": error} for i in items]
            )
        elif fault == "timeout":
            time.sleep(self.timeout_sleep)
            return False  # then answer late: the client has given up by then
        elif fault == "reset":
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            handler.connection.close()
            handler.close_connection = True
        elif fault == "truncate":
            full = self._http.post(self.upstream, content=orjson.dumps(payload)).content
            self._send(handler, 200, full[: max(1, len(full) // 2)])
        else:
            raise ValueError(f"unknown fault {fault!r}")
        return True

    def _check_logs(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        if self._limit is not None:
            return self._limit_error(payload)
        if self._range is None and self._results is None:
            return None
        flt = payload["params"][0]
        start, end = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        span = end - start + 1
        if self._range is not None and span > self._range[0]:
            n, style = self._range
            if style == "slow":  # a provider that takes too long on wide ranges
                time.sleep(self.timeout_sleep)
                # the client has given up by then; no upstream call after the test ended
                return {"code": -32000, "message": "answered too late"}
            ok = (hex(start), hex(start + n - 1))
            if style == "alchemy":
                return {"code": -32600, "message": ALCHEMY_FREE_TIER.format(n=n, a=ok[0], b=ok[1])}
            if style == "infura":
                return {"code": -32602, "message": INFURA_RANGE.format(span=span, n=n)}
            if style == "quicknode":
                return {"code": -32614, "message": QUICKNODE_RANGE.format(n=n)}
            return {"code": -32000, "message": BASE_PUBLIC}
        if self._results is not None:
            n, style = self._results
            logs = self._http.post(self.upstream, json=payload).json().get("result") or []
            if len(logs) > n:
                # the block before the (n+1)th log keeps the answer under the cap
                last_ok = max(start, int(logs[n]["blockNumber"], 16) - 1)
                a, b = hex(start), hex(last_ok)
                if style == "alchemy":
                    return {"code": -32602, "message": ALCHEMY_TOO_MANY.format(a=b, b=a)}
                return {"code": -32005, "message": INFURA_TOO_MANY.format(n=n, a=a, b=b)}
        return None

    # --- provider limit formats (any message, code and data) ------------------------------

    def limit_message(
        self,
        n: int,
        message: str,
        code: int,
        data: Any = None,
        http_status: int = 200,
        per: str = "blocks",
    ) -> None:
        """eth_getLogs over more than n blocks (per="blocks") or with more than n logs
        (per="results") fails with `message` and `data` (strings in it formatted too) and
        `code`, inside HTTP `http_status`. Fields: {n}; {span}, {lo}, {hi}: the refused
        range; {a}, {b}: a range that would work, in hex."""
        self._limit = {"n": n, "message": message, "code": code, "data": data,
                       "http_status": http_status, "per": per}  # fmt: skip

    def _limit_error(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        assert self._limit is not None
        n, flt = self._limit["n"], payload["params"][0]
        lo, hi = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        if self._limit["per"] == "blocks":
            if hi - lo + 1 <= n:
                return None
            last_ok = lo + n - 1
        else:
            logs = self._http.post(self.upstream, json=payload).json().get("result") or []
            if len(logs) <= n:
                return None
            last_ok = max(lo, int(logs[n]["blockNumber"], 16) - 1)
        fields = {"n": n, "span": hi - lo + 1, "lo": lo, "hi": hi, "a": hex(lo), "b": hex(last_ok)}
        error = {"code": self._limit["code"], "message": self._limit["message"].format(**fields)}
        if self._limit["data"] is not None:
            error["data"] = _formatted(self._limit["data"], fields)
        return error

    # --- dropped logs (a node that lost some logs and says nothing) ----------------------

    def drop_logs(self, start_token_ids: set[int]) -> None:
        """Leave the BatchMinted logs starting at these token ids out of every answer."""
        self._dropped_topics = {"0x" + format(i, "064x") for i in start_token_ids}

    _dropped_topics: set[str] = set()  # noqa: RUF012 - replaced per instance by drop_logs
    dropped = 0  # logs left out so far

    def _drop_chosen_logs(self, data: bytes) -> bytes:
        if not self._dropped_topics or b'"topics"' not in data:
            return data
        decoded = orjson.loads(data)
        for item in decoded if isinstance(decoded, list) else [decoded]:
            logs = item.get("result") if isinstance(item, dict) else None
            if isinstance(logs, list):
                kept = [
                    log for log in logs
                    if len(log.get("topics") or []) < 4
                    or log["topics"][3].lower() not in self._dropped_topics
                ]  # fmt: skip
                self.dropped += len(logs) - len(kept)
                item["result"] = kept
        return orjson.dumps(decoded)

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, obj: Any) -> None:
        self._send(handler, status, orjson.dumps(obj))

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)


def _req(method: str, params: list[Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}


def _formatted(value: Any, fields: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return value.format(**fields)
    if isinstance(value, dict):
        return {key: _formatted(item, fields) for key, item in value.items()}
    return value
