"""Dagster metadata the checks attach: lists as text (the first SHOWN, and how many more),
JSON-shaped reports, and the partitions a fix names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagster import (
    MetadataValue,
)

from glisk_pipeline.listing import lines, more


def shown_text(items: Sequence[object]) -> MetadataValue:
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


def rematerialize_metadata(keys: Sequence[str]) -> dict[str, MetadataValue]:
    return {
        "partitions_to_rematerialize": shown_text(keys),
        "partitions_to_rematerialize_count": MetadataValue.int(len(keys)),
    }
