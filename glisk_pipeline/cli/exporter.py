"""`glisk exporter [--host H] [--port P] [--cache-seconds S] [--timeout-seconds T]`: serve
`glisk status`'s gauges and the runs' counters on http://H:P/metrics for Prometheus
(glisk_pipeline/exporter.py). Runs until stopped (SIGTERM or Ctrl-C: exit 0)."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from glisk_pipeline.cli.common import ArgumentParser, command_settings, error, positive_int
from glisk_pipeline.cli.status import status_client
from glisk_pipeline.db.engine import engine_from_settings
from glisk_pipeline.settings import ConfigError

DEFAULT_PORT = 9464  # OpenTelemetry's Prometheus exporter port: not node_exporter's 9100


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="glisk exporter", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    parser.add_argument(
        "--cache-seconds",
        type=positive_int,
        default=30,
        help="compute the status at most once per this many seconds (default 30)",
    )
    parser.add_argument(
        "--timeout-seconds",
        type=positive_int,
        default=8,
        help="a scrape waits at most this long for a computation, then gets the last one",
    )
    args = parser.parse_args(argv)
    from glisk_pipeline.exporter import Exporter, say, serve

    try:
        settings = command_settings()
        client = status_client(settings)
    except ConfigError as exc:
        return error(f"config error: {exc}")
    engine = engine_from_settings(settings)
    exporter = Exporter(
        settings,
        engine,
        client,
        cache_seconds=args.cache_seconds,
        timeout_seconds=args.timeout_seconds,
    )
    try:
        server = serve(exporter, args.host, args.port)
    except OSError as exc:
        return error(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    say(f"serving /metrics on http://{args.host}:{server.server_address[1]}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        client.close()
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
