"""The downstream contract: downstream's token columns, orphaned_tokens, updated_at kept by
the database, and glisk_store_delivery again (a reorg keeps token rows a worker moved on,
and new or orphaned token ids are announced on NOTIFY glisk_tokens)

See docs/downstream.md and glisk_pipeline/db/store/downstream.py. `updated_at` of a token
row is set by a trigger (its SQL is the store's: store/downstream.py): on PostgreSQL on
every update that changes the row, to now() (the changing transaction's time); on SQLite
on every update that does not set it itself, to the current time. Downgrading drops what
this adds but leaves the delivery function installed, which needs orphaned_tokens: a
database downgraded below 0005 must not take webhook deliveries until it is upgraded
again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from glisk_pipeline.db.store.downstream import (
    PG_TOUCH,
    PG_UNTOUCH,
    SQLITE_TOUCH,
    SQLITE_UNTOUCH,
)
from glisk_pipeline.db.store.webhook_pg import CREATE_FUNCTION

# The function body this migration was written for (sha256 of webhook_pg.BODY, stripped).
BODY_SHA256 = "efd7404ce8d07083ca3f6c96eacdb28051c2dbcab2260aebe801f5dcdfdfefa0"

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("image_url", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("generation_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("generation_error", sa.Text(), nullable=True))
    op.create_table(
        "orphaned_tokens",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("token_id", sa.BigInteger(), nullable=False),
        sa.Column("mint_event_id", sa.BigInteger(), nullable=False),
        sa.Column("minter_address", sa.String(length=42), nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mint_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("image_url", sa.Text(), nullable=True),
        sa.Column("generation_attempts", sa.Integer(), nullable=False),
        sa.Column("generation_error", sa.Text(), nullable=True),
        sa.Column(
            "orphaned_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orphaned_tokens")),
    )
    with op.batch_alter_table("orphaned_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orphaned_tokens_token_id"), ["token_id"])
    for statement in PG_TOUCH if pg else SQLITE_TOUCH:
        op.execute(statement)
    if pg:
        op.execute(CREATE_FUNCTION)


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for statement in PG_UNTOUCH if pg else SQLITE_UNTOUCH:
        op.execute(statement)
    with op.batch_alter_table("orphaned_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orphaned_tokens_token_id"))
    op.drop_table("orphaned_tokens")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_column("generation_error")
        batch_op.drop_column("generation_attempts")
        batch_op.drop_column("image_url")
