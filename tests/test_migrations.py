"""Migrations: upgrade from empty and downgrade on both dialects; no drift from schema.py."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from glisk_pipeline.db.engine import make_engine
from glisk_pipeline.db.migrate import (
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from glisk_pipeline.db.schema import metadata
from tests.support.fixtures_db import create_database, drop_database


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    name = f"glisk_mig_{uuid.uuid4().hex[:8]}"
    yield create_database(name)
    drop_database(name)


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    engine = make_engine(empty_url)
    upgrade(empty_url)
    assert current_revision(engine) == head_revision()
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    downgrade(empty_url, "base")
    assert not set(metadata.tables) & set(inspect(engine).get_table_names())
    upgrade(empty_url)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"schema.py and the migrations disagree: {diff}"
    engine.dispose()


def test_revision_check_agrees_with_alembic(empty_url: str) -> None:
    """The start-up check reads the migration files and the version table without
    importing Alembic; it must give Alembic's answers, before and after a migration."""
    engine = make_engine(empty_url)
    script_head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head_revision() == script_head
    assert current_revision(engine) is None
    downgrade_to = (
        ScriptDirectory.from_config(alembic_config("sqlite://"))
        .get_revision(script_head)
        .down_revision
    )
    if isinstance(downgrade_to, str):  # a history of one migration has no older revision
        upgrade(empty_url, downgrade_to)
        with engine.connect() as conn:
            assert current_revision(engine) == downgrade_to
            assert MigrationContext.configure(conn).get_current_revision() == downgrade_to
    upgrade(empty_url)
    assert current_revision(engine) == script_head
    engine.dispose()


def test_unreachable_database_is_one_line_without_secret(monkeypatch, capsys) -> None:
    from glisk_pipeline.db import migrate

    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:pw-secret@127.0.0.1:9/x")
    assert migrate.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: database: ") and err.count("\n") == 1
    assert "pw-secret" not in err and "Traceback" not in err
