"""The webhook's sign of life for deliveries that claim no block.

A delivery that names a block and a sequenceNumber leaves its trace in `webhook_blocks`
(`received_at`). One that does not, such as Alchemy's heartbeat for a block where the
query matched nothing in the shape its FAQ shows (`{"event": {"data": {"block": {"logs":
[]}}, "sequenceNumber": "..."}}`, no block fields), would leave none, and the webhook
would read as silent while Alchemy is calling it. Such a delivery writes the moment it
arrived here, in `system_state` under HEARTBEAT_KEY (one upsert of one row); the silence
judgement (glisk_pipeline/sync/tip.py) takes the later of the two.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, select, text

from glisk_pipeline.db.schema import system_state

HEARTBEAT_KEY = "webhook_last_unnamed_delivery_at"
# The same statement on PostgreSQL and SQLite (both have ON CONFLICT ... DO UPDATE), with
# SQLAlchemy's parameters; UPSERT_PSYCOPG is it for a raw psycopg connection.
UPSERT = (
    "INSERT INTO system_state (key, value, updated_at) VALUES (:key, :value, "
    "CURRENT_TIMESTAMP) ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
    "updated_at = excluded.updated_at"
)
UPSERT_PSYCOPG = UPSERT.replace(":key", "%(key)s").replace(":value", "%(value)s")


def heartbeat_params(now: datetime | None = None) -> dict[str, str]:
    """The upsert's parameters: the key and the arrival time (ISO 8601, UTC)."""
    return {"key": HEARTBEAT_KEY, "value": (now or datetime.now(UTC)).isoformat()}


def record_heartbeat(engine: Engine, now: datetime | None = None) -> None:
    """The synchronous write (SQLite, and any caller with an Engine)."""
    with engine.begin() as conn:
        conn.execute(text(UPSERT), heartbeat_params(now))


def last_heartbeat(conn: Connection) -> datetime | None:
    """When the last delivery that claimed no block arrived (None: never)."""
    value = conn.execute(
        select(system_state.c.value).where(system_state.c.key == HEARTBEAT_KEY)
    ).scalar_one_or_none()
    return None if value is None else datetime.fromisoformat(value)
