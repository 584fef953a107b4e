"""Block windows, the keys of the `block_ranges` partitions: fixed-width, aligned windows of
GLISK_PARTITION_SIZE blocks.

A key is `f"{start:012d}-{end:012d}"` with an inclusive end, zero-padded so that text order
is block order. Window i covers [i*size, (i+1)*size - 1]; the first window is the one that
holds GLISK_START_BLOCK (the asset clamps its fetch to start there). Alignment makes a
block's window a pure function of the block and the size, whoever computes it.

Dagster lists dynamic partition keys in insertion order, and a UI range selection follows
that order: keys are only ever added ascending, and only for windows that are entirely
final, so a partition never has to be revisited because its blocks changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# The name of the Dagster partition set whose keys these are (defs/partitions.py).
PARTITIONS_NAME = "block_ranges"

_KEY_RE = re.compile(r"^(\d{12})-(\d{12})$")


def partition_key(start: int, end: int) -> str:
    return f"{start:012d}-{end:012d}"


def parse_key(key: str) -> tuple[int, int]:
    """(start, end) of a key, both inclusive; ValueError on anything else."""
    match = _KEY_RE.match(key)
    if not match:
        raise ValueError(f"not a block_ranges key: {key!r} (expected 000000000100-000000000199)")
    start, end = int(match[1]), int(match[2])
    if end < start:
        raise ValueError(f"block_ranges key {key!r} ends before it starts")
    return start, end


def window_of(block: int, size: int) -> tuple[int, int]:
    """The aligned window holding `block`."""
    start = block - block % size
    return start, start + size - 1


def key_problem(key: str, *, size: int, final_block: int) -> str | None:
    """Why `key` must not be a block_ranges partition (None: it may): not a key, not an
    aligned window of `size` blocks, or not entirely final. Keys added by hand in the UI or
    the API are checked against this when their run starts."""
    try:
        start, end = parse_key(key)
    except ValueError as exc:
        return str(exc)
    if start % size or end - start + 1 != size:
        return f"not an aligned window of GLISK_PARTITION_SIZE={size} blocks"
    if end > final_block:
        return f"not final yet (final block {final_block})"
    return None


def keys_of_blocks(blocks: Iterable[int], size: int) -> list[str]:
    """The keys of the windows holding `blocks`, ascending, each once: what to
    re-materialize when a check finds something wrong in those blocks."""
    return [partition_key(*window_of(b, size)) for b in sorted({b - b % size for b in blocks})]


def key_range_bounds(first_key: str, last_key: str, start_block: int = 0) -> tuple[int, int]:
    """Blocks covered by a run over partitions first_key..last_key (one key: both equal),
    clamped below at start_block (the first window may begin before the contract)."""
    start, _ = parse_key(first_key)
    _, end = parse_key(last_key)
    if end < start:
        raise ValueError(f"partition range {first_key}..{last_key} is reversed")
    return max(start, start_block), end


def new_windows(
    *,
    start_block: int,
    size: int,
    final_block: int,
    after_block: int | None,
    limit: int,
) -> list[str]:
    """Keys of the complete final windows after `after_block` (the end of the last window
    already added; None when there is none), ascending, at most `limit` of them.

    A window is added only when its last block is at or below `final_block`: no partial
    window ever becomes a partition."""
    first_start, _ = window_of(start_block, size)
    start = first_start if after_block is None else max(first_start, after_block + 1)
    if start % size:
        # The existing windows end off this size's grid: GLISK_PARTITION_SIZE changed
        # after keys were added. Rounding up would skip blocks for good; refuse instead.
        raise ValueError(
            f"the last block_ranges window ends at block {after_block}, which is not "
            f"aligned to GLISK_PARTITION_SIZE={size}: the size changed after partitions "
            "were added. Restore the previous size, or start a new partition set."
        )
    keys: list[str] = []
    while len(keys) < limit and start + size - 1 <= final_block:
        keys.append(partition_key(start, start + size - 1))
        start += size
    return keys


def last_end(keys: Sequence[str]) -> int | None:
    """The highest end block among existing keys (None if there are none)."""
    return max((parse_key(k)[1] for k in keys), default=None)
