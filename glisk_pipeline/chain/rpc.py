"""The one JSON-RPC client, `RpcClient`, in three layers: the transport (HTTP, retries,
batch policy: transport.py), the head calls (heads.py) and eth_getLogs over a range with its
guards (logs.py). Provider error formats live in provider_errors.py alone.
"""

from __future__ import annotations

from typing import Any

from glisk_pipeline.chain.logs import (
    GROW_BELOW_LOGS,
    MAX_CHUNK_LOGS,
    PROOF_HEADER,
    PROOF_NONE,
    PROOF_SUPPLY,
    Incomplete,
    LogChunk,
    LogFetching,
    ProviderLagError,
    RangeCheck,
    split_chunk,
)
from glisk_pipeline.chain.provider_errors import Kind, RangeError, RpcError, classify
from glisk_pipeline.chain.transport import RpcStats
from glisk_pipeline.settings import Settings

__all__ = [
    "GROW_BELOW_LOGS",
    "MAX_CHUNK_LOGS",
    "PROOF_HEADER",
    "PROOF_NONE",
    "PROOF_SUPPLY",
    "Incomplete",
    "Kind",
    "LogChunk",
    "ProviderLagError",
    "RangeCheck",
    "RangeError",
    "RpcClient",
    "RpcError",
    "RpcStats",
    "classify",
    "split_chunk",
]


class RpcClient(LogFetching):
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
        super().__init__(
            url,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            batch_limit=batch_limit,
        )
        self.max_block_range = max_block_range
        self.max_chunk_logs = max_chunk_logs
        self.stats.chunk_size = min(initial_block_range, max_block_range)
        self._ceiling = max_block_range
        self._max_results = None

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

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
