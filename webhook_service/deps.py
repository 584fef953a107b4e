"""What the routes depend on, built once per worker process at start-up.

One engine per process: its pool is shared by the threadpool that runs the store calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import Engine

from glisk_pipeline.db.engine import engine_from_settings
from glisk_pipeline.db.migrate import head_revision
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.settings import Settings

# The sidecar refuses to start without these (one line naming the first missing one).
REQUIRED = ("ALCHEMY_WEBHOOK_SECRET", "GLISK_NFT_CONTRACT_ADDRESS", "GLISK_DEFAULT_AUTHOR_WALLET")

# Each worker's pool: DATABASE_POOL_SIZE (+ DATABASE_MAX_OVERFLOW in bursts). Waits and
# statements are capped well under Alchemy's 5 s delivery timeout, so a sick database
# answers 500 (retried later) instead of a timeout.
POOL_TIMEOUT_S = 2
PG_CONNECT_TIMEOUT_S = 2
PG_STATEMENT_TIMEOUT_MS = 3000


@dataclass(frozen=True)
class Service:
    settings: Settings
    engine: Engine
    store: MintStore
    signing_keys: tuple[bytes, ...]
    contract: str
    head_revision: str

    @property
    def duplicate_status(self) -> int:
        return self.settings.WEBHOOK_DUPLICATE_STATUS

    @property
    def max_body_bytes(self) -> int:
        return self.settings.WEBHOOK_MAX_BODY_BYTES


def check_settings(settings: Settings) -> None:
    """Raise ConfigError naming the first variable the sidecar cannot run without."""
    settings.require(*REQUIRED)


def build_service(settings: Settings) -> Service:
    check_settings(settings)
    kwargs: dict[str, object] = {"pool_timeout": POOL_TIMEOUT_S}
    if settings.DATABASE_URL.startswith("postgresql"):
        kwargs["connect_args"] = {
            "connect_timeout": PG_CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}",
        }
    engine = engine_from_settings(settings, **kwargs)
    return Service(
        settings=settings,
        engine=engine,
        store=MintStore(engine, settings.default_author_wallet, settings.GLISK_START_BLOCK),
        signing_keys=settings.webhook_signing_keys,
        contract=settings.contract_address,
        head_revision=head_revision(),
    )


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service  # set by the app's lifespan
    return service
