"""The FastAPI app. `app` is importable without any configuration (settings are read at
start-up, in the lifespan), so `import webhook_service.app` stays cheap and never loads
Dagster."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from glisk_pipeline.settings import Settings, load_settings
from webhook_service import logs
from webhook_service.deps import build_service
from webhook_service.handler import handle_delivery
from webhook_service.models import AlchemyDelivery
from webhook_service.routes import DELIVERY_PATH, router


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or load_settings()
        logs.configure(rejected_every_s=config.WEBHOOK_REJECTED_LOG_SECONDS)
        service = build_service(config)
        await service.open()
        app.state.service = service
        frozen = freeze_startup_objects()
        logs.log.info(
            "webhook sidecar ready",
            contract=service.contract,
            database=service.engine.dialect.name,
            signing_keys=len(service.signing_keys),
            duplicate_status=service.duplicate_status,
            frozen_objects=frozen,
        )
        yield
        logs.unauthenticated.flush()
        await service.close()

    app = _App(
        title="glisk webhook sidecar",
        summary="Alchemy Custom Webhook deliveries of BatchMinted logs into the mint tables",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(router)
    return app


def freeze_startup_objects() -> int:
    """Move everything alive after start-up (~110,000 objects: modules, FastAPI's routes
    and models, the pools) out of the collector's reach. A full collection in a worker
    otherwise walks all of it: under load those took 17-153 ms each (1.3-1.5 ms once
    frozen), stalling every delivery queued on that worker, which is most of the p99 at
    32 connections. Collect first, so start-up's garbage is freed, not kept for good.
    Returns how many objects it froze."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class _App(FastAPI):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A delivery goes straight to its handler; everything else through FastAPI.

        The delivery handler takes the raw request and its one dependency, the service, and
        answers every outcome itself (handler.py), so FastAPI's middleware stack, router and
        dependency solving add nothing to it but cost: ~120 us a delivery, and 10-17% of
        the sidecar's CPU per delivery under B2's load (bench.b2_compare, same run). What
        is skipped is inert for this route: no middleware is added, no exception handler
        or yield dependency is registered, and an exception that escapes the handler
        (a bug) is answered 500 and logged by uvicorn, as ServerErrorMiddleware would."""
        if scope["type"] == "http" and scope["path"] == DELIVERY_PATH and scope["method"] == "POST":
            response = await handle_delivery(Request(scope, receive), self.state.service)
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema plus the delivery model the raw-body route validates by hand."""
        if self.openapi_schema is None:
            schema = get_openapi(
                title=self.title, version=self.version, summary=self.summary, routes=self.routes
            )
            delivery = AlchemyDelivery.model_json_schema(
                by_alias=True, ref_template="#/components/schemas/{model}"
            )
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(delivery.pop("$defs", {}))
            schemas["AlchemyDelivery"] = delivery
            self.openapi_schema = schema
        return self.openapi_schema


app = create_app()
