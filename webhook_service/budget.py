"""Waiting on the database with a deadline, without waiting for its clean-up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class OverBudget(Exception):
    """The database did not answer within the budget."""


async def within_budget(work: Awaitable[T], seconds: float) -> T:
    """`work`'s result, or OverBudget after `seconds`. The work is cancelled but not
    awaited: psycopg's clean-up of a cancelled query (a cancel request, then closing the
    connection) can itself wait on a dead socket, and must not delay the answer."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:  # the client went away: so does the work
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(_retrieve)
    raise OverBudget


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # consumed: it was answered 500 already
