"""Database fixtures: one throwaway PostgreSQL database per test session (migrated once,
truncated between tests) and a fresh SQLite file where a test asks for the embedded path.

GLISK_TEST_PG_ADMIN_URL points at a server where we may CREATE DATABASE (default: the
machine's PostgreSQL on 127.0.0.1:5432 as user postgres).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from glisk_pipeline.db.engine import libpq_conninfo, make_engine
from glisk_pipeline.db.migrate import upgrade
from glisk_pipeline.db.schema import metadata

ADMIN_URL = os.environ.get(
    "GLISK_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
APP_TABLES = [t.name for t in reversed(metadata.sorted_tables)]


def create_database(name: str) -> str:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def truncate(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(APP_TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in APP_TABLES:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"glisk_test_{uuid.uuid4().hex[:10]}"
    url = create_database(name)
    upgrade(url)
    yield url
    drop_database(name)


@pytest.fixture(scope="session")
def pg_engine_session(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine(pg_engine_session: Engine) -> Engine:
    """The session's PostgreSQL database, emptied for this test."""
    truncate(pg_engine_session)
    return pg_engine_session


@pytest.fixture
def fresh_databases() -> Iterator[tuple[str, str]]:
    """Two new, empty databases, dropped afterwards: (app URL, Dagster storage URL). The
    Dagster one names the psycopg2 driver: with SQLAlchemy 2.1 a plain postgresql:// URL
    picks psycopg 3, and dagster-postgres' `NOTIFY run_events, %(notify_id)s` then fails."""
    app, dagster = f"glisk_app_{uuid.uuid4().hex[:8]}", f"glisk_dagster_{uuid.uuid4().hex[:8]}"
    app_url = create_database(app)
    dagster_url = make_url(create_database(dagster)).set(drivername="postgresql+psycopg2")
    yield app_url, dagster_url.render_as_string(hide_password=False)
    drop_database(app)
    drop_database(dagster)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'glisk.db'}"
    upgrade(url)
    return url


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request) -> Engine:
    """Both dialects: PostgreSQL (production) and SQLite (the embedded default)."""
    return request.getfixturevalue(
        "pg_engine" if request.param == "postgresql" else "sqlite_engine"
    )


@contextlib.asynccontextmanager
async def async_pool(url: str, max_size: int = 4) -> AsyncIterator[AsyncConnectionPool]:
    """An opened async psycopg pool on `url`, as the sidecar makes it (autocommit)."""
    pool = AsyncConnectionPool(
        libpq_conninfo(url),
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True},
        open=False,
    )
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()
