"""`glisk exporter`: an HTTP /metrics for Prometheus with what `glisk status --prometheus`
prints (the lag, supply-proof and contiguity gauges), the counters the Dagster runs and
sensors record in system_state (glisk_pipeline/run_metrics.py), the configuration the alert
rules compare with, and the exporter's own health. It needs no hostPath and no Dagster
instance: it reads the app database and the RPC node, as `glisk status` does.

Bounded cost: the status is computed at most once per `cache_seconds` whatever the number
of scrapers (one computation at a time; concurrent scrapes share it), with the status
command's RPC limits (2 s per request, 2 attempts). A scrape waits at most
`timeout_seconds` for a computation in progress; past that it is answered with the last
complete one, whose age glisk_exporter_last_collect_timestamp_seconds shows. The counters
are one indexed read per scrape.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.cli.common import EXIT_ERROR
from glisk_pipeline.cli.status import exit_code, gather
from glisk_pipeline.cli.status_output import prometheus_text
from glisk_pipeline.db.store import counters
from glisk_pipeline.run_metrics import render
from glisk_pipeline.settings import Settings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def say(line: str) -> None:
    """One line on stderr (the container's log)."""
    print(f"glisk exporter: {line}", file=sys.stderr, flush=True)


def config_text(settings: Settings) -> str:
    """The settings the alert rules compare with, so a rule follows the deployment's own
    thresholds."""
    values = {
        "glisk_config_partition_size_blocks": (
            "GLISK_PARTITION_SIZE: blocks per backfill window",
            settings.GLISK_PARTITION_SIZE,
        ),
        "glisk_config_lag_error_blocks": (
            "GLISK_LAG_ERROR_BLOCKS: checkpoint lag behind the final block that fails status",
            settings.GLISK_LAG_ERROR_BLOCKS,
        ),
        "glisk_config_webhook_silence_seconds": (
            "GLISK_WEBHOOK_SILENCE_SECONDS: no delivery for this long counts as silence",
            settings.GLISK_WEBHOOK_SILENCE_SECONDS,
        ),
    }
    lines = []
    for name, (help_, value) in values.items():
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {value}"]
    return "\n".join(lines) + "\n"


class Exporter:
    """The /metrics text, computed at most once per cache_seconds."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        client: RpcClient,
        *,
        cache_seconds: float,
        timeout_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.engine, self.client = settings, engine, client
        self.cache_seconds, self.timeout_seconds, self.clock = (
            cache_seconds,
            timeout_seconds,
            clock,
        )
        self._lock = threading.Lock()
        self._status_text = ""  # the last complete computation
        self._collected_at: float | None = None  # when it finished
        self._duration = 0.0
        self._errors = 0
        self._collections = 0
        self._running: threading.Event | None = None  # set when the computation ends

    def text(self) -> str:
        done = self._refresh_if_stale()
        if done is not None:
            done.wait(self.timeout_seconds)
        return (
            self._status_text
            + self._counters_text()
            + config_text(self.settings)
            + (self._own_text())
        )

    def _refresh_if_stale(self) -> threading.Event | None:
        with self._lock:
            fresh = (
                self._collected_at is not None
                and self.clock() - self._collected_at < self.cache_seconds
            )
            if fresh:
                return None
            if self._running is None:
                self._running = threading.Event()
                threading.Thread(target=self._collect, args=(self._running,), daemon=True).start()
            return self._running

    def _collect(self, done: threading.Event) -> None:
        started = time.monotonic()
        try:
            status, problem = gather(self.settings, self.engine, self.client)
            code = EXIT_ERROR if problem is not None else exit_code(status)
            text = prometheus_text(status, code)
            failed = False
        except Exception as exc:  # a scrape must still answer. The class only: an
            # unexpected error's text may hold a provider URL with its key.
            say(f"status not computed: {type(exc).__name__} (run `glisk status` for details)")
            text, failed = "", True
        with self._lock:
            self._status_text = text
            self._collected_at = self.clock()
            self._duration = time.monotonic() - started
            self._collections += 1
            self._errors += int(failed)
            self._running = None
        done.set()

    def _counters_text(self) -> str:
        try:
            with self.engine.connect() as conn:
                series = counters.read_all(conn)
        except SQLAlchemyError:
            return ""  # the status part names the unreachable database
        return render(series)

    def _own_text(self) -> str:
        with self._lock:
            at, duration = self._collected_at, self._duration
            collections, errors = self._collections, self._errors
        rows: list[tuple[str, str, str, Any]] = [
            ("glisk_exporter_collections_total", "counter",
             "status computations finished", collections),
            ("glisk_exporter_collect_errors_total", "counter",
             "status computations that raised (the status gauges are then absent)", errors),
            ("glisk_exporter_collect_duration_seconds", "gauge",
             "how long the last status computation took", round(duration, 3)),
        ]  # fmt: skip
        if at is not None:
            rows.append(
                ("glisk_exporter_last_collect_timestamp_seconds", "gauge",
                 "Unix time at which the status gauges served were computed", round(at, 3))
            )  # fmt: skip
        lines = []
        for name, kind, help_, value in rows:
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"


def serve(exporter: Exporter, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server for /metrics (and /healthz: the process answers) on host:port; the
    caller runs serve_forever()."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, exporter.text().encode(), CONTENT_TYPE)
            elif path == "/healthz":
                self._answer(200, b"ok\n", "text/plain")
            else:
                self._answer(404, b"not found: the exporter serves /metrics and /healthz\n")

        def _answer(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # one line per scrape would drown the log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
