"""DATABASE_POOL_SIZE / DATABASE_MAX_OVERFLOW bound the connections one process opens: the
deployment's connection budget (replicas x workers x (pool + overflow)) counts on it."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from glisk_pipeline.db.engine import engine_from_settings
from glisk_pipeline.settings import (
    DEFAULT_MAX_OVERFLOW,
    DEFAULT_POOL_SIZE,
    ConfigError,
    load_settings,
)


def test_a_process_opens_at_most_pool_plus_overflow_connections(pg_url: str) -> None:
    settings = load_settings(DATABASE_URL=pg_url, DATABASE_POOL_SIZE=2, DATABASE_MAX_OVERFLOW=1)
    engine = engine_from_settings(settings, pool_timeout=0.5)
    held = [engine.connect() for _ in range(3)]
    try:
        for conn in held:
            assert conn.execute(text("select 1")).scalar_one() == 1
        with pytest.raises(PoolTimeout, match="size 2 overflow 1"):
            engine.connect()
    finally:
        for conn in held:
            conn.close()
        engine.dispose()


def test_defaults_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(DATABASE_URL="postgresql://u@h/db")
    assert (settings.DATABASE_POOL_SIZE, settings.DATABASE_MAX_OVERFLOW) == (
        DEFAULT_POOL_SIZE,
        DEFAULT_MAX_OVERFLOW,
    )
    monkeypatch.setenv("DATABASE_POOL_SIZE", "0")
    with pytest.raises(ConfigError, match="DATABASE_POOL_SIZE"):
        load_settings()
