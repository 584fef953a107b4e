"""Alembic environment: runs against the URL that glisk_pipeline.db.migrate passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from glisk_pipeline.db.engine import make_engine
from glisk_pipeline.db.schema import metadata

config = context.config


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:  # glisk_pipeline.db.migrate.alembic_config() always sets it
        raise RuntimeError("alembic config has no sqlalchemy.url: use glisk_pipeline.db.migrate")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER on SQLite
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run_migrations_online()
