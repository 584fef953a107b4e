"""The JSON-RPC transport: HTTP with retries and backoff (rate limits, transient faults,
Retry-After), and JSON-RPC batches split or sent singly as the endpoint's batch policy
allows (batch_policy.py). One request at a time per client, counted exactly (RpcStats).

Responses are parsed with orjson into plain dicts: fetching and decoding 5,000 logs runs at
~100k logs/s this way and ~11k logs/s through web3's `w3.eth.get_logs` (its per-log result
formatters), measured. web3's `HTTPProvider` is not used: it brings a second retry loop (5
tries without jitter, on HTTP errors only: no Retry-After, none for JSON-RPC rate-limit
errors), and its HTTP errors and debug logs carry the full endpoint URL, i.e. the provider
key.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from glisk_pipeline.chain.batch_policy import BatchPolicy, policy_for
from glisk_pipeline.chain.provider_errors import (
    TIMEOUT_AS_RANGE,
    BatchRefusal,
    Failure,
    Kind,
    RangeError,
    Retry,
    RpcError,
    batch_refusal,
    classify,
    redact,
    response_too_large,
)


class BatchRefused(Exception):
    """Internal to the client: the endpoint refused a JSON-RPC batch as sent."""

    def __init__(self, refusal: BatchRefusal):
        self.refusal = refusal


class TooLargeForBatch(Exception):
    """Internal to the client: one call's answer alone outgrew the endpoint's cap on a
    batch's response (geth: 25,000,000 bytes); sent singly, it has no such cap."""


@dataclass(slots=True)
class RpcStats:
    calls: int = 0  # HTTP requests sent (a JSON-RPC batch counts once)
    retries: int = 0  # requests repeated after a rate limit or transient failure
    shrinks: int = 0  # eth_getLogs ranges narrowed after a range error
    chunk_size: int = 0  # the block range the adaptive loop ended with
    slept_s: float = 0.0  # time spent backing off
    lagging: int = 0  # eth_getLogs answers refused: the node lacked the range (or forked)
    proofs: int = 0  # block hashes read to prove a row's block left the canonical chain
    # eth_getLogs ranges by the proof that they were complete (PROOF_*)
    proven: Counter[str] = field(default_factory=Counter)


