"""The identity graph on SQLAlchemy Core: identifiers point at persons; merges re-point the absorbed person's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from recapture.adapters.storage.schema import (
    device_sightings,
    event_identifiers,
    events,
    identifiers,
    identity_links,
    persons,
)
from recapture.adapters.storage.sealing import Sealer
from recapture.adapters.storage.transactions import Transactions
from recapture.application.identity import LinkContext
from recapture.domain.delivery import DeliveryProfile
from recapture.domain.events import CONTACT_TYPES, Identifier, IdentifierType
from recapture.domain.identity.policy import DISTINCT_PERSON_TYPES, IdentityPolicy
from recapture.domain.identity.resolver import Key, Known, Observed, PersonSummary, Plan
from recapture.domain.masking import masked

_DISTINCT = [t.value for t in DISTINCT_PERSON_TYPES]
# What a destination can address a profile by (Klaviyo accepts its own exchange id `_kx`).
REACHABLE_TYPES = (IdentifierType.EMAIL, IdentifierType.PHONE, IdentifierType.KLAVIYO_EXCHANGE_ID)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredIdentifier:
    id: int
    type: IdentifierType
    value: str
    person_id: int
    first_seen: datetime
    last_seen: datetime


class SqlIdentityGraph:
    def __init__(self, transactions: Transactions, sealer: Sealer) -> None:
        self._tx = transactions
        self._sealer = sealer

    def key(self, shop: str, identifier: Identifier) -> Key:
        return self._sealer.identifier_hash(shop, identifier.type.value, identifier.value)

    # -- reading the neighbourhood of one event ----------------------------------------------------------------

    def neighbourhood(
        self, shop: str, keys: Sequence[Key], now: datetime, policy: IdentityPolicy
    ) -> tuple[dict[Key, Known], dict[int, PersonSummary]]:
        if not keys:
            return {}, {}
        with self._tx.begin() as conn:
            rows = conn.execute(
                select(identifiers.c.type, identifiers.c.value_hash, identifiers.c.person_id, identifiers.c.last_seen,
                       identifiers.c.shared)
                .where(identifiers.c.shop == shop, identifiers.c.value_hash.in_(list(keys)))
            ).all()
            known = {
                r.value_hash: Known(type=IdentifierType(r.type), key=r.value_hash, person=r.person_id,
                                    last_seen=r.last_seen, shared=bool(r.shared))
                for r in rows
            }
            person_ids = sorted({k.person for k in known.values()})
            return known, self._summaries(conn, person_ids, now - policy.limit_window)

    def _summaries(self, conn: Connection, person_ids: list[int], since: datetime) -> dict[int, PersonSummary]:
        if not person_ids:
            return {}
        distinct: dict[int, dict[IdentifierType, set[Key]]] = {p: {} for p in person_ids}
        for row in conn.execute(
            select(identifiers.c.person_id, identifiers.c.type, identifiers.c.value_hash)
            .where(identifiers.c.person_id.in_(person_ids), identifiers.c.type.in_(_DISTINCT))
        ):
            distinct[row.person_id].setdefault(IdentifierType(row.type), set()).add(row.value_hash)
        counts: dict[int, dict[IdentifierType, int]] = {p: {} for p in person_ids}
        for row in conn.execute(
            select(identifiers.c.person_id, identifiers.c.type, func.count())
            .where(identifiers.c.person_id.in_(person_ids), identifiers.c.last_seen >= since)
            .group_by(identifiers.c.person_id, identifiers.c.type)
        ):
            counts[row.person_id][IdentifierType(row.type)] = row[2]
        people = conn.execute(
            select(persons.c.id, persons.c.size, persons.c.identified_at).where(persons.c.id.in_(person_ids))
        ).all()
        return {
            p.id: PersonSummary(
                id=p.id, distinct={t: frozenset(v) for t, v in distinct[p.id].items()}, recent_counts=counts[p.id],
                size=p.size, identified_at=p.identified_at,
            )
            for p in people
        }

    # -- applying a plan ----------------------------------------------------------------------------------------

    def apply(self, plan: Plan, values: Mapping[Key, Identifier], context: LinkContext) -> int | None:
        with self._tx.begin() as conn:
            person = plan.person if plan.person is not None else self._new_person(conn, context)
            for absorbed in plan.merges:
                self._merge(conn, person, absorbed, context)
            for known in plan.move:
                self._move(conn, person, known, context)
            self._refresh(conn, [k.key for k in plan.refresh], context)
            for observed in plan.attach:
                self._attach(conn, person, observed, values[observed.key], context)
            for observed in plan.refused:
                self._link(conn, person, "refuse", context, detail={"type": observed.type.value})
            for conflict in plan.conflicts:
                self._link(conn, person, "conflict", context, detail={
                    "kind": conflict.kind.value, "persons": list(conflict.persons),
                    "types": [t.value for t in conflict.types],
                })
            if plan.identified:
                conn.execute(update(persons).where(persons.c.id == person).values(identified_at=context.observed_at))
            return person

    def _new_person(self, conn: Connection, context: LinkContext) -> int:
        statement = insert(persons).values(shop=context.shop, created_at=context.observed_at, size=0)
        return int(conn.execute(statement.returning(persons.c.id)).scalar_one())

    def _merge(self, conn: Connection, survivor: int, absorbed: int, context: LinkContext) -> None:
        moved = conn.execute(
            update(identifiers).where(identifiers.c.person_id == absorbed).values(person_id=survivor)
        ).rowcount
        conn.execute(
            update(persons).where((persons.c.id == absorbed) | (persons.c.merged_into == absorbed))
            .values(merged_into=survivor)
        )
        conn.execute(update(persons).where(persons.c.id == survivor).values(size=persons.c.size + moved))
        conn.execute(update(persons).where(persons.c.id == absorbed).values(size=0))
        self._link(conn, survivor, "merge", context, other_person=absorbed)

    def _move(self, conn: Connection, person: int, known: Known, context: LinkContext) -> None:
        identifier_id = conn.execute(
            update(identifiers).where(identifiers.c.shop == context.shop, identifiers.c.value_hash == known.key)
            .values(person_id=person, last_seen=context.observed_at, shared=1).returning(identifiers.c.id)
        ).scalar_one()
        conn.execute(update(persons).where(persons.c.id == known.person).values(size=persons.c.size - 1))
        conn.execute(update(persons).where(persons.c.id == person).values(size=persons.c.size + 1))
        self._link(conn, person, "move", context, identifier_id=identifier_id, other_person=known.person)

    def _refresh(self, conn: Connection, keys: list[Key], context: LinkContext) -> None:
        if keys:
            conn.execute(
                update(identifiers)
                .where(identifiers.c.shop == context.shop, identifiers.c.value_hash.in_(keys),
                       identifiers.c.last_seen < context.observed_at)
                .values(last_seen=context.observed_at)
            )

    def _attach(self, conn: Connection, person: int, observed: Observed, identifier: Identifier,
                context: LinkContext) -> None:
        existing = conn.execute(
            select(identifiers.c.id, identifiers.c.person_id)
            .where(identifiers.c.shop == context.shop, identifiers.c.value_hash == observed.key)
        ).first()
        if existing is None:
            contact = identifier.type in CONTACT_TYPES
            identifier_id = conn.execute(insert(identifiers).values(
                shop=context.shop, type=identifier.type.value, value_hash=observed.key,
                value=None if contact else identifier.value,
                sealed_value=self._sealer.seal(identifier.value.encode()) if contact else None,
                person_id=person, first_seen=context.observed_at, last_seen=context.observed_at, shared=0,
            ).returning(identifiers.c.id)).scalar_one()
            conn.execute(update(persons).where(persons.c.id == person).values(size=persons.c.size + 1))
        else:
            # A stale link (outside the identity window) is taken over by the person of today's evidence.
            identifier_id = existing.id
            conn.execute(update(identifiers).where(identifiers.c.id == existing.id)
                         .values(person_id=person, last_seen=context.observed_at))
            if existing.person_id != person:
                conn.execute(update(persons).where(persons.c.id == existing.person_id).values(size=persons.c.size - 1))
                conn.execute(update(persons).where(persons.c.id == person).values(size=persons.c.size + 1))
        self._link(conn, person, "attach", context, identifier_id=identifier_id)

    def _link(self, conn: Connection, person: int, action: str, context: LinkContext, *,
              identifier_id: int | None = None, other_person: int | None = None,
              detail: dict[str, Any] | None = None) -> None:
        conn.execute(insert(identity_links).values(
            shop=context.shop, person_id=person, action=action, identifier_id=identifier_id,
            other_person_id=other_person, event_id=context.event_id, rule=context.rule,
            confidence=context.confidence, observed_at=context.observed_at, detail=detail,
        ))

    # -- reading for explanations -------------------------------------------------------------------------------

    def root(self, person: int) -> int:
        with self._tx.begin() as conn:
            parent = conn.execute(select(persons.c.merged_into).where(persons.c.id == person)).scalar()
        return int(parent) if parent is not None else person

    def identifiers_of(self, person: int) -> list[StoredIdentifier]:
        with self._tx.begin() as conn:
            rows = conn.execute(select(identifiers).where(identifiers.c.person_id == person)
                                .order_by(identifiers.c.first_seen, identifiers.c.id)).all()
        return [self._stored(r) for r in rows]

    def _stored(self, row: Any) -> StoredIdentifier:
        value = row.value if row.sealed_value is None else self._sealer.open(row.sealed_value).decode()
        return StoredIdentifier(id=row.id, type=IdentifierType(row.type), value=value, person_id=row.person_id,
                                first_seen=row.first_seen, last_seen=row.last_seen)

    def find(self, shop: str, identifier: Identifier) -> StoredIdentifier | None:
        with self._tx.begin() as conn:
            row = conn.execute(select(identifiers).where(
                identifiers.c.shop == shop, identifiers.c.value_hash == self.key(shop, identifier)
            )).first()
        return self._stored(row) if row is not None else None

    def explain(self, person: int) -> dict[str, Any] | None:
        """The person, every identifier (contact values masked) and the evidence chain, oldest first."""
        root = self.root(person)
        with self._tx.begin() as conn:
            row = conn.execute(select(persons).where(persons.c.id == root)).first()
            if row is None:
                return None
            absorbed = list(conn.execute(select(persons.c.id).where(persons.c.merged_into == root)).scalars())
            family = [root, *absorbed]
            links = conn.execute(
                select(identity_links, events.c.kind, events.c.source, events.c.source_event_id)
                .join(events, events.c.id == identity_links.c.event_id, isouter=True)
                .where(identity_links.c.person_id.in_(family))
                .order_by(identity_links.c.observed_at, identity_links.c.id)
            ).all()
            event_count = conn.execute(
                select(func.count()).select_from(events).where(events.c.person_id.in_(family))
            ).scalar_one()
        held = self.identifiers_of(root)
        names = {i.id: f"{i.type.value}:{masked(i.type, i.value)}" for i in held}
        return {
            "person": root,
            "shop": row.shop,
            "merged": absorbed,
            "created_at": row.created_at.isoformat(),
            "identified_at": row.identified_at.isoformat() if row.identified_at else None,
            "events": event_count,
            "identifiers": [
                {"type": i.type.value, "value": masked(i.type, i.value), "first_seen": i.first_seen.isoformat(),
                 "last_seen": i.last_seen.isoformat()}
                for i in held
            ],
            "evidence": [
                {
                    "at": link.observed_at.isoformat(), "action": link.action, "rule": link.rule,
                    "confidence": link.confidence, "identifier": names.get(link.identifier_id),
                    "other_person": link.other_person_id, "event": link.source_event_id,
                    "event_kind": link.kind, "source": link.source, "detail": link.detail,
                }
                for link in links
            ],
        }

    # -- erasure ------------------------------------------------------------------------------------------------

    def persons_holding(self, shop: str, held: Sequence[Identifier]) -> list[int]:
        keys = [self.key(shop, i) for i in held]
        if not keys:
            return []
        with self._tx.begin() as conn:
            found = conn.execute(select(identifiers.c.person_id).where(
                identifiers.c.shop == shop, identifiers.c.value_hash.in_(keys)
            )).scalars()
            return sorted(set(found))

    def erase_persons(self, shop: str, person_ids: Sequence[int]) -> dict[str, int]:
        """Delete the persons (and those merged into them), their identifiers, evidence and events."""
        if not person_ids:
            return {"persons": 0, "identifiers": 0, "events": 0, "links": 0}
        with self._tx.begin() as conn:
            roots = set(person_ids)
            family = roots | set(conn.execute(
                select(persons.c.id).where(persons.c.shop == shop, persons.c.merged_into.in_(sorted(roots)))
            ).scalars())
            members = sorted(family)
            event_ids = list(conn.execute(select(events.c.id).where(events.c.person_id.in_(members))).scalars())
            for chunk in (event_ids[i : i + 500] for i in range(0, len(event_ids), 500)):
                conn.execute(delete(event_identifiers).where(event_identifiers.c.event_id.in_(chunk)))
                conn.execute(delete(events).where(events.c.id.in_(chunk)))
            conn.execute(delete(device_sightings).where(device_sightings.c.person_id.in_(members)))
            return {
                "persons": conn.execute(delete(persons).where(persons.c.id.in_(members))).rowcount,
                "identifiers": conn.execute(delete(identifiers).where(identifiers.c.person_id.in_(members))).rowcount,
                "links": conn.execute(delete(identity_links).where(identity_links.c.person_id.in_(members))).rowcount,
                "events": len(event_ids),
            }

    def erase_shop(self, shop: str) -> dict[str, int]:
        with self._tx.begin() as conn:
            conn.execute(delete(device_sightings).where(device_sightings.c.shop == shop))
            return {
                "links": conn.execute(delete(identity_links).where(identity_links.c.shop == shop)).rowcount,
                "identifiers": conn.execute(delete(identifiers).where(identifiers.c.shop == shop)).rowcount,
                "persons": conn.execute(delete(persons).where(persons.c.shop == shop)).rowcount,
            }

    def assign_events(self, assignments: Sequence[tuple[int, int]]) -> None:
        """Record who each event was attributed to when it was resolved."""
        if not assignments:
            return
        with self._tx.begin() as conn:
            conn.execute(
                update(events).where(events.c.id == bindparam("event")).values(person_id=bindparam("person")),
                [{"event": e, "person": p} for e, p in assignments],
            )

    # -- attributions (the accuracy harness reads these through /admin/attributions) --------------------------

    def attributions(self, shop: str, after: int, limit: int) -> list[dict[str, Any]]:
        """Resolved events in id order: who each belongs to now (after merges) and whether they are reachable."""
        root = func.coalesce(persons.c.merged_into, persons.c.id).label("person")
        with self._tx.begin() as conn:
            rows = conn.execute(
                select(events.c.id, events.c.source, events.c.source_event_id, events.c.kind, root)
                .join(persons, persons.c.id == events.c.person_id, isouter=True)
                .where(events.c.shop == shop, events.c.id > after, events.c.processed_at.is_not(None))
                .order_by(events.c.id).limit(limit)
            ).all()
            people = sorted({r.person for r in rows if r.person is not None})
            reachable = set(conn.execute(
                select(identifiers.c.person_id).where(
                    identifiers.c.person_id.in_(people),
                    identifiers.c.type.in_([t.value for t in REACHABLE_TYPES]),
                )
            ).scalars()) if people else set()
            guessed = self._probable(conn, [p for p in people if p not in reachable])
        return [
            {"id": r.id, "source": r.source, "source_event_id": r.source_event_id, "kind": r.kind,
             "person": r.person, "reachable": r.person in reachable, "probable_person": guessed.get(r.person)}
            for r in rows
        ]

    def _probable(self, conn: Connection, anonymous: list[int]) -> dict[int, int]:
        if not anonymous:
            return {}
        root = func.coalesce(persons.c.merged_into, persons.c.id)
        rows = conn.execute(
            select(identity_links.c.other_person_id, root.label("person"))
            .join(persons, persons.c.id == identity_links.c.person_id)
            .where(identity_links.c.action == "probabilistic", identity_links.c.other_person_id.in_(anonymous))
            .order_by(identity_links.c.id)
        ).all()
        return {row.other_person_id: row.person for row in rows}

    # -- probabilistic links -------------------------------------------------------------------------------------

    def is_identified(self, person: int) -> bool:
        with self._tx.begin() as conn:
            query = select(persons.c.identified_at, persons.c.merged_into).where(persons.c.id == person)
            row = conn.execute(query).first()
        return row is not None and (row.identified_at is not None or row.merged_into is not None)

    def link_probable(self, anonymous: int, person: int, confidence: float, context: LinkContext) -> None:
        """A guess, never a merge: the anonymous person stays separate and carries a scored pointer."""
        with self._tx.begin() as conn:
            self._link(conn, person, "probabilistic", replace(context, rule="probabilistic", confidence=confidence),
                       other_person=anonymous)

    def probable_person(self, anonymous: int) -> tuple[int, float] | None:
        with self._tx.begin() as conn:
            row = conn.execute(
                select(identity_links.c.person_id, identity_links.c.confidence)
                .where(identity_links.c.action == "probabilistic", identity_links.c.other_person_id == anonymous)
                .order_by(identity_links.c.id.desc()).limit(1)
            ).first()
        return (int(row.person_id), float(row.confidence)) if row else None

    # -- the contactable profile of a person ----------------------------------------------------------------------

    def profile_of(self, person: int) -> tuple[DeliveryProfile, str] | None:
        """The most recently seen email, phone and Klaviyo exchange id of the person's root, if any."""
        held = sorted(self.identifiers_of(self.root(person)), key=lambda i: i.last_seen, reverse=True)

        def latest(kind: IdentifierType) -> str | None:
            return next((i.value for i in held if i.type is kind), None)

        email, phone = latest(IdentifierType.EMAIL), latest(IdentifierType.PHONE)
        exchange_id = latest(IdentifierType.KLAVIYO_EXCHANGE_ID)
        identified_by = "email" if email else "phone" if phone else "klaviyo_exchange_id" if exchange_id else None
        if identified_by is None:
            return None
        return DeliveryProfile(email=email, phone_number=phone, exchange_id=exchange_id), identified_by
