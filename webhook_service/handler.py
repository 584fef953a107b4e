"""One delivery, from raw bytes to the answer Alchemy sees.

Order matters: size (413) -> signature (401) -> content type and JSON (400) -> filter ->
store. Nothing an unauthenticated sender controls reaches the JSON parser or the database.
On PostgreSQL the store call is one awaited call of the delivery function on the async
pool; on SQLite the synchronous store runs in the threadpool. Either way it has
WEBHOOK_ANSWER_BUDGET_SECONDS: past it the delivery is answered 500 (Alchemy retries) and
the call is abandoned (its one statement commits whole or not at all).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TypeVar, cast

import orjson
import psycopg
import structlog
from fastapi import Request, Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from glisk_pipeline.db.heartbeat import UPSERT_PSYCOPG, heartbeat_params, record_heartbeat
from glisk_pipeline.db.store import StoreError, StoreResult, TokenConflictError
from webhook_service import logs, metrics
from webhook_service.budget import OverBudget, within_budget
from webhook_service.delivery import BlockDelivery, TooManyTokens, interpret
from webhook_service.deps import Service
from webhook_service.logs import log
from webhook_service.models import (
    DuplicateBody,
    ErrorBody,
    ErrorCode,
    LogRef,
    PayloadError,
    StoredEvent,
    SuccessBody,
    parse_delivery,
)
from webhook_service.signature import SIGNATURE_HEADER, verify

# Refusals anyone can provoke, before the signature is known good: their log lines are
# throttled (logs.unauthenticated), their metric is exact.
UNAUTHENTICATED = frozenset({"unauthorized", "too_large", "disconnected"})
T = TypeVar("T")
# Kept from the answer budget for writing the answer after the database gave up.
ANSWER_MARGIN_S = 0.1
# The database's time is never less than this, however long the body took to arrive: a
# sender slower than the budget (but within the read timeout) is not a database failure,
# and a 500 must only ever mean one. Its answer is late for Alchemy then anyway.
MIN_STORE_S = 1.0


class Rejected(Exception):
    """Answer with an error body; `outcome` labels the metric and the log line."""

    def __init__(self, status: int, code: ErrorCode, message: str, outcome: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.outcome = status, code, message, outcome


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: BaseModel
    outcome: str


def json_response(status: int, body: BaseModel) -> Response:
    return Response(orjson.dumps(body.model_dump()), status, media_type="application/json")


async def handle_delivery(request: Request, service: Service) -> Response:
    started = time.perf_counter()
    structlog.contextvars.clear_contextvars()
    try:
        answer = await _handle(request, service, started)
    except Rejected as exc:
        answer = Answer(exc.status, ErrorBody(message=exc.message, code=exc.code), exc.outcome)
        if exc.outcome in UNAUTHENTICATED:
            logs.unauthenticated.warning(
                "delivery rejected", outcome=exc.outcome, status=exc.status, reason=exc.message
            )
        else:
            level = log.error if exc.status >= 500 else log.warning
            level("delivery rejected", outcome=exc.outcome, status=exc.status, reason=exc.message)
    else:  # every answered delivery, duplicates (409 or 200) included, logs its outcome once
        ms = round((time.perf_counter() - started) * 1e3, 2)
        log.info("delivery", outcome=answer.outcome, status=answer.status, ms=ms)
    metrics.observe_outcome(answer.outcome, answer.status)
    metrics.LATENCY.observe(time.perf_counter() - started)
    return json_response(answer.status, answer.body)


async def _handle(request: Request, service: Service, started: float) -> Answer:
    body = await read_body(request, service.max_body_bytes)
    signature = request.headers.get(SIGNATURE_HEADER)
    if not verify(body, signature, service.signing_keys):
        # Say whether a signature came and how long it was; never its value.
        structlog.contextvars.bind_contextvars(
            signature_present=bool(signature), signature_len=len(signature or "")
        )
        raise Rejected(401, "INVALID_SIGNATURE", "invalid signature", "unauthorized")

    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise Rejected(400, "INVALID_PAYLOAD", "content-type must be application/json", "invalid")
    try:
        delivery = parse_delivery(body)
        structlog.contextvars.bind_contextvars(
            webhook_id=delivery.webhookId,
            event_id=delivery.id,
            block_number=delivery.event.data.block.number,
        )
        wanted = interpret(delivery, service.contract, service.max_tokens_per_delivery)
    except TooManyTokens as exc:
        raise Rejected(413, "PAYLOAD_TOO_LARGE", str(exc), "too_many_tokens") from None
    except PayloadError as exc:
        raise Rejected(400, "INVALID_PAYLOAD", str(exc), "invalid") from None

    try:
        # what is left of the answer budget, less the time it takes to answer
        left = service.answer_budget_s - ANSWER_MARGIN_S - (time.perf_counter() - started)
        left = max(left, min(MIN_STORE_S, service.answer_budget_s))
        asked = time.perf_counter()
        result = await within_budget(_store(service, wanted), left)
        # the database's part of `ms` (the call, until this worker resumes): what is left
        # of the delivery line's `ms` is the handler's own work
        structlog.contextvars.bind_contextvars(db_ms=round((time.perf_counter() - asked) * 1e3, 2))
    except OverBudget:
        log.error("database did not answer in time", budget_s=service.answer_budget_s)
        service.readiness.invalidate()
        raise Rejected(500, "INTERNAL_ERROR", "database unavailable", "error") from None
    except TokenConflictError as exc:
        # Another live event holds these token ids: typically a reorg whose later blocks
        # have not been re-delivered yet. Not a duplicate: a non-200 makes Alchemy retry.
        raise Rejected(409, "TOKEN_CONFLICT", str(exc), "conflict") from None
    except (SQLAlchemyError, StoreError) as exc:
        log.error("database failure", error=type(exc).__name__)
        service.readiness.invalidate()
        raise Rejected(500, "INTERNAL_ERROR", "database unavailable", "error") from None
    return _answer(wanted, result, service.duplicate_status)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past `limit` bytes: first by Content-Length, then by
    counting while streaming (chunked bodies have no length), never buffering more."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, "PAYLOAD_TOO_LARGE", f"body over {limit} bytes", "too_large")
    body = bytearray()  # one buffer: a large one is one mmap, returned to the OS when freed
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > limit:
                raise Rejected(413, "PAYLOAD_TOO_LARGE", f"body over {limit} bytes", "too_large")
            body += chunk
    except ClientDisconnect:
        # The sender hung up, or the protocol's read deadline cut a stalled body off (and
        # already answered 408): nobody reads this answer; it labels the metric and log.
        raise Rejected(400, "INVALID_PAYLOAD", "body not received", "disconnected") from None
    return bytes(body)


async def _store(service: Service, wanted: BlockDelivery) -> StoreResult:
    block = _named_block(wanted)
    if block is None:
        # No block to claim (webhook_blocks keeps no trace of it): the arrival is written
        # on its own, so the webhook counts as alive (glisk_pipeline/db/heartbeat.py).
        await _note_unnamed_delivery(service)
        if not wanted.records:  # a heartbeat without block fields: nothing else to do
            return StoreResult()
    if service.deliveries is None:  # SQLite: the synchronous store, in the threadpool
        return await run_in_threadpool(_store_sync, service, wanted, block)
    if block is None:  # PostgreSQL: on the event loop
        return await service.deliveries.store(wanted.records)
    number, block_hash, sequence_number = block
    return await service.deliveries.store_block_delivery(
        block_number=number,
        block_hash=block_hash,
        sequence_number=sequence_number,
        records=wanted.records,
        webhook_id=wanted.webhook_id,
        created_at=wanted.created_at,
    )


async def _note_unnamed_delivery(service: Service) -> None:
    if service.deliveries is None:
        await run_in_threadpool(record_heartbeat, service.engine)
        return
    try:
        async with service.deliveries.pool.connection() as conn:
            await conn.execute(UPSERT_PSYCOPG, heartbeat_params())
    except psycopg.Error as exc:  # a pool timeout included: answered 500, retried
        raise StoreError(f"heartbeat not recorded: {type(exc).__name__}") from None


def _named_block(wanted: BlockDelivery) -> tuple[int, str, int] | None:
    """(number, hash, sequenceNumber), or None: without them there is nothing to order
    reorgs by, and the logs are stored idempotently."""
    if wanted.block_number is None or wanted.block_hash is None:
        return None
    if wanted.sequence_number is None:
        return None
    return wanted.block_number, wanted.block_hash, wanted.sequence_number


def _store_sync(
    service: Service, wanted: BlockDelivery, block: tuple[int, str, int] | None
) -> StoreResult:
    if block is None:  # unordered: add what is missing, undo no removal, never when final
        return service.store.store_unordered_delivery(wanted.records)
    # Also for deliveries without matches: a re-sent block with no mints still has to
    # mark the rows of the hash it replaces removed.
    number, block_hash, sequence_number = block
    return service.store.store_block_delivery(
        block_number=number,
        block_hash=block_hash,
        sequence_number=sequence_number,
        records=wanted.records,
        webhook_id=wanted.webhook_id,
        created_at=wanted.created_at,
    )


def _answer(wanted: BlockDelivery, result: StoreResult, duplicate_status: int) -> Answer:
    fresh = {(e.tx_hash, e.log_index) for e in result.events if e.outcome != "duplicate"}
    metrics.observe_delivery(wanted.block_number, (r for r in wanted.records if r.key in fresh))
    if result.stale:
        message = f"stale delivery: {result.stale_reason}"
        return Answer(200, SuccessBody(message=message), "stale")
    # The store orders by (tx_hash, log_index) for its locks; answer in block order.
    ordered = sorted(result.events, key=lambda e: e.log_index)
    new = [e for e in ordered if e.outcome != "duplicate"]
    dups = [
        LogRef(tx_hash=e.tx_hash, log_index=e.log_index)
        for e in ordered
        if e.outcome == "duplicate"
    ]
    for e in new:
        log.info(
            "mint stored",
            tx_hash=e.tx_hash,
            log_index=e.log_index,
            token_ids=list(e.token_ids),
            outcome=e.outcome,
        )
    metrics.LOGS_STORED.inc(len(new))
    metrics.DUPLICATES.inc(len(dups))
    if not wanted.records:
        message = "no matching events"
        if result.removed:
            message += f"; {result.removed} events of the replaced block removed"
        return Answer(200, SuccessBody(message=message, removed=result.removed), "no_match")
    if not new:
        first = dups[0]
        body = DuplicateBody(tx_hash=first.tx_hash, log_index=first.log_index, duplicates=dups)
        return Answer(duplicate_status, body, "duplicate")
    events = [
        StoredEvent(
            # set for every stored row (and StoredEvent would reject a None)
            mint_event_id=cast(int, e.mint_event_id),
            tx_hash=e.tx_hash,
            log_index=e.log_index,
            token_ids=list(e.token_ids),
        )
        for e in new
    ]
    message = f"{len(events)} events stored" + (f", {len(dups)} already stored" if dups else "")
    stored = SuccessBody(message=message, events=events, duplicates=dups, removed=result.removed)
    return Answer(200, stored, "stored")
