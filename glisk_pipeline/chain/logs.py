"""eth_getLogs over a block range: the one range-fetching loop that adapts to provider
limits (provider_errors.classify says what each refusal means), and the one guarded call
every caller goes through (the backfill loop, the tip fill, repair, the supply proof's
first-id lookup, the audit).

- range errors ("too many results", "block range too large", a timeout on a wide query):
  retry the same start with the range the provider suggests when it names one, else its
  stated cap (held as a ceiling), else half; after sparse answers the range grows again,
  so sparse history costs few calls;
- an answer counts only with proof that it is complete: the range check (the supply
  tiling, verify/range_proof.py) where the node has the contract's state, and where the
  endpoint batches eth_getLogs, the header of `toBlock` and the node's head in the same
  batch (a node behind the head answers `[]` for blocks it lacks; geth-style nodes clamp
  `toBlock` to their head). A refused answer is counted (`RpcStats.lagging`) and asked
  again with backoff; when the attempts run out, `ProviderLagError` names what was missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from glisk_pipeline.chain.heads import HeadCalls
from glisk_pipeline.chain.provider_errors import (
    Failure,
    Kind,
    RangeError,
    RpcError,
    StateUnavailable,
    classify,
    response_too_large,
)
from glisk_pipeline.chain.transport import BatchRefused, TooLargeForBatch

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


class LogFetching(HeadCalls):
    """iter_logs and get_logs_checked; RpcClient (rpc.py) sets the range limits."""

    max_block_range: int
    max_chunk_logs: int
    _ceiling: int  # hard cap learned from the provider
    _max_results: int | None  # result-count cap learned from the provider

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
