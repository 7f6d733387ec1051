"""An event's identifiers travel sealed in its own row until processing indexes them; on PostgreSQL an event's
row stays whole (no TOAST) up to a page; the person index holds resolved events only.

Ingest writes one row per event; the per-identifier rows of `event_identifiers` (keyed hashes for erasure and
lookups) are written when the event is processed, or earlier when an erasure needs them. A non-NULL
`sealed_identifiers` means "not indexed yet".

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("sealed_identifiers", sa.LargeBinary()))
    if op.get_context().dialect.name == "postgresql":
        # See schema.events: a ~3 KB pixel event row no longer goes through TOAST (applies to new rows).
        op.execute("ALTER TABLE events SET (toast_tuple_target = 8160)")
    # Events are inserted unresolved; the person index need not hold an entry for every NULL.
    op.drop_index("ix_events_person", table_name="events")
    resolved = sa.text("person_id IS NOT NULL")
    op.create_index("ix_events_person", "events", ["person_id", "occurred_at"],
                    sqlite_where=resolved, postgresql_where=resolved)


def downgrade() -> None:
    op.drop_index("ix_events_person", table_name="events")
    op.create_index("ix_events_person", "events", ["person_id", "occurred_at"])
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE events RESET (toast_tuple_target)")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("sealed_identifiers")
