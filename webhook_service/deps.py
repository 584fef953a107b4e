"""What the routes depend on, built once per worker process at start-up.

PostgreSQL (production): deliveries go through an async psycopg pool, one prepared call of
the store's delivery function each, on the event loop (no threadpool hop); /readyz borrows
a connection from it only when one is spare (webhook_service/readiness.py). SQLite (the
embedded default): the synchronous store, run in the threadpool.

Every database wait is bounded below the answer budget (WEBHOOK_ANSWER_BUDGET_SECONDS,
under Alchemy's 5 s delivery timeout): libpq socket timeouts and keepalives, the pool's
checkout timeout, the server's statement_timeout, and the handler's own deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import orjson
from fastapi import Request
from psycopg import AsyncConnection
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from glisk_pipeline.db.engine import engine_from_settings, libpq_conninfo, pg_time_limits
from glisk_pipeline.db.migrate import current_revision, head_revision
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.db.store.webhook_pg import AsyncDeliveryStore
from glisk_pipeline.settings import Settings
from webhook_service.budget import within_budget
from webhook_service.readiness import Readiness

# The sidecar refuses to start without these (one line naming the first missing one).
REQUIRED = ("ALCHEMY_WEBHOOK_SECRET", "GLISK_NFT_CONTRACT_ADDRESS", "GLISK_DEFAULT_AUTHOR_WALLET")


@dataclass(frozen=True)
class Service:
    settings: Settings
    engine: Engine
    store: MintStore  # SQLite deliveries (and nothing else on PostgreSQL)
    deliveries: AsyncDeliveryStore | None  # PostgreSQL deliveries
    signing_keys: tuple[bytes, ...]
    contract: str
    head_revision: str
    readiness: Readiness = field(init=False)

    def __post_init__(self) -> None:
        pool = None if self.deliveries is None else self.deliveries.pool
        bounded = partial(within_budget, seconds=self.answer_budget_s)
        readiness = Readiness(self.schema_revision, self.head_revision, pool, bounded)
        object.__setattr__(self, "readiness", readiness)  # frozen: set once, here

    @property
    def duplicate_status(self) -> int:
        return self.settings.WEBHOOK_DUPLICATE_STATUS

    @property
    def max_body_bytes(self) -> int:
        return self.settings.WEBHOOK_MAX_BODY_BYTES

    @property
    def max_tokens_per_delivery(self) -> int:
        return self.settings.WEBHOOK_MAX_TOKENS_PER_DELIVERY

    @property
    def answer_budget_s(self) -> float:
        return self.settings.WEBHOOK_ANSWER_BUDGET_SECONDS

    async def open(self) -> None:
        if self.deliveries is not None:
            await self.deliveries.pool.open(wait=False)  # a down database: /readyz says so

    async def schema_revision(self) -> str | None:
        """The database's Alembic revision (raises if it cannot be read)."""
        if self.deliveries is None:
            return await run_in_threadpool(current_revision, self.engine)
        async with self.deliveries.pool.connection() as conn:
            row = await (await conn.execute("SELECT version_num FROM alembic_version")).fetchone()
            return None if row is None else str(row[0])

    async def close(self) -> None:
        if self.deliveries is not None:
            await self.deliveries.pool.close(timeout=1)
        self.engine.dispose()


def check_settings(settings: Settings) -> None:
    """Raise ConfigError naming the first variable the sidecar cannot run without."""
    settings.require(*REQUIRED)
    settings.contract_address  # noqa: B018 - raises on the zero address on a Base network


def build_service(settings: Settings) -> Service:
    check_settings(settings)
    budget = settings.WEBHOOK_ANSWER_BUDGET_SECONDS
    deliveries = None
    # Each worker's pool: DATABASE_POOL_SIZE (+ DATABASE_MAX_OVERFLOW in bursts). On
    # PostgreSQL that is the async pool; the engine then never connects (/readyz borrows
    # a spare pooled connection), so a worker holds at most pool + overflow connections.
    if settings.DATABASE_URL.startswith("postgresql"):
        deliveries = AsyncDeliveryStore(
            make_delivery_pool(settings), settings.default_author_wallet
        )
    engine = engine_from_settings(settings, pool_timeout=budget / 2)
    return Service(
        settings=settings,
        engine=engine,
        store=MintStore(engine, settings.default_author_wallet, settings.GLISK_START_BLOCK),
        deliveries=deliveries,
        signing_keys=settings.webhook_signing_keys,
        contract=settings.contract_address,
        head_revision=head_revision(),
    )


def make_delivery_pool(settings: Settings) -> AsyncConnectionPool:
    """The worker's delivery pool (not opened yet). Autocommit: the delivery function is
    its own transaction, so a delivery is one round trip (no BEGIN/COMMIT)."""
    budget = settings.WEBHOOK_ANSWER_BUDGET_SECONDS
    return AsyncConnectionPool(
        libpq_conninfo(settings.DATABASE_URL),
        min_size=settings.DATABASE_POOL_SIZE,
        max_size=settings.DATABASE_POOL_SIZE + settings.DATABASE_MAX_OVERFLOW,
        kwargs={"autocommit": True, **pg_time_limits(budget)},
        configure=_configure,
        timeout=budget / 2,  # waiting for a free connection
        # Replacing lost connections backs off exponentially (1, 2, 4 s...): after an
        # outage of some seconds the next attempt could be as far away, and deliveries
        # would wait for it. Given up after one budget instead, the next delivery that
        # needs a connection starts a fresh attempt at once.
        reconnect_timeout=budget,
        open=False,
        name="glisk-webhook",
    )


async def _configure(conn: AsyncConnection) -> None:
    set_json_loads(orjson.loads, conn)


async def get_service(request: Request) -> Service:
    # async: FastAPI runs a plain-def dependency in the threadpool, a hop per request
    service: Service = request.app.state.service  # set by the app's lifespan
    return service
