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

from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetPartitionStatus,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    MetadataValue,
)
from sqlalchemy import Engine, and_, func, or_, select

from glisk_pipeline.db.schema import mint_events as events_t
from glisk_pipeline.db.schema import tokens as tokens_t
from glisk_pipeline.db.store.downstream import orphaned_tokens, run_labels
from glisk_pipeline.defs.backfill.partitions import block_ranges
from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from glisk_pipeline.listing import lines, more, shown
from glisk_pipeline.verify.supply import IdRange, contiguity_breaks, prove, windows_of
from glisk_pipeline.windows import (
    PARTITIONS_NAME,
    keys_of_blocks,
    parse_key,
    partition_key,
    window_of,
)

UNBOUNDED = 2**62  # a "checkpoint" above every block: contiguity_breaks then lists every gap
MINT_EVENTS = AssetKey("mint_events")


def token_count_mismatches(engine: Engine) -> list[tuple[int, int, int, int]]:
    """(mint_event id, expected, actual, block) where a live event does not own exactly
    `quantity` token rows, or a removed event still owns a `detected` one (rows a worker
    moved on are kept, orphaned: no_orphaned_tokens reports them)."""
    written = func.count(tokens_t.c.token_id)
    detected = func.count(tokens_t.c.token_id).filter(tokens_t.c.status == "detected")
    expected = func.max(events_t.c.quantity)
    query = (
        select(
            events_t.c.id,
            events_t.c.removed,
            expected.label("quantity"),
            written,
            events_t.c.block_number,
        )
        .select_from(events_t.outerjoin(tokens_t, tokens_t.c.mint_event_id == events_t.c.id))
        .group_by(events_t.c.id, events_t.c.removed, events_t.c.block_number)
        .having(
            or_(
                and_(~events_t.c.removed, written != expected),
                and_(events_t.c.removed, detected != 0),
            )
        )
        .order_by(events_t.c.id)
    )
    with engine.connect() as conn:
        return [(r[0], 0 if r[1] else r[2], r[3], r[4]) for r in conn.execute(query)]


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


def judged_windows(instance: DagsterInstance) -> tuple[list[str], set[str]]:
    """(every block_ranges key in order, the keys whose mint_events are materialized)."""
    keys = list(instance.get_dynamic_partitions(PARTITIONS_NAME))
    statuses = instance.get_status_by_partition(MINT_EVENTS, keys, block_ranges) or {}
    done = {k for k, state in statuses.items() if state == AssetPartitionStatus.MATERIALIZED}
    return keys, done


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


def _shown(items: Sequence[object]) -> MetadataValue:
    return MetadataValue.text("\n".join(lines(items)))


def report_metadata(report: dict[str, Any]) -> dict[str, MetadataValue]:
    """Dagster metadata of a JSON-shaped report (SupplyProof.as_dict): lists as text, one
    item a line, with how many `listing.listed` left out."""
    out: dict[str, MetadataValue] = {}
    for key, value in report.items():
        if isinstance(value, bool):
            out[key] = MetadataValue.bool(value)
        elif isinstance(value, int):
            out[key] = MetadataValue.int(value)
        elif value is None:
            out[key] = MetadataValue.null()
        elif isinstance(value, list):
            total = report.get(f"{key}_count", len(value))
            text = "\n".join(map(str, value)) + more(total, len(value), sep="\n")
            out[key] = MetadataValue.text(text)
        else:
            out[key] = MetadataValue.text(str(value))
    return out


def _rematerialize(keys: Sequence[str]) -> dict[str, MetadataValue]:
    return {
        "partitions_to_rematerialize": _shown(keys),
        "partitions_to_rematerialize_count": MetadataValue.int(len(keys)),
    }


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
            "examples (id, expected, actual, block)": _shown(bad),
            **_rematerialize(keys_of_blocks((b[3] for b in bad), size)),
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
            "gap_ranges": _shown([str(g) for g in gaps]),
            "overlap_ranges": _shown([str(o) for o in overlaps]),
            **_rematerialize(fix),
            "gaps_not_judged": len(unjudged),
            "partitions_to_backfill": _shown(to_backfill),
            "partitions_to_backfill_count": MetadataValue.int(len(to_backfill)),
            "not_judged": MetadataValue.text(note or "every partition judged"),
        },
    )


def live_rows_by_window(engine: Engine, size: int) -> dict[int, int]:
    """{window start block: live rows in that window} (one grouped scan)."""
    window = (events_t.c.block_number - events_t.c.block_number % size).label("window")
    query = select(window, func.count()).where(~events_t.c.removed).group_by(window)
    with engine.connect() as conn:
        return {int(start): int(rows) for start, rows in conn.execute(query)}


