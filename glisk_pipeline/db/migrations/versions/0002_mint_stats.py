"""mint_stats: per-day, per-author mint statistics (written by the Dagster asset)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# exact uint256: NUMERIC on PostgreSQL, TEXT on SQLite (NUMERIC affinity loses digits)
WEI = sa.Numeric(precision=78, scale=0).with_variant(sa.String(length=78), "sqlite")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mint_stats",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("author_wallet", sa.String(length=42), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("minters", sa.Integer(), nullable=False),
        sa.Column("total_paid", WEI, nullable=False),
        sa.Column("first_block", sa.BigInteger(), nullable=False),
        sa.Column("last_block", sa.BigInteger(), nullable=False),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("day", "author_wallet", name=op.f("pk_mint_stats")),
    )


def downgrade() -> None:
    op.drop_table("mint_stats")
