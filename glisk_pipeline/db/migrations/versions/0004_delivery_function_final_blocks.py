"""glisk_store_delivery again: another webhook's agreeing view moves a log from another
block only if it is newer than that block's view, a delivery without a sequenceNumber is
refused for a final block (under the shared final lock), and no delivery moves a log out
of a final block

The function's SQL is the store's (glisk_pipeline/db/store/webhook_pg.py); this installs
its current text, as 0003 did. Downgrading leaves it installed: the older text is not
kept, and it could lose a mint or add a non-canonical log to a final block.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from glisk_pipeline.db.store.webhook_pg import CREATE_FUNCTION

# The function body this migration was written for (sha256 of webhook_pg.BODY, stripped).
# 0003 installs the current text too, so only this pin makes a change to the function's
# SQL fail a test until a new migration installs it (tests/test_store_webhook_pg.py).
BODY_SHA256 = "cd14b0329a849fb71f886f73b200b21dc85a373f0e65c81d6b74715c6a70eafb"

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE_FUNCTION)


def downgrade() -> None:
    pass  # see the module docstring
