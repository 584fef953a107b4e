"""What the routes depend on, built once per worker process at start-up.

PostgreSQL (production): deliveries go through an async psycopg pool, one prepared call
of the store's delivery function each, on the event loop (no threadpool hop). The
SQLAlchemy engine is kept for /readyz only (one connection). SQLite (the embedded
default): the synchronous store, run in the threadpool.

Every database wait is bounded below the answer budget (WEBHOOK_ANSWER_BUDGET_SECONDS,
under Alchemy's 5 s delivery timeout): libpq socket timeouts and keepalives, the pool's
checkout timeout, the server's statement_timeout, and the handler's own deadline.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from fastapi import Request
from psycopg import AsyncConnection
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine

from glisk_pipeline.db.engine import libpq_conninfo, make_engine, pg_time_limits
from glisk_pipeline.db.migrate import head_revision
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.db.store.webhook_pg import AsyncDeliveryStore
from glisk_pipeline.settings import Settings

# The sidecar refuses to start without these (one line naming the first missing one).
REQUIRED = ("ALCHEMY_WEBHOOK_SECRET", "GLISK_NFT_CONTRACT_ADDRESS", "GLISK_DEFAULT_AUTHOR_WALLET")

# SQLite: the engine's pool serves the threadpool that runs the store calls.
SQLITE_POOL_SIZE = 10
SQLITE_MAX_OVERFLOW = 10


@dataclass(frozen=True)
class Service:
    settings: Settings
    engine: Engine
    store: MintStore  # SQLite deliveries (and nothing else on PostgreSQL)
    deliveries: AsyncDeliveryStore | None  # PostgreSQL deliveries
    signing_keys: tuple[bytes, ...]
    contract: str
    head_revision: str

    @property
    def duplicate_status(self) -> int:
        return self.settings.WEBHOOK_DUPLICATE_STATUS

    @property
    def max_body_bytes(self) -> int:
        return self.settings.WEBHOOK_MAX_BODY_BYTES

    @property
    def answer_budget_s(self) -> float:
        return self.settings.WEBHOOK_ANSWER_BUDGET_SECONDS

    async def open(self) -> None:
        if self.deliveries is not None:
            await self.deliveries.pool.open(wait=False)  # a down database: /readyz says so

    async def close(self) -> None:
        if self.deliveries is not None:
            await self.deliveries.pool.close(timeout=1)
        self.engine.dispose()


def check_settings(settings: Settings) -> None:
    """Raise ConfigError naming the first variable the sidecar cannot run without."""
    settings.require(*REQUIRED)


def build_service(settings: Settings) -> Service:
    check_settings(settings)
    budget = settings.WEBHOOK_ANSWER_BUDGET_SECONDS
    deliveries = None
    if settings.DATABASE_URL.startswith("postgresql"):
        engine = make_engine(
            settings.DATABASE_URL,
            pool_size=1,
            max_overflow=0,
            pool_timeout=budget / 2,
            connect_args=pg_time_limits(budget),
        )
        deliveries = AsyncDeliveryStore(
            make_delivery_pool(settings), settings.default_author_wallet
        )
    else:
        engine = make_engine(
            settings.DATABASE_URL,
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_MAX_OVERFLOW,
            pool_timeout=budget / 2,
        )
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
        min_size=settings.WEBHOOK_DB_POOL_MIN,
        max_size=settings.WEBHOOK_DB_POOL_MAX,
        kwargs={"autocommit": True, **pg_time_limits(budget)},
        configure=_configure,
        timeout=budget / 2,  # waiting for a free connection
        open=False,
        name="glisk-webhook",
    )


async def _configure(conn: AsyncConnection) -> None:
    set_json_loads(orjson.loads, conn)


async def get_service(request: Request) -> Service:
    # async: FastAPI runs a plain-def dependency in the threadpool, a hop per request
    return request.app.state.service
