"""structlog JSON lines on stdout, one per delivery, with its context bound.

Nothing here ever receives the signing key or the signature header: the routes log
whether a signature was present and its length, never its value.

Requests refused before authentication (bad signature, oversized, stalled) are logged at
most once per WEBHOOK_REJECTED_LOG_SECONDS per outcome: anyone can send them, and one
~200-byte line each was 12 MB per 60,000 bad requests. The metric still counts each one.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson
import structlog


def configure(level: int = logging.INFO, rejected_every_s: float = 0.0) -> None:
    unauthenticated.interval = rejected_every_s
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )


log = structlog.get_logger("webhook")


class Throttled:
    """At most one warning per `interval` seconds per outcome. A written line carries the
    number of lines left out before it (`suppressed`); flush() writes what is left."""

    def __init__(self, interval: float = 0.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, event: str, *, outcome: str, **fields: object) -> None:
        now = time.monotonic()
        last = self._last.get(outcome)
        if self.interval > 0 and last is not None and now - last < self.interval:
            self._suppressed[outcome] = self._suppressed.get(outcome, 0) + 1
            return
        self._last[outcome] = now
        suppressed = self._suppressed.pop(outcome, 0)
        log.warning(event, outcome=outcome, suppressed=suppressed, **fields)

    def flush(self) -> None:
        for outcome, count in sorted(self._suppressed.items()):
            log.warning("rejections not logged", outcome=outcome, suppressed=count)
        self._suppressed.clear()


unauthenticated = Throttled()
