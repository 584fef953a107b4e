"""glisk_store_delivery(doc jsonb): a webhook delivery in one server-side call (PostgreSQL)

The function's SQL is the store's (glisk_pipeline/db/store/webhook_pg.py: only the store
writes mint_events and tokens); a test checks that the installed function equals it, so a
change to it needs a new migration that installs it again. SQLite has no functions: the
store runs the same steps as statements there.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from glisk_pipeline.db.store.webhook_pg import CREATE_FUNCTION, DROP_FUNCTION

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP_FUNCTION)
