"""HTTP routes: thin, each hands its work to one function."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from webhook_service import metrics
from webhook_service.deps import Service, get_service
from webhook_service.handler import handle_delivery, json_response
from webhook_service.models import DuplicateBody, ErrorBody, HealthBody, SuccessBody

router = APIRouter()
# Answered ahead of FastAPI's routing by app.py's _App (its __call__ says why); the route
# below documents it and serves it wherever the app is mounted under a prefix.
DELIVERY_PATH = "/webhooks/alchemy"
ServiceDep = Annotated[Service, Depends(get_service)]


@router.post(
    DELIVERY_PATH,
    summary="Receive a signed Alchemy Custom Webhook (GraphQL) delivery",
    response_model=SuccessBody,
    responses={
        400: {"model": ErrorBody, "description": "INVALID_PAYLOAD: names the field"},
        401: {"model": ErrorBody, "description": "INVALID_SIGNATURE"},
        409: {
            "model": DuplicateBody | ErrorBody,
            "description": "every matching log already stored (or TOKEN_CONFLICT)",
        },
        413: {"model": ErrorBody, "description": "PAYLOAD_TOO_LARGE"},
        500: {"model": ErrorBody, "description": "INTERNAL_ERROR: database failure"},
    },
    # The body is read raw (the signature covers its exact bytes); app.py documents its
    # schema, AlchemyDelivery, in the OpenAPI document.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/AlchemyDelivery"}}
            },
        }
    },
)
async def alchemy_webhook(request: Request, service: ServiceDep) -> Response:
    return await handle_delivery(request, service)


@router.get("/healthz", response_model=HealthBody)
async def healthz() -> Response:
    return json_response(200, HealthBody(status="ok"))


@router.get("/readyz", response_model=HealthBody, responses={503: {"model": HealthBody}})
async def readyz(service: ServiceDep) -> Response:
    # cached per worker and never queued for a delivery's connection (readiness.py)
    verdict = await service.readiness.verdict()
    if not verdict.ready:
        return json_response(503, HealthBody(status="unavailable", detail=verdict.detail))
    return json_response(200, HealthBody(status="ok"))


@router.get("/metrics", response_class=Response)
def prometheus_metrics() -> Response:
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)
