"""The one JSON-RPC client: `eth_getLogs` over a block range that adapts to provider limits.

Providers disagree on everything (Alchemy, Infura, QuickNode and the public Base RPC each
word their limits differently; tests/test_rpc.py holds their messages), so the rules are
data, kept together in `classify()` (glisk_pipeline/chain/provider_errors.py):
- range errors ("too many results", "block range too large", a timeout on a wide query):
  retry the same start with the range the provider suggests when it names one, else half;
  a hard cap stated in the message ("up to a 10 block range") becomes a ceiling;
- rate limits (HTTP 429, JSON-RPC 429, -32005 "limit exceeded") and transient failures
  (5xx, timeouts, resets, truncated JSON, "no backend is currently healthy"): exponential
  backoff with jitter, honouring Retry-After, a bounded number of attempts;
- anything else fails at once, naming the block range.
After successes with few logs the range grows again, so sparse history costs few calls.

An eth_getLogs answer counts only if the node that gave it had the range: behind a load
balancer each HTTP request may reach another node, and a node behind the head answers
for blocks it lacks with `[]` and no error (geth-style nodes clamp `toBlock` to their own
head), which would read as "no mints there". So every eth_getLogs goes out in one JSON-RPC
batch with `eth_getBlockByNumber(toBlock)` and `eth_blockNumber` (one HTTP request, so one
node answers all three): a missing header, or logs of `toBlock` under another hash than
the header's, means the answer is refused, counted (`RpcStats.lagging`) and asked again
with backoff; when the retries run out, `ProviderLagError` names the node's lag.

Responses are parsed with orjson into plain dicts: fetching and decoding 5,000 logs runs at
~100k logs/s this way and ~11k logs/s through web3's `w3.eth.get_logs` (its per-log result
formatters), measured. The head lookups (`eth_blockNumber`, the `finalized` block) stay here
too rather than on a web3 `HTTPProvider`: that provider brings a second retry loop (5 tries
without jitter, on HTTP errors only: no Retry-After, none for JSON-RPC rate-limit errors),
and its HTTP errors and debug logs carry the full endpoint URL, i.e. the provider key.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    StateUnavailable,
    batch_refusal,
    classify,
    redact,
    response_too_large,
    state_unavailable,
)
from glisk_pipeline.settings import Settings

__all__ = [
    "Kind",
    "LogChunk",
    "ProviderLagError",
    "RangeError",
    "RpcClient",
    "RpcError",
    "RpcStats",
    "classify",
]

# A chunk with at most this many logs lets the next range double.
GROW_BELOW_LOGS = 2_000
# Chunks handed to the store hold at most this many logs by default (cut at block boundaries), so
# memory and transaction size stay bounded however dense a response was.
MAX_CHUNK_LOGS = 5_000

# How an eth_getLogs answer was proven complete (RpcStats.proofs, the run's metadata):
PROOF_SUPPLY = "supply"  # its logs tile the contract's id counter over the range
PROOF_HEADER = "header"  # the node answered with toBlock's header in the same batch
PROOF_NONE = "unchecked"  # an add-only read (repair's scan, first-id lookup)


class RangeCheck(Protocol):
    """A completeness check of one eth_getLogs answer (glisk_pipeline/verify/range_proof.py)."""

    def __call__(self, start: int, end: int, logs: list[dict[str, Any]]) -> None:
        """Return when the logs of [start, end] are complete; raise Incomplete when they
        are not, StateUnavailable when the node cannot say."""

    def calls(self, start: int, end: int) -> list[tuple[str, list[Any]]]:
        """Calls whose answers the check needs, sent in the logs' own batch where the
        endpoint batches (a round trip saved; the check must not rely on one node)."""

    def answers(self, results: list[Any]) -> None:
        """The results of `calls` (None where an item failed), in order."""


class Incomplete(Exception):
    """An eth_getLogs answer that its check proved incomplete (the reason as message)."""


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


class ProviderLagError(RpcError):
    """eth_getLogs answers kept coming from a node that did not have the range."""


@dataclass(frozen=True, slots=True)
class LogChunk:
    """All matching logs of [from_block, to_block]; each has a blockTimestamp. `proof`:
    how the eth_getLogs answer they came from was proven complete (PROOF_*)."""

    from_block: int
    to_block: int
    logs: list[dict[str, Any]]
    proof: str = PROOF_NONE


def split_chunk(
    start: int, end: int, logs: list[dict[str, Any]], limit: int, proof: str = PROOF_NONE
) -> Iterator[LogChunk]:
    """Cut [start, end]'s logs into chunks of about `limit` logs, only between blocks, so
    each chunk still covers its own block range completely (a block's logs never split)."""
    first, taken = start, 0
    for i in range(len(logs)):
        block = int(logs[i]["blockNumber"], 16)
        next_block = int(logs[i + 1]["blockNumber"], 16) if i + 1 < len(logs) else None
        if i + 1 - taken >= limit and next_block is not None and next_block != block:
            yield LogChunk(first, block, logs[taken : i + 1], proof)
            first, taken = block + 1, i + 1
    yield LogChunk(first, end, logs[taken:], proof)


class RpcClient:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        initial_block_range: int = 1_000,
        max_block_range: int = 1_000_000,
        max_chunk_logs: int = MAX_CHUNK_LOGS,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        batch_limit: int | None = None,
    ) -> None:
        self._url = url
        self.endpoint = redact(url)
        self.max_attempts = max_attempts
        self.max_block_range = max_block_range
        self.max_chunk_logs = max_chunk_logs
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats = RpcStats(chunk_size=min(initial_block_range, max_block_range))
        self._http = httpx.Client(timeout=timeout, headers={"Content-Type": "application/json"})
        self._ids = 0
        self._ceiling = max_block_range  # hard cap learned from the provider
        self._max_results: int | None = None  # result-count cap learned from the provider
        # what this endpoint accepts as a JSON-RPC batch, shared by the process's clients
        self.batch_policy: BatchPolicy = policy_for(url, self.endpoint, batch_limit)
        # The ingest loop fetches in a prefetch thread while the store asks for proofs
        # (block_hashes) from the consumer's: one request at a time, counted exactly.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RpcClient:
        options: dict[str, Any] = {
            "timeout": settings.RPC_TIMEOUT_SECONDS,
            "max_attempts": settings.RPC_MAX_ATTEMPTS,
            "initial_block_range": settings.RPC_INITIAL_BLOCK_RANGE,
            "max_block_range": settings.RPC_MAX_BLOCK_RANGE,
            "batch_limit": settings.RPC_BATCH_LIMIT,
        }
        return cls(settings.rpc_url(), **{**options, **overrides})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plain calls --------------------------------------------------------------------

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

    def chain_id(self) -> int:
        return int(self.call("eth_chainId"), 16)

    def check_chain_id(self, expected: int | None) -> int:
        actual = self.chain_id()
        if expected is not None and actual != expected:
            raise RpcError(
                f"chain id mismatch: {self.endpoint} serves chain {actual}, NETWORK expects "
                f"{expected}"
            )
        return actual

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def final_block(self, confirmations: int | None) -> int:
        """The highest block we treat as final: the chain's `finalized` block, or
        head - confirmations when GLISK_CONFIRMATIONS is set. -1 when none is."""
        if confirmations is not None:
            return self.block_number() - confirmations
        try:
            block = self.call("eth_getBlockByNumber", ["finalized", False])
        except RpcError as exc:
            raise RpcError(
                f"{exc}; this node has no 'finalized' block: set GLISK_CONFIRMATIONS"
            ) from None
        return int(block["number"], 16) if block else -1

    def eth_call(self, to: str, data: str, block: int) -> str:
        """`eth_call` of `data` on `to` with the block number as the tag: the raw 0x-hex
        result, `0x` where `to` had no code at that block. A node without that block's
        state raises StateUnavailable on the first answer (pruned state does not come back
        by retrying); other failures are retried like any call."""
        self._ids += 1
        what = f"eth_call at block {block}"
        payload = {
            "jsonrpc": "2.0",
            "id": self._ids,
            "method": "eth_call",
            "params": [{"to": to, "data": data}, hex(block)],
        }
        try:
            body = self._post_once(payload)
        except Retry as retry:
            if state_unavailable(retry.failure.message):
                raise StateUnavailable(f"{what}: {retry.failure.message}") from None
            body = self._send(payload, what)
        except RpcError as exc:
            if state_unavailable(str(exc)):
                raise StateUnavailable(f"{what}: {exc}") from None
            raise RpcError(f"{what}: {exc}") from None
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, str):
            raise RpcError(f"{what}: unexpected response from {self.endpoint}")
        return result

    # --- eth_getLogs --------------------------------------------------------------------

    def iter_logs(
        self,
        address: str,
        topic0: str,
        from_block: int,
        to_block: int,
        *,
        check: RangeCheck | None = None,
    ) -> Iterator[LogChunk]:
        """Every log of `address` with `topic0` in [from_block, to_block], in chunks that
        adapt to the provider; each chunk covers its range completely. With `check`, an
        answer counts only once the check proves it complete (see get_logs_checked)."""
        size = min(self.stats.chunk_size or self.max_block_range, self._ceiling)
        start = from_block
        while start <= to_block:
            end = min(to_block, start + max(size, 1) - 1)
            flt = {
                "address": address,
                "topics": [topic0],
                "fromBlock": hex(start),
                "toBlock": hex(end),
            }
            try:
                logs, proof = self.get_logs_checked(flt, start, end, check=check)
            except RangeError as err:
                size = self._narrow(err.failure, start, end)
                self.stats.shrinks += 1
                continue
            self.fill_timestamps(logs, start, end)
            yield from split_chunk(start, end, logs, self.max_chunk_logs, proof)
            span = end - start + 1
            start = end + 1
            if len(logs) <= GROW_BELOW_LOGS:
                size = min(size * 2, self._ceiling, self.max_block_range)
            elif len(logs) > self.max_chunk_logs:
                # dense history: aim the next request at about half the chunk limit, so
                # one response (the memory we hold) stays small
                size = max(1, span * self.max_chunk_logs // (2 * len(logs)))
            if self._max_results is not None and logs:
                # behind a stated result cap, grow only as far as this answer's density
                # says stays under 80% of it, rather than into the same refusal again
                size = min(size, max(1, span * self._max_results * 4 // (5 * len(logs))))
            self.stats.chunk_size = size

    def get_logs_checked(
        self,
        flt: dict[str, Any],
        start: int,
        end: int,
        *,
        check: RangeCheck | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """eth_getLogs for [start, end] (removed logs left out) and how the answer was
        proven complete (PROOF_*). Two guards, each refusing an answer and asking again
        with backoff (ProviderLagError after RPC_MAX_ATTEMPTS answers):
        - where the endpoint batches eth_getLogs, the logs come in one batch with block
          `end`'s header and the node's head: a node without block `end`, or logs of it
          under another hash, is refused. A batch is one node's answer only without a
          proxy that splits batches among upstreams, so this alone proves completeness
          only where `check` cannot be asked (no contract state at `end`);
        - `check` (the supply tiling): the logs must account for exactly the token ids the
          contract counted over the range; any node may answer each call.
        Range errors raise RangeError."""
        what = f"eth_getLogs {start}-{end}"
        guarded: list[tuple[str, list[Any]]] = [
            ("eth_getLogs", [flt]),
            ("eth_getBlockByNumber", [hex(end), False]),
            ("eth_blockNumber", []),
        ]
        refused, slept = "", self.stats.slept_s
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                self.stats.retries += 1
                self._back_off(attempt, None)
            extra = check.calls(start, end) if check is not None else []
            header_checked = self.batch_policy.batchable([m for m, _ in guarded + extra])
            if header_checked:
                try:
                    logs, refusal, results = self._logs_with_header(
                        guarded + extra, what, start, end
                    )
                except BatchRefused as err:
                    self.batch_policy.learn(err.refusal, len(guarded))
                    header_checked = False
                except TooLargeForBatch:
                    header_checked = False
                else:
                    if check is not None:
                        check.answers(results[len(guarded) :])
                    if refusal:
                        refused = refusal
                        self.stats.lagging += 1
                        continue
            if not header_checked:
                payload = {"jsonrpc": "2.0", "id": 0, "method": "eth_getLogs", "params": [flt]}
                body = self._send(payload, what, shrink_on_timeout=end > start)
                result = body.get("result") if isinstance(body, dict) else None
                if not isinstance(result, list):
                    raise RpcError(f"{what}: result is not a list (from {self.endpoint})")
                logs = result
            logs = [log for log in logs if not log.get("removed")]
            proof = PROOF_HEADER if header_checked else PROOF_NONE
            if check is not None:
                try:
                    check(start, end, logs)
                    proof = PROOF_SUPPLY
                except Incomplete as err:
                    refused = str(err)
                    self.stats.lagging += 1
                    continue
                except StateUnavailable as err:
                    if not header_checked:
                        # no state to count with and no same-node header: nothing proves
                        # the answer (a lagging node's eth_call says the same), ask again
                        refused = (
                            f"its completeness cannot be proven: {err}, and "
                            f"{self.endpoint} does not take eth_getLogs in a JSON-RPC batch "
                            "with a block header (an archive node, or batches, would do)"
                        )
                        self.stats.lagging += 1
                        continue
            self.stats.proven[proof] += 1
            return logs, proof
        raise ProviderLagError(
            f"{what}: {refused}, {self.max_attempts} times over "
            f"{self.stats.slept_s - slept:.1f} s of backoff ({self.endpoint}): an incomplete "
            "answer would read as 'no mints', so none was used; nothing stored, removed or "
            "checkpointed for this range"
        )

    def _logs_with_header(
        self, calls: list[tuple[str, list[Any]]], what: str, start: int, end: int
    ) -> tuple[list[dict[str, Any]], str, list[Any]]:
        """(logs, why they are refused or "", every item's result or None) of the guarded
        batch `calls`: eth_getLogs, its last block's header and the node's head first."""
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        body = self._send(payload, what, shrink_on_timeout=end > start)
        logs, header, head = self._guarded_items(body, what)
        items = {item.get("id"): item for item in body if isinstance(item, dict)}
        results = [(items.get(i) or {}).get("result") for i in range(len(calls))]
        if header is None:
            behind = f"its head is block {head}" if head is not None else "no head given"
            return logs, f"the node that answered does not have block {end} ({behind})", results
        bad = [
            log for log in logs
            if log.get("blockNumber") == header.get("number")
            and str(log.get("blockHash", "")).lower() != str(header.get("hash")).lower()
        ]  # fmt: skip
        if bad:
            return (
                logs,
                (
                    f"logs of block {end} under hash {bad[0].get('blockHash')} while the same "
                    f"node's header says {header.get('hash')}"
                ),
                results,
            )
        return logs, "", results

    def _guarded_items(
        self, body: Any, what: str
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, int | None]:
        """(logs, header of toBlock or None, the node's head or None) from a guarded
        batch's answer; a range error on the logs item raises RangeError."""
        if not isinstance(body, list):
            raise RpcError(f"{what}: {self.endpoint} did not answer the JSON-RPC batch")
        items = {item.get("id"): item for item in body if isinstance(item, dict)}
        logs_item = items.get(0) or {}
        if response_too_large(error := logs_item.get("error")):
            raise TooLargeForBatch
        if error:
            failure = classify(status=200, error=error)
            if failure.kind is Kind.RANGE:
                raise RangeError(failure)
            raise RpcError(f"{what}: {failure.message} (from {self.endpoint})")
        logs = logs_item.get("result")
        if not isinstance(logs, list):
            raise RpcError(f"{what}: result is not a list")
        header = (items.get(1) or {}).get("result")
        head = (items.get(2) or {}).get("result")
        return (
            logs,
            header if isinstance(header, dict) else None,
            int(head, 16) if isinstance(head, str) else None,
        )

    def block_hashes(self, numbers: Sequence[int]) -> dict[int, str | None]:
        """The canonical hash at each block number (None where the node lacks the block),
        in JSON-RPC batches: the proof that a stored row's block left the chain."""
        wanted = sorted(set(numbers))
        headers = self.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in wanted],
            what=f"block hashes of {len(wanted)} blocks",
        )
        self.stats.proofs += len(wanted)
        return {
            n: (str(h["hash"]).lower() if isinstance(h, dict) and h.get("hash") else None)
            for n, h in zip(wanted, headers, strict=True)
        }

    def _narrow(self, failure: Failure, start: int, end: int) -> int:
        """The span to retry [start, ...] with after a range error on [start, end]:
        - a stated block cap below the span: the cap itself, held as a ceiling from then
          on (one refusal, then full-width requests: range / cap of them);
        - a suggested range: its width (its end when it starts at `start`);
        - otherwise half. A span limit in words without a number keeps the halved width
          as the ceiling, so growth does not run into the same wall after every success;
          a result-count or response-size limit does not (it depends on log density:
          sparse ranges later may be wide)."""
        span = end - start + 1
        if span <= 1:
            raise RpcError(
                f"eth_getLogs {start}-{end}: provider refuses even one block: {failure.message}"
            )
        cap = failure.cap if failure.cap is not None and failure.cap < span else None
        new = span // 2 if cap is None else cap
        if failure.suggested is not None:
            lo, hi = failure.suggested
            suggested = hi - start + 1 if lo == start else hi - lo + 1
            if 1 <= suggested < span:
                new = min(new, suggested) if cap is not None else suggested
        if failure.max_results is not None:
            self._max_results = min(self._max_results or failure.max_results, failure.max_results)
        if cap is not None:
            self._ceiling = max(1, min(self._ceiling, cap))
        elif failure.per_blocks:
            # an unstated span limit (or a stated one the span already met, so counted
            # differently than we do): what we retry with becomes the ceiling
            self._ceiling = max(1, min(self._ceiling, new))
        return max(1, min(new, self._ceiling))

    def fill_timestamps(self, logs: list[dict[str, Any]], start: int, end: int) -> None:
        """Providers that omit blockTimestamp cost one header per block with logs: fetch
        them in JSON-RPC batches, never one call each. [start, end]: the range the logs
        came from (for the error)."""
        missing = sorted({log["blockNumber"] for log in logs if not log.get("blockTimestamp")})
        if not missing:
            return
        headers = self.batch(
            [("eth_getBlockByNumber", [n, False]) for n in missing],
            what=f"block headers {start}-{end}",
        )
        stamps = {}
        for number, header in zip(missing, headers, strict=True):
            if not header:
                raise RpcError(f"block {int(number, 16)} not found while reading {start}-{end}")
            stamps[number] = header["timestamp"]
        for log in logs:
            if not log.get("blockTimestamp"):
                log["blockTimestamp"] = stamps[log["blockNumber"]]

    # --- transport with retries ---------------------------------------------------------

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
