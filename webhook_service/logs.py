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


class Throttle:
    """Admits at most one line per `interval` seconds per key; the admitted line learns
    how many were left out since the last one."""

    def __init__(self, interval: float = 0.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def admit(self, key: str) -> int | None:
        """None: leave this line out. Else the number left out before it."""
        now = time.monotonic()
        last = self._last.get(key)
        if self.interval > 0 and last is not None and now - last < self.interval:
            self.suppressed[key] = self.suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self.suppressed.pop(key, 0)


class Throttled(Throttle):
    """Warnings through structlog, at most one per interval per outcome."""

    def warning(self, event: str, *, outcome: str, **fields: object) -> None:
        left_out = self.admit(outcome)
        if left_out is not None:
            log.warning(event, outcome=outcome, suppressed=left_out, **fields)

    def flush(self) -> None:
        for outcome, count in sorted(self.suppressed.items()):
            log.warning("rejections not logged", outcome=outcome, suppressed=count)
        self.suppressed.clear()


class ThrottledUvicornWarnings(logging.Filter):
    """uvicorn writes one warning per refused request for a malformed request head: a line
    anyone can provoke, throttled like ours (an oversized head is refused, and logged, by
    webhook_service/protocol.py). (Its "Exceeded concurrency limit." is never written: the
    connection caps are ours, at accept.)"""

    FLOOD_MESSAGES = frozenset({"Invalid HTTP request received."})

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.throttle = Throttle(interval)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message not in self.FLOOD_MESSAGES:
            return True
        left_out = self.throttle.admit(message)
        if left_out:
            record.msg, record.args = f"{message} ({left_out} more since the last line)", ()
        return left_out is not None


unauthenticated = Throttled()