class Transport:
    """HTTP JSON-RPC to one endpoint; RpcClient (rpc.py) adds the calls on top."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        batch_limit: int | None = None,
    ) -> None:
        self._url = url
        self.endpoint = redact(url)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats = RpcStats()
        self._http = httpx.Client(timeout=timeout, headers={"Content-Type": "application/json"})
        self._ids = 0
        # what this endpoint accepts as a JSON-RPC batch, shared by the process's clients
        self.batch_policy: BatchPolicy = policy_for(url, self.endpoint, batch_limit)
        # The backfill loop fetches in a prefetch thread while the store asks for proofs
        # (block_hashes) from the consumer's: one request at a time, counted exactly.
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        params: Sequence[Any] = (),
        *,
        what: str | None = None,
        shrink_on_timeout: bool = False,
    ) -> Any:
        """One JSON-RPC call with retries. Range errors raise RangeError (for iter_logs),
        and so does a read timeout when `shrink_on_timeout` (a range query that can shrink)."""
        self._ids += 1
        payload = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": list(params)}
        body = self._send(payload, what or method, shrink_on_timeout)
        if not isinstance(body, dict):
            raise RpcError(f"{method}: unexpected response from {self.endpoint}")
        return body.get("result")

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *, what: str) -> list[Any]:
        """Several calls, results in call order: in JSON-RPC batches as far as the
        endpoint's batch policy allows, singly where it refuses them (batch_policy.py)."""
        results: list[Any] = [None] * len(calls)
        todo: deque[list[int]] = deque([list(range(len(calls)))])
        policy = self.batch_policy
        while todo:
            part = todo.popleft()
            if not policy.batchable([calls[i][0] for i in part]):
                step = max(policy.limit, 1)
                grouped = [i for i in part if step > 1 and calls[i][0] not in policy.singles]
                parts = [grouped[k : k + step] for k in range(0, len(grouped), step)]
                alone = set(part).difference(grouped).union(*(p for p in parts if len(p) == 1))
                for i in sorted(alone):
                    results[i] = self.call(calls[i][0], calls[i][1], what=what)
                todo.extendleft(reversed([p for p in parts if len(p) > 1]))
                continue
            payload = [
                {"jsonrpc": "2.0", "id": k, "method": calls[i][0], "params": list(calls[i][1])}
                for k, i in enumerate(part)
            ]
            try:
                body = self._send(payload, what)
            except BatchRefused as refused:
                policy.learn(refused.refusal, len(part))
                todo.appendleft(part)
                continue
            if not isinstance(body, list) or len(body) != len(part):
                raise RpcError(f"{what}: malformed batch response from {self.endpoint}")
            by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
            cut = [
                i
                for k, i in enumerate(part)
                if response_too_large((by_id.get(k) or {}).get("error"))
            ]
            if cut:
                # the batch's response outgrew the endpoint's cap: ask again for the items
                # past it, in batches below what it served
                policy.shrink_to(len(part) - len(cut))
                todo.appendleft(cut)
            for k, i in enumerate(part):
                item = by_id.get(k) or {}
                if i in cut:
                    continue
                if item.get("error"):
                    raise RpcError(f"{what}: {item['error'].get('message', item['error'])}")
                results[i] = item.get("result")
        return results

    def _send(self, payload: Any, what: str, shrink_on_timeout: bool = False) -> Any:
        failure: Failure | None = None
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                self.stats.retries += 1
                self._back_off(attempt, failure)
            try:
                return self._post_once(payload, shrink_on_timeout)
            except Retry as retry:
                failure = retry.failure
        assert failure is not None
        raise RpcError(
            f"{what}: gave up after {self.max_attempts} attempts ({failure.kind.value}: "
            f"{failure.message})"
        )

    def _post_once(self, payload: Any, shrink_on_timeout: bool = False) -> Any:
        try:
            with self._lock:
                self.stats.calls += 1
                response = self._http.post(self._url, content=orjson.dumps(payload))
        except httpx.ReadTimeout:
            if shrink_on_timeout:
                # The provider took longer than RPC_TIMEOUT_SECONDS to answer this range:
                # retrying the same width would time out again (forever); narrow it, and
                # keep the narrower width as a ceiling so growth does not pay another
                # timeout after every success.
                raise RangeError(TIMEOUT_AS_RANGE) from None
            raise Retry(Failure(Kind.TRANSIENT, "timed out")) from None
        except httpx.TimeoutException:
            raise Retry(Failure(Kind.TRANSIENT, "timed out")) from None
        except httpx.TransportError as exc:
            raise Retry(Failure(Kind.TRANSIENT, type(exc).__name__)) from None
        retry_after = response.headers.get("retry-after")
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(payload, list) and (
            refusal := batch_refusal(
                response.status_code, body, [str(p.get("method")) for p in payload]
            )
        ):
            raise BatchRefused(refusal)
        if isinstance(body, list) and response.status_code == 200:
            # a batch: items fail one by one (e.g. a per-item 429); retry the batch when
            # one failed for a reason worth waiting out, else batch() names the item. An
            # eth_call's failure (no state at that block) is its caller's to judge.
            calls = {p.get("id"): p.get("method") for p in payload if isinstance(p, dict)}
            for item in body:
                if not isinstance(item, dict) or calls.get(item.get("id")) == "eth_call":
                    continue
                if item.get("error"):
                    failure = classify(status=200, error=item["error"], retry_after=retry_after)
                    if failure.kind in (Kind.RATE_LIMIT, Kind.TRANSIENT):
                        raise Retry(failure)
            return body
        if response.status_code == 200 and body is not None and not error:
            return body
        if body is None and response.status_code == 200:
            raise Retry(Failure(Kind.TRANSIENT, "truncated or invalid JSON response"))
        failure = classify(status=response.status_code, error=error, retry_after=retry_after)
        if failure.kind is Kind.RANGE:
            raise RangeError(failure)
        if failure.kind is Kind.FATAL:
            raise RpcError(f"{failure.message} (from {self.endpoint})")
        raise Retry(failure)

    def _back_off(self, attempt: int, failure: Failure | None) -> None:
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 2))
        delay = random.uniform(delay / 2, delay)  # jitter: don't stampede with other runs
        if failure is not None and failure.retry_after is not None:
            delay = max(delay, min(failure.retry_after, self.backoff_cap * 2))
        self.stats.slept_s += delay
        time.sleep(delay)
