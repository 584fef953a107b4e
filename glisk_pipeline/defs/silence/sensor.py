"""`webhook_silence_sensor`: when the webhook goes silent, request runs that fill the tip.

Each tick reads the webhook's last delivery and the checkpoint (two indexed reads) and the
chain head (one RPC call). While deliveries arrive it does nothing more. Once none has
arrived for GLISK_WEBHOOK_SILENCE_SECONDS while the chain advanced (Alchemy pauses an
endpoint after repeated failures and does not replay the gap), it requests a run of
`mint_events_tip` (defs/tip_fill.py) over the blocks above the checkpoint; that run stores
their missing mints, add-only. One fill run at a time: while the last one is queued or
running the tick waits; once it succeeded the next one starts a little below where it
stopped (glisk_pipeline/sync/tip.py), and after a failure the same blocks are asked for again.
Detection lag while the webhook is paused is then the silence threshold, plus up to one
tick interval (30 s), plus the fill run's start and its work (README, "Operating it").

The sensor only reads and requests: it writes nothing but its tick time (for the
exporter's glisk_sensor_last_tick_timestamp_seconds), so "Preview tick result" in the UI
has no other effect, and a fill shows under Runs with its figures. Off by default (like
chain_head_sensor): it calls the RPC provider every tick. The tip's final reconcile stays
the partitions' job: a tip reorg is corrected once its window is final and materialized.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# parameter annotations at definition time and needs real classes, not strings.

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunConfig,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

# Not re-exported by `dagster`; if it moves, this import fails at load, loudly.
from dagster._core.storage.tags import RUN_KEY_TAG

from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from glisk_pipeline.defs.run_record import note_tick
from glisk_pipeline.defs.silence.fill import ASSET_NAME, TipBlocks, mint_events_tip
from glisk_pipeline.sync.tip import read_view, silence, tip_range

FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

SENSOR_NAME = "webhook_silence_sensor"


@dataclass
class FillCursor:
    """Where the fills of this silence stand: the last block a successful fill read, and
    the run requested and not yet seen finished (its run_key and last block)."""

    filled_to: int | None = None
    pending_key: str | None = None
    pending_to: int | None = None

    @classmethod
    def load(cls, cursor: str | None) -> "FillCursor":
        return cls(**json.loads(cursor)) if cursor else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self))


def _pending_run_status(context: SensorEvaluationContext, run_key: str) -> DagsterRunStatus | None:
    """Status of the run the daemon launched for `run_key` (None: there is none)."""
    runs = context.instance.get_runs(RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
    return runs[0].status if runs else None


@sensor(
    name=SENSOR_NAME,
    target=[mint_events_tip],
    minimum_interval_seconds=30,
    # Off until an operator turns it on: it calls the RPC provider on every tick.
    default_status=DefaultSensorStatus.STOPPED,
    description="When no webhook delivery arrived for GLISK_WEBHOOK_SILENCE_SECONDS while "
    f"the chain advanced, requests {ASSET_NAME} runs that store the tip's missing mints by "
    "RPC (add-only), one at a time, until deliveries resume",
)
def webhook_silence_sensor(
    context: SensorEvaluationContext, chain: ChainResource, database: DatabaseResource
) -> SensorResult:
    note_tick(context, database, SENSOR_NAME)
    settings = chain.settings()
    threshold = settings.GLISK_WEBHOOK_SILENCE_SECONDS
    view, checkpoint = read_view(database.engine)
    with chain.client() as client:
        head = client.block_number()
    silent = silence(view, head, datetime.now(UTC), threshold)
    if silent is None:
        # alive: forget where the fills stopped, the next silence starts afresh
        return SensorResult(
            skip_reason=SkipReason(
                "webhook alive: last delivery "
                + (f"for block {view.last_block} " if view.last_block is not None else "")
                + f"at {view.last_delivery_at:%Y-%m-%dT%H:%M:%SZ}"
            ),
            cursor="",
        )
    state = FillCursor.load(context.cursor)
    if state.pending_key is not None:
        status = _pending_run_status(context, state.pending_key)
        if status is not None and status not in FINISHED:
            return SensorResult(
                skip_reason=SkipReason(
                    f"{silent}; fill run {state.pending_key} is {status.value}: waiting for it"
                ),
                cursor=state.dump(),
            )
        if status == DagsterRunStatus.SUCCESS:
            state.filled_to = state.pending_to
        # failed, canceled or never launched: the same blocks are asked for again
        state.pending_key = state.pending_to = None
    blocks = tip_range(
        head=head,
        checkpoint=checkpoint,
        start_block=settings.start_block,
        filled_to=state.filled_to,
    )
    if blocks is None:
        return SensorResult(
            skip_reason=SkipReason(f"{silent}; no block above the checkpoint"),
            cursor=state.dump(),
        )
    low, high = blocks
    # The request's time in the run_key keeps every request new: Dagster drops a request
    # whose run_key this sensor used before, and a retry of the same blocks (or a later
    # silence reading the same ones) must run.
    asked_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
    state.pending_key, state.pending_to = f"tip-fill:{low}-{high}:{asked_at}", high
    context.log.info(f"{silent}; requesting a fill of blocks {low}-{high}")
    config = TipBlocks(from_block=low, to_block=high, reason=silent)
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=state.pending_key,
                run_config=RunConfig(ops={ASSET_NAME: config}),
                tags={"glisk/tip_blocks": f"{low}-{high}"},
            )
        ],
        cursor=state.dump(),
    )
