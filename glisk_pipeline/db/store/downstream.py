"""What the store does to token rows the workers downstream own (docs/downstream.md).

- A reorg deletes a removed mint's token rows only while they are `detected`; a row a
  worker moved on is kept where it is, orphaned: its tokens.mint_event_id names a
  mint_events row with `removed = true`. The mark is the mint's own row (which only the
  store writes), not a write to the token row: a worker holds its rows locked for the
  length of an image generation (tens of seconds), and the webhook answers Alchemy within
  5 s. So the delete skips rows a worker holds (SKIP LOCKED) and never waits; a skipped
  row its worker lets go of still `detected` is deleted by the final reconcile of its
  block (reconcile.sweep_detected).
- The same log coming back (in another block) revives its mint row: the kept token rows
  are left untouched and are no longer orphaned.
- Another mint claiming the id of a kept row (the winning fork minted the same ids) moves
  the kept row to `orphaned_tokens` (with the time it was moved; a `detected` one is just
  deleted) and takes the id as a new `detected` row. Taking it needs the row's lock:
  NOWAIT, so a row a worker holds fails the call at once, writing nothing, instead of
  waiting behind the worker (TokenHeldError, a token conflict: the webhook answers 409
  and Alchemy retries; a backfill run fails and succeeds when run again).
- PostgreSQL announces new token rows and newly orphaned ones on the channel
  `glisk_tokens`, in the transaction that writes them (NOTIFY is delivered at commit,
  only if it commits): `{"detected": [[first, last], ...]}` and
  `{"orphaned": [[first, last], ...]}`, runs of consecutive token ids, at most
  RUNS_PER_NOTIFY runs a notification (the payload limit is 7,999 bytes). Each payload
  names ids written by one statement, and a token id is inserted at most once per
  transaction, so no two payloads of one transaction are equal (PostgreSQL folds equal
  ones). SQLite has no NOTIFY: workers on it poll.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from glisk_pipeline.db.schema import DOWNSTREAM_COLUMNS

CHANNEL = "glisk_tokens"
# A run is at most `[9223372036854775807, 9223372036854775807]` plus ", ": 44 bytes; 150
# of them and the key are under 6,700 bytes, inside the 7,999-byte payload limit.
RUNS_PER_NOTIFY = 150
LOCK_NOT_AVAILABLE = "55P03"
# A token row is orphaned: its mint was removed and a worker had moved it on (a `detected`
# one is no orphan: no work was done on it; the final reconcile deletes it).
ORPHANED = "m.removed AND t.status <> 'detected'"


def announce_sql(name: str, key: str, ids: str) -> str:
    """A CTE `name` (one row: n, the notifications sent) announcing the token ids that the
    query `ids` yields (one column, token_id) as runs under `key`. Reference it, or it is
    not run."""
    return f"""{name} AS (
    SELECT count(pg_notify('{CHANNEL}', payload)) AS n FROM (
        SELECT json_build_object('{key}',
                   json_agg(json_build_array(first, last) ORDER BY first))::text AS payload
        FROM (
            SELECT first, last, (row_number() OVER (ORDER BY first) - 1) / {RUNS_PER_NOTIFY}
                   AS part
            FROM (
                SELECT min(token_id) AS first, max(token_id) AS last
                FROM (SELECT token_id, token_id - row_number() OVER (ORDER BY token_id) AS run
                      FROM ({ids}) AS ids) AS numbered
                GROUP BY run
            ) AS runs
        ) AS parts
        GROUP BY part
    ) AS payloads
)"""


def _event_tokens(events: str) -> str:
    """Token rows of the mint_events rows `m` that `events` selects (found by key range:
    tokens.mint_event_id has no index)."""
    return f"""FROM mint_events m
    JOIN tokens t ON t.token_id BETWEEN m.start_token_id AND m.start_token_id + m.quantity - 1
                 AND t.mint_event_id = m.id
    WHERE {events}"""


def pg_drop_tokens_sql(events: str) -> str:
    """Delete the `detected` token rows of the removed events `events` (an SQL condition on
    `m`), skipping rows a worker holds; the others stay, orphaned. Returns the count."""
    return f"""
