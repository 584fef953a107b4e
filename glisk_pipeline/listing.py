"""Long lists in reports, check metadata, JSON and command output: the first SHOWN items,
and how many were left out, so an answer's size does not grow with the damage it reports."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

SHOWN = 10  # items listed; the rest are counted


def shown(items: Sequence[Any], limit: int = SHOWN, sep: str = ", ") -> str:
    """The first `limit` items joined, and how many were left out."""
    return sep.join(map(str, items[:limit])) + more(len(items), limit, sep)


def more(total: int, limit: int = SHOWN, sep: str = ", ") -> str:
    """ "…, and N more" for a list of `total` items cut to `limit` ("" when nothing was)."""
    return f"{sep}… and {total - limit} more" if total > limit else ""


def lines(items: Sequence[Any], limit: int = SHOWN) -> Iterator[str]:
    """The first `limit` items, one a line, then "… and N more" when some were left out."""
    yield from map(str, items[:limit])
    if len(items) > limit:
        yield f"… and {len(items) - limit} more"


def listed(name: str, items: Sequence[Any], limit: int = SHOWN) -> dict[str, Any]:
    """A list cut to `limit` for JSON, with its full length beside it."""
    return {name: list(items[:limit]), f"{name}_count": len(items)}
