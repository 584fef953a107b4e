"""Which windows and id ranges the tables can be judged on: the checkpoint, or windows
whose mint_events are materialized (a partial backfill in any order leaves the rest
unjudged, and says so)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet

from glisk_pipeline.verify.supply import IdRange, windows_of
from glisk_pipeline.windows import (
    parse_key,
    partition_key,
    window_of,
)


def uncovered_windows(
    materialized: Iterable[str], *, start_block: int, size: int, checkpoint: int | None
) -> list[str]:
    """Windows entirely at or below the checkpoint that were never materialized (pass the
    windows whose runs are still in flight as materialized: they are not missing yet)."""
    if checkpoint is None:
        return []
    done = {parse_key(k) for k in materialized}
    start, _ = window_of(start_block, size)
    missing = []
    while start + size - 1 <= checkpoint:
        if (start, start + size - 1) not in done:
            missing.append(partition_key(start, start + size - 1))
        start += size
    return missing


def unjudged_note(keys: Sequence[str], done: AbstractSet[str], checkpoint: int | None) -> str:
    """Which blocks a check over "the checkpoint or a materialized window" cannot judge,
    and why, in one line ("" when it judges every partition)."""
    missing = [k for k in keys if k not in done and parse_key(k)[1] > (checkpoint or -1)]
    if not missing:
        return ""
    why = f"last_processed_block {checkpoint if checkpoint is not None else -1}"
    if keys and keys[0] in missing:
        why += f": window {keys[0]} not backfilled"
    return (
        f"{why}; not judged: the blocks of {len(missing)} partitions never materialized "
        f"({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}): backfill them"
    )


def judged_range(
    r: IdRange, done: AbstractSet[str], checkpoint: int | None, *, size: int, start: int
) -> bool:
    """Ids whose mints the tables claim complete: all at or below the checkpoint, or in
    windows that are all materialized."""
    if checkpoint is not None and r.to_block <= checkpoint:
        return True
    return all(k in done for k in windows_of([r], size=size, start_block=start))
