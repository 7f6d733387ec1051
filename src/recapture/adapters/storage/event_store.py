"""The event log on SQLAlchemy Core: batched, idempotent inserts; contact data sealed at rest."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Engine, String, any_, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from recapture.adapters.storage.bulk_insert import BulkInsert
from recapture.adapters.storage.schema import event_identifiers, events, privacy_requests
from recapture.adapters.storage.sealing import Sealer
from recapture.adapters.storage.transactions import Transactions
from recapture.application.ports import ErasureReport, EventCounts, PendingEvent
from recapture.domain.events import (
    CONTACT_TYPES,
    CanonicalEvent,
    Commerce,
    Consent,
    Device,
    EventKind,
    Identifier,
    IdentifierType,
)
from recapture.domain.profile_facts import ProfileFacts

# Identifiers that tie events of one shopper together without naming them; erasure follows them one hop.
LINKING_TYPES = frozenset(
    {IdentifierType.CLIENT_ID, IdentifierType.CHECKOUT_TOKEN, IdentifierType.CART_TOKEN, IdentifierType.ORDER_ID}
)
NAMING_TYPES = frozenset({IdentifierType.SHOPIFY_CUSTOMER_ID, *CONTACT_TYPES})
_IN_CHUNK = 500

_EVENT_COLUMNS = (
    "shop", "source", "source_event_id", "kind", "name", "occurred_at", "received_at", "timestamp_flag", "page_url",
    "ip", "user_agent", "body", "sealed_raw", "sealed_profile", "sealed_identifiers",
)
_INSERT_EVENTS = BulkInsert(events, _EVENT_COLUMNS)
_INSERT_IDENTIFIERS = BulkInsert(event_identifiers, ("shop", "event_id", "type", "value_hash", "value", "sealed_value"))
# Event ids of one (shop, source), the wanted source ids passed as ONE parameter so that the statement text never
# changes (cached and prepared once, no per-call expansion, no parameter-count limit): an array on PostgreSQL,
# a JSON array read by json_each on SQLite. Both seek the unique index (shop, source, source_event_id) per id.
_IDS_WHERE = (events.c.shop == bindparam("shop"), events.c.source == bindparam("source"))
_IDS_POSTGRESQL = select(events.c.source_event_id, events.c.id).where(
    *_IDS_WHERE, events.c.source_event_id == any_(bindparam("ids", type_=ARRAY(String())))
)
_JSON_IDS = func.json_each(bindparam("ids", type_=String())).table_valued("value")
_IDS_SQLITE = select(events.c.source_event_id, events.c.id).where(
    *_IDS_WHERE, events.c.source_event_id.in_(select(_JSON_IDS.c.value))
)
_IDS_OTHER = select(events.c.source_event_id, events.c.id).where(
    *_IDS_WHERE, events.c.source_event_id.in_(bindparam("ids", expanding=True))
)


def _body(event: CanonicalEvent) -> dict[str, Any]:
    device = event.device
    # The dataclasses go to the engine's JSON serializer (msgspec, see database.make_engine) as they are: the same
    # JSON as msgspec.to_builtins would give, without building an intermediate dict tree per event.
    return {
        "commerce": event.commerce,
        "attribution": event.attribution,
        "consent": event.consent,
        "device": {"language": device.language, "screen": device.screen, "timezone": device.timezone},
        "meta": event.source_meta,
    }


def _device(ip: str | None, user_agent: str | None, body: dict[str, Any]) -> Device:
    traits = body.get("device") or {}
    return Device(
        ip=ip, user_agent=user_agent, language=traits.get("language"), screen=traits.get("screen"),
        timezone=traits.get("timezone"),
    )


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqlEventStore:
    def __init__(self, engine: Engine, sealer: Sealer, transactions: Transactions | None = None) -> None:
        self._engine = engine
        # Everything but ingest joins the processing unit of work when one is open on this thread.
        self._tx = transactions or Transactions(engine)
        self._sealer = sealer

    # -- writing -------------------------------------------------------------------------------------------------

    def store(self, batch: Sequence[CanonicalEvent]) -> list[bool]:
        try:
            with self._engine.begin() as conn:
                return self._store_in(conn, batch)
        except IntegrityError:
            # Another process stored one of these between our check and our insert: settle them one by one.
            return [self._store_one(event) for event in batch]

    def _store_one(self, event: CanonicalEvent) -> bool:
        try:
            with self._engine.begin() as conn:
                return self._store_in(conn, [event])[0]
        except IntegrityError:
            return False

    def _store_in(self, conn: Connection, batch: Sequence[CanonicalEvent]) -> list[bool]:
        keys = [(e.shop, e.source.value, e.source_event_id) for e in batch]
        seen = self._existing_keys(conn, keys)
        fresh: list[CanonicalEvent] = []
        outcome: list[bool] = []
        for key, event in zip(keys, batch, strict=True):
            is_new = key not in seen
            seen.add(key)
            outcome.append(is_new)
            if is_new:
                fresh.append(event)
        if fresh:
            self._insert(conn, fresh)
        return outcome

    def _existing_keys(self, conn: Connection, keys: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        return set(self._ids_by_key(conn, keys))

    def _ids_by_key(self, conn: Connection, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
        by_stream: dict[tuple[str, str], set[str]] = {}
        for shop, source, source_event_id in keys:
            by_stream.setdefault((shop, source), set()).add(source_event_id)
        found: dict[tuple[str, str, str], int] = {}
        dialect = conn.dialect.name
        for (shop, source), wanted in by_stream.items():
            ordered = sorted(wanted)
            if dialect == "postgresql":
                lookups: Iterable[tuple[Any, Any]] = [(_IDS_POSTGRESQL, ordered)]
            elif dialect == "sqlite":
                lookups = [(_IDS_SQLITE, msgspec.json.encode(ordered).decode())]
            else:
                lookups = ((_IDS_OTHER, list(chunk)) for chunk in _chunks(ordered))
            for statement, ids in lookups:
                for row in conn.execute(statement, {"shop": shop, "source": source, "ids": ids}):
                    found[(shop, source, row.source_event_id)] = row.id
        return found

    def _insert(self, conn: Connection, fresh: list[CanonicalEvent]) -> None:
        # One row per event, identifiers sealed inside it: their keyed-hash rows cost more than the event row and
        # are needed only by processing and erasure, which index them first (`_index`).
        _INSERT_EVENTS.execute(conn, fresh, self._event_row)

    def _event_row(self, event: CanonicalEvent) -> tuple[Any, ...]:
        return (
            event.shop, event.source.value, event.source_event_id, event.kind.value, event.name[:255],
            event.occurred_at, event.received_at, event.timestamp_flag.value, event.page_url, event.device.ip,
            event.device.user_agent, _body(event), self._sealer.seal(event.raw),
            self._sealer.seal(msgspec.json.encode(event.profile)) if event.profile else None,
            self._seal_identifiers(event.identifiers),
        )

    def _seal_identifiers(self, identifiers: Sequence[Identifier]) -> bytes | None:
        if not identifiers:
            return None
        return self._sealer.seal(msgspec.json.encode([(i.type.value, i.value) for i in identifiers]))

    def _open_identifiers(self, sealed: bytes) -> tuple[Identifier, ...]:
        pairs = msgspec.json.decode(self._sealer.open(sealed), type=list[tuple[str, str]])
        return tuple(Identifier(type=IdentifierType(kind), value=value) for kind, value in pairs)

    def _index(self, conn: Connection, *where: Any) -> None:
        """Write the identifier rows of the not yet indexed events matching `where`, and mark them indexed."""
        for chunk in _chunks(self._write_identifier_rows(conn, *where)):
            conn.execute(update(events).where(events.c.id.in_(chunk)).values(sealed_identifiers=None))

    def _write_identifier_rows(self, conn: Connection, *where: Any) -> list[int]:
        """The identifier rows of the not yet indexed events matching `where`; their ids, for the caller to mark."""
        query = select(events.c.id, events.c.shop, events.c.sealed_identifiers).where(
            *where, events.c.sealed_identifiers.is_not(None))
        rows = conn.execute(query).all()
        _INSERT_IDENTIFIERS.execute(conn, [
            self._identifier_row(row.shop, row.id, identifier)
            for row in rows for identifier in self._open_identifiers(row.sealed_identifiers)
        ])
        return [row.id for row in rows]

    def _identifier_row(self, shop: str, event_id: int, identifier: Identifier) -> tuple[Any, ...]:
        contact = identifier.is_contact
        kind = identifier.type.value
        return (
            shop, event_id, kind, self._sealer.identifier_hash(shop, kind, identifier.value),
            None if contact else identifier.value, self._sealer.seal(identifier.value.encode()) if contact else None,
        )

    # -- processing queue ----------------------------------------------------------------------------------------

    def pending(self, limit: int) -> list[PendingEvent]:
        query = (
            select(events.c.id, events.c.shop, events.c.kind, events.c.occurred_at, events.c.ip,
                   events.c.user_agent, events.c.body, events.c.page_url, events.c.source, events.c.sealed_profile,
                   events.c.sealed_identifiers)
            .where(events.c.processed_at.is_(None))
            .order_by(events.c.id)
            .limit(limit)
        )
        with self._tx.begin() as conn:
            rows = conn.execute(query).all()
            # An event an erasure indexed early has its identifiers in event_identifiers already.
            indexed = self._identifiers_of(conn, [r.id for r in rows if r.sealed_identifiers is None])
        return [
            PendingEvent(
                id=r.id, shop=r.shop, kind=EventKind(r.kind), occurred_at=r.occurred_at,
                identifiers=(self._open_identifiers(r.sealed_identifiers) if r.sealed_identifiers is not None
                             else tuple(indexed.get(r.id, ()))),
                device=_device(r.ip, r.user_agent, r.body),
                commerce=msgspec.convert(r.body["commerce"], Commerce, strict=False),
                consent=msgspec.convert(r.body["consent"], Consent, strict=False) if r.body.get("consent") else None,
                page_url=r.page_url, source=r.source, profile=self._profile(r.sealed_profile),
            )
            for r in rows
        ]

    def _profile(self, sealed: bytes | None) -> ProfileFacts | None:
        return msgspec.json.decode(self._sealer.open(sealed), type=ProfileFacts) if sealed else None

    def _identifiers_of(self, conn: Connection, event_ids: Sequence[int]) -> dict[int, list[Identifier]]:
        found: dict[int, list[Identifier]] = {}
        for chunk in _chunks(event_ids):
            query = select(
                event_identifiers.c.event_id, event_identifiers.c.type,
                event_identifiers.c.value, event_identifiers.c.sealed_value,
            ).where(event_identifiers.c.event_id.in_(chunk)).order_by(event_identifiers.c.id)
            for row in conn.execute(query):
                value = row.value if row.sealed_value is None else self._sealer.open(row.sealed_value).decode()
                found.setdefault(row.event_id, []).append(Identifier(type=IdentifierType(row.type), value=value))
        return found

    def mark_processed(self, ids: Sequence[int], at: datetime) -> None:
        # Every processed event is indexed: erasure finds processed events through event_identifiers alone.
        with self._tx.begin() as conn:
            for chunk in _chunks(ids):
                self._write_identifier_rows(conn, events.c.id.in_(chunk))
                conn.execute(update(events).where(events.c.id.in_(chunk))
                             .values(processed_at=at, sealed_identifiers=None))

    def set_aside(self, event_id: int, at: datetime, reason: str) -> None:
        with self._tx.begin() as conn:
            self._write_identifier_rows(conn, events.c.id == event_id)
            conn.execute(update(events).where(events.c.id == event_id)
                         .values(processed_at=at, processing_error=reason, sealed_identifiers=None))

    def counts(self) -> EventCounts:
        with self._tx.begin() as conn:
            # One pass: count(column) counts the rows where it is set.
            stored, processed, set_aside = conn.execute(select(
                func.count(), func.count(events.c.processed_at), func.count(events.c.processing_error))).one()
        return EventCounts(stored=stored, processed=processed, pending=stored - processed, set_aside=set_aside)

    def read_raw(self, event_id: int) -> bytes:
        with self._tx.begin() as conn:
            sealed = conn.execute(select(events.c.sealed_raw).where(events.c.id == event_id)).scalar_one()
        return self._sealer.open(sealed)

    # -- privacy -------------------------------------------------------------------------------------------------

    def erase_customer(self, shop: str, identifiers: Sequence[Identifier]) -> ErasureReport:
        naming = [i for i in identifiers if i.type in NAMING_TYPES]
        if not naming:
            return ErasureReport()
        with self._tx.begin() as conn:
            # Events still waiting for processing are not indexed yet (only processed ones are).
            self._index(conn, events.c.shop == shop, events.c.processed_at.is_(None))
            direct = self._events_with(conn, shop, [self._hash(shop, i) for i in naming])
            linked = self._linked_events(conn, shop, direct, {self._hash(shop, i) for i in naming})
            doomed = sorted(direct | linked)
            removed_identifiers = self._delete_events(conn, doomed)
        return ErasureReport(
            events=len(doomed), identifiers=removed_identifiers,
            details={"direct_events": len(direct), "linked_events": len(linked)},
        )

    def _hash(self, shop: str, identifier: Identifier) -> bytes:
        return self._sealer.identifier_hash(shop, identifier.type.value, identifier.value)

    def _events_with(self, conn: Connection, shop: str, hashes: Sequence[bytes]) -> set[int]:
        found: set[int] = set()
        for chunk in _chunks(list(hashes)):
            query = select(event_identifiers.c.event_id).where(
                event_identifiers.c.shop == shop, event_identifiers.c.value_hash.in_(chunk)
            )
            found.update(conn.execute(query).scalars())
        return found

    def _linked_events(self, conn: Connection, shop: str, direct: set[int], own: set[bytes]) -> set[int]:
        """Events sharing a device id or token with the customer's events, unless they name someone else."""
        link_hashes: set[bytes] = set()
        for chunk in _chunks(sorted(direct)):
            query = select(event_identifiers.c.value_hash).where(
                event_identifiers.c.event_id.in_(chunk),
                event_identifiers.c.type.in_([t.value for t in LINKING_TYPES]),
            )
            link_hashes.update(conn.execute(query).scalars())
        candidates = self._events_with(conn, shop, sorted(link_hashes)) - direct
        foreign: set[int] = set()
        for chunk in _chunks(sorted(candidates)):
            query = select(event_identifiers.c.event_id, event_identifiers.c.value_hash).where(
                event_identifiers.c.event_id.in_(chunk),
                event_identifiers.c.type.in_([t.value for t in NAMING_TYPES]),
            )
            foreign.update(row.event_id for row in conn.execute(query) if row.value_hash not in own)
        return candidates - foreign

    def _delete_events(self, conn: Connection, event_ids: Sequence[int]) -> int:
        removed = 0
        for chunk in _chunks(event_ids):
            removed += conn.execute(delete(event_identifiers).where(event_identifiers.c.event_id.in_(chunk))).rowcount
            conn.execute(delete(events).where(events.c.id.in_(chunk)))
        return removed

    def erase_shop(self, shop: str) -> ErasureReport:
        with self._tx.begin() as conn:
            doomed = delete(event_identifiers).where(event_identifiers.c.shop == shop)
            removed_identifiers = conn.execute(doomed).rowcount
            removed_events = conn.execute(delete(events).where(events.c.shop == shop)).rowcount
        return ErasureReport(events=removed_events, identifiers=removed_identifiers)

    def record_privacy_request(
        self, shop: str, kind: EventKind, event_id: int | None, requested_at: datetime, completed_at: datetime,
        outcome: dict[str, int],
    ) -> None:
        with self._tx.begin() as conn:
            conn.execute(
                insert(privacy_requests).values(
                    shop=shop, kind=kind.value, event_id=event_id, requested_at=requested_at,
                    completed_at=completed_at, outcome=outcome,
                )
            )
