"""Bring a database to the latest schema: `python -m glisk_pipeline.db.migrate`.

Uses DATABASE_URL (default: the embedded SQLite file). `downgrade REV` and `current` are
there for operators; the tests and the demo call `upgrade()` directly.

Alembic is imported only where a migration runs: the schema-revision check that every
face makes at start-up (`head_revision`, `current_revision`) reads the migration files
and the version table itself, because importing Alembic (with Mako and Pygments) cost
~0.3 s of the recovery CLI's ~1.6 s start-up (measured, `python -X importtime`).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from glisk_pipeline.db.engine import describe_db_error, make_engine
from glisk_pipeline.settings import ConfigError, load_settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"  # Alembic's default; env.py does not rename it
# `revision = "0002"` / `down_revision: str | None = "0001"` (either template's form)
# What every "schema behind" message tells the operator to run: the dev target and the
# production command (the image's, and the Kubernetes migrate Job's).
MIGRATE_HINT = (
    "run `make migrate`, in production `python -m glisk_pipeline.db.migrate upgrade` "
    "(Kubernetes: the glisk-migrate Job)"
)
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+)$", re.M)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    """The latest migration: the one revision that no migration names as its parent
    (the same answer as Alembic's ScriptDirectory.get_current_head; a test compares)."""
    revisions: set[str] = set()
    parents: set[str | None] = set()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        fields = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        revisions.add(ast.literal_eval(fields["revision"].strip()))
        down = ast.literal_eval(fields["down_revision"].strip())
        parents.update(down if isinstance(down, tuple | list) else [down])  # a merge: several
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def current_revision(engine: Engine) -> str | None:
    """The database's revision (None: never migrated), from Alembic's version table."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    # several rows would be several heads: reported as such, never equal to one head
    return ",".join(sorted(versions)) or None


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
