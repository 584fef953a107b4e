"""What the downstream tests share: a worker's LISTEN connection, and a worker moving token
rows on as docs/downstream.md says workers do."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import psycopg
from sqlalchemy import Engine, select, update

from glisk_pipeline.db.engine import libpq_conninfo
from glisk_pipeline.db.schema import tokens
from glisk_pipeline.db.store.downstream import CHANNEL

PAYLOAD_LIMIT = 8000  # bytes; PostgreSQL's default is 7,999


class Listener:
    """A worker's connection LISTENing on glisk_tokens."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(libpq_conninfo(url), autocommit=True)
        self.conn.execute(f"LISTEN {CHANNEL}")

    def drain(self, wait: float = 0.3) -> list[dict[str, Any]]:
        """The notifications received so far (each checked: channel, size, JSON)."""
        payloads = []
        for note in self.conn.notifies(timeout=wait):
            assert note.channel == CHANNEL
            assert len(note.payload.encode()) < PAYLOAD_LIMIT
            payloads.append(json.loads(note.payload))
        return payloads

    def close(self) -> None:
        self.conn.close()


def announced(payloads: list[dict[str, Any]], key: str) -> Counter[int]:
    """How many times each token id was announced under `key`."""
    seen: Counter[int] = Counter()
    for payload in payloads:
        assert set(payload) == {key} or key not in payload, payload
        for first, last in payload.get(key, []):
            assert first <= last
            seen.update(range(first, last + 1))
    return seen


def token_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(tokens.c.token_id).order_by(tokens.c.token_id)).scalars())


def move_on(engine: Engine, token_id: int, status: str, **columns: object) -> None:
    """A worker moving a token row on (status and its own columns)."""
    with engine.begin() as conn:
        changed = conn.execute(
            update(tokens).where(tokens.c.token_id == token_id).values(status=status, **columns)
        ).rowcount
    assert changed == 1


def token_row(engine: Engine, token_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(tokens).where(tokens.c.token_id == token_id)).first()
    return None if row is None else dict(row._mapping)
