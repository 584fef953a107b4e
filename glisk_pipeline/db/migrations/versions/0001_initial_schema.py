"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# exact uint256: NUMERIC on PostgreSQL, TEXT on SQLite (NUMERIC affinity loses digits)
WEI = sa.Numeric(precision=78, scale=0).with_variant(sa.String(length=78), "sqlite")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authors",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("wallet_address", sa.String(length=42), nullable=False),
        sa.Column("twitter_handle", sa.Text(), nullable=True),
        sa.Column("farcaster_handle", sa.Text(), nullable=True),
        sa.Column("prompt_text", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "wallet_address = lower(wallet_address)", name=op.f("ck_authors_wallet_lowercase")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authors")),
        sa.UniqueConstraint("wallet_address", name=op.f("uq_authors_wallet_address")),
    )
    op.create_table(
        "mint_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("block_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contract_address", sa.String(length=42), nullable=False),
        sa.Column("minter", sa.String(length=42), nullable=False),
        sa.Column("author_wallet", sa.String(length=42), nullable=False),
        sa.Column("start_token_id", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("total_paid", WEI, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column(
            "detected_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("removed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.CheckConstraint(
            "source IN ('webhook', 'backfill')", name=op.f("ck_mint_events_source_known")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_mint_events_quantity_positive")),
        sa.CheckConstraint(
            "tx_hash = lower(tx_hash) AND block_hash = lower(block_hash) "
            "AND minter = lower(minter) AND author_wallet = lower(author_wallet) "
            "AND contract_address = lower(contract_address)",
            name=op.f("ck_mint_events_hex_lowercase"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mint_events")),
        sa.UniqueConstraint("tx_hash", "log_index", name=op.f("uq_mint_events_tx_hash_log_index")),
    )
    with op.batch_alter_table("mint_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mint_events_block_number"), ["block_number"], unique=False
        )

    op.create_table(
        "processed_ranges",
        sa.Column("start_block", sa.BigInteger(), nullable=False),
        sa.Column("end_block", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "end_block >= start_block", name=op.f("ck_processed_ranges_range_ordered")
        ),
        sa.PrimaryKeyConstraint("start_block", name=op.f("pk_processed_ranges")),
    )
    with op.batch_alter_table("processed_ranges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_processed_ranges_end_block"), ["end_block"])
    op.create_table(
        "system_state",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_system_state")),
    )
    op.create_table(
        "webhook_blocks",
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("webhook_id", sa.String(length=128), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("sequence_number", WEI, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("block_number", name=op.f("pk_webhook_blocks")),
    )
    op.create_table(
        "tokens",
        sa.Column("token_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("mint_event_id", sa.BigInteger(), nullable=False),
        sa.Column("minter_address", sa.String(length=42), nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="detected", nullable=False),
        sa.Column("mint_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('detected', 'generating', 'uploading', 'ready', 'revealed', 'failed')",
            name=op.f("ck_tokens_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["mint_event_id"],
            ["mint_events.id"],
            name=op.f("fk_tokens_mint_event_id_mint_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_tokens")),
    )
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tokens_status"), ["status"])


def downgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tokens_status"))

    op.drop_table("tokens")
    op.drop_table("webhook_blocks")
    op.drop_table("system_state")
    with op.batch_alter_table("processed_ranges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_processed_ranges_end_block"))
    op.drop_table("processed_ranges")
    with op.batch_alter_table("mint_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mint_events_block_number"))

    op.drop_table("mint_events")
    op.drop_table("authors")
