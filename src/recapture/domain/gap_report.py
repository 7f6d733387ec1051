"""The gap report: the abandonments Klaviyo saw itself, the ones recapture added, and what followed them.

Pure: the storage adapter hands over counted abandonments (grouped by day, stage and everything counted), the
delivered abandonments and the orders; this module buckets them by period and stage and computes the figures
(docs/report.md says what each means).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from recapture.domain.abandonment import Outcome
from recapture.domain.sessions import Stage

STAGES: tuple[Stage, ...] = tuple(sorted(Stage))
ALL_STAGES = "all"
# Every reason an abandonment was not sent; an outcome the code adds later is reported too, never dropped.
SUPPRESSION_REASONS: tuple[str, ...] = tuple(o.value for o in Outcome if o is not Outcome.SENT)
# What happened to a sent abandonment's delivery, when it is not (yet) delivered.
UNDELIVERED_STATUSES = ("pending", "dead")
DELIVERED = "delivered"
# A sent abandonment whose outbox row is gone or was never written (a replayed decision).
MISSING_DELIVERY = "missing"
UNKNOWN_CURRENCY = "unknown"
# Outcomes decided after the shopper was found reachable (`decide` checks reachability before the cool-down),
# and the one that says they were not; for the others recapture's identity graph tells.
REACHED_OUTCOMES = frozenset({Outcome.SENT, Outcome.COOL_DOWN, Outcome.NO_DESTINATION, Outcome.FORWARDED})
UNREACHED_OUTCOMES = frozenset({Outcome.NOT_IDENTIFIABLE})
DEFAULT_ATTRIBUTION_WINDOW = timedelta(days=5)


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"


def stage_name(stage: Stage) -> str:
    return stage.name.lower()


def period_start(day: date, period: Period) -> date:
    """The day itself, or the Monday of its ISO week."""
    return day if period is Period.DAY else day - timedelta(days=day.weekday())


def periods_between(since: datetime, until: datetime, period: Period) -> list[date]:
    """Every period that holds an instant of [since, until), in order."""
    first = period_start(since.astimezone(UTC).date(), period)
    last = period_start((until - timedelta(microseconds=1)).astimezone(UTC).date(), period)
    step = timedelta(days=1 if period is Period.DAY else 7)
    found = []
    while first <= last:
        found.append(first)
        first += step
    return found


def parse_instant(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO-8601 date (a whole UTC day: its start, or with `end_of_day` the start of the next) or date-time.

    A date-time without a zone is UTC. Raises ValueError on anything else.
    """
    text = text.strip()
    try:
        # Any date form Python reads (2026-10-12, 20261012, 2026-W41-1) is a whole day, never its midnight alone.
        day = date.fromisoformat(text)
    except ValueError:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    else:
        return datetime.combine(day + timedelta(days=1 if end_of_day else 0), time(), UTC)
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


