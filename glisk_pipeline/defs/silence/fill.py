"""`mint_events_tip`: the silence fill as a run. webhook_silence_sensor decides when the
webhook is silent and which blocks to read, and requests a run of this asset over them;
the run stores their missing mints, add-only, through the same ingest loop and store as
every backfill (glisk_pipeline/sync/tip.py), and reports them like a window does.

A run, not work inside the sensor: it appears under Runs and in the catalog, takes a
slot of the `rpc` concurrency pool like every mint_events run, and the sensor's "Preview
tick result" writes nothing.
"""
# No `from __future__ import annotations`: Dagster reads the context, config and resource
# parameter annotations at definition time and needs real classes, not strings.

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from glisk_pipeline.db.schema import mint_events as mint_events_table
from glisk_pipeline.defs.backfill.assets import window_metadata
from glisk_pipeline.defs.backfill.table_metadata import table_definition_metadata
from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from glisk_pipeline.defs.run_record import recorded_run
from glisk_pipeline.sync.backfill import ChunkReport
from glisk_pipeline.sync.tip import fill_tip
from glisk_pipeline.verify.range_proof import SupplyTiling

ASSET_NAME = "mint_events_tip"


class TipBlocks(Config):
    """The blocks the sensor asked for (inclusive), and why."""

    from_block: int
    to_block: int
    reason: str = ""


@asset(
    name=ASSET_NAME,
    # The same provider and rate limit as the mint_events runs.
    pool="rpc",
    group_name="mints",
    kinds={"python", "sql"},
    # It writes the mint_events table: the catalog shows that table's name and columns.
    metadata=table_definition_metadata(mint_events_table),
    description=(
        "While the webhook is silent: the BatchMinted logs of the blocks above "
        "last_processed_block, stored into mint_events add-only (nothing reconciled, "
        "checkpointed or revived: those blocks are not final). Requested by "
        "webhook_silence_sensor; each materialization reports the blocks it read."
    ),
)
def mint_events_tip(
    context: AssetExecutionContext,
    config: TipBlocks,
    chain: ChainResource,
    database: DatabaseResource,
) -> MaterializeResult:
    settings = chain.settings()
    low, high = config.from_block, config.to_block
    stored = 0

    def log_chunk(chunk: ChunkReport) -> None:
        nonlocal stored
        stored += chunk.stored
        context.log.info(
            f"blocks {chunk.from_block}-{chunk.to_block}: {chunk.found} logs, "
            f"{chunk.stored} stored, {chunk.duplicates} already present"
        )

    with chain.client() as client, recorded_run(database, context.log.warning, "tip_fill", client):
        calls = client.stats.calls
        fill = fill_tip(
            client, database.store(), settings.contract_address, low, high,
            on_chunk=log_chunk, check=SupplyTiling.from_settings(client, settings),
        )  # fmt: skip
        calls = client.stats.calls - calls
    reason = {"reason": MetadataValue.text(config.reason)} if config.reason else {}
    if fill.report is None:
        # A reorg's new fork claims token ids a lost fork's rows still hold: add-only cannot
        # settle that; the window's reconcile does, once it is final.
        context.log.warning(
            f"blocks {low}-{high}: {fill.conflict}. Left to the reconcile of their window "
            "once it is final."
        )
        return MaterializeResult(
            metadata={
                "block_range": MetadataValue.text(f"{low}-{high}"),
                "first_block": MetadataValue.int(low),
                "last_block": MetadataValue.int(high),
                "stored": MetadataValue.int(stored),
                "rpc_calls": MetadataValue.int(calls),
                "token_conflict": MetadataValue.text(fill.conflict or ""),
                **reason,
            }
        )
    report = fill.report
    context.log.info(
        f"blocks {low}-{high}: {report.logs_found} logs, {report.stored} stored, "
        f"{report.duplicates} already present, {report.rpc_calls} RPC calls"
    )
    return MaterializeResult(metadata={**window_metadata(database, report), **reason})
