"""Tables. Every table that holds shop data carries the shop, so one installation serves many stores."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants 64 bits for an event log.
Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which has no time zones) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], object] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        # The text SQLAlchemy's SQLite DATETIME stores ("2026-12-05 07:43:07.000123"), written in one C call
        # instead of three Python-level processors: two per event on the ingest path.
        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = UtcDateTime()

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("source", String(32), nullable=False),
    Column("source_event_id", String(255), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("occurred_at", Timestamp, nullable=False),
    Column("received_at", Timestamp, nullable=False),
    Column("timestamp_flag", String(16), nullable=False),
    Column("page_url", Text),
    Column("ip", String(64)),
    Column("user_agent", Text),
    # The normalized payload (commerce, attribution, consent, device); contact data lives only in `sealed_raw`,
    # `sealed_identifiers` and event_identifiers, all encrypted.
    Column("body", Json, nullable=False),
    Column("sealed_raw", LargeBinary, nullable=False),
    Column("processed_at", Timestamp),
    # Who the event was attributed to when it was resolved; later merges follow persons.merged_into.
    Column("person_id", Id),
    # Names, town and marketing opt-in the shopper typed (ProfileFacts), sealed.
    Column("sealed_profile", LargeBinary),
    # Why processing set the event aside (it failed on its own); NULL for every event processed normally.
    Column("processing_error", Text),
    # The event's identifiers, sealed, until processing (or an erasure) writes them to event_identifiers and
    # clears this: ingest writes one row per event and acknowledges sooner.
    Column("sealed_identifiers", LargeBinary),
    UniqueConstraint("shop", "source", "source_event_id", name="uq_events_source_id"),
    # PostgreSQL moves values out of a row longer than ~2 KB into its TOAST table (a second insert and index entry
    # per event, and a compression attempt on sealed bytes that cannot compress); a pixel event's row is ~3 KB.
    # Rows stay whole up to a page (measured with COPY: 13.9k -> 19.6k rows/s); larger webhook rows still move.
    postgresql_with={"toast_tuple_target": 8160},
)
Index("ix_events_shop_occurred", events.c.shop, events.c.occurred_at)
# Only resolved events: ingest inserts every event unresolved, and an index entry for each NULL was pure cost.
Index(
    "ix_events_person", events.c.person_id, events.c.occurred_at,
    sqlite_where=events.c.person_id.is_not(None), postgresql_where=events.c.person_id.is_not(None),
)
Index(
    "ix_events_unprocessed",
    events.c.id,
    sqlite_where=events.c.processed_at.is_(None),
    postgresql_where=events.c.processed_at.is_(None),
)

event_identifiers = Table(
    "event_identifiers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("event_id", Id, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(32), nullable=False),
    # Keyed hash: equal values match without the plaintext being searchable.
    Column("value_hash", LargeBinary(32), nullable=False),
    # Plaintext for device ids and tokens; contact values (email, phone) only sealed.
    Column("value", String(512)),
    Column("sealed_value", LargeBinary),
)
Index("ix_event_identifiers_lookup", event_identifiers.c.shop, event_identifiers.c.value_hash)
Index("ix_event_identifiers_event", event_identifiers.c.event_id)

privacy_requests = Table(
    "privacy_requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("event_id", Id),
    Column("requested_at", Timestamp, nullable=False),
    Column("completed_at", Timestamp),
    # What was done, as counts only: the audit trail of an erasure must not itself hold personal data.
    Column("outcome", Json),
)
Index("ix_privacy_requests_shop", privacy_requests.c.shop, privacy_requests.c.requested_at)

# Installation-wide state (not shop data): the manual clock of simulations.
service_state = Table(
    "service_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# -- identity graph ------------------------------------------------------------------------------------------------

persons = Table(
    "persons",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    # When an event last named this person (email typed, customer logged in): decides who a shared device follows.
    Column("identified_at", Timestamp),
    # Union-find: an absorbed person points at its survivor (always one hop: merges re-point older absorptions).
    Column("merged_into", Id),
    Column("size", Integer, nullable=False, default=0),
)
Index("ix_persons_shop", persons.c.shop, persons.c.id)
Index("ix_persons_merged_into", persons.c.merged_into)

identifiers = Table(
    "identifiers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("type", String(32), nullable=False),
    Column("value_hash", LargeBinary(32), nullable=False),
    Column("value", String(512)),
    Column("sealed_value", LargeBinary),
    Column("person_id", Id, nullable=False),
    Column("first_seen", Timestamp, nullable=False),
    Column("last_seen", Timestamp, nullable=False),
    # 1 once seen with two different people (a shared device or cart): it no longer links anyone.
    Column("shared", Integer, nullable=False, default=0),
    UniqueConstraint("shop", "value_hash", name="uq_identifiers_hash"),
)
Index("ix_identifiers_person", identifiers.c.person_id, identifiers.c.type)

identity_links = Table(
    "identity_links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("person_id", Id, nullable=False),
    # attach | move | merge | refuse | probabilistic
    Column("action", String(16), nullable=False),
    Column("identifier_id", Id),
    Column("other_person_id", Id),
    Column("event_id", Id),
    Column("rule", String(64), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("observed_at", Timestamp, nullable=False),
    Column("detail", Json),
)
Index("ix_identity_links_person", identity_links.c.person_id)
Index("ix_identity_links_event", identity_links.c.event_id)
Index("ix_identity_links_identifier", identity_links.c.identifier_id)

# Probabilistic re-identification: where and on what each device was seen (only kept for shops that enable it).
device_sightings = Table(
    "device_sightings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("device_key", LargeBinary(32), nullable=False),
    Column("person_id", Id, nullable=False),
    Column("ip_prefix", String(64), nullable=False),
    Column("browser", String(64)),
    Column("browser_major", String(16)),
    Column("os", String(64)),
    Column("os_major", String(16)),
    Column("device", String(64)),
    Column("language", String(32)),
    Column("screen", String(32)),
    Column("timezone", String(64)),
    Column("last_seen", Timestamp, nullable=False),
    UniqueConstraint("shop", "device_key", "ip_prefix", name="uq_device_sightings"),
)
Index(
    "ix_device_sightings_network", device_sightings.c.shop, device_sightings.c.ip_prefix, device_sightings.c.last_seen
)

# -- sessions, abandonments and the delivery outbox ----------------------------------------------------------------

sessions = Table(
    "sessions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("device_key", LargeBinary(32), nullable=False),
    Column("person_id", Id),
    Column("stage", Integer, nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("last_activity_at", Timestamp, nullable=False),
    # open: collecting events; due when its hold window ends | waiting: final but its shopper is not identifiable
    # yet (until `expires_at`) | decided
    Column("status", String(16), nullable=False),
    Column("due_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp),
    Column("decided_at", Timestamp),
    Column("outcome", String(32)),
    Column("state", Json, nullable=False),
)
Index("ix_sessions_device", sessions.c.shop, sessions.c.device_key, sessions.c.last_activity_at)
Index("ix_sessions_due", sessions.c.status, sessions.c.due_at)
Index("ix_sessions_person", sessions.c.person_id, sessions.c.started_at)

conversions = Table(
    "conversions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("person_id", Id),
    Column("checkout_token", String(255)),
    Column("cart_token", String(255)),
    Column("order_id", String(64)),
    Column("revenue", String(32)),
    Column("currency", String(8)),
    Column("occurred_at", Timestamp, nullable=False),
)
Index("ix_conversions_person", conversions.c.person_id, conversions.c.occurred_at)
Index("ix_conversions_checkout", conversions.c.shop, conversions.c.checkout_token)
Index("ix_conversions_cart", conversions.c.shop, conversions.c.cart_token)

abandonments = Table(
    "abandonments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("session_id", Id, nullable=False),
    Column("person_id", Id),
    Column("stage", Integer, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("native", Integer, nullable=False),
    Column("incomplete", Integer, nullable=False),
    Column("value", String(32)),
    Column("currency", String(8)),
    Column("abandoned_at", Timestamp, nullable=False),
    Column("decided_at", Timestamp, nullable=False),
    Column("delivery_id", Id),
    UniqueConstraint("session_id", name="uq_abandonments_session"),
)
Index("ix_abandonments_person", abandonments.c.person_id, abandonments.c.stage, abandonments.c.decided_at)
Index("ix_abandonments_shop", abandonments.c.shop, abandonments.c.decided_at)
Index("ix_abandonments_shop_abandoned", abandonments.c.shop, abandonments.c.abandoned_at)
Index("ix_abandonments_delivery", abandonments.c.delivery_id)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("shop", String(255), nullable=False),
    Column("destination", String(32), nullable=False),
    # event | profile | subscription
    Column("kind", String(16), nullable=False),
    Column("unique_id", String(64), nullable=False),
    Column("metric", String(128), nullable=False),
    # The event with its profile (email, phone): personal data, sealed.
    Column("sealed_payload", LargeBinary, nullable=False),
    # pending | delivered | dead
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("not_before", Timestamp, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("delivered_at", Timestamp),
    Column("last_error", Text),
    UniqueConstraint("shop", "destination", "unique_id", name="uq_deliveries_unique"),
)
Index("ix_deliveries_due", deliveries.c.status, deliveries.c.not_before)
Index("ix_deliveries_shop_status", deliveries.c.shop, deliveries.c.status, deliveries.c.destination)
