"""Events, their identifiers, privacy requests and service state.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from recapture.adapters.storage.schema import Id, Json, Timestamp

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("shop", sa.String(255), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("source_event_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("occurred_at", Timestamp, nullable=False),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("timestamp_flag", sa.String(16), nullable=False),
        sa.Column("page_url", sa.Text()),
        sa.Column("ip", sa.String(64)),
        sa.Column("user_agent", sa.Text()),
        sa.Column("body", Json, nullable=False),
        sa.Column("sealed_raw", sa.LargeBinary(), nullable=False),
        sa.Column("processed_at", Timestamp),
        sa.UniqueConstraint("shop", "source", "source_event_id", name="uq_events_source_id"),
    )
    op.create_index("ix_events_shop_occurred", "events", ["shop", "occurred_at"])
    op.create_index(
        "ix_events_unprocessed", "events", ["id"],
        sqlite_where=sa.text("processed_at IS NULL"), postgresql_where=sa.text("processed_at IS NULL"),
    )
    op.create_table(
        "event_identifiers",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("shop", sa.String(255), nullable=False),
        sa.Column("event_id", Id, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("value_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("value", sa.String(512)),
        sa.Column("sealed_value", sa.LargeBinary()),
    )
    op.create_index("ix_event_identifiers_lookup", "event_identifiers", ["shop", "value_hash"])
    op.create_index("ix_event_identifiers_event", "event_identifiers", ["event_id"])
    op.create_table(
        "privacy_requests",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("shop", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("event_id", Id),
        sa.Column("requested_at", Timestamp, nullable=False),
        sa.Column("completed_at", Timestamp),
        sa.Column("outcome", Json),
    )
    op.create_index("ix_privacy_requests_shop", "privacy_requests", ["shop", "requested_at"])
    op.create_table(
        "service_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_state")
    op.drop_table("privacy_requests")
    op.drop_table("event_identifiers")
    op.drop_table("events")