def logs_found_by_window(instance: DagsterInstance) -> dict[str, int]:
    """{partition key: logs_found of its latest materialization}, for the windows whose
    latest materialization recorded it (two queries: the latest event id per partition,
    then those events)."""
    asset_key = MINT_EVENTS
    latest = instance.get_latest_storage_id_by_partition(
        asset_key, DagsterEventType.ASSET_MATERIALIZATION
    )
    ids = list(latest.values())
    found: dict[str, int] = {}
    for i in range(0, len(ids), 1000):
        batch = ids[i : i + 1000]
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key, storage_ids=batch), limit=len(batch)
        ).records
        for record in records:
            materialization = record.asset_materialization
            entry = materialization.metadata.get("logs_found") if materialization else None
            if materialization and materialization.partition and entry is not None:
                found[materialization.partition] = int(entry.value)  # type: ignore[arg-type]
    return found


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
            "examples (partition, logs found, live rows)": _shown(bad),
            **_rematerialize(keys),
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
            **_rematerialize(absent),
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


SUPPLY_MATCHES_CONTRACT = AssetCheckSpec(
    "supply_matches_contract",
    asset=MINT_EVENTS,
    description="Supply proof: the live token ids of the mints at or below the final block "
    "are exactly the contract's own range [first, nextTokenId - 1] (GLISK_SUPPLY_FUNCTION "
    "by eth_call at the final block; first at the block before GLISK_START_BLOCK). It sees "
    "what the table cannot see in itself, such as a missing tail. On failure: run "
    "`glisk repair` (it stores exactly the missing mints, one eth_getLogs per gap); extra "
    "ids: re-materialize the listed partitions. When the node has no state at the final "
    "block the result says so (WARN, not a data failure) and compares near the head.",
)


def supply_matches_contract(
    instance: DagsterInstance, database: DatabaseResource, chain: ChainResource
) -> AssetCheckResult:
    settings = chain.settings()
    with chain.client() as client:
        final = client.final_block(settings.GLISK_CONFIRMATIONS)
        checkpoint = database.store().last_processed_block()
        proof = prove(client, database.engine, settings, final, checkpoint)
    metadata = report_metadata(proof.as_dict())
    # Which fix each finding needs, against the partitions that exist: ids missing where a
    # window was never materialized are that backfill still to come (backfill it); ids
    # missing where every window is backfilled or under the checkpoint were lost (glisk
    # repair); extra ids: re-materialize their windows. Windows that are no partition yet
    # (not final, or not added) are counted apart, so no count exceeds the partitions.
    keys, done = judged_windows(instance)
    existing = set(keys)
    size, start = settings.GLISK_PARTITION_SIZE, settings.start_block
    to_backfill: set[str] = set()
    repair: list[IdRange] = []
    for r in proof.missing:
        if judged_range(r, done, checkpoint, size=size, start=start):
            repair.append(r)
            continue
        windows = windows_of([r], size=size, start_block=start)
        to_backfill.update(k for k in windows if k in existing and k not in done)
    rematerialize = windows_of(repair + proof.extra, size=size, start_block=start)
    backfill = [k for k in keys if k in to_backfill]
    named = set(rematerialize) | to_backfill
    # beyond every partition and the checkpoint: not final or not added yet
    beyond = max([parse_key(k)[1] for k in keys] + [checkpoint if checkpoint is not None else -1])
    later = [
        k
        for k in windows_of(proof.missing, size=size, start_block=start)
        if k not in existing and parse_key(k)[0] > beyond
    ]
    metadata.update(
        {
            **_rematerialize(rematerialize),
            "partitions_to_backfill": _shown(backfill),
            "partitions_to_backfill_count": MetadataValue.int(len(backfill)),
            "windows_not_partitions_yet": MetadataValue.int(len(later)),
            "partitions": MetadataValue.int(len(keys)),
            "partitions_named": MetadataValue.int(len(named)),
            "missing_ranges_to_repair": _shown([str(r) for r in repair]),
        }
    )
    if proof.compared and proof.consistent:
        return AssetCheckResult(passed=True, metadata=metadata)
    advice = ""
    if backfill:
        advice += f" Backfill the {len(backfill)} partitions in partitions_to_backfill"
    if repair:
        advice += (";" if advice else "") + (
            f" run `glisk repair` for {len(repair)} missing id ranges in backfilled blocks"
        )
    if later:
        advice += (";" if advice else "") + (
            f" {len(later)} windows are not partitions yet (chain_head_sensor adds them once "
            "final; `glisk repair` stores their mints now)"
        )
    if proof.extra:
        advice += (";" if advice else "") + (
            " re-materialize the partitions in partitions_to_rematerialize for the extra ids"
        )
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.ERROR if proof.failing else AssetCheckSeverity.WARN,
        description=f"supply proof {proof.summary()}." + advice,
        metadata=metadata,
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
            "orphaned_token_ids": _shown(runs),
            "moved_to_orphaned_tokens": sum(o.archived for o in found),
        },
    )


CHECKS[NO_ORPHANED_TOKENS.key] = (NO_ORPHANED_TOKENS, no_orphaned_tokens)
mint_event_checks.append(NO_ORPHANED_TOKENS)
