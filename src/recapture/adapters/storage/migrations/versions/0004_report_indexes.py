"""Indexes for the gap report and the dashboard (abandonments by time and by delivery, deliveries by shop), and
the reason an event that failed processing on its own was set aside.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("processing_error", sa.Text()))
    # The report selects a shop's abandonments by when they were abandoned; the dead-letter list joins on delivery.
    op.create_index("ix_abandonments_shop_abandoned", "abandonments", ["shop", "abandoned_at"])
    op.create_index("ix_abandonments_delivery", "abandonments", ["delivery_id"])
    # The dashboard counts a shop's deliveries by status and destination every few seconds.
    op.create_index("ix_deliveries_shop_status", "deliveries", ["shop", "status", "destination"])


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("processing_error")
    op.drop_index("ix_deliveries_shop_status", table_name="deliveries")
    op.drop_index("ix_abandonments_delivery", table_name="abandonments")
    op.drop_index("ix_abandonments_shop_abandoned", table_name="abandonments")
