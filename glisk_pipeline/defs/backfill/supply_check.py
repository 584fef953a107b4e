"""The supply_matches_contract check: the supply proof (verify/supply.py) at the final
block, each finding sorted by the fix it needs against the partitions that exist."""

from __future__ import annotations

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    DagsterInstance,
    MetadataValue,
)

from glisk_pipeline.defs.backfill.check_metadata import (
    rematerialize_metadata,
    report_metadata,
    shown_text,
)
from glisk_pipeline.defs.instance_status import MINT_EVENTS, judged_windows
from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from glisk_pipeline.verify.coverage import judged_range
from glisk_pipeline.verify.supply import IdRange, prove, windows_of
from glisk_pipeline.windows import (
    parse_key,
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
            **rematerialize_metadata(rematerialize),
            "partitions_to_backfill": shown_text(backfill),
            "partitions_to_backfill_count": MetadataValue.int(len(backfill)),
            "windows_not_partitions_yet": MetadataValue.int(len(later)),
            "partitions": MetadataValue.int(len(keys)),
            "partitions_named": MetadataValue.int(len(named)),
            "missing_ranges_to_repair": shown_text([str(r) for r in repair]),
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
