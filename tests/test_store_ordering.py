"""The webhook ordering rule as a table of cases, on PostgreSQL and SQLite: for each pair
(the view of a block already applied, a new delivery's view), whether the new view applies
or is refused, and why. The rule is one SQL CASE run by both dialects; this table pins
what it decides, whatever the dialect, and whatever the caller: on PostgreSQL both the
synchronous store and the sidecar's async pool call the delivery function."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select

from devtools.local_chain import DEFAULT_AUTHOR
from glisk_pipeline.db.schema import webhook_blocks
from glisk_pipeline.db.store import MintStore, StoreResult
from glisk_pipeline.db.store.webhook_pg import AsyncDeliveryStore
from tests.support.factories import chain_of
from tests.support.fixtures_db import async_pool

BLOCK = 500
H1, H2 = "0x" + "a1" * 32, "0x" + "b2" * 32
NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))


@dataclass(frozen=True)
class View:
    webhook: str
    block_hash: str
    seq: int
    created: datetime | None


@dataclass(frozen=True)
class Case:
    name: str
    applied: View
    incoming: View
    verdict: str  # "apply", "older" or "final"
    final: bool = False  # the block reconciled from the chain before `incoming`


CASES = [
    # one webhook: its sequenceNumber orders, whatever the hash or the clock
    Case("same webhook, later seq", View("a", H1, 1, NOON), View("a", H2, 2, NOON), "apply"),
    Case("same webhook, equal seq", View("a", H1, 3, NOON), View("a", H1, 3, NOON), "apply"),
    Case(
        "same webhook, earlier seq, later clock",
        View("a", H1, 3, NOON),
        View("a", H2, 2, NOON + timedelta(hours=1)),
        "older",
    ),
    Case("seq as numbers, not text", View("a", H1, 9, NOON), View("a", H2, 10, NOON), "apply"),
    Case(
        "seq beyond 2^64",
        View("a", H1, 10**30, NOON),
        View("a", H2, 9 * 10**29, NOON),
        "older",
    ),
    # across webhooks: agreeing hash applies; otherwise the later createdAt wins
    Case(
        "other webhook, same hash, earlier clock",
        View("a", H1, 5, NOON),
        View("b", H1, 1, NOON - timedelta(hours=1)),
        "apply",
    ),
    Case(
        "other webhook, same hash, later clock",
        View("a", H1, 5, NOON),
        View("b", H1, 1, NOON + timedelta(hours=1)),
        "apply",
    ),
    Case(
        "other webhook, other hash, later clock",
        View("a", H1, 5, NOON),
        View("b", H2, 1, NOON + timedelta(seconds=1)),
        "apply",
    ),
    Case(
        "other webhook, other hash, earlier clock",
        View("a", H1, 1, NOON),
        View("b", H2, 9, NOON - timedelta(seconds=1)),
        "older",
    ),
    Case("other webhook, same clock", View("a", H1, 1, NOON), View("b", H2, 2, NOON), "older"),
    Case("incoming without clock", View("a", H1, 1, NOON), View("b", H2, 2, None), "older"),
    Case("applied without clock", View("a", H1, 1, None), View("b", H2, 2, NOON), "older"),
    Case(  # 13:30+02:00 is 11:30 UTC: earlier, though its wall time is later
        "clocks compare as instants, earlier",
        View("a", H1, 1, NOON),
        View("b", H2, 2, datetime(2026, 1, 1, 13, 30, tzinfo=PLUS_TWO)),
        "older",
    ),
    Case(  # 14:30+02:00 is 12:30 UTC
        "clocks compare as instants, later",
        View("a", H1, 1, NOON),
        View("b", H2, 2, datetime(2026, 1, 1, 14, 30, tzinfo=PLUS_TWO)),
        "apply",
    ),
    # a reconciled final block is never changed, even by a view that would otherwise apply
    Case("final block", View("a", H1, 1, NOON), View("a", H1, 2, NOON), "final", final=True),
]


def _args(view: View) -> dict[str, object]:
    return {
        "block_number": BLOCK,
        "block_hash": view.block_hash,
        "sequence_number": view.seq,
        "records": [],
        "webhook_id": view.webhook,
        "created_at": view.created,
    }


def _deliver(store: MintStore, view: View) -> StoreResult:
    return store.store_block_delivery(**_args(view))


def _deliver_async(url: str, view: View) -> StoreResult:
    async def run() -> StoreResult:
        async with async_pool(url) as pool:
            deliveries = AsyncDeliveryStore(pool, DEFAULT_AUTHOR)
            return await deliveries.store_block_delivery(**_args(view))

    return asyncio.run(run())


def _verdict(result: StoreResult) -> str:
    if not result.stale:
        return "apply"
    return "final" if "final" in (result.stale_reason or "") else "older"


def _applied(engine: Engine) -> tuple[str, str]:
    with engine.connect() as conn:
        claim = conn.execute(
            select(webhook_blocks.c.webhook_id, webhook_blocks.c.block_hash).where(
                webhook_blocks.c.block_number == BLOCK
            )
        ).one()
    return tuple(claim)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_ordering_rule(engine: Engine, case: Case) -> None:
    store = MintStore(engine, DEFAULT_AUTHOR, start_block=0)
    assert not _deliver(store, case.applied).stale  # the first view of a block applies
    if case.final:
        store.reconcile_range([], start_block=BLOCK, end_block=BLOCK, canonical=chain_of())
    verdict = _verdict(_deliver(store, case.incoming))
    assert verdict == case.verdict
    winner = case.incoming if verdict == "apply" else case.applied
    assert _applied(engine) == (winner.webhook, winner.block_hash)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_ordering_rule_through_the_async_pool(pg_url: str, pg_engine: Engine, case: Case) -> None:
    """The same table through the sidecar's path (async psycopg pool, one call)."""
    assert not _deliver_async(pg_url, case.applied).stale
    if case.final:
        MintStore(pg_engine, DEFAULT_AUTHOR).reconcile_range(
            [], start_block=BLOCK, end_block=BLOCK, canonical=chain_of()
        )
    verdict = _verdict(_deliver_async(pg_url, case.incoming))
    assert verdict == case.verdict
    winner = case.incoming if verdict == "apply" else case.applied
    assert _applied(pg_engine) == (winner.webhook, winner.block_hash)
