"""`glisk authors add|list|import`: the prompt authors whose wallets receive their tokens.

Wallets are stored lowercase (a checksummed wallet is the same author). `add` and `import`
are idempotent: a wallet already registered is updated with the fields given, and a field
left out (or an empty CSV cell) keeps its stored value. `import` checks every row first
and writes all of them in one transaction, or none: each bad row is one line naming its
line number and column.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from glisk_pipeline.cli.common import EXIT_ERROR, EXIT_OK, ArgumentParser, error, schema_problem
from glisk_pipeline.db.engine import describe_db_error, engine_from_settings
from glisk_pipeline.db.schema import authors
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.settings import ConfigError, load_settings, normalize_address

FIELDS = ("wallet_address", "twitter_handle", "farcaster_handle", "prompt_text")
# CSV header names accepted for each column (case-insensitive).
ALIASES = {
    "wallet_address": "wallet_address",
    "wallet": "wallet_address",
    "twitter_handle": "twitter_handle",
    "twitter": "twitter_handle",
    "farcaster_handle": "farcaster_handle",
    "farcaster": "farcaster_handle",
    "prompt_text": "prompt_text",
    "prompt": "prompt_text",
}


def parser() -> ArgumentParser:
    root = ArgumentParser(prog="glisk authors", description="Register and list prompt authors.")
    commands = root.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    add = commands.add_parser("add", help="register (or update) one author")
    add.add_argument("wallet", help="the author's wallet (0x + 40 hex digits, any case)")
    add.add_argument("--twitter", help="Twitter/X handle")
    add.add_argument("--farcaster", help="Farcaster handle")
    add.add_argument("--prompt", help="the author's prompt text")
    listing = commands.add_parser("list", help="every registered author")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    imp = commands.add_parser("import", help="register authors from a CSV file (all or none)")
    imp.add_argument("file", type=Path, help="CSV with a header: wallet_address[,twitter_handle"
                     ",farcaster_handle,prompt_text]")  # fmt: skip
    return root


def check_row(values: dict[str, str | None]) -> tuple[dict[str, str | None], list[str]]:
    """Normalise one author's fields; the problems found, each naming its field."""
    problems: list[str] = []
    row: dict[str, str | None] = {}
    for name in FIELDS:
        value = (values.get(name) or "").strip() or None
        if value is not None and "\x00" in value:
            problems.append(f"{name}: contains a NUL byte")
            continue
        row[name] = value
    try:
        row["wallet_address"] = normalize_address(row.get("wallet_address") or "")
    except ValueError as exc:
        problems.append(f"wallet_address: {exc} (got {values.get('wallet_address')!r})")
    return row, problems


def read_csv(path: Path) -> tuple[list[dict[str, str | None]], list[str]]:
    """The file's rows, checked; (rows, problems). Any problem means nothing is written."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{path}: cannot read: {exc}"]
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        return [], [f"{path}: empty file (expected a header: {', '.join(FIELDS)})"]
    columns: list[str] = []
    for name in header:
        column = ALIASES.get(name.strip().lower())
        if column is None:
            return [], [f"{path}: line 1: unknown column {name!r} (expected {', '.join(FIELDS)})"]
        columns.append(column)
    if "wallet_address" not in columns:
        return [], [f"{path}: line 1: no wallet_address column"]
    rows, problems, seen = [], [], {}  # type: ignore[var-annotated]
    for line, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue  # blank line
        if len(cells) != len(columns):
            problems.append(f"line {line}: {len(cells)} cells, the header has {len(columns)}")
            continue
        row, bad = check_row(dict(zip(columns, cells, strict=True)))
        problems += [f"line {line}: {p}" for p in bad]
        wallet = row.get("wallet_address")
        if bad:
            continue
        if wallet in seen:  # the same wallet twice: fine if identical, else ambiguous
            if seen[wallet][1] != row:
                problems.append(
                    f"line {line}: wallet {wallet} already on line {seen[wallet][0]} "
                    "with other values"
                )
            continue
        seen[wallet] = (line, row)
        rows.append(row)
    return rows, problems


def list_authors(engine: Engine) -> list[dict[str, object]]:
    query = select(authors.c.id, *(authors.c[name] for name in FIELDS), authors.c.created_at)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query.order_by(authors.c.id))]
    for row in rows:
        row["created_at"] = row["created_at"].isoformat()
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        return error(f"config error: {exc}")
    engine = engine_from_settings(settings)
    try:
        problem = schema_problem(engine)
        if problem is not None:
            return error(problem)
        store = MintStore(engine, settings.GLISK_DEFAULT_AUTHOR_WALLET or "0x" + "0" * 40)
        if args.command == "add":
            row, problems = check_row(
                {
                    "wallet_address": args.wallet,
                    "twitter_handle": args.twitter,
                    "farcaster_handle": args.farcaster,
                    "prompt_text": args.prompt,
                }
            )
            if problems:
                return error("; ".join(problems))
            new = store.register_authors([row])
            print(f"{'registered' if new else 'updated'} author {row['wallet_address']}")
        elif args.command == "import":
            rows, problems = read_csv(args.file)
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            if problems:
                print(f"nothing imported: {len(problems)} problem(s)", file=sys.stderr)
                return EXIT_ERROR
            new = store.register_authors(rows)
            print(f"imported {len(rows)} authors: {new} new, {len(rows) - new} already registered")
        else:
            found = list_authors(engine)
            if args.json:
                print(json.dumps(found, indent=2))
            else:
                print_table(found)
        return EXIT_OK
    except SQLAlchemyError as exc:
        return error(f"database: {describe_db_error(exc)}")
    finally:
        engine.dispose()


def print_table(rows: list[dict[str, object]]) -> None:
    print(f"{len(rows)} authors")
    for row in rows:
        prompt = str(row["prompt_text"] or "")
        prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
        print(
            f"  {row['wallet_address']}  twitter={row['twitter_handle'] or '-'}  "
            f"farcaster={row['farcaster_handle'] or '-'}  prompt={prompt or '-'}"
        )


if __name__ == "__main__":
    sys.exit(main())
