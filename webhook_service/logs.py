"""structlog JSON lines on stdout, one per delivery, with its context bound.

Nothing here ever receives the signing key or the signature header: the routes log
whether a signature was present and its length, never its value.
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog


def configure(level: int = logging.INFO) -> None:
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
