"""Assets: `mint_events` (BatchMinted logs per block_ranges partition, reconciled with the
chain) and `mint_stats` (pandas statistics over the live events).

Neither returns a value for an IO manager: the rows live in the app tables, written by the
one store; the assets report what happened as materialization metadata.
"""
# No `from __future__ import annotations`: Dagster reads the context and resource
# parameter annotations at definition time and needs real classes, not strings.

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetMaterialization,
    AssetSpec,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
    multi_asset,
)
from sqlalchemy import func, select

from glisk_pipeline.db.mint_stats import rebuild
from glisk_pipeline.db.schema import mint_events as mint_events_table
from glisk_pipeline.db.schema import mint_stats as mint_stats_table
from glisk_pipeline.defs.backfill.checks import evaluate_checks, mint_event_checks
from glisk_pipeline.defs.backfill.partitions import block_ranges
from glisk_pipeline.defs.backfill.table_metadata import table_definition_metadata
from glisk_pipeline.defs.instance_status import MINT_EVENTS
from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from glisk_pipeline.defs.run_record import recorded_run
from glisk_pipeline.settings import load_settings
from glisk_pipeline.sync.backfill import BackfillReport, ChunkReport, backfill_range
from glisk_pipeline.verify.range_proof import SupplyTiling
from glisk_pipeline.windows import PARTITIONS_NAME, key_problem, key_range_bounds

PREVIEW_ROWS = 10
PREVIEW_SCHEMA = TableSchema(
    columns=[
        TableColumn("block", "int"),
        TableColumn("tx_hash", "string"),
        TableColumn("log_index", "int"),
        TableColumn("author", "string"),
        TableColumn("tokens", "string"),
        TableColumn("total_paid_wei", "string"),
        TableColumn("removed", "bool"),
    ]
)


@multi_asset(
    # One asset, skippable: the body yields its materializations itself (below) and no
    # Output, so the same step can also run only the checks.
    specs=[
        AssetSpec(
            MINT_EVENTS,
            skippable=True,
            group_name="mints",
            kinds={"python", "sql"},
            metadata=table_definition_metadata(mint_events_table),
            description=(
                "Every BatchMinted log of the GliskNFT contract in the partition's block "
                "window, reconciled with the chain: missing logs stored, non-canonical rows "
                "marked removed."
            ),
        )
    ],
    # The checks run in this asset's step, after its materializations, or alone when only
    # checks are selected (the UI's "Execute checks"): can_subset lets a run select either.
    check_specs=mint_event_checks,
    can_subset=True,
    partitions_def=block_ranges,
    # A UI backfill of hundreds of partitions becomes runs of up to N partitions, each run
    # fetching its whole block range at once. multi_run + parsing the bounds from
    # partition_key_range, not single_run: single_run range runs over dynamic partitions
    # have a history of bugs (dagster issues #17693 and #15667, PR #19622 still open in
    # 2025); tests/test_pipeline_e2e.py proves the multi_run path.
    backfill_policy=BackfillPolicy.multi_run(
        max_partitions_per_run=load_settings().GLISK_PARTITIONS_PER_RUN
    ),
    # Runs share the provider's rate limit: the pool's limit (dagster.yaml) caps how many
    # fetch at once, whatever the run queue allows.
    pool="rpc",
)
def mint_events(
    context: AssetExecutionContext, chain: ChainResource, database: DatabaseResource
) -> Iterator[AssetMaterialization | AssetCheckResult]:
    # Why the materializations are yielded here and not returned as one MaterializeResult
    # with per-partition metadata: Dagster 1.13 emits a returned result's per-partition
    # events by iterating a set of the run's keys (execute_step.py, _get_output_asset_events),
    # so they are stored in hash order and the UI's "latest materialization" is a middle
    # window. Yielded, they are stored in block order, the last window last. Returning an
    # Output as well would emit them twice; without one, separate @asset_check steps on the
    # asset would be skipped, so the checks are this step's own (check_specs). mint_stats
    # in the same run would be skipped too; a backfill never puts it there (different
    # partitions: it runs after the windows).
    if MINT_EVENTS in context.selected_asset_keys:
        yield from _materializations(context, chain, database)
    # Each materialization is stored as it is yielded, so the checks that read the
    # instance (windows_hold_their_logs, partitions_cover_checkpoint) see this run's.
    yield from evaluate_checks(context.selected_asset_check_keys, context.instance, database, chain)


