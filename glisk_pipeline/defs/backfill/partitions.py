"""The `block_ranges` partition set: dynamic, one key per aligned block window.

The keys and their arithmetic are core (glisk_pipeline/windows.py), so the CLI and the
store can reason about windows without loading Dagster; this module only declares the set.
"""

from __future__ import annotations

from dagster import DynamicPartitionsDefinition

from glisk_pipeline.windows import PARTITIONS_NAME

block_ranges = DynamicPartitionsDefinition(name=PARTITIONS_NAME)