# -- what the store hands over ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OutcomeTally:
    """How many abandonments of one UTC day and stage share every trait the report counts (a GROUP BY row)."""

    day: date
    stage: Stage
    outcome: str
    # Klaviyo's own tracking named the shopper (its cookie, or an email typed at Shopify's checkout).
    native: bool
    # recapture holds an email, phone or Klaviyo exchange id for the shopper.
    identifiable: bool
    # The status of the delivery of a sent abandonment: pending | delivered | dead (None: no outbox row).
    delivery_status: str | None = None
    incomplete: bool = False
    # Not identifiable yet, and still waiting for the shopper to be identified (then it may still be sent).
    awaiting_identity: bool = False
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveredAbandonment:
    """A sent abandonment the destination accepted; `person` is the shopper's person after merges."""

    person: int | None
    stage: Stage
    native: bool
    abandoned_at: datetime
    delivered_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """One conversion row; Shopify reports an order several times (pixel, orders/create, orders/paid)."""

    row_id: int
    person: int | None
    order_id: str | None
    checkout_token: str | None
    revenue: Decimal | None
    currency: str | None
    occurred_at: datetime

    @property
    def key(self) -> str:
        if self.order_id:
            return f"order:{self.order_id}"
        if self.checkout_token:
            return f"checkout:{self.checkout_token}"
        return f"row:{self.row_id}"

    @property
    def names(self) -> list[str]:
        """Every name a report of this order may carry: reports sharing any of them are one order."""
        found = [f"order:{self.order_id}"] if self.order_id else []
        found += [f"checkout:{self.checkout_token}"] if self.checkout_token else []
        return found or [f"row:{self.row_id}"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportScope:
    shop: str
    since: datetime
    until: datetime
    period: Period
    generated_at: datetime
    attribution_window: timedelta = DEFAULT_ATTRIBUTION_WINDOW

    def holds(self, instant: datetime) -> bool:
        return self.since <= instant < self.until


# -- the figures -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    p50: float
    p95: float
    max: float


def percentile(ordered: Sequence[float], percent: int) -> float:
    """Nearest rank (in integers, so that no rounding moves it): always a value that was observed."""
    rank = -(-percent * len(ordered) // 100)
    return ordered[max(0, rank - 1)]


def latency_of(seconds: Iterable[float]) -> Latency | None:
    ordered = sorted(seconds)
    if not ordered:
        return None
    return Latency(p50=percentile(ordered, 50), p95=percentile(ordered, 95), max=ordered[-1])


@dataclass(slots=True)
class Figures:
    """The counts of one stage in one period, or summed over several."""

    seen: int = 0
    native: int = 0
    recapture_only: int = 0
    sent: int = 0
    delivered: int = 0
    # Delivered, and Klaviyo could not have seen the shopper itself: the abandonments recapture added.
    recaptured: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    undelivered: Counter[str] = field(default_factory=Counter)
    awaiting_identity: int = 0
    incomplete: int = 0
    latencies: list[float] = field(default_factory=list)
    recovered_orders: int = 0
    recovered_revenue: dict[str, Decimal] = field(default_factory=dict)

    def count(self, tally: OutcomeTally) -> None:
        n = tally.count
        self.seen += n
        self.native += n * tally.native
        self.recapture_only += n * (tally.identifiable and not tally.native)
        self.incomplete += n * tally.incomplete
        self.awaiting_identity += n * tally.awaiting_identity
        if tally.outcome != Outcome.SENT:
            self.suppressed[tally.outcome] += n
            return
        self.sent += n
        if tally.delivery_status == DELIVERED:
            self.delivered += n
            self.recaptured += n * (not tally.native)
        else:
            self.undelivered[tally.delivery_status or MISSING_DELIVERY] += n

    def recover(self, order: RecoveredOrder) -> None:
        self.recovered_orders += 1
        if order.revenue is not None:
            self._earn(currency_code(order.currency), order.revenue)

    def _earn(self, currency: str, amount: Decimal) -> None:
        # Per currency: amounts in different currencies are never added together.
        self.recovered_revenue[currency] = self.recovered_revenue.get(currency, Decimal(0)) + amount

    def add(self, other: Figures) -> None:
        for name in ("seen", "native", "recapture_only", "sent", "delivered", "recaptured", "awaiting_identity",
                     "incomplete", "recovered_orders"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.suppressed.update(other.suppressed)
        self.undelivered.update(other.undelivered)
        self.latencies.extend(other.latencies)
        for currency, amount in other.recovered_revenue.items():
            self._earn(currency, amount)

    @property
    def lift(self) -> float | None:
        """Recaptured ÷ native: +0.38 is 38 more abandonment emails for every 100 Klaviyo's own flows could send."""
        return self.recaptured / self.native if self.native else None

    def as_json(self) -> dict[str, Any]:
        latency = latency_of(self.latencies)
        return {
            "seen": self.seen,
            "native": self.native,
            "recapture_only": self.recapture_only,
            "delivered": self.delivered,
            "suppressed": _with_zeros(self.suppressed, SUPPRESSION_REASONS),
            "incomplete": self.incomplete,
            "latency_seconds": None if latency is None else {"p50": latency.p50, "p95": latency.p95,
                                                             "max": latency.max},
            "recovered_orders": self.recovered_orders,
            # Positional notation always: str() would print an amount stored as 1E+3 in exponent form.
            "recovered_revenue": {currency: f"{total:f}" for currency, total in sorted(self.recovered_revenue.items())},
            "lift": self.lift,
            "recaptured": self.recaptured,
            "sent": self.sent,
            "undelivered": _with_zeros(self.undelivered, UNDELIVERED_STATUSES),
            "awaiting_identity": self.awaiting_identity,
        }


def _with_zeros(counts: Counter[str], always: Sequence[str]) -> dict[str, int]:
    return {key: counts[key] for key in always} | {key: n for key, n in sorted(counts.items()) if key not in always}


# -- recovered orders ------------------------------------------------------------------------------------------------


def currency_code(currency: str | None) -> str:
    """`usd` and `USD ` are one currency (the pixel upper-cases codes, a webhook passes them on as sent)."""
    return (currency or "").strip().upper() or UNKNOWN_CURRENCY


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveredOrder:
    key: str
    revenue: Decimal | None
    currency: str | None
    occurred_at: datetime
    after: DeliveredAbandonment


def _same_orders(rows: Iterable[Order]) -> list[list[Order]]:
    """The reports grouped by order: the pixel may name an order by its checkout token only, a webhook by both."""
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    rows = list(rows)
    for row in rows:
        first, *others = row.names
        for other in others:
            parent[find(other)] = find(first)
    groups: dict[str, list[Order]] = defaultdict(list)
    for row in rows:
        groups[find(row.names[0])].append(row)
    return list(groups.values())


def distinct_orders(rows: Iterable[Order]) -> list[Order]:
    """One row per order: its first report, with the first revenue any report of it carried."""
    merged = []
    for same in _same_orders(rows):
        same.sort(key=lambda o: (o.occurred_at, o.row_id))
        priced = next((o for o in same if o.revenue is not None), same[0])
        first = same[0]
        merged.append(Order(row_id=first.row_id, person=next((o.person for o in same if o.person is not None), None),
                            order_id=next((o.order_id for o in same if o.order_id), None),
                            checkout_token=next((o.checkout_token for o in same if o.checkout_token), None),
                            revenue=priced.revenue, currency=priced.currency, occurred_at=first.occurred_at))
    return merged


def attribute_orders(
    delivered: Iterable[DeliveredAbandonment], orders: Iterable[Order], window: timedelta
) -> list[RecoveredOrder]:
    """Each order once, to the person's last delivered abandonment before it, if delivered within `window`."""
    by_person: dict[int, list[DeliveredAbandonment]] = defaultdict(list)
    for abandonment in delivered:
        if abandonment.person is not None:
            by_person[abandonment.person].append(abandonment)
    times: dict[int, list[datetime]] = {}
    for person, found in by_person.items():
        found.sort(key=lambda a: a.delivered_at)
        times[person] = [a.delivered_at for a in found]
    recovered = []
    for order in distinct_orders(orders):
        if order.person is None or order.person not in times:
            continue
        index = bisect_right(times[order.person], order.occurred_at) - 1
        if index >= 0 and order.occurred_at - times[order.person][index] <= window:
            recovered.append(RecoveredOrder(key=order.key, revenue=order.revenue, currency=order.currency,
                                            occurred_at=order.occurred_at, after=by_person[order.person][index]))
    return recovered


# -- the report ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GapReport:
    scope: ReportScope
    # (period start, stage) -> figures; every period x stage of the scope, zeros included.
    cells: dict[tuple[date, Stage], Figures]

    def periods(self) -> list[date]:
        return sorted({start for start, _ in self.cells})

    def stage_totals(self, stage: Stage) -> Figures:
        return _summed(f for (_, s), f in self.cells.items() if s is stage)

    def period_totals(self, start: date) -> Figures:
        return _summed(f for (p, _), f in self.cells.items() if p == start)

    def total(self) -> Figures:
        return _summed(self.cells.values())

    def as_json(self) -> dict[str, Any]:
        """The contract of `GET /admin/report` and `recapture report --json` (docs/report.md)."""
        scope = self.scope
        return {
            "shop": scope.shop,
            "since": scope.since.isoformat(),
            "until": scope.until.isoformat(),
            "period": scope.period.value,
            "generated_at": scope.generated_at.isoformat(),
            "attribution_window_days": scope.attribution_window / timedelta(days=1),
            "stages": [stage_name(s) for s in STAGES],
            "totals": {stage_name(s): self.stage_totals(s).as_json() for s in STAGES}
            | {ALL_STAGES: self.total().as_json()},
            "series": [
                {"period_start": start.isoformat(), "stage": stage_name(stage), **self.cells[start, stage].as_json()}
                for start in self.periods() for stage in STAGES
            ],
            "periods": [{"period_start": start.isoformat(), **self.period_totals(start).as_json()}
                        for start in self.periods()],
        }


def _summed(parts: Iterable[Figures]) -> Figures:
    total = Figures()
    for part in parts:
        total.add(part)
    return total


def build_gap_report(
    scope: ReportScope, tallies: Iterable[OutcomeTally], delivered: Iterable[DeliveredAbandonment],
    orders: Iterable[Order],
) -> GapReport:
    """`tallies` of the abandonments of the scope; `delivered` and `orders` may reach beyond it (attribution)."""
    cells = {(start, stage): Figures() for start in periods_between(scope.since, scope.until, scope.period)
             for stage in STAGES}

    def cell(instant_or_day: datetime | date, stage: Stage) -> Figures:
        day = instant_or_day.astimezone(UTC).date() if isinstance(instant_or_day, datetime) else instant_or_day
        return cells.setdefault((period_start(day, scope.period), stage), Figures())

    for tally in tallies:
        cell(tally.day, tally.stage).count(tally)
    delivered = list(delivered)
    for abandonment in delivered:
        if scope.holds(abandonment.abandoned_at):
            latency = (abandonment.delivered_at - abandonment.abandoned_at).total_seconds()
            cell(abandonment.abandoned_at, abandonment.stage).latencies.append(latency)
    for order in attribute_orders(delivered, orders, scope.attribution_window):
        if scope.holds(order.after.abandoned_at):
            cell(order.after.abandoned_at, order.after.stage).recover(order)
    return GapReport(scope=scope, cells=cells)
