"""Provider error formats: the one place that knows how Alchemy, Infura, QuickNode and the
public Base RPC word their eth_getLogs limits, rate limits and outages (tests/test_rpc.py
holds their messages), and what the client should do about each (`classify`).

The client (glisk_pipeline/rpc.py) acts on the `Failure` this module returns: narrow the
range (RANGE), back off (RATE_LIMIT, TRANSIENT) or give up (FATAL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit


class RpcError(RuntimeError):
    """An RPC failure that retrying will not fix (or retries ran out); names the range."""


class Kind(Enum):
    RANGE = "range"  # the range is too wide for this provider: shrink it
    RATE_LIMIT = "rate_limit"
    TRANSIENT = "transient"
    FATAL = "fatal"


@dataclass(frozen=True, slots=True)
class Failure:
    kind: Kind
    message: str
    suggested: tuple[int, int] | None = None  # a block range the provider says will work
    cap: int | None = None  # a hard block-range limit stated by the provider
    retry_after: float | None = None
    per_blocks: bool = False  # a limit on the block span itself, not on the result size


_SUGGESTED = re.compile(r"\[\s*(0x[0-9a-f]+)\s*,\s*(0x[0-9a-f]+)\s*\]")
_CAPS = (
    re.compile(r"up to a ([\d,]+) block range"),  # Alchemy free tier
    re.compile(r"exceeds limit of ([\d,]+)"),  # Infura
    re.compile(r"limited to a ([\d,]+) range"),  # QuickNode
    re.compile(r"block range (?:is )?(?:too large|limit)[^\d]*([\d,]+)"),
)
# Too many results for this range (depends on log density: shrink now, grow back later).
_RESULT_HINTS = (
    "log response size exceeded",
    "query returned more than",
    "too many results",
    "response size",
    "query timeout exceeded",
)
# A limit on the range itself (holds everywhere: never grow past it again).
_BLOCK_HINTS = (
    "block range",
    "exceeds limit",
    "is limited to",
    "range too large",
    "range is too large",
)
# A response that does not arrive within the client's timeout, on a range that can shrink.
TIMEOUT_AS_RANGE = Failure(Kind.RANGE, "read timed out", per_blocks=True)
# Checked first: they mention "block range" but are not about its width.
_LAGGING_HINTS = ("beyond current head", "header not found", "unknown block")
_FATAL_HINTS = ("invalid block range",)
_RATE_HINTS = (
    "rate limit",
    "compute units",
    "too many requests",
    "capacity",
    "throughput",
    "limit exceeded",
)
_TRANSIENT_HINTS = ("no backend", "timeout", "temporarily", "unavailable", "try again", "busy")


def classify(
    *, status: int | None, error: dict[str, Any] | None, retry_after: str | None = None
) -> Failure:
    """Turn an HTTP status and/or a JSON-RPC error object into what to do next."""
    code = error.get("code") if isinstance(error, dict) else None
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    text = message.lower()
    after = _seconds(retry_after)
    if any(hint in text for hint in _LAGGING_HINTS):  # a node behind its peers: wait
        return Failure(Kind.TRANSIENT, message, retry_after=after)
    if any(hint in text for hint in _FATAL_HINTS):
        return Failure(Kind.FATAL, message)
    per_blocks = not any(hint in text for hint in _RESULT_HINTS)
    if not per_blocks or any(hint in text for hint in _BLOCK_HINTS):
        suggested = None
        if match := _SUGGESTED.search(text):
            a, b = int(match.group(1), 16), int(match.group(2), 16)
            suggested = (min(a, b), max(a, b))  # Alchemy sometimes reverses the pair
        cap = None
        for pattern in _CAPS:
            if m := pattern.search(text):
                cap = int(m.group(1).replace(",", ""))
                break
        return Failure(Kind.RANGE, message, suggested, cap, per_blocks=per_blocks)
    # -32005 is Infura's "limit exceeded" (when not about results, handled above)
    if status == 429 or code in (429, -32005) or any(hint in text for hint in _RATE_HINTS):
        return Failure(Kind.RATE_LIMIT, message or "HTTP 429", retry_after=after)
    if status is not None and (status >= 500 or status == 408):
        return Failure(Kind.TRANSIENT, message or f"HTTP {status}", retry_after=after)
    if any(hint in text for hint in _TRANSIENT_HINTS) or code == -32603:
        return Failure(Kind.TRANSIENT, message)
    return Failure(Kind.FATAL, message or f"HTTP {status}")


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def redact(url: str) -> str:
    """scheme://host/… : provider URLs carry API keys in the path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}"


class Retry(Exception):
    """Internal to the client: this attempt failed in a way worth repeating."""

    def __init__(self, failure: Failure):
        self.failure = failure


class RangeError(RpcError):
    """The provider says the eth_getLogs range is too wide (iter_logs narrows it)."""

    def __init__(self, failure: Failure):
        super().__init__(f"block range too wide: {failure.message}")
        self.failure = failure


# --- state availability (eth_call at a past block) ----------------------------------------
# An eth_call at block N needs N's state. Archive nodes (hosted providers) keep all of it; a
# full node keeps only recent state (geth: the last 128 blocks) and answers for older blocks
# with one of these. Retrying does not bring pruned state back, so they are not transient.
_STATE_HINTS = (
    "missing trie node",  # geth, erigon
    "state not available",
    "state is not available",
    "historical state",  # geth path scheme, reth
    "state histories",
    "world state",  # besu
    "pruned",
    "header not found",  # a block the node no longer (or not yet) has
    "unknown block",
    "blockoutofrangeerror",  # anvil --prune-history
)


