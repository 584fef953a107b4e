"""`webhook_silence_sensor`: when the webhook goes silent, fill the tip by RPC.

Each tick reads the webhook's last delivery and the checkpoint (two indexed reads) and the
chain head (one RPC call). While deliveries arrive it does nothing more. Once none has
arrived for GLISK_WEBHOOK_SILENCE_SECONDS while the chain advanced (Alchemy pauses an
endpoint after repeated failures and does not replay the gap), it stores the missing
mints of the blocks above the checkpoint, add-only (glisk_pipeline/tip.py), every tick
until deliveries resume. Detection lag while the webhook is paused is then bounded by the
silence threshold plus one tick interval (30 s) for the first fill, and by one tick
interval after that.

Off by default (like chain_head_sensor): it calls the RPC provider every tick. The tip's
final reconcile stays the partitions' job: a tip reorg is corrected once its window is
final and materialized.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# parameter annotations at definition time and needs real classes, not strings.

import json
from datetime import UTC, datetime

from dagster import (
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from glisk_pipeline.tip import fill_tip, read_view, silence, tip_range


def _filled_to(cursor: str | None) -> int | None:
    return json.loads(cursor).get("filled_to") if cursor else None


@sensor(
    name="webhook_silence_sensor",
    minimum_interval_seconds=30,
    # Off until an operator turns it on: it calls the RPC provider on every tick.
    default_status=DefaultSensorStatus.STOPPED,
    description="When no webhook delivery arrived for GLISK_WEBHOOK_SILENCE_SECONDS while "
    "the chain advanced, stores the tip's missing mints by RPC (add-only) until deliveries "
    "resume",
)
def webhook_silence_sensor(
    context: SensorEvaluationContext, chain: ChainResource, database: DatabaseResource
) -> SensorResult:
    settings = chain.settings()
    threshold = settings.GLISK_WEBHOOK_SILENCE_SECONDS
    view, checkpoint = read_view(database.engine)
    with chain.client() as client:
        head = client.block_number()
        silent = silence(view, head, datetime.now(UTC), threshold)
        if silent is None:
            # alive: forget where the last fill stopped, the next silence starts afresh
            return SensorResult(
                skip_reason=SkipReason(f"webhook alive: last delivery for block {view.last_block}"),
                cursor="",
            )
        blocks = tip_range(
            head=head,
            checkpoint=checkpoint,
            start_block=settings.GLISK_START_BLOCK,
            filled_to=_filled_to(context.cursor),
        )
        if blocks is None:
            return SensorResult(skip_reason=SkipReason(f"{silent}; no block above the checkpoint"))
        fill = fill_tip(client, database.store(), settings.contract_address, *blocks)
    low, high = blocks
    if fill.report is None:
        context.log.warning(
            f"{silent}; blocks {low}-{high}: {fill.conflict}. Left to the reconcile of their "
            "window once it is final."
        )
        return SensorResult(
            skip_reason=SkipReason(f"token conflict in blocks {low}-{high}: {fill.conflict}"),
            cursor=json.dumps({"filled_to": high}),
        )
    report = fill.report
    message = (
        f"{silent}; filled blocks {low}-{high}: {report.logs_found} logs, {report.stored} "
        f"stored, {report.duplicates} already present"
    )
    context.log.info(message)
    return SensorResult(skip_reason=SkipReason(message), cursor=json.dumps({"filled_to": high}))
