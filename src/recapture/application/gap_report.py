"""The gap report use case: read the counted abandonments, deliveries and orders, and build the report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Protocol

from recapture.application.ports import Clock
from recapture.domain.gap_report import (
    DEFAULT_ATTRIBUTION_WINDOW,
    DeliveredAbandonment,
    GapReport,
    Order,
    OutcomeTally,
    Period,
    ReportScope,
    build_gap_report,
    parse_instant,
)

DEFAULT_DAYS = 28
# A report reads at most this much history at once (a day series of two years is 2,900 rows).
MAX_RANGE = timedelta(days=731)
MAX_ATTRIBUTION_WINDOW = timedelta(days=90)
# Instants a report may name: far enough from datetime's limits that the attribution arithmetic never overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class ReportStore(Protocol):
    """The read side the report needs; all times are aware UTC datetimes."""

    def outcome_tallies(self, shop: str, since: datetime, until: datetime, now: datetime) -> Sequence[OutcomeTally]:
        """Abandonments with `since <= abandoned_at < until`, counted per UTC day, stage and counted trait."""
        ...

    def last_delivered_at(self, shop: str, since: datetime, until: datetime) -> datetime | None:
        """When the last of the abandonments of [since, until) was delivered."""
        ...

    def delivered_between(self, shop: str, start: datetime, end: datetime) -> Sequence[DeliveredAbandonment]:
        """Delivered abandonments with `start <= delivered_at <= end`, whatever their abandonment time."""
        ...

    def orders_between(self, shop: str, start: datetime, end: datetime) -> Sequence[Order]:
        """Conversion rows with `start <= occurred_at <= end`, and the earlier reports of the same orders (an
        `orders/paid` days after `orders/create`: the order was placed at its first report)."""
        ...


class InvalidReportQueryError(ValueError):
    """The range or the attribution window asked for is not one the report can give; the message says why."""


class GapReportService:
    def __init__(self, store: ReportStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def scope(
        self, shop: str, since: datetime | None = None, until: datetime | None = None, period: Period = Period.DAY,
        attribution_window: timedelta = DEFAULT_ATTRIBUTION_WINDOW,
    ) -> ReportScope:
        """The range asked for; by default the 28 UTC days up to `until` (now), the day holding `until` last."""
        now = self._clock.now()
        until = until or now
        for name, instant in (("since", since), ("until", until)):
            if instant is not None and not EARLIEST <= instant <= LATEST:
                raise InvalidReportQueryError(
                    f"{name} ({instant.isoformat()}) must lie between {EARLIEST.year} and {LATEST.year}")
        if since is None:
            # `until` itself is excluded: until=2026-10-13T00:00 (`--until 2026-10-12`) ends with the 12th.
            last_day = (until - timedelta(microseconds=1)).astimezone(UTC).date()
            since = datetime.combine(last_day - timedelta(days=DEFAULT_DAYS - 1), time(), UTC)
        if since >= until:
            raise InvalidReportQueryError(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
        if until - since > MAX_RANGE:
            raise InvalidReportQueryError(f"the range is longer than {MAX_RANGE.days} days")
        if not timedelta(0) <= attribution_window <= MAX_ATTRIBUTION_WINDOW:
            raise InvalidReportQueryError(f"the attribution window must be 0 to {MAX_ATTRIBUTION_WINDOW.days} days")
        return ReportScope(shop=shop, since=since, until=until, period=period, generated_at=now,
                           attribution_window=attribution_window)

    def scope_of(
        self, shop: str, since: str | None = None, until: str | None = None, period: str | None = None,
        attribution_days: str | float | None = None,
    ) -> ReportScope:
        """The scope from text (a query string, command-line options): a date alone is a whole UTC day."""
        try:
            start = parse_instant(since) if since else None
            end = parse_instant(until, end_of_day=True) if until else None
            window = timedelta(days=float(attribution_days)) if attribution_days is not None else None
            grain = Period(period or Period.DAY)
        except (ValueError, OverflowError) as error:
            raise InvalidReportQueryError(
                "since/until are ISO-8601 dates or date-times, period is day or week, attribution_days a number "
                f"({error})") from error
        return self.scope(shop, start, end, grain, DEFAULT_ATTRIBUTION_WINDOW if window is None else window)

    def report(self, scope: ReportScope) -> GapReport:
        window = scope.attribution_window
        tallies = self._store.outcome_tallies(scope.shop, scope.since, scope.until, scope.generated_at)
        last = self._store.last_delivered_at(scope.shop, scope.since, scope.until)
        if last is None:
            return build_gap_report(scope, tallies, [], [])
        # An order is credited to the last delivery before it, so deliveries just outside the range compete too.
        delivered = self._store.delivered_between(scope.shop, scope.since - window, last + window)
        orders = self._store.orders_between(scope.shop, scope.since, last + window)
        return build_gap_report(scope, tallies, delivered, orders)
