"""glisk_store_delivery again: another webhook's view agreeing with the applied hash only
adds missing logs (a REPEAT), a delivery without a sequenceNumber is refused for a final
block under the shared final lock, and no delivery moves a log out of a final block

The function's SQL is the store's (glisk_pipeline/db/store/webhook_pg.py); this installs
its current text, as 0003 did. Downgrading leaves it installed: the older text is not
kept, and the rule it had let a late retry remove a canonical mint.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from glisk_pipeline.db.store.webhook_pg import CREATE_FUNCTION

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE_FUNCTION)


def downgrade() -> None:
    pass  # see the module docstring
