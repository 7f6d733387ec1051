"""The dashboard's queries on SQLAlchemy Core: outbox health, dead letters, recent events and how each was resolved.

Read-only (a retry goes through `SqlAbandonmentStore.retry_dead`, the code of `recapture deliveries retry`).
Contact values leave this module masked: nothing here returns an email or phone in the clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import case, func, or_, select
from sqlalchemy.engine import Connection

from recapture.adapters.storage.schema import (
    abandonments,
    deliveries,
    event_identifiers,
    events,
    identifiers,
    identity_links,
    persons,
)
from recapture.adapters.storage.transactions import Transactions
from recapture.adapters.web.services import DeadLetter, DestinationHealth, ResolvedEvent
from recapture.domain.events import IdentifierType
from recapture.domain.masking import masked, scrub_contacts

# How `str(DeliveryError)` begins for a 429, and what local pacing says (adapters/destinations/klaviyo.py).
THROTTLE_PATTERNS = ("429:%", "%paced locally%")
# Outbox statuses of deliveries not (yet) accepted; `mark_all_delivered` clears the error of the others.
UNDELIVERED = ("pending", "dead")
# The identifier a person is shown by, best first.
LABEL_TYPES = (IdentifierType.EMAIL, IdentifierType.PHONE, IdentifierType.KLAVIYO_EXCHANGE_ID)


class HeldIdentifier(Protocol):
    @property
    def type(self) -> IdentifierType: ...
    @property
    def value(self) -> str: ...
    @property
    def last_seen(self) -> datetime: ...


class IdentifierSource(Protocol):
    """The identity graph: a person's identifiers, contact values opened (masked here before anything shows)."""

    def identifiers_of(self, person: int) -> Sequence[HeldIdentifier]: ...


@dataclass(frozen=True, slots=True)
class _Link:
    action: str
    rule: str
    confidence: float
    identifier_type: str | None
    other_person: int | None


