"""Architecture invariants that no behavioural test pins down on its own."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRITES = re.compile(
    r"(insert\s+into|update|delete\s+from)\s+(mint_events|tokens)\b"  # SQL text
    r"|(insert|update|delete)\(\s*(mint_events|tokens)\b"  # SQLAlchemy Core
    r"|\b(mint_events|tokens)\.(insert|update|delete)\(",
    re.IGNORECASE,
)


def test_only_the_store_writes_mint_events_and_tokens() -> None:
    writers = sorted(
        str(path.relative_to(ROOT))
        for package in ("glisk_pipeline", "webhook_service")
        for path in (ROOT / package).rglob("*.py")
        if WRITES.search(path.read_text())
    )
    assert writers == ["glisk_pipeline/db/store.py"]


def test_the_pattern_catches_writes() -> None:  # the test above cannot pass by accident
    for sample in (
        "INSERT INTO tokens (token_id)",
        "conn.execute(update(mint_events).values(removed=True))",
        "delete from mint_events where",
        "mint_events.insert().values()",
    ):
        assert WRITES.search(sample), sample
    assert not WRITES.search("select(mint_events.c.id)")
