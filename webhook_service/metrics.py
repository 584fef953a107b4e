"""Prometheus metrics. With several uvicorn workers each process counts on its own, so
`python -m webhook_service` sets PROMETHEUS_MULTIPROC_DIR (before the workers start) and
/metrics aggregates every worker's files; with one worker the default registry serves."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from glisk_pipeline.chain.decoder import MintRecord

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DELIVERIES = Counter(
    "glisk_webhook_deliveries_total",
    "Webhook deliveries by outcome",
    ["outcome"],
)
ANSWERS = Counter(
    "glisk_webhook_answers_total",
    "Deliveries answered, by HTTP status code (5xx: the database failed; 409: a token"
    " conflict, or a duplicate when WEBHOOK_DUPLICATE_STATUS=409; Alchemy retries every"
    " non-200 and pauses an endpoint that keeps failing)",
    ["code"],
)
# The codes the handler answers with exist from the start at 0: a series that first
# appears at 1 is invisible to rate() and increase().
for _code in ("200", "409", "500"):
    ANSWERS.labels(_code)
LOGS_STORED = Counter("glisk_webhook_logs_stored_total", "BatchMinted logs newly stored")
DUPLICATES = Counter("glisk_webhook_duplicate_logs_total", "BatchMinted logs already stored")
LATENCY = Histogram(
    "glisk_webhook_request_seconds",
    "Time to answer a delivery, from the first body byte read to the response",
    # Our target is tens of milliseconds; Alchemy gives up at 5 s.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

SIGNATURES_REJECTED = Counter(
    "glisk_webhook_rejected_signatures_total",
    "Deliveries refused because the signature was missing or wrong (401)",
)
CONNECTIONS_REFUSED = Counter(
    "glisk_webhook_refused_connections_total",
    "Connections closed unread: a source not allowed, a client at its connection cap, or"
    " a worker whose every slot holds a request in flight (behind a trusted proxy, the"
    " first two once the head named the client)",
    ["reason"],
)
CONNECTIONS_SHED = Counter(
    "glisk_webhook_shed_connections_total",
    "Connections without a complete request (idle, or head/body still arriving) closed to"
    " admit a new one when the worker was at WEBHOOK_MAX_CONNECTIONS",
    ["state"],
)
DETECTION_LAG = Histogram(
    "glisk_webhook_detection_lag_seconds",
    "From a newly stored mint's block timestamp to the moment it was stored",
    # Base makes a block every 2 s; Alchemy delivers within seconds, retries after 15 s,
    # 1 min, 10 min; past an hour something is paused and a backfill must fill the gap.
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400),
)
# Gauges of several workers: the highest value any worker saw is the last delivery.
LAST_BLOCK = Gauge(
    "glisk_webhook_last_block_number",
    "Highest block number named by an authenticated, well-formed delivery",
    multiprocess_mode="max",
)
LAST_DELIVERY = Gauge(
    "glisk_webhook_last_delivery_timestamp_seconds",
    "Unix time at which the last authenticated, well-formed delivery arrived",
    multiprocess_mode="max",
)


def observe_outcome(outcome: str, status: int) -> None:
    """Count a delivery's outcome and HTTP status (and a refused signature on its own
    counter)."""
    DELIVERIES.labels(outcome).inc()
    ANSWERS.labels(str(status)).inc()
    if outcome == "unauthorized":
        SIGNATURES_REJECTED.inc()


def observe_delivery(
    block_number: int | None, stored: Iterable[MintRecord], now: float | None = None
) -> None:
    """A delivery the store accepted (stored, duplicate, no match or stale): the webhook
    is alive up to `block_number`; `stored` are the records newly stored by it."""
    now = time.time() if now is None else now
    LAST_DELIVERY.set(now)
    if block_number is not None:
        LAST_BLOCK.set(block_number)
    for record in stored:
        # a local chain's blocks may be stamped ahead of the wall clock: never below 0
        DETECTION_LAG.observe(max(0.0, now - record.block_timestamp))


def render() -> tuple[bytes, str]:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