class SqlDashboardReadModel:
    def __init__(self, transactions: Transactions, graph: IdentifierSource) -> None:
        self._tx = transactions
        self._graph = graph

    # -- the outbox --------------------------------------------------------------------------------------------------

    def destinations(self, shop: str, configured: Sequence[str], now: datetime) -> list[DestinationHealth]:
        throttled = or_(*(deliveries.c.last_error.like(p) for p in THROTTLE_PATTERNS))
        with self._tx.begin() as conn:
            rows = conn.execute(
                select(deliveries.c.destination, deliveries.c.status, func.count(), func.min(deliveries.c.created_at),
                       func.sum(case((deliveries.c.attempts > 0, 1), else_=0)),
                       func.sum(case((throttled, 1), else_=0)))
                .where(deliveries.c.shop == shop).group_by(deliveries.c.destination, deliveries.c.status)
            ).all()
            found = sorted({*configured, *(r[0] for r in rows)})
            errors = {name: self._last_error(conn, shop, name) for name in found}
        tallies: dict[str, dict[str, Any]] = {name: {} for name in found}
        for destination, status, total, oldest, failing, held in rows:
            tally = tallies[destination]
            tally[status] = total
            if status == "pending":
                tally.update(failing=int(failing or 0), throttled=int(held or 0),
                             oldest_pending_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        return [
            DestinationHealth(destination=name, delivered=t.get("delivered", 0), pending=t.get("pending", 0),
                              failing=t.get("failing", 0), throttled=t.get("throttled", 0), dead=t.get("dead", 0),
                              oldest_pending_seconds=t.get("oldest_pending_seconds", 0.0), last_error=errors[name])
            for name, t in tallies.items()
        ]

    def _last_error(self, conn: Connection, shop: str, destination: str) -> str | None:
        # Delivering clears the error, so only undelivered rows hold one: the (status, not_before) index finds
        # them, where `ORDER BY id DESC` alone would walk every delivery of a destination that never failed.
        error = conn.execute(
            select(deliveries.c.last_error)
            .where(deliveries.c.status.in_(UNDELIVERED), deliveries.c.shop == shop,
                   deliveries.c.destination == destination, deliveries.c.last_error.is_not(None))
            .order_by(deliveries.c.id.desc()).limit(1)
        ).scalar()
        return scrub_contacts(error) if error else None

    def dead_letters(self, shop: str, limit: int) -> tuple[list[DeadLetter], int]:
        dead = (deliveries.c.shop == shop, deliveries.c.status == "dead")
        with self._tx.begin() as conn:
            total = conn.execute(select(func.count()).select_from(deliveries).where(*dead)).scalar_one()
            rows = conn.execute(
                select(deliveries.c.id, deliveries.c.destination, deliveries.c.metric, deliveries.c.attempts,
                       deliveries.c.created_at, deliveries.c.last_error, abandonments.c.person_id)
                .join(abandonments, abandonments.c.delivery_id == deliveries.c.id, isouter=True)
                .where(*dead).order_by(deliveries.c.id.desc()).limit(limit)
            ).all()
            roots = self._roots(conn, [r.person_id for r in rows if r.person_id is not None])
        labels = self._labels(set(roots.values()))
        letters = [
            DeadLetter(id=r.id, destination=r.destination, metric=r.metric, attempts=r.attempts,
                       created_at=r.created_at, last_error=scrub_contacts(r.last_error or ""),
                       recipient=labels.get(roots[r.person_id]) if r.person_id is not None else None)
            for r in rows
        ]
        return letters, int(total)

    # -- events and their resolution -----------------------------------------------------------------------------

    def recent_events(self, shop: str, limit: int) -> list[ResolvedEvent]:
        root = func.coalesce(persons.c.merged_into, persons.c.id).label("person")
        with self._tx.begin() as conn:
            rows = conn.execute(
                select(events.c.id, events.c.occurred_at, events.c.name, events.c.source, events.c.processed_at, root)
                .join(persons, persons.c.id == events.c.person_id, isouter=True)
                .where(events.c.shop == shop).order_by(events.c.id.desc()).limit(limit)
            ).all()
            ids = [r.id for r in rows]
            links = self._links(conn, ids)
            kinds = self._identifier_types(conn, ids)
        labels = self._labels({r.person for r in rows if r.person is not None})
        resolved = []
        for r in rows:
            resolution, rule, confidence = explain_resolution(
                links.get(r.id, []), kinds.get(r.id, []), processed=r.processed_at is not None,
                has_person=r.person is not None)
            person_label = labels.get(r.person, "") if r.person is not None else ""
            resolved.append(ResolvedEvent(
                id=r.id, occurred_at=r.occurred_at, name=scrub_contacts(r.name), source=r.source, person=r.person,
                person_label=person_label, resolution=resolution, rule=rule, confidence=confidence))
        return resolved

    def _links(self, conn: Connection, event_ids: list[int]) -> dict[int, list[_Link]]:
        if not event_ids:
            return {}
        rows = conn.execute(
            select(identity_links.c.event_id, identity_links.c.action, identity_links.c.rule,
                   identity_links.c.confidence, identity_links.c.other_person_id, identifiers.c.type)
            .join(identifiers, identifiers.c.id == identity_links.c.identifier_id, isouter=True)
            .where(identity_links.c.event_id.in_(event_ids)).order_by(identity_links.c.id)
        ).all()
        found: dict[int, list[_Link]] = {}
        for row in rows:
            found.setdefault(row.event_id, []).append(_Link(
                action=row.action, rule=row.rule, confidence=float(row.confidence), identifier_type=row.type,
                other_person=row.other_person_id))
        return found

    def _identifier_types(self, conn: Connection, event_ids: list[int]) -> dict[int, list[str]]:
        if not event_ids:
            return {}
        found: dict[int, list[str]] = {}
        for event_id, kind in conn.execute(
            select(event_identifiers.c.event_id, event_identifiers.c.type)
            .where(event_identifiers.c.event_id.in_(event_ids)).order_by(event_identifiers.c.id)
        ):
            if kind not in found.setdefault(event_id, []):
                found[event_id].append(kind)
        return found

    # -- persons, masked -------------------------------------------------------------------------------------------

    def _roots(self, conn: Connection, person_ids: list[int]) -> dict[int, int]:
        if not person_ids:
            return {}
        rows = conn.execute(select(persons.c.id, func.coalesce(persons.c.merged_into, persons.c.id))
                            .where(persons.c.id.in_(sorted(set(person_ids))))).all()
        found = {int(person): int(root) for person, root in rows}
        return {person: found.get(person, person) for person in person_ids}

    def _labels(self, person_ids: set[int]) -> dict[int, str]:
        """`#12 · a***@e***.com`: the person's most recent contact, masked, or what kind of person it is."""
        return {person: person_label(person, self._graph.identifiers_of(person)) for person in sorted(person_ids)}


def person_label(person: int, held: Sequence[HeldIdentifier]) -> str:
    latest = sorted(held, key=lambda i: i.last_seen, reverse=True)
    for kind in LABEL_TYPES:
        found = next((i for i in latest if i.type is kind), None)
        if found is not None:
            shown = "Klaviyo profile" if kind is IdentifierType.KLAVIYO_EXCHANGE_ID else masked(kind, found.value)
            return f"#{person} · {shown}"
    return f"#{person} · anonymous"


def explain_resolution(
    links: Sequence[_Link], identifier_types: Sequence[str], *, processed: bool, has_person: bool,
) -> tuple[str, str, float | None]:
    """What resolving the event did, the rule behind it and its confidence, from the evidence the event left."""
    if not processed:
        return "waiting to be resolved", "", None
    guess = next((link for link in links if link.action == "probabilistic"), None)
    if guess is not None:
        return f"probably person #{guess.other_person}" if guess.other_person else "probable match", \
            guess.rule, guess.confidence
    if links:
        return _summarize(links), links[0].rule, min(link.confidence for link in links)
    if has_person:
        return f"known {', '.join(_names(identifier_types)) or 'identifiers'}", "existing link", 1.0
    return "no identifiers", "", None


def _summarize(links: Sequence[_Link]) -> str:
    parts: list[str] = []
    attached = [link.identifier_type for link in links if link.action == "attach" and link.identifier_type]
    if attached:
        parts.append("new " + ", ".join(_names(attached)))
    merged = [f"#{link.other_person}" for link in links if link.action == "merge" and link.other_person]
    if merged:
        parts.append("merged " + ", ".join(merged))
    moved = [link.identifier_type or "identifier" for link in links if link.action == "move"]
    if moved:
        parts.append("shared " + ", ".join(_names(moved)) + " moved here")
    actions = {link.action for link in links}
    parts += [text for action, text in (("refuse", "refused a link"), ("conflict", "conflict recorded"))
              if action in actions]
    return "; ".join(parts) or links[0].action


def _names(identifier_types: Sequence[str]) -> list[str]:
    """`klaviyo_exchange_id` -> `klaviyo exchange id`, each once, in order."""
    return [kind.replace("_", " ") for kind in dict.fromkeys(identifier_types)]
