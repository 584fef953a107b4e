"""Provider error formats: the one place that knows how providers word their eth_getLogs
limits, rate limits and outages, and what the client should do about each (`classify`).
Each format is a test case (tests/support/provider_messages.py, tests/test_rpc.py); the list for
users is docs/providers.md.

Range errors, read from the message and from `error.data` (a string or an object of them):
- a block cap stated in words: Coinbase (-32005 "please limit the query to at most N
  blocks"), thirdweb (-32005 "Maximum allowed number of requested blocks is N", and
  "invalid params" with the reason in data), Alchemy free tier, Infura, QuickNode, 1RPC,
  Blast (and its paid plans, in data), BlockPI, Avalanche, Cloudflare, Aurora, publicnode,
  Hyperliquid, Swell, Somnia, Merkle ("10k blocks"), Harmony, Moonbeam, Ankr ("[from, to]
  blocks distance"), Tron, Sei; where two numbers match, the smaller is the cap;
- a span limit without a number: Ankr, the public Base RPC, Optimism, Chainstack, eRPC;
- a result-count or response-size limit (`max_results` where stated, a suggested range
  where given, Infura's data {from, to} too): Infura, zkSync, zkEVM, thirdweb, Alchemy,
  llamarpc, Altitude, Ankr, Arbitrum ("logs matched by query exceeds limit of N": results,
  not blocks), Optimism-style gateways, 1RPC;
- wording not seen yet about a block range, results, logs or the response next to words of
  a limit: halve (rate words and batch refusals excepted).
-32005 is a rate limit only when no range words are found (Infura's "limit exceeded").

The client (glisk_pipeline/chain/rpc.py) acts on the `Failure` this module returns: narrow the
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
    cap: int | None = None  # a hard block-range limit stated by the provider (blocks)
    retry_after: float | None = None
    per_blocks: bool = False  # a limit on the block span itself, not on the result size
    max_results: int | None = None  # a result-count limit stated by the provider (logs)


# A number as providers write it: 10000, 10,000, 10.000, 10k, 2K.
_N = r"(\d[\d,.]*k?)"
# A limit on the block span, with the cap the message states, in blocks. When several
# match, the smallest wins ("block range too large (2000), maximum allowed is 1000 blocks").
_BLOCK_CAPS = tuple(
    re.compile(pattern)
    for pattern in (
        rf"up to an? {_N} block range",  # Alchemy free tier, Aurora
        rf"\brange \d+ exceeds limit of {_N}",  # Infura
        rf"limited to an? {_N}(?: blocks?)? range",  # QuickNode, 1RPC, Blast
        rf"limited to {_N} blocks?",  # BlockPI
        rf"requested too many blocks from \d+ to \d+, maximum is set to {_N}",  # Avalanche
        rf"max range: {_N}",  # Cloudflare
        rf"maximum allowed number of requested blocks is {_N}",  # thirdweb
        rf"range \d+ is bigger than range limit {_N}",  # thirdweb (in error.data)
        rf"exceeds the range allowed for your plan \(\d+ > {_N}\)",  # Blast paid (data)
        rf"please limit the query to at most {_N} blocks",  # Coinbase (CDP), -32005
        rf"maximum block range:? {_N}",  # publicnode
        rf"exceed max block range:? {_N}",  # Tron
        rf"query exceeds max block range {_N}",  # Hyperliquid
        rf"block range greater than {_N} max",  # Swell
        rf"block range exceeds {_N}",  # Somnia
        rf"range is too large, max is {_N} blocks",  # Merkle ("10k blocks")
        rf"query must be smaller than size {_N}",  # Harmony
        rf"block range is too wide \(maximum {_N}\)",  # Moonbeam / Moonriver
        rf"maximum \[from, to\] blocks distance: {_N}",  # Ankr (some chains)
        rf"maximum allowed is {_N} blocks",  # Sei
        rf"block range (?:is )?(?:too large|limit)[^\d]*{_N}",
    )
)
# A limit on the result count (depends on log density: shrink now, grow back later), with
# the count it states where it states one.
_RESULT_CAPS = tuple(
    re.compile(pattern)
    for pattern in (
        rf"query returned more than {_N} results",  # Infura, geth, zkSync, zkEVM, thirdweb
        rf"query exceeds max results(?: {_N})?",  # llamarpc, Ankr, Altitude
        rf"logs matched by query exceeds limit of {_N}",  # Arbitrum
        rf"cap of {_N} logs",  # Alchemy
    )
)
# Too much for one answer, in other words (response bytes, query time, result count).
_RESULT_HINTS = (
    "log response size exceeded",  # Alchemy
    "query timeout exceeded",  # Alchemy
    "backend response too large",  # Optimism-style gateways
    "response size should not greater than",  # 1RPC, NodeReal
    "response size exceeded",
    "response too large",
    "response is too large",
    "response size",
    "too many results",
    "too many logs",
)
# A suggested range: "[0x5223c98, 0x5223e80]" (Alchemy, Infura, zkSync), or decimal
# "retry with the range 6000000-6000509".
_SUGGESTED = re.compile(r"\[\s*(0x[0-9a-f]+)\s*,\s*(0x[0-9a-f]+)\s*\]")
_SUGGESTED_DECIMAL = re.compile(r"retry with the range (\d+)\s*-\s*(\d+)")
# Words about a block range, a result count or a response size, next to words of a limit:
# a range error in wording not seen yet (halve it rather than fail). Checked after the
# rate-limit words, and never for batch refusals or reverts (not about the range).
_SPAN_WORDS = re.compile(r"\brange\b|\bblocks\b|block span|block distance|block count")
_RESULT_WORDS = re.compile(r"\bresults\b|\blogs\b|\bresponse\b")
_LIMIT_WORDS = re.compile(
    r"too (?:large|wide|big|many|much|long)|exceed|limit|\bmax|greater than|bigger than"
    r"|larger than|smaller than|at most|allowed|threshold|reduc|narrow"
)
# A response that does not arrive within the client's timeout, on a range that can shrink.
TIMEOUT_AS_RANGE = Failure(Kind.RANGE, "read timed out", per_blocks=True)
# Checked first: they mention "block range" but are not about its width.
_LAGGING_HINTS = ("beyond current head", "header not found", "unknown block")
_FATAL_HINTS = ("invalid block range",)
# Checked before the unseen-wording rule: a limit on requests, not on the range.
_RATE_WORDS = (
    "rate limit",
    "rate-limit",
    "ratelimit",
    "compute units",
    "too many requests",
    "throughput",
    "capacity",
    "per second",
    "request count",
    "quota",
)
_TRANSIENT_HINTS = ("no backend", "timeout", "temporarily", "unavailable", "try again", "busy")


def classify(
    *, status: int | None, error: dict[str, Any] | str | None, retry_after: str | None = None
) -> Failure:
    """Turn an HTTP status and/or a JSON-RPC error object into what to do next. The
    error's `data` (a string, or an object holding strings) is read with its message:
    some providers put the real reason there under a bare "invalid params"."""
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message", ""))
    else:
        message = error if isinstance(error, str) else ""
    data = error.get("data") if isinstance(error, dict) else None
    details = [text for text in _strings(data) if text and text not in message]
    shown = "; ".join([message, *details]) if details else message
    text = shown.lower()
    after = _seconds(retry_after)
    if any(hint in text for hint in _LAGGING_HINTS):  # a node behind its peers: wait
        return Failure(Kind.TRANSIENT, shown, retry_after=after)
    if any(hint in text for hint in _FATAL_HINTS):
        return Failure(Kind.FATAL, shown)
    if (failure := _range_failure(shown, text, data)) is not None:
        return failure
    # -32005 is also Infura's "limit exceeded": a rate limit unless the words say range
    if status == 429 or code in (429, -32005) or any(hint in text for hint in _RATE_WORDS):
        return Failure(Kind.RATE_LIMIT, shown or "HTTP 429", retry_after=after)
    if status is not None and (status >= 500 or status == 408):
        return Failure(Kind.TRANSIENT, shown or f"HTTP {status}", retry_after=after)
    if any(hint in text for hint in _TRANSIENT_HINTS) or code == -32603:
        return Failure(Kind.TRANSIENT, shown)
    return Failure(Kind.FATAL, shown or f"HTTP {status}")


def _range_failure(shown: str, text: str, data: Any) -> Failure | None:
    """RANGE with what the message states (block cap, result cap, suggested range), or
    None when the error is not about the range's width."""
    suggested = _suggested(text, data)
    max_results = None
    is_results = False
    for pattern in _RESULT_CAPS:
        if match := pattern.search(text):
            is_results = True
            if match.group(1):
                max_results = _number(match.group(1))
            break
    if is_results or any(hint in text for hint in _RESULT_HINTS):
        return Failure(Kind.RANGE, shown, suggested, max_results=max_results)
    caps = [_number(m.group(1)) for p in _BLOCK_CAPS if (m := p.search(text))]
    if caps or suggested is not None:
        cap = min(caps) if caps else None
        return Failure(Kind.RANGE, shown, suggested, cap, per_blocks=True)
    if any(word in text for word in ("batch", "revert")) or any(w in text for w in _RATE_WORDS):
        return None  # about the request or the contract, not the range
    if _LIMIT_WORDS.search(text):
        if _SPAN_WORDS.search(text):  # e.g. "block range too large", no number: halve
            return Failure(Kind.RANGE, shown, per_blocks=True)
        if _RESULT_WORDS.search(text):
            return Failure(Kind.RANGE, shown)
    return None


