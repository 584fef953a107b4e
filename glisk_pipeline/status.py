"""The index's state as the person on call needs it (`glisk status`): how far behind the
backfill checkpoint and the webhook are, in blocks and seconds, whether the webhook is
alive, and what the tables hold. Read-only: one RPC batch and a few indexed queries.

Lagging (`problems`, `glisk status` exits 3):
- the checkpoint more than GLISK_LAG_ERROR_BLOCKS below the final block (a warning past
  GLISK_LAG_WARN_BLOCKS);
- no webhook delivery for GLISK_WEBHOOK_SILENCE_SECONDS while the chain advanced past the
  last delivered block (Alchemy pauses an endpoint after repeated failures and does not
  replay the gap). A database that never received a delivery is reported, not judged: a
  deployment may run without the webhook.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from glisk_pipeline.db.schema import mint_events
from glisk_pipeline.rpc import RpcClient
from glisk_pipeline.settings import Settings
from glisk_pipeline.tip import WebhookView, read_view, silence


def read_tables(engine: Engine) -> dict[str, Any]:
    """What the tables say: checkpoint, the webhook's last delivery, rows by source."""
    view, checkpoint = read_view(engine)
    with engine.connect() as conn:
        by_source: dict[str, int] = dict(
            conn.execute(
                select(mint_events.c.source, func.count())
                .where(~mint_events.c.removed)
                .group_by(mint_events.c.source)
            ).all()
        )
        removed = conn.execute(
            select(func.count()).select_from(mint_events).where(mint_events.c.removed)
        ).scalar_one()
    return {
        "last_processed_block": checkpoint,
        "webhook": view,
        "rows": {
            "webhook": int(by_source.get("webhook", 0)),
            "backfill": int(by_source.get("backfill", 0)),
            "removed": int(removed),
        },
    }


def block_times(client: RpcClient, blocks: list[int]) -> dict[int, int]:
    """Unix time of each block, in one JSON-RPC batch."""
    wanted = sorted({b for b in blocks if b >= 0})
    answers = client.batch(
        [("eth_getBlockByNumber", [hex(b), False]) for b in wanted], what="block timestamps"
    )
    return {b: int(a["timestamp"], 16) for b, a in zip(wanted, answers, strict=True) if a}


def collect(
    settings: Settings, engine: Engine, client: RpcClient, *, now: datetime | None = None
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    tables = read_tables(engine)
    head = client.block_number()
    final = client.final_block(settings.GLISK_CONFIRMATIONS)
    checkpoint = tables["last_processed_block"]
    # no checkpoint yet: everything from GLISK_START_BLOCK is still to do
    covered = checkpoint if checkpoint is not None else settings.GLISK_START_BLOCK - 1
    view: WebhookView = tables["webhook"]
    hook_block = view.last_block
    times = block_times(client, [head, covered] + ([hook_block] if hook_block is not None else []))

    def seconds_behind(block: int) -> int | None:
        if head in times and block in times:
            return times[head] - times[block]
        return None

    status: dict[str, Any] = {
        "chain": {
            "head": head,
            "head_time": _iso(times.get(head)),
            "final": final,
        },
        "checkpoint": {
            "last_processed_block": checkpoint,
            "behind_final_blocks": max(0, final - covered),
            "behind_head_blocks": head - covered,
            "behind_head_seconds": seconds_behind(covered),
        },
        "webhook": None,
        "rows": tables["rows"],
        "partitions": None,
        "warnings": [],
        "problems": [],
    }
    behind = status["checkpoint"]["behind_final_blocks"]
    if behind > settings.GLISK_LAG_ERROR_BLOCKS:
        status["problems"].append(
            f"checkpoint {behind} blocks behind the final block "
            f"(GLISK_LAG_ERROR_BLOCKS={settings.GLISK_LAG_ERROR_BLOCKS})"
        )
    elif behind > settings.GLISK_LAG_WARN_BLOCKS:
        status["warnings"].append(
            f"checkpoint {behind} blocks behind the final block "
            f"(GLISK_LAG_WARN_BLOCKS={settings.GLISK_LAG_WARN_BLOCKS})"
        )
    if hook_block is not None and view.last_delivery_at is not None:
        arrived = view.last_delivery_at
        age = max(0, int((now - arrived).total_seconds()))
        status["webhook"] = {
            "last_block": hook_block,
            "last_delivery_at": arrived.isoformat(),
            "last_delivery_age_seconds": age,
            "behind_head_blocks": head - hook_block,
            "behind_head_seconds": seconds_behind(hook_block),
        }
        silent = silence(view, head, now, settings.GLISK_WEBHOOK_SILENCE_SECONDS)
        if silent is not None:
            status["problems"].append(f"webhook silent: {silent}")
    return status


def _iso(unix: int | None) -> str | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC).isoformat()
