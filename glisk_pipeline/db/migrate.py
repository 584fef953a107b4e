"""Bring a database to the latest schema: `python -m glisk_pipeline.db.migrate`.

Uses DATABASE_URL (default: the embedded SQLite file). `downgrade REV` and `current` are
there for operators; the tests and the demo call `upgrade()` directly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from glisk_pipeline.db.engine import describe_db_error, make_engine
from glisk_pipeline.settings import ConfigError, load_settings

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:  # only if the versions/ folder shipped empty
        raise RuntimeError(f"no migration found in {MIGRATIONS}")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    sub.add_parser("upgrade", help="to the latest revision (default)")
    down = sub.add_parser("downgrade", help="to an older revision")
    down.add_argument("revision")
    sub.add_parser("current", help="print the database's revision")
    args = parser.parse_args(argv)
    try:
        url = load_settings().DATABASE_URL
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.cmd == "downgrade":
            downgrade(url, args.revision)
        elif args.cmd == "current":
            print(current_revision(make_engine(url)) or "(empty)")
        else:
            upgrade(url)
            print(f"schema at {head_revision()}")
    except SQLAlchemyError as exc:  # the whole migration is one transaction: rolled back
        print(f"error: database: {describe_db_error(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
