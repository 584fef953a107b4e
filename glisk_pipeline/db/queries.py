"""Every read of the index's tables that the judges share (the supply proof, the checks,
status): plain functions over an engine, so tests can run them on a corrupted database.
Writes are the store's alone (db/store/)."""

from __future__ import annotations

from sqlalchemy import Engine, and_, func, or_, select

from glisk_pipeline.db.schema import mint_events as events_t
from glisk_pipeline.db.schema import tokens as tokens_t


def token_count_mismatches(engine: Engine) -> list[tuple[int, int, int, int]]:
    """(mint_event id, expected, actual, block) where a live event does not own exactly
    `quantity` token rows, or a removed event still owns a `detected` one (rows a worker
    moved on are kept, orphaned: no_orphaned_tokens reports them)."""
    written = func.count(tokens_t.c.token_id)
    detected = func.count(tokens_t.c.token_id).filter(tokens_t.c.status == "detected")
    expected = func.max(events_t.c.quantity)
    query = (
        select(
            events_t.c.id,
            events_t.c.removed,
            expected.label("quantity"),
            written,
            events_t.c.block_number,
        )
        .select_from(events_t.outerjoin(tokens_t, tokens_t.c.mint_event_id == events_t.c.id))
        .group_by(events_t.c.id, events_t.c.removed, events_t.c.block_number)
        .having(
            or_(
                and_(~events_t.c.removed, written != expected),
                and_(events_t.c.removed, detected != 0),
            )
        )
        .order_by(events_t.c.id)
    )
    with engine.connect() as conn:
        return [(r[0], 0 if r[1] else r[2], r[3], r[4]) for r in conn.execute(query)]


def live_rows_by_window(engine: Engine, size: int) -> dict[int, int]:
    """{window start block: live rows in that window} (one grouped scan)."""
    window = (events_t.c.block_number - events_t.c.block_number % size).label("window")
    query = select(window, func.count()).where(~events_t.c.removed).group_by(window)
    with engine.connect() as conn:
        return {int(start): int(rows) for start, rows in conn.execute(query)}


def live_id_breaks(
    engine: Engine, up_to_block: int | None = None
) -> list[tuple[int, int, int, int | None, int | None]]:
    """Where the live events at blocks <= up_to_block, in token order, do not continue
    the ids before them: (start, end, block, previous end, previous block). The first
    event is always listed (previous end None). start > previous end + 1 is a gap,
    start <= previous end an overlap."""
    end = events_t.c.start_token_id + events_t.c.quantity - 1
    order = (events_t.c.start_token_id, events_t.c.id)
    live = select(
        events_t.c.start_token_id.label("start"),
        end.label("end"),
        events_t.c.block_number.label("block"),
        func.max(end).over(order_by=order, rows=(None, -1)).label("prev_end"),
        func.lag(events_t.c.block_number).over(order_by=order).label("prev_block"),
    ).where(~events_t.c.removed)
    if up_to_block is not None:
        live = live.where(events_t.c.block_number <= up_to_block)
    ordered = live.subquery()
    query = select(ordered).where(
        or_(
            ordered.c.prev_end.is_(None),
            ordered.c.start != ordered.c.prev_end + 1,
        )
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def live_id_totals(
    engine: Engine, up_to_block: int
) -> tuple[int, int | None, int | None, int | None]:
    """(live ids, lowest id, highest id, block of the highest id's event) at <= up_to_block."""
    end = events_t.c.start_token_id + events_t.c.quantity - 1
    live = and_(~events_t.c.removed, events_t.c.block_number <= up_to_block)
    with engine.connect() as conn:
        count, low, high = conn.execute(
            select(
                func.coalesce(func.sum(events_t.c.quantity), 0),
                func.min(events_t.c.start_token_id),
                func.max(end),
            ).where(live)
        ).one()
        top = None
        if high is not None:
            top = conn.execute(
                select(func.max(events_t.c.block_number)).where(live, end == high)
            ).scalar_one()
    return int(count), low, high, top


def ids_outside(
    engine: Engine, up_to_block: int, first: int, next_id: int
) -> list[tuple[int, int, int]]:
    """(first id, last id, block) of the parts of live events' id ranges at blocks <=
    up_to_block outside [first, next_id - 1]."""
    end = events_t.c.start_token_id + events_t.c.quantity - 1
    query = (
        select(events_t.c.start_token_id, end, events_t.c.block_number)
        .where(~events_t.c.removed, events_t.c.block_number <= up_to_block)
        .where(or_(events_t.c.start_token_id < first, end >= next_id))
        .order_by(events_t.c.start_token_id)
    )
    found = []
    with engine.connect() as conn:
        for start, stop, block in conn.execute(query):
            if start < first:
                found.append((start, min(stop, first - 1), block))
            if stop >= next_id:
                found.append((max(start, next_id), stop, block))
    return found