class StateUnavailable(RpcError):
    """The node has no state for the block an eth_call asked about (pruned or not yet
    there): not a fault of the data, and not worth retrying."""


def state_unavailable(message: str) -> bool:
    text = message.lower()
    return any(hint in text for hint in _STATE_HINTS)


# --- JSON-RPC batch policies ------------------------------------------------------------
# Nodes and providers differ in what they accept as a batch, and in how they refuse one:
# - Erigon (`--rpc.batch.limit`, default 100) answers an over-long batch with ONE error
#   object instead of an array: "batch limit 100 exceeded: 142 requests given"; Nethermind
#   limits batches too (100 by default); geth takes 1,000 and caps a batch's response at
#   25,000,000 bytes, answering the items past it "response too large"; reth has no limit
#   unless configured; Ankr takes 1,000 elements, NodeReal 500;
# - some hosted nodes refuse given methods inside a batch, with an array holding one
#   `id: null` error: 'Too many ["eth_getLogs"] methods in the batch' (Ankr- and
#   Gnosis-style), or "Unsupported methods [trace_block] in batch call" (Alchemy);
# - some gateways take no batch at all ("batch requests are not supported"), or answer one
#   with HTTP 400 / 413.
# `batch_refusal` reads each of these as what the endpoint accepts; the client
# (glisk_pipeline/rpc.py, BatchPolicy) remembers it and splits or sends singly.

_BATCH_NUMBER = re.compile(
    r"batch[^\d]{0,40}?(?:limit|size|max(?:imum)?|at most|up to)[^\d]{0,20}(\d[\d,]*)"
)
_BATCH_METHODS = (
    re.compile(r"too many \[([^\]]*)\] methods"),
    re.compile(r"unsupported methods? \[([^\]]*)\] in batch"),
    re.compile(r"methods? \[([^\]]*)\] (?:is |are )?not (?:allowed|supported) in (?:a )?batch"),
)
_BATCH_NONE = (
    "batch requests are not supported",
    "batch request not supported",
    "batch requests not supported",
    "batching is not supported",
    "batch is not supported",
    "batches are not supported",
    "batch calls are not supported",
    "batch not supported",
    "batch requests are disabled",
    "batching disabled",
)
_RESPONSE_TOO_LARGE = ("response too large", "batch response", "response size limit")


@dataclass(frozen=True, slots=True)
class BatchRefusal:
    """What an endpoint said when it refused a JSON-RPC batch."""

    message: str
    limit: int | None = None  # the largest batch it states it accepts
    methods: tuple[str, ...] = ()  # methods it takes only as single calls
    none: bool = False  # it takes no batch at all


def batch_refusal(status: int, body: Any, sent: list[str]) -> BatchRefusal | None:
    """The refusal in an endpoint's answer to a batch of `sent` methods, or None when the
    batch was served (its items may still fail one by one)."""
    error: Any = None
    if isinstance(body, list):
        # an array holding one `id: null` error answering several calls
        lone = body[0] if len(body) == 1 and isinstance(body[0], dict) else {}
        if len(sent) > 1 and lone.get("id") is None:
            error = lone.get("error")
        if not isinstance(error, dict):
            return None
    elif isinstance(body, dict):  # one error object answering an array
        error = body.get("error")
    if isinstance(error, dict):
        if "batch" not in _error_text(error) and classify(status=status, error=error).kind in (
            Kind.RATE_LIMIT,
            Kind.TRANSIENT,
            Kind.RANGE,
        ):
            return None  # about the request, not the batch: back off or narrow
        return _refusal(error, sent)
    if status in (400, 405, 413, 501):
        return BatchRefusal(f"HTTP {status} to a batch of {len(sent)}")
    return None


def _error_text(error: dict[str, Any]) -> str:
    data = error.get("data")
    extra = data if isinstance(data, str) else (str(data) if data else "")
    return f"{error.get('message', '')} {extra}".lower()


def _refusal(error: dict[str, Any], sent: list[str]) -> BatchRefusal:
    text = _error_text(error)
    message = str(error.get("message", "")) or "batch refused"
    if any(hint in text for hint in _BATCH_NONE):
        return BatchRefusal(message, none=True)
    for pattern in _BATCH_METHODS:
        if match := pattern.search(text):
            by_lower = {method.lower(): method for method in sent}
            named = [m for m in re.findall(r"[a-z][a-z0-9_]*", match.group(1)) if m in by_lower]
            if named:
                return BatchRefusal(message, methods=tuple(by_lower[m] for m in named))
    if match := _BATCH_NUMBER.search(text):
        limit = int(match.group(1).replace(",", ""))
        if 0 < limit < len(sent):
            return BatchRefusal(message, limit=limit)
    return BatchRefusal(message)


def response_too_large(error: Any) -> bool:
    """An item of a served batch refused because the batch's response grew too large
    (geth's --rpc.batchresponsemaxsize): the same call alone, or in a smaller batch, fits."""
    return isinstance(error, dict) and any(h in _error_text(error) for h in _RESPONSE_TOO_LARGE)
