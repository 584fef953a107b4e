"""Tables shared by every face. Migrations (db/migrations) create them; this module is
what the code reads. A test checks that the two never drift apart.

Addresses and hashes are lowercase 0x-hex everywhere; CHECK constraints hold every writer
to it, so a case-insensitive lookup is a plain equality on an index.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Wei(TypeDecorator[int]):
    """uint256, exact: NUMERIC(78,0) on PostgreSQL; 78-digit zero-padded TEXT on SQLite,
    whose NUMERIC affinity silently turns integers above 2^63 into floats. Reads back as
    int."""

    impl = Numeric(78, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(78))
        return dialect.type_descriptor(Numeric(78, 0))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            # zero-padded to a fixed width, so that text order is numeric order
            # (sequenceNumber comparisons happen in SQL)
            return str(int(value)).zfill(78)
        return Decimal(int(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


# The values the CHECK constraints below allow (the one place they are listed).
TOKEN_STATUSES = ("detected", "generating", "uploading", "ready", "revealed", "failed")
SOURCES = ("webhook", "backfill")


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

authors = Table(
    "authors",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("wallet_address", String(42), nullable=False, unique=True),
    Column("twitter_handle", Text),
    Column("farcaster_handle", Text),
    Column("prompt_text", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("wallet_address = lower(wallet_address)", name="wallet_lowercase"),
)

mint_events = Table(
    "mint_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("tx_hash", String(66), nullable=False),
    Column("log_index", Integer, nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("block_hash", String(66), nullable=False),
    Column("block_timestamp", DateTime(timezone=True), nullable=False),
    Column("contract_address", String(42), nullable=False),
    Column("minter", String(42), nullable=False),
    Column("author_wallet", String(42), nullable=False),
    Column("start_token_id", BigInteger, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("total_paid", Wei(), nullable=False),
    Column("source", String(16), nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("removed", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("tx_hash", "log_index"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    CheckConstraint(f"source IN ({_listed(SOURCES)})", name="source_known"),
    CheckConstraint(
        "tx_hash = lower(tx_hash) AND block_hash = lower(block_hash) "
        "AND minter = lower(minter) AND author_wallet = lower(author_wallet) "
        "AND contract_address = lower(contract_address)",
        name="hex_lowercase",
    ),
    Index(None, "block_number"),
)

# THE DOWNSTREAM CONTRACT (docs/downstream.md). The index is the only writer of authors,
# mint_events, processed_ranges, system_state, webhook_blocks, orphaned_tokens (the store,
# glisk_pipeline/db/store/) and mint_stats (its asset), and of these tokens columns:
# token_id, mint_event_id, minter_address, author_id, mint_timestamp. It inserts token
# rows as `detected` and never changes `status` afterwards.
# The workers downstream (image generation, upload, reveal) own `status` after insert and
# DOWNSTREAM_COLUMNS; `updated_at` is set by the database on every update (a trigger on
# both dialects, store/downstream.py, installed by migration 0005). Status transitions,
# each made by a worker:
#   detected -> generating (claimed: FOR UPDATE SKIP LOCKED, only rows whose mint_events
#   row is not removed), generating -> uploading -> ready -> revealed, generating or
#   uploading -> failed, failed -> detected (a retry), generating -> detected (a worker
#   resetting rows it left stuck at start-up).
# A reorg deletes a removed mint's token rows only while they are `detected`; any other
# row is kept, orphaned (its mint_events row has removed = true: the mark is on the row
# only the store writes, so marking never waits for a worker's lock); the same log coming
# back revives the mint and leaves the row untouched. When the winning fork's mint takes a
# kept row's id, the row moves to orphaned_tokens. Orphans are the operator's to resolve
# (`glisk status` fails naming them). See store/downstream.py.
DOWNSTREAM_COLUMNS = ("image_url", "generation_attempts", "generation_error")

# token_id is the key (no surrogate id: one index less on the hottest insert). author_id
# has no FOREIGN KEY: its per-row check cost 25% of a bulk insert (206 ms per 60k rows,
# measured), and only the store writes it, always from an existing authors row; authors
# are never deleted.
tokens = Table(
    "tokens",
    metadata,
    Column("token_id", BigInteger, primary_key=True, autoincrement=False),
    # No index: tokens of an event are found by their key range (start_token_id ..
    # + quantity - 1), and an index here costs every insert ~8% (measured).
    Column(
        "mint_event_id",
        BigInteger,
        ForeignKey("mint_events.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("minter_address", String(42), nullable=False),
    Column("author_id", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, server_default="detected"),
    Column("mint_timestamp", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # downstream's (DOWNSTREAM_COLUMNS): never written by the store
    Column("image_url", Text),
    Column("generation_attempts", Integer, nullable=False, server_default="0"),
    Column("generation_error", Text),
    CheckConstraint(
        f"status IN ({_listed(TOKEN_STATUSES)})",
        name="status_known",
    ),
    Index(None, "status"),
)

# Token rows a worker had moved on whose id the winning fork's mint took (see the
# contract above): the row as it was, and when it moved here. The operator resolves them
# (undo the work downstream, then delete the row).
orphaned_tokens = Table(
    "orphaned_tokens",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("token_id", BigInteger, nullable=False),
    Column("mint_event_id", BigInteger, nullable=False),
    Column("minter_address", String(42), nullable=False),
    Column("author_id", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("mint_timestamp", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("image_url", Text),
    Column("generation_attempts", Integer, nullable=False),
    Column("generation_error", Text),
    Column("orphaned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(None, "token_id"),
)

system_state = Table(
    "system_state",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Block ranges whose logs were fetched and stored (backfill asset and CLI); the highest
# contiguous end from GLISK_START_BLOCK is system_state.last_processed_block.
processed_ranges = Table(
    "processed_ranges",
    metadata,
    Column("start_block", BigInteger, primary_key=True),
    Column("end_block", BigInteger, nullable=False),
    Column("events", Integer, nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("end_block >= start_block", name="range_ordered"),
    Index(None, "end_block"),  # "is block N inside a processed range?" per delivery
)

# The webhook delivery applied for each block: a reorg re-sends a block number with a new
# hash; within one webhook a higher sequenceNumber is newer, across webhooks (each numbers
# its own deliveries) Alchemy's createdAt is. An older view arriving late must not win.
webhook_blocks = Table(
    "webhook_blocks",
    metadata,
    Column("block_number", BigInteger, primary_key=True),
    Column("webhook_id", String(128), nullable=False),
    Column("block_hash", String(66), nullable=False),
    Column("sequence_number", Wei(), nullable=False),
    Column("created_at", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Mint statistics per (UTC day, prompt author), rebuilt from the live mint_events rows by
# the Dagster asset `mint_stats` (pandas); per-author and per-day totals are sums over it.
# Read-only for everyone else: the asset replaces its contents in one transaction.
mint_stats = Table(
    "mint_stats",
    metadata,
    Column("day", Date, primary_key=True),
    Column("author_wallet", String(42), primary_key=True),
    Column("events", Integer, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("minters", Integer, nullable=False),
    Column("total_paid", Wei(), nullable=False),
    Column("first_block", BigInteger, nullable=False),
    Column("last_block", BigInteger, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

LAST_PROCESSED_BLOCK = "last_processed_block"
