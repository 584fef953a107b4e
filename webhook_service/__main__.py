"""`python -m webhook_service`: uvicorn with host, port and workers from the settings.

Configuration is checked here first, so a missing variable stops the start with one line
naming it (exit code 2) instead of a traceback from every worker.
"""

from __future__ import annotations

import os
import shutil
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
        )
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
