"""Per-day, per-author mint statistics with pandas, wei kept exact.

Wei amounts exceed int64 (one realistic totalPaid is above 2^63, and sums of many payments
overflow it silently), so `total_paid` stays a column of Python ints (object dtype) from
the read (`coerce_float=False`; the schema's Wei type already returns ints) through the sum
(Python's `sum`, not numpy's) to the write (the schema's Wei type again: NUMERIC(78,0) on
PostgreSQL, text on SQLite). No float ever holds a wei amount.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine, delete, insert, select

from glisk_pipeline.db.schema import mint_events, mint_stats

COLUMNS = [
    "day",
    "author_wallet",
    "events",
    "tokens",
    "minters",
    "total_paid",
    "first_block",
    "last_block",
]


@dataclass(frozen=True)
class StatsSummary:
    rows: int
    authors: int
    days: int
    events: int
    tokens: int
    total_paid: int  # wei
    top_authors: pd.DataFrame  # author_wallet, events, tokens, total_paid (wei as str)


def read_live_events(engine: Engine) -> pd.DataFrame:
    """The mint_events rows still on the canonical chain."""
    query = select(
        mint_events.c.block_number,
        mint_events.c.block_timestamp,
        mint_events.c.minter,
        mint_events.c.author_wallet,
        mint_events.c.quantity,
        mint_events.c.total_paid,
    ).where(~mint_events.c.removed)
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn, coerce_float=False)
    frame["total_paid"] = pd.Series([int(v) for v in frame["total_paid"]], dtype=object)
    return frame


def compute(events: pd.DataFrame) -> pd.DataFrame:
    """One row per (UTC day, author): events, tokens, distinct minters, exact wei paid."""
    if events.empty:
        return pd.DataFrame(columns=COLUMNS)
    day = pd.to_datetime(events["block_timestamp"], utc=True).dt.date
    grouped = events.assign(day=day).groupby(["day", "author_wallet"], sort=True)
    stats = grouped.agg(
        events=("quantity", "size"),
        tokens=("quantity", "sum"),
        minters=("minter", "nunique"),
        first_block=("block_number", "min"),
        last_block=("block_number", "max"),
    )
    # Python's sum over Python ints: exact at any size (numpy would wrap at 2^63).
    stats["total_paid"] = grouped["total_paid"].agg(lambda paid: sum(paid, 0)).astype(object)
    return stats.reset_index()[COLUMNS]


def replace_table(engine: Engine, stats: pd.DataFrame) -> None:
    """Swap the table's contents in one transaction: readers see the old or the new set."""
    rows = [
        {
            "day": r["day"],
            "author_wallet": r["author_wallet"],
            "events": int(r["events"]),
            "tokens": int(r["tokens"]),
            "minters": int(r["minters"]),
            "total_paid": int(r["total_paid"]),
            "first_block": int(r["first_block"]),
            "last_block": int(r["last_block"]),
        }
        for r in stats.to_dict("records")
    ]
    with engine.begin() as conn:
        conn.execute(delete(mint_stats))
        if rows:
            conn.execute(insert(mint_stats), rows)


def read_table(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        frame = pd.read_sql(select(mint_stats), conn, coerce_float=False)
    frame["total_paid"] = pd.Series([int(v) for v in frame["total_paid"]], dtype=object)
    return frame


def summarize(stats: pd.DataFrame, top: int = 5) -> StatsSummary:
    if stats.empty:
        empty = pd.DataFrame(columns=["author_wallet", "events", "tokens", "total_paid"])
        return StatsSummary(0, 0, 0, 0, 0, 0, empty)
    by_author = (
        stats.groupby("author_wallet")
        .agg(
            events=("events", "sum"),
            tokens=("tokens", "sum"),
            total_paid=("total_paid", lambda paid: sum(paid, 0)),
        )
        .sort_values(["tokens", "events"], ascending=False)
        .head(top)
        .reset_index()
    )
    by_author["total_paid"] = by_author["total_paid"].map(str)
    return StatsSummary(
        rows=len(stats),
        authors=stats["author_wallet"].nunique(),
        days=stats["day"].nunique(),
        events=int(stats["events"].sum()),
        tokens=int(stats["tokens"].sum()),
        total_paid=sum(stats["total_paid"], 0),
        top_authors=by_author,
    )


def rebuild(engine: Engine) -> tuple[pd.DataFrame, StatsSummary]:
    stats = compute(read_live_events(engine))
    replace_table(engine, stats)
    return stats, summarize(stats)
