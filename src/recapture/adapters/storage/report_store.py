"""The gap report's reads on SQLAlchemy Core: counted in SQL, narrow columns only, never a sealed payload.

The abandonments of a range are counted per UTC day and per counted trait in one GROUP BY (a million rows become a
few hundred); only delivered abandonments and orders come back as rows, for latency and attribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, String, case, exists, false, func, literal, or_, select, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from recapture.adapters.storage.identity_graph import REACHABLE_TYPES
from recapture.adapters.storage.schema import abandonments, conversions, deliveries, identifiers, persons, sessions
from recapture.domain.abandonment import Outcome
from recapture.domain.gap_report import (
    DELIVERED,
    REACHED_OUTCOMES,
    UNREACHED_OUTCOMES,
    DeliveredAbandonment,
    Order,
    OutcomeTally,
)
from recapture.domain.sessions import Stage

# Values per IN (...) list: well under SQLite's and PostgreSQL's parameter limits.
LOOKUP_CHUNK = 500


class UtcDay(FunctionElement[str]):
    """The UTC calendar day of a timestamp as 'YYYY-MM-DD'."""

    type = String()
    inherit_cache = True


@compiles(UtcDay)
def _utc_day_sqlite(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite holds naive UTC text (UtcDateTime), which date() reads as it is.
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(UtcDay, "postgresql")
def _utc_day_postgresql(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    return f"to_char({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def _root(person: Any) -> Any:
    """The person an id belongs to now: merges point an absorbed person at its survivor (one hop)."""
    return func.coalesce(persons.c.merged_into, person)


def _reachable(person: Any) -> Any:
    return exists().where(identifiers.c.person_id == person,
                          identifiers.c.type.in_([t.value for t in REACHABLE_TYPES]))


def _flag(condition: Any) -> Any:
    return case((condition, 1), else_=0)


class SqlReportStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def outcome_tallies(self, shop: str, since: datetime, until: datetime, now: datetime) -> list[OutcomeTally]:
        # One statement, so one snapshot: a session decided meanwhile is counted once, as waiting or as decided.
        both = union_all(self._decided(shop, since, until), self._waiting(shop, since, until, now)).subquery()
        with self._engine.connect() as conn:
            rows = conn.execute(_counted(both)).all()
        return [
            OutcomeTally(day=date.fromisoformat(r.day), stage=Stage(r.stage), outcome=r.outcome, native=bool(r.native),
                         identifiable=bool(r.identifiable), delivery_status=r.status, incomplete=bool(r.incomplete),
                         awaiting_identity=bool(r.awaiting), count=r.n)
            for r in rows
        ]

    @staticmethod
    def _decided(shop: str, since: datetime, until: datetime) -> Any:
        """Decided abandonments; whether recapture could reach the shopper is known from most outcomes."""
        outcome = abandonments.c.outcome
        root = _root(abandonments.c.person_id)
        identifiable = case(
            (outcome.in_([o.value for o in REACHED_OUTCOMES]), 1),
            (outcome.in_([o.value for o in UNREACHED_OUTCOMES]), 0),
            (abandonments.c.person_id.is_(None), 0),
            else_=_flag(_reachable(root)),
        )
        return (
            select(UtcDay(abandonments.c.abandoned_at).label("day"), abandonments.c.stage, outcome,
                   abandonments.c.native, identifiable.label("identifiable"), deliveries.c.status,
                   abandonments.c.incomplete, literal(0).label("awaiting"))
            .select_from(abandonments.outerjoin(persons, persons.c.id == abandonments.c.person_id)
                         .outerjoin(deliveries, deliveries.c.id == abandonments.c.delivery_id))
            .where(*_abandoned_within(shop, since, until))
        )

    @staticmethod
    def _waiting(shop: str, since: datetime, until: datetime, now: datetime) -> Any:
        """Sessions decided not identifiable that wait for their shopper (no abandonment row until then)."""
        state = sessions.c.state
        native = or_(func.coalesce(state["klaviyo_identified"].as_boolean(), false()),
                     func.coalesce(state["shopify_knows_checkout"].as_boolean(), false()))
        return (
            select(UtcDay(sessions.c.last_activity_at).label("day"), sessions.c.stage,
                   literal(Outcome.NOT_IDENTIFIABLE.value, String).label("outcome"), _flag(native).label("native"),
                   literal(0).label("identifiable"), literal(None, String).label("status"),
                   literal(0).label("incomplete"), _flag(sessions.c.expires_at > now).label("awaiting"))
            .where(sessions.c.shop == shop, sessions.c.status == "waiting",
                   sessions.c.last_activity_at >= since, sessions.c.last_activity_at < until)
        )

    def last_delivered_at(self, shop: str, since: datetime, until: datetime) -> datetime | None:
        query = (
            select(func.max(deliveries.c.delivered_at))
            .select_from(abandonments.join(deliveries, deliveries.c.id == abandonments.c.delivery_id))
            .where(*_abandoned_within(shop, since, until), abandonments.c.outcome == Outcome.SENT.value,
                   deliveries.c.status == DELIVERED)
        )
        with self._engine.connect() as conn:
            last: datetime | None = conn.execute(query).scalar()
        return last

    def delivered_between(self, shop: str, start: datetime, end: datetime) -> list[DeliveredAbandonment]:
        query = (
            select(abandonments.c.stage, abandonments.c.native, abandonments.c.abandoned_at,
                   deliveries.c.delivered_at, _root(abandonments.c.person_id).label("person"))
            .select_from(abandonments.join(deliveries, deliveries.c.id == abandonments.c.delivery_id)
                         .outerjoin(persons, persons.c.id == abandonments.c.person_id))
            .where(abandonments.c.shop == shop, abandonments.c.outcome == Outcome.SENT.value,
                   deliveries.c.status == DELIVERED, deliveries.c.delivered_at >= start,
                   deliveries.c.delivered_at <= end)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [DeliveredAbandonment(person=r.person, stage=Stage(r.stage), native=bool(r.native),
                                     abandoned_at=r.abandoned_at, delivered_at=r.delivered_at) for r in rows]

    def orders_between(self, shop: str, start: datetime, end: datetime) -> list[Order]:
        with self._engine.connect() as conn:
            rows: list[Any] = list(conn.execute(_orders().where(
                conversions.c.shop == shop, conversions.c.occurred_at >= start, conversions.c.occurred_at <= end)))
            rows += self._earlier_reports(conn, shop, start, rows)
        return [Order(row_id=r.id, person=r.person, order_id=r.order_id, checkout_token=r.checkout_token,
                      revenue=Decimal(r.revenue) if r.revenue else None, currency=r.currency,
                      occurred_at=r.occurred_at) for r in rows]

    @staticmethod
    def _earlier_reports(conn: Connection, shop: str, start: datetime, rows: Sequence[Any]) -> list[Any]:
        """The reports before `start` of the orders in `rows`: an order paid today may have been placed last week."""
        tokens = sorted({r.checkout_token for r in rows if r.checkout_token})
        # Orders without a checkout token (POS, draft orders) are found by id; the others by the indexed token.
        order_ids = sorted({r.order_id for r in rows if r.order_id and not r.checkout_token})
        earlier: list[Any] = []
        for column, values in ((conversions.c.checkout_token, tokens), (conversions.c.order_id, order_ids)):
            for chunk in (values[i:i + LOOKUP_CHUNK] for i in range(0, len(values), LOOKUP_CHUNK)):
                earlier += conn.execute(_orders().where(conversions.c.shop == shop, conversions.c.occurred_at < start,
                                                        column.in_(chunk))).all()
        return earlier


def _abandoned_within(shop: str, since: datetime, until: datetime) -> tuple[Any, ...]:
    """The abandonments of [since, until): the (shop, abandoned_at) index reads exactly these."""
    return (abandonments.c.shop == shop, abandonments.c.abandoned_at >= since, abandonments.c.abandoned_at < until)


def _orders() -> Any:
    """Conversion rows with the buyer's person as it is now (after merges)."""
    return (
        select(conversions.c.id, _root(conversions.c.person_id).label("person"), conversions.c.order_id,
               conversions.c.checkout_token, conversions.c.revenue, conversions.c.currency, conversions.c.occurred_at)
        .select_from(conversions.outerjoin(persons, persons.c.id == conversions.c.person_id))
    )


def _counted(rows: Any) -> Any:
    """One row per distinct combination of the counted traits, with how many abandonments share it."""
    traits = [rows.c.day, rows.c.stage, rows.c.outcome, rows.c.native, rows.c.identifiable, rows.c.status,
              rows.c.incomplete, rows.c.awaiting]
    return select(*traits, func.count().label("n")).group_by(*traits)

