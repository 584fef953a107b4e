"""Engines for the app's tables: psycopg 3 on PostgreSQL, a WAL-mode file on SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from glisk_pipeline.settings import (
    DEFAULT_MAX_OVERFLOW,
    DEFAULT_POOL_SIZE,
    Settings,
    normalize_database_url,
)


def engine_from_settings(settings: Settings, **kwargs: Any) -> Engine:
    """make_engine for DATABASE_URL with the pool size of DATABASE_POOL_SIZE and
    DATABASE_MAX_OVERFLOW."""
    return make_engine(
        settings.DATABASE_URL,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        **kwargs,
    )


def make_engine(
    url: str,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    max_overflow: int = DEFAULT_MAX_OVERFLOW,
    **kwargs: Any,
) -> Engine:
    """An engine for `url`. On PostgreSQL each process holds at most pool_size +
    max_overflow connections: the deployment's connection budget counts on it."""
    url = normalize_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take it over so that a
        # transaction really starts (and locks) where SQLAlchemy says it does.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
    # JIT off for our sessions: generate_series' fixed 1000-row estimate makes the store's
    # statements look costly enough to JIT-compile, which cost ~350 ms per bulk statement
    # and ~0.5 ms per webhook delivery (measured) and never paid back.
    connect_args = dict(kwargs.pop("connect_args", None) or {})
    options = str(connect_args.get("options", ""))
    if "jit=" not in options:
        connect_args["options"] = f"{options} -c jit=off".strip()
    return create_engine(url, connect_args=connect_args, **kwargs)


def _sqlite_pragmas(dbapi_conn: Any, _record: object) -> None:
    dbapi_conn.isolation_level = None  # see the "begin" listener above
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def describe_db_error(exc: BaseException) -> str:
    """One line for an operator: the driver's error class and first line (it names the
    host and port, never the password), not SQLAlchemy's multi-line report with the SQL."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}"


def pg_time_limits(budget_s: float) -> dict[str, object]:
    """libpq connection parameters that keep every database wait of a caller with
    `budget_s` seconds to answer bounded, whatever the network does.

    `connect_timeout` covers connecting only and `statement_timeout` is enforced by the
    server, so against a socket that stops answering (a partition, a black-holed route)
    neither ends a wait: `tcp_user_timeout` (data sent but not acknowledged) and keepalives
    (an idle pooled connection whose peer is gone) do, on the client's side."""
    budget_ms = int(budget_s * 1000)
    return {
        "connect_timeout": max(2, int(budget_s / 2)),  # libpq: whole seconds, 2 at least
        "tcp_user_timeout": budget_ms,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        # the server gives up on a statement (and its locks) before the caller answers
        "options": f"-c statement_timeout={max(500, budget_ms - 500)} -c jit=off",
    }


def libpq_conninfo(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq URI (for psycopg's own connections)."""
    parsed = make_url(normalize_database_url(url)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)
