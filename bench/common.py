"""Shared bench plumbing: throwaway PostgreSQL databases, one anvil chain per run, timing,
results files. Everything started here is stopped by its own handle."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from devtools.anvil import DEFAULT_MINT_PRICE, Anvil, deploy
from devtools.history import History, realistic_history
from devtools.oracle import ChainMint, compare_with_chain
from glisk_pipeline.db.engine import make_engine
from glisk_pipeline.db.migrate import upgrade

ADMIN_URL = os.environ.get(
    "GLISK_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
RESULTS = Path(__file__).resolve().parent / "results"


def _admin(sql: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(sql))
    finally:
        admin.dispose()


@contextmanager
def throwaway_db(label: str, *, migrate: bool = True) -> Iterator[str]:
    """A fresh database (migrated to head unless told not to), dropped afterwards."""
    name = f"glisk_bench_{label}_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Chain:
    anvil: Anvil
    contract: str
    decoy: str
    history: History


@contextmanager
def bench_chain(
    n_batches: int, n_blocks: int, seed: int = 5, *, full_state: bool = True, **shape: Any
) -> Iterator[Chain]:
    """One anvil with a realistic history, shared by every contender of a run; `shape`:
    realistic_history's generator knobs (per_block, active_share, quantities). Anvil keeps
    the state of every block of the history (2.8 GB for 20,000 logs of ~12 ids over 4,732
    blocks, measured), so the completeness proof is the supply tiling's eth_call at each
    range's end, as on an archive node, not the header guard a pruned node leaves;
    `full_state=False` keeps anvil's default of the last 100 blocks."""
    with Anvil(state_history=n_blocks + 100 if full_state else 100) as anvil:
        contract = deploy(anvil, "GliskNFT", DEFAULT_MINT_PRICE).lower()
        decoy = deploy(anvil, "DecoyNFT").lower()
        history = realistic_history(
            anvil, contract, decoy, n_batches=n_batches, n_blocks=n_blocks, seed=seed, **shape
        )
        yield Chain(anvil, contract, decoy, history)


class Timer:
    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self.started
        self.cpu_s = time.process_time() - self.cpu_started


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def stored_counts(
    db: str, events_table: str = "mint_events", tokens_table: str = "tokens"
) -> tuple[int, int]:
    """(events, tokens) rows in a benchmark database (table names differ per contender)."""
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            ev = conn.execute(text(f"SELECT count(*) FROM {events_table}")).scalar_one()
            tok = conn.execute(text(f"SELECT count(*) FROM {tokens_table}")).scalar_one()
    finally:
        engine.dispose()
    return ev, tok


def oracle_problems(db: str, mints: list[ChainMint]) -> list[str]:
    """The chain-vs-tables oracle over a benchmark database's mint_events and tokens (empty:
    the contender stored exactly what the chain holds). Run after the timing."""
    engine = make_engine(db)
    try:
        return compare_with_chain(engine, mints, with_stats=False)
    finally:
        engine.dispose()
