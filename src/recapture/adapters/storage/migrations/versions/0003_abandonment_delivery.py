"""Sessions, conversions, abandonment decisions, the delivery outbox; sealed profile facts on events.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from recapture.adapters.storage.schema import Id, Json, Timestamp

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("sealed_profile", sa.LargeBinary()))
    op.create_table(
        "sessions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("shop", sa.String(255), nullable=False),
        sa.Column("device_key", sa.LargeBinary(32), nullable=False),
        sa.Column("person_id", Id),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("last_activity_at", Timestamp, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp),
        sa.Column("decided_at", Timestamp),
        sa.Column("outcome", sa.String(32)),
        sa.Column("state", Json, nullable=False),
    )
    op.create_index("ix_sessions_device", "sessions", ["shop", "device_key", "last_activity_at"])
    op.create_index("ix_sessions_due", "sessions", ["status", "due_at"])
    op.create_index("ix_sessions_person", "sessions", ["person_id", "started_at"])
    op.create_table(
        "conversions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("shop", sa.String(255), nullable=False),
        sa.Column("person_id", Id),
        sa.Column("checkout_token", sa.String(255)),
        sa.Column("cart_token", sa.String(255)),
        sa.Column("order_id", sa.String(64)),
        sa.Column("revenue", sa.String(32)),
        sa.Column("currency", sa.String(8)),
        sa.Column("occurred_at", Timestamp, nullable=False),
    )
    op.create_index("ix_conversions_person", "conversions", ["person_id", "occurred_at"])
    op.create_index("ix_conversions_checkout", "conversions", ["shop", "checkout_token"])
    op.create_index("ix_conversions_cart", "conversions", ["shop", "cart_token"])
    op.create_table(
        "abandonments",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("shop", sa.String(255), nullable=False),
        sa.Column("session_id", Id, nullable=False),
        sa.Column("person_id", Id),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("native", sa.Integer(), nullable=False),
        sa.Column("incomplete", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(32)),
        sa.Column("currency", sa.String(8)),
        sa.Column("abandoned_at", Timestamp, nullable=False),
        sa.Column("decided_at", Timestamp, nullable=False),
        sa.Column("delivery_id", Id),
        sa.UniqueConstraint("session_id", name="uq_abandonments_session"),
    )
    op.create_index("ix_abandonments_person", "abandonments", ["person_id", "stage", "decided_at"])
    op.create_index("ix_abandonments_shop", "abandonments", ["shop", "decided_at"])
    op.create_table(
        "deliveries",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("shop", sa.String(255), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("unique_id", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("sealed_payload", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", Timestamp, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("delivered_at", Timestamp),
        sa.Column("last_error", sa.Text()),
        sa.UniqueConstraint("shop", "destination", "unique_id", name="uq_deliveries_unique"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "not_before"])


def downgrade() -> None:
    for table in ("deliveries", "abandonments", "conversions", "sessions"):
        op.drop_table(table)
    with op.batch_alter_table("events") as batch:
        batch.drop_column("sealed_profile")
