"""Prometheus metrics. With several uvicorn workers each process counts on its own, so
`python -m webhook_service` sets PROMETHEUS_MULTIPROC_DIR (before the workers start) and
/metrics aggregates every worker's files; with one worker the default registry serves."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DELIVERIES = Counter(
    "glisk_webhook_deliveries_total",
    "Webhook deliveries by outcome",
    ["outcome"],
)
LOGS_STORED = Counter("glisk_webhook_logs_stored_total", "BatchMinted logs newly stored")
DUPLICATES = Counter("glisk_webhook_duplicate_logs_total", "BatchMinted logs already stored")
LATENCY = Histogram(
    "glisk_webhook_request_seconds",
    "Time to answer a delivery, from the first body byte read to the response",
    # Our target is tens of milliseconds; Alchemy gives up at 5 s.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def render() -> tuple[bytes, str]:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