def _suggested(text: str, data: Any) -> tuple[int, int] | None:
    if match := _SUGGESTED.search(text):
        a, b = int(match.group(1), 16), int(match.group(2), 16)
    elif match := _SUGGESTED_DECIMAL.search(text):
        a, b = int(match.group(1)), int(match.group(2))
    elif isinstance(data, dict) and all(isinstance(data.get(k), str) for k in ("from", "to")):
        try:  # Infura's data: {"from": "0x800000", "to": "0x800054", "limit": 10000}
            a, b = int(data["from"], 16), int(data["to"], 16)
        except ValueError:
            return None
    else:
        return None
    return (min(a, b), max(a, b))  # Alchemy sometimes reverses the pair


def _number(written: str) -> int:
    """10,000 / 10.000 / 10k as an int."""
    digits = written.rstrip(".,")
    scale = 1_000 if digits.endswith("k") else 1
    return int(digits.rstrip("k").replace(",", "").replace(".", "")) * scale


def _strings(value: Any) -> list[str]:
    """The strings inside an error's `data` (a string, or objects and lists of them)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


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
# (glisk_pipeline/chain/rpc.py, BatchPolicy) remembers it and splits or sends singly.

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
# geth answers the items past its batch-response cap with code -32003 and exactly this
# message; a gateway's "backend response too large" is one call's eth_getLogs limit instead.
_RESPONSE_TOO_LARGE = "response too large"
_RESPONSE_TOO_LARGE_CODE = -32003


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
    if not isinstance(error, dict):
        return False
    message = str(error.get("message", "")).strip().lower()
    return error.get("code") == _RESPONSE_TOO_LARGE_CODE or message == _RESPONSE_TOO_LARGE