def _materializations(
    context: AssetExecutionContext, chain: ChainResource, database: DatabaseResource
) -> Iterator[AssetMaterialization]:
    """Reconcile each window of the run with the chain, then one materialization per
    window in block order."""
    settings = chain.settings()
    # One backfill_range per window, in block order, on one RPC client (its adapted chunk
    # size carries over), so each partition's materialization carries its own window's
    # counts and RPC calls and the UI can plot them per window. A window costs at least one
    # eth_getLogs call of its own; the prefetch overlap stops at each window's end.
    windows = sorted(
        (key_range_bounds(key, key, settings.start_block), key) for key in context.partition_keys
    )
    store = database.store()

    def log_chunk(chunk: ChunkReport) -> None:
        context.log.info(
            f"blocks {chunk.from_block}-{chunk.to_block}: {chunk.found} logs, "
            f"{chunk.stored} stored, {chunk.duplicates} duplicates, {chunk.removed} removed"
        )

    reports = []
    with chain.client() as client, recorded_run(database, context.log.warning, "backfill", client):
        # Partitions are only added once final; this guards hand-added keys, whose blocks
        # could still change after we reconcile them.
        final = client.final_block(settings.GLISK_CONFIRMATIONS)
        _refuse_bad_keys(context, settings.GLISK_PARTITION_SIZE, final)
        # one tiling for the run: each window's first counter is the previous one's last
        check = SupplyTiling.from_settings(client, settings)
        for (lo, hi), _ in windows:
            reports.append(
                backfill_range(
                    client,
                    store,
                    settings.contract_address,
                    lo,
                    hi,
                    on_chunk=log_chunk,
                    check=check,
                )
            )

    run = run_totals(reports)
    context.log.info(
        f"blocks {run.from_block}-{run.to_block} ({len(windows)} partitions): "
        f"{run.logs_found} logs, {run.stored} stored, {run.duplicates} duplicates, "
        f"{run.removed} removed, {run.rpc_calls} RPC calls, {run.events_per_s:,.0f} events/s"
    )
    # Yielded once every window is reconciled, as the run's single result was: a run that
    # fails on its third window materializes none. Each window's dagster/row_count is its
    # own rows (live and removed), like every other window entry, so it sums over
    # partitions; the whole table's size is `table_rows`. The run's own figures go once,
    # on its last window, so summing a metadata entry over partitions never counts a run
    # twice.
    table = {"table_rows": MetadataValue.int(table_rows(database))}
    for (_, key), report in zip(windows, reports, strict=True):
        last = key == windows[-1][1]
        own = window_rows(database, report.from_block, report.to_block)
        yield AssetMaterialization(
            MINT_EVENTS,
            partition=key,
            metadata={
                **window_metadata(database, report),
                "dagster/row_count": MetadataValue.int(own),
                **table,
                **(run_metadata(run, len(windows)) if last else {}),
            },
        )


def run_totals(reports: list[BackfillReport]) -> BackfillReport:
    """One report over consecutive windows' reports (blocks first to last)."""
    total = BackfillReport(reports[0].from_block, reports[-1].to_block)
    for report in reports:
        for name in (
            "logs_found", "stored", "duplicates", "removed", "tokens",
            "rpc_calls", "rpc_retries", "duration_s",
        ):  # fmt: skip
            setattr(total, name, getattr(total, name) + getattr(report, name))
        total.final_chunk_size = report.final_chunk_size
        for name, count in report.proofs.items():
            total.proofs[name] = total.proofs.get(name, 0) + count
    return total


def run_metadata(run: BackfillReport, partitions: int) -> dict[str, MetadataValue]:
    """The run's figures (run_* names, so they are not mistaken for a window's)."""
    return {
        "run_partitions": MetadataValue.int(partitions),
        "run_block_range": MetadataValue.text(f"{run.from_block}-{run.to_block}"),
        "run_logs_found": MetadataValue.int(run.logs_found),
        "run_stored": MetadataValue.int(run.stored),
        "run_rpc_calls": MetadataValue.int(run.rpc_calls),
        "run_rpc_retries": MetadataValue.int(run.rpc_retries),
        "run_completeness_proof": MetadataValue.text(proofs_text(run.proofs)),
        "run_duration_s": MetadataValue.float(round(run.duration_s, 3)),
        "run_events_per_s": MetadataValue.float(round(run.events_per_s, 1)),
    }


def table_rows(database: DatabaseResource) -> int:
    """Rows in mint_events (live and removed): the table's dagster/row_count."""
    with database.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(mint_events_table)).scalar_one()


def window_rows(database: DatabaseResource, low: int, high: int) -> int:
    """Rows in mint_events (live and removed) at blocks [low, high]: a window's own."""
    block = mint_events_table.c.block_number
    query = select(func.count()).where(block >= low, block <= high)
    with database.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def _refuse_bad_keys(context: AssetExecutionContext, size: int, final: int) -> None:
    """Partitions are added only aligned, final and ascending (chain_head_sensor); a key
    added by hand that is misaligned or not final yet is removed from block_ranges, with
    the reason, and the run fails before touching anything (a non-final window reconciled
    now could change afterwards; left in the list, it would also mislead the sensor's
    first tick about where the windows end). chain_head_sensor adds the right window once
    it is final."""
    bad = {
        key: problem
        for key in context.partition_keys
        if (problem := key_problem(key, size=size, final_block=final)) is not None
    }
    for key in bad:
        context.instance.delete_dynamic_partition(PARTITIONS_NAME, key)
    if bad:
        reasons = "; ".join(f"{key}: {problem}" for key, problem in bad.items())
        raise Failure(f"removed block_ranges keys that must not be partitions: {reasons}")


