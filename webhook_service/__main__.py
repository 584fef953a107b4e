"""`python -m webhook_service`: uvicorn with host, port and workers from the settings.

Configuration is checked here first, so a missing variable or an address already in use
stops the start with one line naming it (exit code 2) instead of a traceback from every
worker.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile

import uvicorn

from glisk_pipeline.settings import ConfigError, load_settings
from webhook_service.deps import check_settings
from webhook_service.metrics import MULTIPROC_ENV


def main() -> int:
    try:
        settings = load_settings()
        check_settings(settings)
        check_listen_address(settings.WEBHOOK_HOST, settings.WEBHOOK_PORT)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    own_dir = None
    if settings.WEBHOOK_WORKERS > 1 and not os.environ.get(MULTIPROC_ENV):
        # Each worker writes its metrics here; /metrics in any worker sums them all. Set
        # before the workers are spawned, so they inherit it; fresh, so no stale counts.
        own_dir = tempfile.mkdtemp(prefix="glisk-webhook-metrics-")
        os.environ[MULTIPROC_ENV] = own_dir
    try:
        uvicorn.run(
            "webhook_service.app:app",
            host=settings.WEBHOOK_HOST,
            port=settings.WEBHOOK_PORT,
            workers=settings.WEBHOOK_WORKERS,
            access_log=False,  # one structlog line per delivery replaces it
            log_level="warning",
            proxy_headers=False,
            # httptools with the limits of a public endpoint: head size (WEBHOOK_MAX_HEADER_BYTES,
            # enforced by the protocol, not uvicorn) and read deadlines (protocol.py says why).
            http="webhook_service.protocol:DeadlineHttpToolsProtocol",
            timeout_keep_alive=settings.WEBHOOK_KEEP_ALIVE_SECONDS,
            # No WebSocket: an upgrade request is served as plain HTTP. Handed to uvicorn's
            # WebSocket protocol, its connection would leave ours without connection_lost,
            # and the connection book (admission.py) would never release its slot.
            ws="none",
            # WEBHOOK_MAX_CONNECTIONS and the per-client cap are enforced at accept by the
            # protocol (webhook_service/admission.py), not by uvicorn's limit_concurrency.
        )
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


def check_listen_address(host: str, port: int) -> None:
    """Bind and release the address first, as uvicorn will (SO_REUSEADDR), so a port in
    use stops start-up with one line, not a worker dying after "ready" with Errno 98."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = f"cannot listen on {host}:{port} ({reason})"
        raise ConfigError(f"WEBHOOK_HOST/WEBHOOK_PORT: {where}") from None


if __name__ == "__main__":
    sys.exit(main())
