"""Asset checks on `mint_events`: the invariants downstream work (image generation, reveal)
relies on, checked over the whole table after each materialization, and the index's
freshness.

The checks are declared here as specs and evaluated by the mint_events asset itself (see
assets.py for why they are not separate `@asset_check` steps): in the same run, after its
materializations, or alone when only checks are selected. Each query lives in a plain
function over an engine, so tests can call it on a corrupted database and the checks stay
thin. A failing check says what to do in its description
and names the partitions to re-materialize (`partitions_to_rematerialize`): materializing
a final window makes its rows equal the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetPartitionStatus,
    DagsterInstance,
    MetadataValue,
)

from glisk_pipeline.db.queries import live_rows_by_window, token_count_mismatches
from glisk_pipeline.db.store.downstream import orphaned_tokens, run_labels
from glisk_pipeline.defs.backfill.check_metadata import (
    rematerialize_metadata,
    shown_text,
)
from glisk_pipeline.defs.backfill.partitions import block_ranges
from glisk_pipeline.defs.backfill.supply_check import (
    SUPPLY_MATCHES_CONTRACT,
    supply_matches_contract,
)
from glisk_pipeline.defs.instance_status import MINT_EVENTS, judged_windows, logs_found_by_window
from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from glisk_pipeline.listing import shown
from glisk_pipeline.verify.coverage import judged_range, uncovered_windows, unjudged_note
from glisk_pipeline.verify.supply import IdRange, contiguity_breaks, windows_of
from glisk_pipeline.windows import (
    PARTITIONS_NAME,
    keys_of_blocks,
    parse_key,
)

UNBOUNDED = 2**62  # a "checkpoint" above every block: contiguity_breaks then lists every gap


TOKENS_MATCH_QUANTITY = AssetCheckSpec(
    "tokens_match_quantity",
    asset=MINT_EVENTS,
    description="Every live mint event owns exactly `quantity` token rows and a removed one "
    "owns none. On failure: re-materialize the listed partitions (the reconcile rewrites "
    "their rows from the chain); if it persists, the store has a bug.",
)


def tokens_match_quantity(
    instance: DagsterInstance, database: DatabaseResource, chain: ChainResource
) -> AssetCheckResult:
    bad = token_count_mismatches(database.engine)
    size = chain.settings().GLISK_PARTITION_SIZE
    return AssetCheckResult(
        passed=not bad,
        description=None
        if not bad
        else f"{len(bad)} events own the wrong number of token rows: re-materialize "
        "the partitions listed in partitions_to_rematerialize",
        metadata={
            "mismatched_events": len(bad),
            "examples (id, expected, actual, block)": shown_text(bad),
            **rematerialize_metadata(keys_of_blocks((b[3] for b in bad), size)),
        },
    )


TOKEN_IDS_CONTIGUOUS = AssetCheckSpec(
    "token_ids_contiguous",
    asset=MINT_EVENTS,
    description="Token ids of live events are contiguous: no overlap anywhere, no gap at or "
    "below last_processed_block. A gap means a mint is missing, an overlap a row of a lost "
    "fork still live: re-materialize the listed partitions (for a gap, every window between "
    "the events on either side of it; windows_hold_their_logs names the window exactly). "
    "Ids missing before the first event or after the last: supply_matches_contract.",
)


def token_ids_contiguous(
    instance: DagsterInstance, database: DatabaseResource, chain: ChainResource
) -> AssetCheckResult:
    # `glisk status`'s evaluation (glisk_pipeline/verify/supply.py) judges gaps at or below the
    # checkpoint; a Dagster instance also knows which windows are materialized, so a gap
    # whose windows are all materialized (a mint lost from a backfilled window) is judged
    # too, whatever order the windows were backfilled in.
    checkpoint = database.store().last_processed_block()
    every_gap, overlaps = contiguity_breaks(database.engine, UNBOUNDED)
    settings = chain.settings()
    size, start = settings.GLISK_PARTITION_SIZE, settings.start_block
    keys, done = judged_windows(instance)

    def judged(gap: IdRange) -> bool:
        return judged_range(gap, done, checkpoint, size=size, start=start)

    gaps = [g for g in every_gap if judged(g)]
    unjudged = [g for g in every_gap if not judged(g)]
    fix = windows_of(gaps + overlaps, size=size, start_block=start)
    to_backfill = [
        k for k in windows_of(unjudged, size=size, start_block=start) if k in set(keys) - done
    ]
    note = unjudged_note(keys, done, checkpoint)
    return AssetCheckResult(
        passed=not (gaps or overlaps),
        description=None
        if not (gaps or overlaps)
        else f"{len(gaps)} gaps and {len(overlaps)} overlaps in the token ids of "
        f"backfilled blocks ({shown([str(r) for r in gaps + overlaps], 3)}): re-materialize "
        "the partitions listed in partitions_to_rematerialize (for a gap, every window "
        "between the events on either side of it)",
        metadata={
            "overlaps": len(overlaps),
            "gaps": len(gaps),
            "last_processed_block": checkpoint if checkpoint is not None else -1,
            "gap_ranges": shown_text([str(g) for g in gaps]),
            "overlap_ranges": shown_text([str(o) for o in overlaps]),
            **rematerialize_metadata(fix),
            "gaps_not_judged": len(unjudged),
            "partitions_to_backfill": shown_text(to_backfill),
            "partitions_to_backfill_count": MetadataValue.int(len(to_backfill)),
            "not_judged": MetadataValue.text(note or "every partition judged"),
        },
    )


def window_row_mismatches(
    recorded: dict[str, int], live: dict[int, int]
) -> list[tuple[str, int, int]]:
    """(key, logs its latest materialization found on the chain, live rows now) for every
    window whose live rows differ: rows lost (or added) since it was reconciled."""
    bad = []
    for key, logs in sorted(recorded.items()):
        rows = live.get(parse_key(key)[0], 0)
        if rows != logs:
            bad.append((key, logs, rows))
    return bad


WINDOWS_HOLD_THEIR_LOGS = AssetCheckSpec(
    "windows_hold_their_logs",
    asset=MINT_EVENTS,
    description="Every materialized window still holds as many live rows as its latest "
    "materialization found logs on the chain (its logs_found): a window's blocks are final, "
    "so any difference is damage to the table since. Names the windows exactly: "
    "re-materialize the listed partitions.",
)


def windows_hold_their_logs(
    instance: DagsterInstance, database: DatabaseResource, chain: ChainResource
) -> AssetCheckResult:
    recorded = logs_found_by_window(instance)
    live = live_rows_by_window(database.engine, chain.settings().GLISK_PARTITION_SIZE)
    bad = window_row_mismatches(recorded, live)
    keys = [key for key, _, _ in bad]
    return AssetCheckResult(
        passed=not bad,
        description=None
        if not bad
        else f"{len(bad)} windows hold a different number of live rows than their latest "
        "materialization found: re-materialize the partitions listed in "
        "partitions_to_rematerialize",
        metadata={
            "windows_compared": len(recorded),
            "mismatched_windows": len(bad),
            "examples (partition, logs found, live rows)": shown_text(bad),
            **rematerialize_metadata(keys),
        },
    )


PARTITIONS_COVER_CHECKPOINT = AssetCheckSpec(
    "partitions_cover_checkpoint",
    asset=MINT_EVENTS,
    description="Every block window at or below last_processed_block was materialized (runs "
    "still in flight count as covered). WARN only: a range recovered with `glisk recover` "
    "advances the checkpoint without a Dagster materialization; materialize the listed "
    "partitions to bring Dagster's view in line.",
)


def partitions_cover_checkpoint(
    instance: DagsterInstance, database: DatabaseResource, chain: ChainResource
) -> AssetCheckResult:
    settings = chain.settings()
    checkpoint = database.store().last_processed_block()
    keys = list(instance.get_dynamic_partitions(PARTITIONS_NAME))
    statuses = instance.get_status_by_partition(MINT_EVENTS, keys, block_ranges) or {}
    # A backfill's runs finish in any order: one run may move the checkpoint past windows
    # whose run is still going. Those are in progress, not missing.
    covering = {
        AssetPartitionStatus.MATERIALIZED,
        AssetPartitionStatus.IN_PROGRESS,
    }
    covered = [k for k, state in statuses.items() if state in covering]
    in_flight = sum(1 for state in statuses.values() if state == AssetPartitionStatus.IN_PROGRESS)
    missing = uncovered_windows(
        covered,
        start_block=settings.start_block,
        size=settings.GLISK_PARTITION_SIZE,
        checkpoint=checkpoint,
    )
    # Partitions never materialized below the highest one covered: they hold the
    # checkpoint back (it moves only over contiguous ranges), whatever it says now.
    top = max((keys.index(k) for k in covered), default=-1)
    holes = [k for k in keys[:top] if k not in covered and k not in missing]
    absent = missing + holes
    return AssetCheckResult(
        passed=not absent,
        severity=AssetCheckSeverity.WARN,
        description=None
        if not absent
        else f"{len(missing)} windows at or below last_processed_block and {len(holes)} below "
        "materialized ones were never materialized (the checkpoint cannot pass them): "
        "backfill the partitions listed in partitions_to_rematerialize (add them first if "
        "they are not partitions yet)",
        metadata={
            "last_processed_block": checkpoint if checkpoint is not None else -1,
            "partitions": len(keys),
            "materialized": len(covered) - in_flight,
            "in_progress": in_flight,
            "missing_below_checkpoint": len(missing),
            "missing_below_materialized": len(holes),
            **rematerialize_metadata(absent),
        },
    )


CHECKPOINT_FRESH = AssetCheckSpec(
    "checkpoint_fresh",
    asset=MINT_EVENTS,
    description="The backfill checkpoint keeps up with the chain: final block - "
    "last_processed_block. WARN past GLISK_LAG_WARN_BLOCKS, fails past "
    "GLISK_LAG_ERROR_BLOCKS. On failure: is chain_head_sensor on, are runs failing or "
    "queued (the rpc pool), is the provider rate-limiting? `glisk status` shows the lags.",
)


def checkpoint_fresh(
    instance: DagsterInstance, database: DatabaseResource, chain: ChainResource
) -> AssetCheckResult:
    settings = chain.settings()
    checkpoint = database.store().last_processed_block()
    with chain.client() as client:
        final = client.final_block(settings.GLISK_CONFIRMATIONS)
    covered = checkpoint if checkpoint is not None else settings.start_block - 1
    behind = max(0, final - covered)
    warn, error = settings.GLISK_LAG_WARN_BLOCKS, settings.GLISK_LAG_ERROR_BLOCKS
    severity = AssetCheckSeverity.ERROR if behind > error else AssetCheckSeverity.WARN
    # A window never materialized below a materialized one holds the checkpoint still
    # however fast the runs are: said (WARN) even within the thresholds.
    keys, done = judged_windows(instance)
    held = next(
        (k for k in keys if k not in done and parse_key(k)[1] > covered and any(
            parse_key(d)[0] > parse_key(k)[1] for d in done
        )),
        None,
    )  # fmt: skip
    problem = None
    if behind > warn:
        problem = f"last_processed_block is {behind} blocks behind the final block {final}"
    if held is not None:
        problem = (
            (problem + "; " if problem else "")
            + f"last_processed_block {checkpoint if checkpoint is not None else -1} is held "
            f"back by window {held}, never materialized below materialized windows: "
            "backfill it"
        )
    return AssetCheckResult(
        passed=problem is None,
        severity=severity,
        description=problem,
        metadata={
            "final_block": final,
            "last_processed_block": checkpoint if checkpoint is not None else -1,
            "behind_final_blocks": behind,
            "warn_blocks": warn,
            "error_blocks": error,
            "held_back_by": MetadataValue.text(held or "nothing"),
        },
    )


Evaluate = Callable[[DagsterInstance, DatabaseResource, ChainResource], AssetCheckResult]

CHECKS: dict[AssetCheckKey, tuple[AssetCheckSpec, Evaluate]] = {
    spec.key: (spec, evaluate)
    for spec, evaluate in (
        (TOKENS_MATCH_QUANTITY, tokens_match_quantity),
        (TOKEN_IDS_CONTIGUOUS, token_ids_contiguous),
        (WINDOWS_HOLD_THEIR_LOGS, windows_hold_their_logs),
        (PARTITIONS_COVER_CHECKPOINT, partitions_cover_checkpoint),
        (CHECKPOINT_FRESH, checkpoint_fresh),
        (SUPPLY_MATCHES_CONTRACT, supply_matches_contract),
    )
}
"""Every check on mint_events, in the order a run evaluates them."""

mint_event_checks = [spec for spec, _ in CHECKS.values()]


def evaluate_checks(
    selected: AbstractSet[AssetCheckKey],
    instance: DagsterInstance,
    database: DatabaseResource,
    chain: ChainResource,
) -> Iterator[AssetCheckResult]:
    """The result of each selected check, named for its spec (the asset yields several)."""
    for key, (spec, evaluate) in CHECKS.items():
        if key in selected:
            result = evaluate(instance, database, chain)
            yield result._replace(asset_key=spec.asset_key, check_name=spec.name)


NO_ORPHANED_TOKENS = AssetCheckSpec(
    "no_orphaned_tokens",
    asset=MINT_EVENTS,
    description="No token row a worker moved on (generating, uploading, ready, revealed, "
    "failed) belongs to a mint that a reorg took off the chain. On failure: undo the work "
    "downstream for the listed token ids, then delete the rows (docs/downstream.md).",
)


def no_orphaned_tokens(
    instance: DagsterInstance, database: DatabaseResource, chain: ChainResource
) -> AssetCheckResult:
    with database.engine.connect() as conn:
        found = orphaned_tokens(conn)
    runs = run_labels([o.token_id for o in found])
    return AssetCheckResult(
        passed=not found,
        description=None
        if not found
        else f"{len(found)} token rows downstream moved on belong to mints no longer on the "
        "chain: undo their work downstream, then delete them (docs/downstream.md)",
        metadata={
            "orphaned_tokens": len(found),
            "orphaned_token_ids": shown_text(runs),
            "moved_to_orphaned_tokens": sum(o.archived for o in found),
        },
    )


CHECKS[NO_ORPHANED_TOKENS.key] = (NO_ORPHANED_TOKENS, no_orphaned_tokens)
mint_event_checks.append(NO_ORPHANED_TOKENS)