WITH doomed AS (
    SELECT t.token_id {_event_tokens(events)} AND t.status = 'detected'
    FOR UPDATE OF t SKIP LOCKED
),
gone AS (
    DELETE FROM tokens t USING doomed d WHERE t.token_id = d.token_id RETURNING 1
)
SELECT count(*) FROM gone
"""


def pg_announce_orphans_sql(events: str) -> str:
    """Announce the orphaned token rows of the events `events` (an SQL condition on `m`):
    run at the end of the call that removed them, so that a mint the same call revived
    (its log moved to another block) is not announced. Returns the notifications sent."""
    orphans = f"SELECT t.token_id {_event_tokens(events)} AND {ORPHANED}"
    return f"WITH {announce_sql('announced', 'orphaned', orphans)}\nSELECT n FROM announced"


def drop_tokens_sqlite(conn: Connection, events: str, params: dict[str, object]) -> None:
    """SQLite's pg_drop_tokens_sql (one writer at a time: nothing to skip, nothing to
    announce). `events` is the condition on `m`."""
    conn.execute(
        text(
            f"DELETE FROM tokens WHERE status = 'detected' AND token_id IN "
            f"(SELECT t.token_id {_event_tokens(events)})"
        ),
        params,
    )


@dataclass(frozen=True, slots=True)
class Orphan:
    """A token row whose mint left the chain, with the state a worker left it in."""

    token_id: int
    status: str
    archived: bool  # moved to orphaned_tokens (another mint took its id)


def orphaned_tokens(conn: Connection) -> list[Orphan]:
    """Every orphaned token row, by token id: a row a worker moved on whose mint was
    removed, kept in tokens or moved to orphaned_tokens. (A `detected` row of a removed
    mint is no orphan: no work was done on it, the claim query leaves it out, and the
    final reconcile deletes it; tokens_match_quantity reports it meanwhile.)"""
    kept = conn.execute(
        text(f"SELECT t.token_id, t.status {_event_tokens(ORPHANED)} ORDER BY t.token_id")
    ).all()
    moved = conn.execute(
        text("SELECT token_id, status FROM orphaned_tokens ORDER BY token_id, id")
    ).all()
    found = [Orphan(int(t), s, False) for t, s in kept]
    found += [Orphan(int(t), s, True) for t, s in moved]
    return sorted(found, key=lambda o: o.token_id)


def run_labels(ids: list[int]) -> list[str]:
    """Ids as runs for a person: "7", "9-12"."""
    return [f"{a}" if a == b else f"{a}-{b}" for a, b in id_runs(ids)]


def id_runs(ids: list[int]) -> list[tuple[int, int]]:
    """Sorted ids as runs of consecutive ids [(first, last), ...] (as announced)."""
    runs: list[tuple[int, int]] = []
    for i in sorted(ids):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


# tokens.updated_at, set by the database on every update that changes the row (installed
# by migration 0005; the trigger's SQL is the store's, as the only writer of tokens).
PG_TOUCH = [
    """CREATE OR REPLACE FUNCTION glisk_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$""",
    """CREATE TRIGGER tokens_updated_at BEFORE UPDATE ON tokens
FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
EXECUTE FUNCTION glisk_touch_updated_at()""",
]
PG_UNTOUCH = [
    "DROP TRIGGER IF EXISTS tokens_updated_at ON tokens",
    "DROP FUNCTION IF EXISTS glisk_touch_updated_at()",
]
# An update that sets updated_at itself keeps its value; six fraction digits, the form
# SQLAlchemy writes (CURRENT_TIMESTAMP has whole seconds).
SQLITE_TOUCH = [
    """CREATE TRIGGER tokens_updated_at AFTER UPDATE ON tokens
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE tokens SET updated_at = strftime('%Y-%m-%d %H:%M:%f000', 'now')
    WHERE token_id = NEW.token_id;
END"""
]
SQLITE_UNTOUCH = ["DROP TRIGGER IF EXISTS tokens_updated_at"]

# A token row as orphaned_tokens keeps it (orphaned_at is the time it moved there).
ARCHIVED = ", ".join(
    (
        "token_id", "mint_event_id", "minter_address", "author_id", "status",
        "mint_timestamp", "updated_at", *DOWNSTREAM_COLUMNS,
    )
)  # fmt: skip


def pg_take_over_sql(events: str) -> str:
    """CTEs over the token rows already on the ids of the events `events` (a CTE: id,
    start_token_id, quantity; one index range probe per event): `own` (a revived event's
    rows, kept while it was removed: left untouched), and `taken`, `moved`, `archived`
    (rows another mint that left the chain kept, moved to orphaned_tokens). NOWAIT: a row
    a worker holds fails the statement (LOCK_NOT_AVAILABLE) rather than waiting for it.
    `archived` must be read before the ids are inserted again."""
    return f"""held AS (
    SELECT t.token_id, t.mint_event_id, u.id AS claimer FROM {events} u
    JOIN tokens t ON t.token_id BETWEEN u.start_token_id AND u.start_token_id + u.quantity - 1
),
own AS (SELECT claimer AS mint_event_id, token_id FROM held WHERE mint_event_id = claimer),
taken AS (
    SELECT t.token_id FROM held h
    JOIN mint_events o ON o.id = h.mint_event_id AND o.removed
    JOIN tokens t ON t.token_id = h.token_id
    WHERE h.mint_event_id <> h.claimer
    FOR UPDATE OF t NOWAIT
),
moved AS (
    DELETE FROM tokens t USING taken k WHERE t.token_id = k.token_id
    RETURNING {", ".join(f"t.{c}" for c in ARCHIVED.split(", "))}
),
archived AS (
    INSERT INTO orphaned_tokens ({ARCHIVED})
    SELECT {ARCHIVED} FROM moved WHERE status <> 'detected'  -- no work to keep
    RETURNING token_id
)"""


def take_over_sqlite(conn: Connection, mine: dict[int, int]) -> set[int]:
    """SQLite's pg_take_over_sql for the token ids `mine` (id: the event claiming it):
    moves the rows another removed mint kept to orphaned_tokens. Returns the ids that
    rows of the claiming event itself already hold (kept while it was removed). One range
    scan of the primary key over the batch's ids (new ids: usually nothing there)."""
    if not mine:
        return set()
    held = conn.execute(
        text(
            "SELECT t.token_id, t.mint_event_id, m.removed FROM tokens t "
            "JOIN mint_events m ON m.id = t.mint_event_id "
            "WHERE t.token_id BETWEEN :low AND :high"
        ),
        {"low": min(mine), "high": max(mine)},
    ).all()
    own = {t for t, event, _ in held if mine.get(t) == event}
    taken = sorted(t for t, event, removed in held if t in mine and mine[t] != event and removed)
    for start in range(0, len(taken), 500):  # bounded IN lists
        where = f"token_id IN ({', '.join(str(int(t)) for t in taken[start : start + 500])})"
        conn.execute(
            text(
                f"INSERT INTO orphaned_tokens ({ARCHIVED}) "
                f"SELECT {ARCHIVED} FROM tokens WHERE {where} AND status <> 'detected'"
            )
        )
        conn.execute(text(f"DELETE FROM tokens WHERE {where}"))
    return own