def window_metadata(database: DatabaseResource, report: BackfillReport) -> dict[str, MetadataValue]:
    """One block range's own figures, RPC calls included: what the UI plots per partition
    (and what the tip fill reports for the blocks it read)."""
    start, end = report.from_block, report.to_block
    return {
        "block_range": MetadataValue.text(f"{start}-{end}"),
        "first_block": MetadataValue.int(start),
        "last_block": MetadataValue.int(end),
        "logs_found": MetadataValue.int(report.logs_found),
        "stored": MetadataValue.int(report.stored),
        "duplicates": MetadataValue.int(report.duplicates),
        "removed": MetadataValue.int(report.removed),
        # removals need proof (the chain's hash at the row's block changed): blocks read
        "removal_proofs": MetadataValue.int(report.proven_blocks),
        # answers refused from a node that lacked the window (it lagged the head)
        "lagging_answers": MetadataValue.int(report.lagging_answers),
        # how each eth_getLogs answer was proven complete ("supply": its logs tile the
        # contract's nextTokenId() over the range; "header": same-batch header only)
        "completeness_proof": MetadataValue.text(proofs_text(report.proofs)),
        "tokens_stored": MetadataValue.int(report.tokens),
        "rpc_calls": MetadataValue.int(report.rpc_calls),
        "rpc_retries": MetadataValue.int(report.rpc_retries),
        "chunk_size": MetadataValue.int(report.final_chunk_size),
        "duration_s": MetadataValue.float(round(report.duration_s, 3)),
        "preview": _preview(database, start, end),
    }


def proofs_text(proofs: dict[str, int]) -> str:
    """e.g. "supply x3": the proofs of a report's eth_getLogs answers."""
    return ", ".join(f"{name} x{count}" for name, count in sorted(proofs.items())) or "none"


def _preview(database: DatabaseResource, start: int, end: int) -> MetadataValue:
    """The first rows of the range as stored, so an operator sees what landed."""
    t = mint_events_table
    query = (
        select(
            t.c.block_number,
            t.c.tx_hash,
            t.c.log_index,
            t.c.author_wallet,
            t.c.start_token_id,
            t.c.quantity,
            t.c.total_paid,
            t.c.removed,
        )
        .where(t.c.block_number.between(start, end))
        .order_by(t.c.block_number, t.c.log_index)
        .limit(PREVIEW_ROWS)
    )
    with database.engine.connect() as conn:
        rows = conn.execute(query).all()
    records = [
        TableRecord(
            {
                "block": r.block_number,
                "tx_hash": r.tx_hash,
                "log_index": r.log_index,
                "author": r.author_wallet,
                "tokens": f"{r.start_token_id}..{r.start_token_id + r.quantity - 1}",
                "total_paid_wei": str(r.total_paid),  # exact: above 2^53 as a number it is not
                "removed": bool(r.removed),
            }
        )
        for r in rows
    ]
    return MetadataValue.table(records=records, schema=PREVIEW_SCHEMA)


@asset(
    deps=[mint_events],
    group_name="mints",
    kinds={"pandas", "sql"},
    metadata=table_definition_metadata(mint_stats_table),
    # No automation condition: it would need Dagster's automation sensor, which is off
    # unless turned on. Materialize it after a backfill (or select it in the backfill next
    # to mint_events: the backfill runs it after the windows, never in their run, where
    # it would be skipped, see mint_events); the demo does so. README, `make dev` and this
    # agree.
    description=(
        "Mint statistics per UTC day and prompt author (events, tokens, distinct minters, "
        "exact wei paid), rebuilt with pandas from the live mint_events rows."
    ),
)
def mint_stats(context: AssetExecutionContext, database: DatabaseResource) -> MaterializeResult:
    _, summary = rebuild(database.engine)
    context.log.info(
        f"mint_stats: {summary.rows} rows, {summary.events} events, {summary.tokens} tokens"
    )
    top = summary.top_authors
    return MaterializeResult(
        metadata={
            "rows": MetadataValue.int(summary.rows),
            "dagster/row_count": MetadataValue.int(summary.rows),
            "authors": MetadataValue.int(summary.authors),
            "days": MetadataValue.int(summary.days),
            "events": MetadataValue.int(summary.events),
            "tokens": MetadataValue.int(summary.tokens),
            # Text: the UI's numbers are floats and would round a wei total.
            "total_paid_wei": MetadataValue.text(str(summary.total_paid)),
            "top_authors": MetadataValue.table(
                records=[
                    TableRecord(
                        {
                            "author_wallet": str(r["author_wallet"]),
                            "events": int(r["events"]),
                            "tokens": int(r["tokens"]),
                            "total_paid": str(r["total_paid"]),
                        }
                    )
                    for r in top.to_dict("records")
                ],
                schema=TableSchema(
                    columns=[
                        TableColumn("author_wallet", "string"),
                        TableColumn("events", "int"),
                        TableColumn("tokens", "int"),
                        TableColumn("total_paid", "string"),
                    ]
                ),
            ),
        }
    )
