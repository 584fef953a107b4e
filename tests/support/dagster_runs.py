"""Runs of the mint_events asset through real Dagster (materialize on a test instance),
shared by the asset, check and proof tests."""

from __future__ import annotations

from dagster import DagsterInstance, materialize
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from glisk_pipeline.defs.backfill.assets import mint_events
from glisk_pipeline.windows import PARTITIONS_NAME, new_windows
from tests.support.pipeline_support import SIZE, Pipeline

ASSETS = [mint_events]  # its checks are its own (check_specs)


def add_all_partitions(instance: DagsterInstance, p: Pipeline) -> list[str]:
    keys = new_windows(
        start_block=p.start_block,
        size=SIZE,
        final_block=p.devchain.anvil.block_number(),
        after_block=None,
        limit=10_000,
    )
    instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
    return keys


def materialize_range(instance: DagsterInstance, p: Pipeline, first: str, last: str):
    return materialize(
        ASSETS,
        instance=instance,
        resources=p.resources(),
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
    )


def range_tags(keys: list[str]) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
