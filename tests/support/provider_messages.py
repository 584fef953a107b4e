"""Providers' eth_getLogs limit messages as they answer them (text, JSON-RPC code, `data`,
HTTP status), one entry per format, with what `classify` must read from each. The
texts are the ones recorded per provider in Ponder's provider tests (@ponder/utils), plus
the Sei and Infura data shapes; numbers are the providers' own.

`template` is the same message with the stated number replaced by {n} (and the suggested
range by {a}/{b}, the refused range by {lo}/{hi}), so the fault proxy can enforce each
format at a cap small enough for a test chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recorded:
    provider: str
    code: int
    message: str
    cap: int | None = None  # block cap classify must read
    suggested: tuple[int, int] | None = None
    max_results: int | None = None  # result cap classify must read
    per_blocks: bool = True  # a limit on the span (False: on the result count or size)
    data: Any = None
    status: int = 200
    template: str | None = None  # the message with {n} etc.; None: the message as is
    data_template: Any = None
    per: str = field(default="blocks")  # what the proxy counts: "blocks" or "results"


def results(provider: str, code: int, message: str, **kw: Any) -> Recorded:
    return Recorded(provider, code, message, per_blocks=False, per="results", **kw)


RECORDED: tuple[Recorded, ...] = (
    # --- a stated block cap ---------------------------------------------------------------
    Recorded(
        "coinbase",
        -32005,
        "please limit the query to at most 1000 blocks",
        cap=1000,
        template="please limit the query to at most {n} blocks",
    ),
    Recorded(
        "thirdweb",
        -32005,
        "Maximum allowed number of requested blocks is 1000",
        cap=1000,
        template="Maximum allowed number of requested blocks is {n}",
    ),
    Recorded(
        "thirdweb-data",
        -32602,
        "invalid params",
        cap=2000,
        data="range 20000 is bigger than range limit 2000",
        data_template="range {span} is bigger than range limit {n}",
    ),
    Recorded(
        "avalanche",
        -32000,
        "requested too many blocks from 53164508 to 53166556, maximum is set to 2048",
        cap=2048,
        template="requested too many blocks from {lo} to {hi}, maximum is set to {n}",
    ),
    Recorded(
        "cloudflare",
        -32047,
        "Invalid eth_getLogs request. 'fromBlock'-'toBlock' range too large. Max range: 800",
        cap=800,
        template="Invalid eth_getLogs request. 'fromBlock'-'toBlock' range too large. "
        "Max range: {n}",
    ),
    Recorded(
        "quicknode",
        -32614,
        "eth_getLogs is limited to a 10,000 range",
        cap=10_000,
        status=413,
        template="eth_getLogs is limited to a {n:,} range",
    ),
    Recorded(
        "quicknode-blocks",
        -32614,
        "eth_getLogs and eth_newFilter are limited to a 10,000 blocks range",
        cap=10_000,
        template="eth_getLogs and eth_newFilter are limited to a {n:,} blocks range",
    ),
    Recorded(
        "1rpc",
        -32000,
        "eth_getLogs is limited to a 1000 blocks range",
        cap=1000,
        template="eth_getLogs is limited to a {n} blocks range",
    ),
    Recorded(
        "blockpi",
        -32602,
        "eth_getLogs is limited to 1024 block range",
        cap=1024,
        template="eth_getLogs is limited to {n} block range",
    ),
    Recorded(
        "blast-paid",
        -32602,
        "Invalid params",
        cap=2000,
        status=400,
        data={
            "range": "the range 55074203 - 55124202 exceeds the range allowed for your "
            "plan (49999 > 2000)."
        },
        data_template={
            "range": "the range {lo} - {hi} exceeds the range allowed for your plan ({span} > {n})."
        },
    ),
    Recorded(
        "infura-range",
        -32602,
        "range 1000000 exceeds limit of 10000",
        cap=10_000,
        template="range {span} exceeds limit of {n}",
    ),
    Recorded(
        "alchemy-free-tier",
        -32600,
        "Under the Free tier plan, you can make eth_getLogs requests with up to a 10 block "
        "range. Based on your parameters, this block range should work: [0x1180fca, "
        "0x1180fd3]. Upgrade to PAYG for expanded block range.",
        cap=10,
        suggested=(0x1180FCA, 0x1180FD3),
        status=400,
        template="Under the Free tier plan, you can make eth_getLogs requests with up to a "
        "{n} block range. Based on your parameters, this block range should work: [{a}, "
        "{b}]. Upgrade to PAYG for expanded block range.",
    ),
    Recorded(
        "aurora",
        -32005,
        "up to a 2000 block range",
        cap=2000,
        template="up to a {n} block range",
    ),
    Recorded(
        "publicnode",
        -32000,
        "exceed maximum block range: 50000",
        cap=50_000,
        template="exceed maximum block range: {n}",
    ),
    Recorded(
        "hyperliquid",
        -32000,
        "query exceeds max block range 50",
        cap=50,
        template="query exceeds max block range {n}",
    ),
    Recorded(
        "swell",
        -32000,
        "block range greater than 1000 max",
        cap=1000,
        template="block range greater than {n} max",
    ),
    Recorded(
        "somnia",
        -32000,
        "block range exceeds 1000",
        cap=1000,
        template="block range exceeds {n}",
    ),
    Recorded("merkle-10k", -32000, "eth_getLogs range is too large, max is 10k blocks", cap=10_000),
    Recorded("merkle-1k", -32000, "eth_getLogs range is too large, max is 1k blocks", cap=1000),
    Recorded(
        "harmony",
        -32000,
        "query must be smaller than size 1024",
        cap=1024,
        template="query must be smaller than size {n}",
    ),
    Recorded(
        "moonriver",
        -32603,
        "block range is too wide (maximum 1024)",
        cap=1024,
        template="block range is too wide (maximum {n})",
    ),
    Recorded(
        "ankr-tac",
        -32000,
        "maximum [from, to] blocks distance: 10000",
        cap=10_000,
        template="maximum [from, to] blocks distance: {n}",
    ),
    Recorded(
        "tron",
        -32000,
        "exceed max block range: 5000",
        cap=5000,
        template="exceed max block range: {n}",
    ),
    Recorded(
        "sei",
        -32000,
        "block range too large (2000), maximum allowed is 1000 blocks",
        cap=1000,
        template="block range too large ({span}), maximum allowed is {n} blocks",
    ),
    # --- a span limit without a number: halve, keep the halved width ----------------------
    Recorded("ankr", -32600, "block range is too wide"),
    Recorded("base", -32000, "block range too large"),
    Recorded("optimism", -32000, "Block range is too large"),
    Recorded("chainstack", -32602, "Block range limit exceeded."),
    Recorded(
        "altitude-range",
        -32000,
        "allowed block range threshold exceeded for eth_getLogs",
        status=400,
    ),
    # --- a result-count or response-size limit (a suggested range where given) -----------
    results(
        "infura",
        -32005,
        "query returned more than 10000 results. Try with this block range [0x800000, 0x800054].",
        max_results=10_000,
        suggested=(0x800000, 0x800054),
        data={"from": "0x800000", "limit": 10000, "to": "0x800054"},
        template="query returned more than {n} results. Try with this block range [{a}, {b}].",
        data_template={"from": "{a}", "limit": "{n}", "to": "{b}"},
    ),
    results(
        "thirdweb-data-results",
        -32602,
        "invalid params",
        max_results=10_000,
        suggested=(0x800000, 0x800054),
        data="Query returned more than 10000 results. Try with this block range [0x800000, "
        "0x800054].",
        data_template="Query returned more than {n} results. Try with this block range [{a}, {b}].",
    ),
    results(
        "zksync",
        -32000,
        "Query returned more than 10000 results. Try with this block range [0x118dc91, 0x1198cc3].",
        max_results=10_000,
        suggested=(0x118DC91, 0x1198CC3),
        template="Query returned more than {n} results. Try with this block range [{a}, {b}].",
    ),
    results(
        "alchemy",
        -32602,
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block "
        "range and no limit on the response size, or you can request any block range with a "
        "cap of 10K logs in the response. Based on your parameters and the response size "
        "limit, this block range should work: [0x800000, 0x80001f]",
        max_results=10_000,
        suggested=(0x800000, 0x80001F),
        template="Log response size exceeded. You can make eth_getLogs requests with up to a "
        "2K block range and no limit on the response size, or you can request any block "
        "range with a cap of {n} logs in the response. Based on your parameters and the "
        "response size limit, this block range should work: [{a}, {b}]",
    ),
    results(
        "zkevm",
        -32000,
        "query returned more than 10000 results",
        max_results=10_000,
        template="query returned more than {n} results",
    ),
    results(
        "llamarpc",
        -32602,
        "query exceeds max results 20000",
        max_results=20_000,
        template="query exceeds max results {n}",
    ),
    results(
        "altitude-results",
        -32000,
        "query exceeds max results 20000",
        max_results=20_000,
        status=400,
        template="query exceeds max results {n}",
    ),
    results("ankr-results", -32000, "query exceeds max results"),
    results(
        "arbitrum",
        -32000,
        "logs matched by query exceeds limit of 10000",
        max_results=10_000,
        template="logs matched by query exceeds limit of {n}",
    ),
    results("optimism-size", -32000, "backend response too large"),
    results("1rpc-size", -32000, "response size should not greater than 2097152 bytes"),
    results(
        "alchemy-timeout",
        -32000,
        "Query timeout exceeded. Consider reducing your block range. Based on your "
        "parameters, this block range should work: [0x5223c98, 0x5223e80]",
        suggested=(0x5223C98, 0x5223E80),
        template="Query timeout exceeded. Consider reducing your block range. Based on your "
        "parameters, this block range should work: [{a}, {b}]",
    ),
)

# Wording no provider above uses, about a block range, a result count or a response size:
# each must still shrink (halving) rather than fail.
UNSEEN: tuple[Recorded, ...] = (
    Recorded("unseen-span", -32000, "requested range is wider than allowed"),
    Recorded("unseen-blocks", -32602, "too many blocks requested, narrow the query"),
    results("unseen-results", -32000, "the number of results is too large"),
    results("unseen-logs", -32000, "eth_getLogs: more logs than the limit"),
    results("unseen-response", -32000, "response exceeds the 10 MB limit"),
)
