"""Bodies in and out of POST /webhooks/alchemy: pydantic models only.

In: Alchemy's Custom Webhook (GraphQL) delivery. Each log in `event.data.block.logs` is
either the GraphQL shape (`account.address`, `index`, `transaction{hash,status}`) or the
eth_getLogs shape (`address`, `transactionHash`, hex `logIndex`, `removed`), told apart by
its keys. Parsing is pydantic's Rust JSON parser straight from the raw bytes: one pass,
and `sequenceNumber` (a string above 2^53, or a JSON integer of any size) stays exact.
What a delivery means for the store is delivery.py's business.

Bounds on numbers are the database's column ranges: an out-of-range value must be a 400
here, not a database error (a 500) later.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
)

from glisk_pipeline.chain.decoder import INT32_MAX, INT64_MAX, MAX_TIMESTAMP

# The database columns' ranges, as the decoder knows them (one place).
MAX_BIGINT = INT64_MAX  # BIGINT columns: block_number, start_token_id
MAX_INT = INT32_MAX  # INTEGER column: log_index
MAX_SEQUENCE = 10**78 - 1  # NUMERIC(78, 0)
MAX_WEBHOOK_ID = 128  # VARCHAR(128)


class PayloadError(ValueError):
    """A delivery that is not a well-formed Alchemy GraphQL delivery; names the field."""


def _quantity(value: Any) -> Any:
    """JSON-RPC quantities are hex strings; GraphQL sends JSON integers. Accept both."""
    if isinstance(value, str):
        if not HEX_QUANTITY.fullmatch(value):
            raise ValueError("expected an integer or a 0x-hex quantity")
        return int(value, 16)
    return value


def _digits(value: Any) -> Any:
    """sequenceNumber: a decimal string (as Alchemy sends it) or an integer; nothing else."""
    if isinstance(value, str):
        if not DECIMAL.fullmatch(value):
            raise ValueError("expected decimal digits")
        return int(value)
    return value


HEX_QUANTITY = re.compile(r"0[xX][0-9a-fA-F]{1,20}")
DECIMAL = re.compile(r"[0-9]{1,78}")


def _quantity_schema(maximum: int) -> WithJsonSchema:
    """A JSON integer or a 0x-hex string, 0..maximum: the published schema says both."""
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": maximum},
                {"type": "string", "pattern": f"^{HEX_QUANTITY.pattern}$"},
            ]
        }
    )


# Quantities of the eth_getLogs log shape, each bounded by its column.
LogIndexQuantity = Annotated[
    int, BeforeValidator(_quantity), Field(ge=0, le=MAX_INT), _quantity_schema(MAX_INT)
]
BlockQuantity = Annotated[
    int, BeforeValidator(_quantity), Field(ge=0, le=MAX_BIGINT), _quantity_schema(MAX_BIGINT)
]
TimestampQuantity = Annotated[
    int,
    BeforeValidator(_quantity),
    Field(ge=0, le=MAX_TIMESTAMP),
    _quantity_schema(MAX_TIMESTAMP),
]


# Alchemy sends sequenceNumber as a string of digits (it exceeds 2^53); an integer is
# accepted too. Exact either way; NUMERIC(78, 0) in the database.
SequenceNumber = Annotated[
    int,
    BeforeValidator(_digits),
    Field(ge=0, le=MAX_SEQUENCE),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": f"^{DECIMAL.pattern}$"},
                {"type": "integer", "minimum": 0, "maximum": MAX_SEQUENCE},
            ]
        }
    ),
]
Hash32 = Annotated[str, Field(pattern=r"^0[xX][0-9a-fA-F]{64}$")]


def _storable_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character, which no text column stores")
    return value


# webhook_blocks.webhook_id, VARCHAR(128): at most 128 characters and no NUL.
WebhookId = Annotated[
    str,
    Field(max_length=MAX_WEBHOOK_ID, json_schema_extra={"pattern": "^[^\\u0000]*$"}),
    AfterValidator(_storable_text),
]


def _utc_representable(value: datetime) -> datetime:
    # The store compares createdAt in UTC; 0001-01-01T00:00+01:00 has no UTC datetime.
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("outside the range of a UTC time") from None
    return value


CreatedAt = Annotated[datetime, AfterValidator(_utc_representable)]


class _In(BaseModel):
    # Alchemy adds fields over time; unknown ones are ignored, known ones are checked.
    # Strict: a JSON value of another type than the published schema's is refused (no
    # `"removed": 0` for false, no `"index": "5"` for 5), so what the schema describes is
    # exactly what is accepted.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class Account(_In):
    address: str


class GraphqlTransaction(_In):
    hash: str
    index: int | None = None
    from_: Account | None = Field(default=None, alias="from")
    to: Account | None = None
    status: int  # required: without it a failed transaction could not be told apart


class GraphqlLog(_In):
    account: Account
    topics: list[str]
    data: str
    index: int = Field(ge=0, le=MAX_INT)
    transaction: GraphqlTransaction
    # Alchemy's GraphQL logs carry no `removed`; one that says true (a query or relay that
    # adds it) is a log of a reorganised block and is never stored as live.
    removed: bool = False


class RpcLog(_In):
    """eth_getLogs shape. Only successful transactions emit logs there, so no status."""

    address: str
    topics: list[str]
    data: str
    transactionHash: str
    logIndex: LogIndexQuantity
    blockNumber: BlockQuantity | None = None
    blockHash: Hash32 | None = None
    blockTimestamp: TimestampQuantity | None = None
    removed: bool = False


def _log_shape(value: Any) -> str | None:
    if isinstance(value, dict):
        return "rpc" if "account" not in value and "address" in value else "graphql"
    return "graphql"  # lets pydantic report "account: field required" for a non-object


AnyLog = Annotated[
    Annotated[GraphqlLog, Tag("graphql")] | Annotated[RpcLog, Tag("rpc")],
    Discriminator(_log_shape),
]


class Block(_In):
    number: int | None = Field(default=None, ge=0, le=MAX_BIGINT)
    hash: Hash32 | None = None
    timestamp: int | None = Field(default=None, ge=0, le=MAX_TIMESTAMP)
    logs: list[AnyLog] = Field(default_factory=list)


class EventData(_In):
    block: Block


class Event(_In):
    data: EventData
    sequenceNumber: SequenceNumber | None = None


class AlchemyDelivery(_In):
    webhookId: WebhookId
    id: str
    createdAt: CreatedAt | None = None  # orders deliveries of different webhooks
    type: Literal["GRAPHQL"]
    event: Event


def parse_delivery(body: bytes) -> AlchemyDelivery:
    """Validate the raw JSON; the error names the first offending field."""
    try:
        return AlchemyDelivery.model_validate_json(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        if err["type"] == "json_invalid":
            raise PayloadError(f"body: not valid JSON ({err['msg']})") from None
        # Drop the union tag ("graphql"/"rpc") from the path: it is not a field name.
        loc = ".".join(str(p) for p in err["loc"] if p not in ("graphql", "rpc"))
        raise PayloadError(f"{loc or 'body'}: {err['msg']}") from None


# --- bodies out -----------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoredEvent(_Out):
    mint_event_id: int
    tx_hash: str
    log_index: int
    token_ids: list[int]


class LogRef(_Out):
    tx_hash: str
    log_index: int


class SuccessBody(_Out):
    status: Literal["success"] = "success"
    message: str
    events: list[StoredEvent] = Field(default_factory=list)
    duplicates: list[LogRef] = Field(default_factory=list)
    removed: int = Field(default=0, description="rows of a replaced block marked removed")


class DuplicateBody(_Out):
    status: Literal["duplicate"] = "duplicate"
    message: str = "Event already processed"
    tx_hash: str
    log_index: int
    duplicates: list[LogRef] = Field(default_factory=list)


ErrorCode = Literal[
    "INVALID_SIGNATURE", "INVALID_PAYLOAD", "PAYLOAD_TOO_LARGE", "TOKEN_CONFLICT", "INTERNAL_ERROR"
]


class ErrorBody(_Out):
    status: Literal["error"] = "error"
    message: str
    code: ErrorCode


class HealthBody(_Out):
    status: Literal["ok", "unavailable"]
    detail: str | None = None
