"""The identity graph: persons, identifiers, the evidence of every link, device sightings; events carry their person.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from recapture.adapters.storage.schema import Id, Json, Timestamp

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("person_id", Id))
    op.create_index("ix_events_person", "events", ["person_id", "occurred_at"])
    op.create_table(
        "persons",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("shop", sa.String(255), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("identified_at", Timestamp),
        sa.Column("merged_into", Id),
        sa.Column("size", sa.Integer(), nullable=False),
    )
    op.create_index("ix_persons_shop", "persons", ["shop", "id"])
    op.create_index("ix_persons_merged_into", "persons", ["merged_into"])
    op.create_table(
        "identifiers",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("shop", sa.String(255), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("value_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("value", sa.String(512)),
        sa.Column("sealed_value", sa.LargeBinary()),
        sa.Column("person_id", Id, nullable=False),
        sa.Column("first_seen", Timestamp, nullable=False),
        sa.Column("last_seen", Timestamp, nullable=False),
        sa.Column("shared", sa.Integer(), nullable=False),
        sa.UniqueConstraint("shop", "value_hash", name="uq_identifiers_hash"),
    )
    op.create_index("ix_identifiers_person", "identifiers", ["person_id", "type"])
    op.create_table(
        "identity_links",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("shop", sa.String(255), nullable=False),
        sa.Column("person_id", Id, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("identifier_id", Id),
        sa.Column("other_person_id", Id),
        sa.Column("event_id", Id),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("observed_at", Timestamp, nullable=False),
        sa.Column("detail", Json),
    )
    op.create_index("ix_identity_links_person", "identity_links", ["person_id"])
    op.create_index("ix_identity_links_event", "identity_links", ["event_id"])
    op.create_index("ix_identity_links_identifier", "identity_links", ["identifier_id"])
    op.create_table(
        "device_sightings",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("shop", sa.String(255), nullable=False),
        sa.Column("device_key", sa.LargeBinary(32), nullable=False),
        sa.Column("person_id", Id, nullable=False),
        sa.Column("ip_prefix", sa.String(64), nullable=False),
        sa.Column("browser", sa.String(64)),
        sa.Column("browser_major", sa.String(16)),
        sa.Column("os", sa.String(64)),
        sa.Column("os_major", sa.String(16)),
        sa.Column("device", sa.String(64)),
        sa.Column("language", sa.String(32)),
        sa.Column("screen", sa.String(32)),
        sa.Column("timezone", sa.String(64)),
        sa.Column("last_seen", Timestamp, nullable=False),
        sa.UniqueConstraint("shop", "device_key", "ip_prefix", name="uq_device_sightings"),
    )
    op.create_index("ix_device_sightings_network", "device_sightings", ["shop", "ip_prefix", "last_seen"])


def downgrade() -> None:
    op.drop_table("device_sightings")
    op.drop_table("identity_links")
    op.drop_table("identifiers")
    op.drop_table("persons")
    op.drop_index("ix_events_person", "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("person_id")
