"""Operational counters and timestamps of the Dagster runs and sensors, kept as
system_state rows (`metric:NAME` or `metric:NAME{label="value",...}`, the value a decimal
integer), so the exporter (glisk_pipeline/exporter.py) can serve them from the database
whichever pod made them. Counters only grow: an increment is one upsert that adds in SQL,
so concurrent runs never lose each other's counts; timestamps are overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import BigInteger, Connection, Text, cast, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from glisk_pipeline.db.schema import system_state

PREFIX = "metric:"


def metric_key(name: str, labels: Mapping[str, str] | None = None) -> str:
    """The system_state key of a series: `metric:` and its Prometheus name with labels."""
    if not labels:
        return PREFIX + name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{PREFIX}{name}{{{inner}}}"


def add(conn: Connection, increments: Mapping[str, int], *, pg: bool) -> None:
    """Add each increment to its counter (created at the increment when new)."""
    insert = pg_insert if pg else sqlite_insert
    for key, amount in sorted(increments.items()):  # a fixed order: no deadlock between runs
        if amount == 0:
            continue
        stmt = insert(system_state).values(key=key, value=str(int(amount)))
        total = cast(cast(system_state.c.value, BigInteger) + amount, Text)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[system_state.c.key], set_={"value": total, "updated_at": func.now()}
            )
        )


def put(conn: Connection, values: Mapping[str, int], *, pg: bool) -> None:
    """Set each value (a gauge such as a Unix time)."""
    insert = pg_insert if pg else sqlite_insert
    for key, value in sorted(values.items()):
        stmt = insert(system_state).values(key=key, value=str(int(value)))
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[system_state.c.key],
                set_={"value": stmt.excluded.value, "updated_at": func.now()},
            )
        )


def read_all(conn: Connection) -> dict[str, int]:
    """Every metric row: series (name with labels, as metric_key wrote it) -> value."""
    rows = conn.execute(
        select(system_state.c.key, system_state.c.value).where(
            system_state.c.key.startswith(PREFIX, autoescape=True)
        )
    ).all()
    return {key[len(PREFIX) :]: int(value) for key, value in rows}
