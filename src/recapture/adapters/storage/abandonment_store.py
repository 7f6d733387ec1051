"""Sessions, conversions, abandonment decisions and the delivery outbox on SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import Row, and_, exists, func, insert, or_, select, update

from recapture.adapters.storage.schema import abandonments, conversions, deliveries, events, persons, sessions
from recapture.adapters.storage.sealing import Sealer
from recapture.adapters.storage.transactions import Transactions
from recapture.application.abandonment import SessionRecord
from recapture.application.delivery import QueuedDelivery
from recapture.domain.delivery import DELIVERY_KINDS, Delivery, DeliveryEvent, health_colour
from recapture.domain.masking import scrub_contacts
from recapture.domain.sessions import SessionState, Stage


def _state(data: object) -> SessionState:
    return msgspec.convert(data, SessionState, strict=False)


class SqlAbandonmentStore:
    def __init__(self, transactions: Transactions, sealer: Sealer) -> None:
        self._tx = transactions
        self._sealer = sealer

    # -- sessions ------------------------------------------------------------------------------------------------

    def open_session(self, shop: str, device_key: bytes, since: datetime) -> SessionRecord | None:
        with self._tx.begin() as conn:
            row = conn.execute(
                select(sessions).where(sessions.c.shop == shop, sessions.c.device_key == device_key,
                                       sessions.c.status == "open", sessions.c.last_activity_at >= since)
                .order_by(sessions.c.last_activity_at.desc()).limit(1)
            ).first()
        return self._session(row) if row is not None else None

    def _session(self, row: Row[Any]) -> SessionRecord:
        return SessionRecord(id=row.id, shop=row.shop, person_id=row.person_id, state=_state(row.state),
                             status=row.status)

    def save_session(self, session_id: int | None, shop: str, device_key: bytes, person: int | None,
                     state: SessionState, due_at: datetime) -> int:
        values = {
            "person_id": person, "stage": int(state.stage), "last_activity_at": state.last_activity_at,
            "due_at": due_at, "state": msgspec.to_builtins(state),
        }
        with self._tx.begin() as conn:
            if session_id is not None:
                conn.execute(update(sessions).where(sessions.c.id == session_id).values(**values))
                return session_id
            statement = insert(sessions).values(shop=shop, device_key=device_key, started_at=state.started_at,
                                                status="open", **values)
            return int(conn.execute(statement.returning(sessions.c.id)).scalar_one())

    def due_sessions(self, now: datetime, limit: int, horizon: datetime | None = None) -> list[SessionRecord]:
        """Sessions whose hold window ended by `horizon`, and waiting ones whose shopper has been identified since."""
        horizon = now if horizon is None else horizon
        root = persons.alias("root")
        with self._tx.begin() as conn:
            due = conn.execute(
                select(sessions).where(sessions.c.status == "open", sessions.c.due_at <= horizon)
                .order_by(sessions.c.due_at).limit(limit)
            ).all()
            revived = conn.execute(
                select(sessions)
                .join(persons, persons.c.id == sessions.c.person_id)
                .join(root, root.c.id == func.coalesce(persons.c.merged_into, persons.c.id))
                .where(sessions.c.status == "waiting", sessions.c.expires_at > now,
                       root.c.identified_at > sessions.c.decided_at)
                .limit(limit)
            ).all()
            # Waited the whole lookback and still nobody to write to: decided (not identifiable) for good.
            expired = conn.execute(
                select(sessions).where(sessions.c.status == "waiting", sessions.c.expires_at <= horizon)
                .order_by(sessions.c.expires_at).limit(limit)
            ).all()
        return [self._session(r) for r in (*due, *revived, *expired)]

    def oldest_unprocessed_event(self) -> datetime | None:
        with self._tx.begin() as conn:
            # min() keeps the column's type: an aware UTC datetime on both databases.
            oldest: datetime | None = conn.execute(
                select(func.min(events.c.occurred_at)).where(events.c.processed_at.is_(None))).scalar()
        return oldest

    def count_sessions(self, now: datetime) -> dict[str, int]:
        with self._tx.begin() as conn:
            due = conn.execute(select(func.count()).select_from(sessions).where(or_(
                and_(sessions.c.status == "open", sessions.c.due_at <= now),
                and_(sessions.c.status == "waiting", sessions.c.expires_at <= now)))).scalar_one()
            later = conn.execute(select(func.count()).select_from(sessions).where(
                sessions.c.status == "open", sessions.c.due_at > now)).scalar_one()
            waiting = conn.execute(select(func.count()).select_from(sessions).where(
                sessions.c.status == "waiting", sessions.c.expires_at > now)).scalar_one()
        return {"due": due, "timers": later, "awaiting_identity": waiting}

    def close_session(self, session_id: int, status: str, outcome: str, at: datetime,
                      expires_at: datetime | None = None) -> None:
        with self._tx.begin() as conn:
            conn.execute(update(sessions).where(sessions.c.id == session_id).values(
                status=status, outcome=outcome, decided_at=at, expires_at=expires_at))

    # -- facts ---------------------------------------------------------------------------------------------------

    def family(self, person: int) -> list[int]:
        """The person's root and everyone merged into it."""
        with self._tx.begin() as conn:
            root = conn.execute(select(func.coalesce(persons.c.merged_into, persons.c.id))
                                .where(persons.c.id == person)).scalar()
            if root is None:
                return [person]
            absorbed = conn.execute(select(persons.c.id).where(persons.c.merged_into == root)).scalars()
            return [int(root), *absorbed]

    def record_conversion(self, shop: str, person: int | None, checkout_token: str | None, cart_token: str | None,
                          order_id: str | None, revenue: Decimal | None, currency: str | None, at: datetime) -> None:
        with self._tx.begin() as conn:
            conn.execute(insert(conversions).values(
                shop=shop, person_id=person, checkout_token=checkout_token, cart_token=cart_token, order_id=order_id,
                revenue=str(revenue) if revenue is not None else None, currency=currency, occurred_at=at))

    def purchased(self, shop: str, family: Sequence[int], tokens: Sequence[str], since: datetime) -> bool:
        matches = [conversions.c.person_id.in_(list(family))]
        if tokens:
            matches += [conversions.c.checkout_token.in_(list(tokens)), conversions.c.cart_token.in_(list(tokens))]
        with self._tx.begin() as conn:
            return bool(conn.execute(select(exists().where(
                conversions.c.shop == shop, conversions.c.occurred_at >= since, or_(*matches)))).scalar())

    def stronger_stage(self, shop: str, family: Sequence[int], stage: Stage, session_id: int,
                       start: datetime, end: datetime) -> bool:
        with self._tx.begin() as conn:
            return bool(conn.execute(select(exists().where(
                sessions.c.shop == shop, sessions.c.person_id.in_(list(family)), sessions.c.id != session_id,
                sessions.c.stage > int(stage), sessions.c.last_activity_at >= start, sessions.c.started_at <= end,
            ))).scalar())

    def sent_recently(self, shop: str, family: Sequence[int], stage: Stage, since: datetime) -> bool:
        with self._tx.begin() as conn:
            return bool(conn.execute(select(exists().where(
                abandonments.c.shop == shop, abandonments.c.person_id.in_(list(family)),
                abandonments.c.stage == int(stage), abandonments.c.outcome == "sent",
                abandonments.c.decided_at >= since,
            ))).scalar())

    # -- decisions and the outbox --------------------------------------------------------------------------------

    def record_abandonment(self, session: SessionRecord, person: int | None, outcome: str, native: bool,
                           incomplete: bool, value: Decimal | None, currency: str | None, at: datetime,
                           delivery_id: int | None) -> None:
        with self._tx.begin() as conn:
            conn.execute(insert(abandonments).values(
                shop=session.shop, session_id=session.id, person_id=person, stage=int(session.state.stage),
                outcome=outcome, native=int(native), incomplete=int(incomplete),
                value=str(value) if value is not None else None, currency=currency,
                abandoned_at=session.state.last_activity_at, decided_at=at, delivery_id=delivery_id))

    def enqueue(self, destination: str, item: Delivery, at: datetime) -> int | None:
        """Add a delivery to the outbox in the caller's transaction; None if this unique_id is already there."""
        kind = next(k for k, t in DELIVERY_KINDS.items() if isinstance(item, t))
        label = item.metric if isinstance(item, DeliveryEvent) else kind
        with self._tx.begin() as conn:
            if conn.execute(select(deliveries.c.id).where(
                deliveries.c.shop == item.shop, deliveries.c.destination == destination,
                deliveries.c.unique_id == item.unique_id)).first() is not None:
                return None
            statement = insert(deliveries).values(
                shop=item.shop, destination=destination, kind=kind, unique_id=item.unique_id, metric=label,
                sealed_payload=self._sealer.seal(msgspec.json.encode(item)), status="pending", attempts=0,
                not_before=at, created_at=at)
            return int(conn.execute(statement.returning(deliveries.c.id)).scalar_one())

    def due_deliveries(self, now: datetime, limit: int) -> list[QueuedDelivery]:
        with self._tx.begin() as conn:
            rows = conn.execute(
                select(deliveries.c.id, deliveries.c.shop, deliveries.c.destination, deliveries.c.attempts,
                       deliveries.c.kind, deliveries.c.sealed_payload)
                .where(deliveries.c.status == "pending", deliveries.c.not_before <= now)
                .order_by(deliveries.c.not_before, deliveries.c.id).limit(limit)
            ).all()
        return [
            QueuedDelivery(id=r.id, shop=r.shop, destination=r.destination, attempts=r.attempts,
                           item=msgspec.json.decode(self._sealer.open(r.sealed_payload), type=DELIVERY_KINDS[r.kind]))
            for r in rows
        ]

    def mark_delivered(self, delivery_id: int, at: datetime) -> None:
        self.mark_all_delivered([delivery_id], at)

    def mark_all_delivered(self, delivery_ids: Sequence[int], at: datetime) -> None:
        """Deliveries the destination accepted (one bulk request): one statement, one commit."""
        if not delivery_ids:
            return
        with self._tx.begin() as conn:
            conn.execute(update(deliveries).where(deliveries.c.id.in_(list(delivery_ids))).values(
                status="delivered", delivered_at=at, attempts=deliveries.c.attempts + 1, last_error=None))

    def reschedule(self, delivery_id: int, not_before: datetime | None, error: str) -> None:
        """Try again at `not_before`, or (None) move to the dead letter with the error."""
        # A platform quotes back the email it refused: the error is kept (and shown) with contact data masked.
        values = {"attempts": deliveries.c.attempts + 1, "last_error": scrub_contacts(error)[:2000]}
        with self._tx.begin() as conn:
            conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(
                **values, **({"not_before": not_before} if not_before else {"status": "dead"})))

    def retry_dead(self, now: datetime, shop: str | None = None, delivery_id: int | None = None) -> int:
        """Queue dead letters again (all, a shop's, or one of them); how many were queued."""
        where = [deliveries.c.status == "dead"] + ([deliveries.c.shop == shop] if shop is not None else [])
        where += [deliveries.c.id == delivery_id] if delivery_id is not None else []
        with self._tx.begin() as conn:
            return int(conn.execute(update(deliveries).where(and_(*where)).values(
                status="pending", not_before=now, attempts=0)).rowcount)

    def delivery_health(self, now: datetime) -> dict[str, dict[str, object]]:
        with self._tx.begin() as conn:
            rows = conn.execute(
                select(deliveries.c.destination, deliveries.c.status, func.count(), func.min(deliveries.c.created_at))
                .group_by(deliveries.c.destination, deliveries.c.status)
            ).all()
            errors = dict(conn.execute(
                select(deliveries.c.destination, deliveries.c.last_error)
                .where(deliveries.c.last_error.is_not(None)).order_by(deliveries.c.id)
            ).all())
        counts: dict[str, dict[str, int]] = {}
        oldest_pending: dict[str, float] = {}
        for destination, status, count, oldest in rows:
            counts.setdefault(destination, {"pending": 0, "delivered": 0, "dead": 0})[status] = count
            if status == "pending" and oldest is not None:
                oldest_pending[destination] = max(0.0, (now - oldest).total_seconds())
        health: dict[str, dict[str, object]] = {}
        for destination, tally in counts.items():
            waiting = oldest_pending.get(destination, 0.0)
            error = errors.get(destination)
            health[destination] = {**tally, "oldest_undelivered_seconds": waiting,
                                   "last_error": scrub_contacts(error) if error else None,
                                   "health": health_colour(tally["dead"], waiting)}
        return health

    def count_deliveries(self, now: datetime) -> dict[str, int]:
        with self._tx.begin() as conn:
            due = conn.execute(select(func.count()).select_from(deliveries).where(
                deliveries.c.status == "pending", deliveries.c.not_before <= now)).scalar_one()
            later = conn.execute(select(func.count()).select_from(deliveries).where(
                deliveries.c.status == "pending", deliveries.c.not_before > now)).scalar_one()
        return {"due": due, "retries": later}


