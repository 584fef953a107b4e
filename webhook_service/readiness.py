"""GET /readyz's verdict: is the database reachable and its schema at our Alembic head?

The route is unauthenticated, so a flood of it must not cost the deliveries anything:
- the verdict is cached per worker for READY_CACHE_SECONDS, and concurrent callers share
  the one check in flight: a flood costs at most one database round trip per second;
- on PostgreSQL the check runs only if the delivery pool can spare a connection (one is
  idle, or the pool may still grow and no delivery is waiting); otherwise the last verdict
  stands (or, before any, "busy"): it never queues for a connection a delivery needs;
- a delivery that sees the database fail drops the cached verdict, so the next probe
  checks again instead of repeating a stale "ok".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from glisk_pipeline.db.migrate import MIGRATE_HINT

READY_CACHE_SECONDS = 1.0  # the kubelet probes every 5 s: a 1 s old verdict is fresh to it


@dataclass(frozen=True)
class Verdict:
    ready: bool
    detail: str | None
    at: float  # time.monotonic() of the check


class Readiness:
    def __init__(
        self,
        revision: Callable[[], Awaitable[str | None]],
        head_revision: str,
        pool: AsyncConnectionPool | None,
        within: Callable[[Awaitable[str | None]], Awaitable[str | None]],
    ) -> None:
        self._revision = revision
        self._head = head_revision
        self._pool = pool
        self._within = within  # bounds the check like a delivery (the answer budget)
        self._last: Verdict | None = None
        self._inflight: asyncio.Future[Verdict] | None = None

    async def verdict(self) -> Verdict:
        last = self._last
        if last is not None and time.monotonic() - last.at < READY_CACHE_SECONDS:
            return last
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._check())
            self._inflight.add_done_callback(self._done)
        # shielded: one caller going away does not cancel the check the others wait for
        return await asyncio.shield(self._inflight)

    def invalidate(self) -> None:
        """A delivery just saw the database fail: the cached verdict is stale."""
        self._last = None

    def _done(self, _: asyncio.Future[Verdict]) -> None:
        self._inflight = None

    async def _check(self) -> Verdict:
        if self._pool is not None and not pool_can_spare(self._pool):
            if self._last is not None:
                return self._last
            return Verdict(False, "database busy: every connection is serving deliveries", 0.0)
        try:
            current = await self._within(self._revision())
        except Exception as exc:  # any failure to reach the database means "not ready"
            verdict = Verdict(False, type(exc).__name__, time.monotonic())
        else:
            detail = None
            if current != self._head:
                detail = f"schema at {current}, expected {self._head}: {MIGRATE_HINT}"
            verdict = Verdict(detail is None, detail, time.monotonic())
        self._last = verdict
        return verdict


def pool_can_spare(pool: AsyncConnectionPool) -> bool:
    stats = pool.get_stats()
    if stats["pool_available"] > 0:
        return True
    return stats.get("requests_waiting", 0) == 0 and stats["pool_size"] < stats["pool_max"]
