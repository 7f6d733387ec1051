"""The pure gap report: counting, periods, latency, attribution of orders, lift, and the JSON contract."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recapture.application.gap_report import GapReportService, InvalidReportQueryError
from recapture.domain.abandonment import Outcome
from recapture.domain.gap_report import (
    STAGES,
    SUPPRESSION_REASONS,
    DeliveredAbandonment,
    Order,
    OutcomeTally,
    Period,
    ReportScope,
    attribute_orders,
    build_gap_report,
    distinct_orders,
    latency_of,
    parse_instant,
    periods_between,
)
from recapture.domain.sessions import Stage

MONDAY = datetime(2026, 10, 5, tzinfo=UTC)
FIRST_DAY = MONDAY.date()
WINDOW = timedelta(days=5)
ROW_KEYS = {"seen", "native", "recapture_only", "delivered", "suppressed", "incomplete", "latency_seconds",
            "recovered_orders", "recovered_revenue", "lift"}
CONTRACT_REASONS = {"purchased", "stronger_stage", "cool_down", "no_consent", "native", "not_identifiable"}


def scope(days: int = 7, period: Period = Period.DAY, since: datetime = MONDAY) -> ReportScope:
    return ReportScope(shop="s.myshopify.com", since=since, until=since + timedelta(days=days), period=period,
                       generated_at=since + timedelta(days=days), attribution_window=WINDOW)


def tally(outcome: str = "sent", *, day: date = FIRST_DAY, stage: Stage = Stage.CART, native: bool = False,
          identifiable: bool = True, status: str | None = "delivered", count: int = 1, **extra: Any) -> OutcomeTally:
    return OutcomeTally(day=day, stage=stage, outcome=outcome, native=native, identifiable=identifiable,
                        delivery_status=status if outcome == "sent" else None, count=count, **extra)


def delivered(person: int | None = 1, minutes: float = 0, latency: float = 3600,
              stage: Stage = Stage.CART) -> DeliveredAbandonment:
    abandoned = MONDAY + timedelta(minutes=minutes)
    return DeliveredAbandonment(person=person, stage=stage, native=False, abandoned_at=abandoned,
                                delivered_at=abandoned + timedelta(seconds=latency))


def order(row: int, person: int | None = 1, hours: float = 24, order_id: str | None = None, revenue: str | None = "60.00",
          currency: str | None = "USD") -> Order:
    return Order(row_id=row, person=person, order_id=order_id if order_id is not None else str(row),
                 checkout_token=None, revenue=Decimal(revenue) if revenue else None, currency=currency,
                 occurred_at=MONDAY + timedelta(hours=hours))


# -- periods and times -----------------------------------------------------------------------------------------------


def test_weeks_start_on_monday_and_until_is_excluded() -> None:
    sunday = datetime(2026, 10, 11, 23, 0, tzinfo=UTC)
    assert periods_between(sunday, sunday + timedelta(hours=1), Period.WEEK) == [date(2026, 10, 5)]
    assert periods_between(sunday, sunday + timedelta(hours=2), Period.WEEK) == [date(2026, 10, 5), date(2026, 10, 12)]
    assert periods_between(MONDAY, MONDAY + timedelta(days=2), Period.DAY) == [date(2026, 10, 5), date(2026, 10, 6)]


def test_a_date_is_a_whole_utc_day_and_a_zoneless_time_is_utc() -> None:
    assert parse_instant("2026-10-05") == MONDAY
    assert parse_instant("2026-10-05", end_of_day=True) == MONDAY + timedelta(days=1)
    assert parse_instant("2026-10-05T12:00:00Z") == MONDAY + timedelta(hours=12)
    assert parse_instant("2026-10-05T12:00:00") == MONDAY + timedelta(hours=12)
    assert parse_instant("2026-10-05T14:00:00+02:00") == MONDAY + timedelta(hours=12)
    with pytest.raises(ValueError, match="Invalid"):
        parse_instant("last tuesday")


def test_every_date_form_is_a_whole_day() -> None:
    """`--until 20261005` ends with the 5th like `--until 2026-10-05`, not at its first instant."""
    assert parse_instant("20261005", end_of_day=True) == MONDAY + timedelta(days=1)
    assert parse_instant("2026-W41-1", end_of_day=True) == MONDAY + timedelta(days=1)


class FixedClock:
    def now(self) -> datetime:
        return MONDAY + timedelta(hours=15)


def test_the_default_range_is_28_days_whether_until_is_now_or_a_day() -> None:
    service = GapReportService(store=None, clock=FixedClock())  # type: ignore[arg-type]
    by_now = service.scope_of("s.myshopify.com")
    assert by_now.since == MONDAY - timedelta(days=27)
    by_day = service.scope_of("s.myshopify.com", until="2026-10-05")
    assert (by_day.since, by_day.until) == (MONDAY - timedelta(days=27), MONDAY + timedelta(days=1))
    assert len(periods_between(by_day.since, by_day.until, Period.DAY)) == 28


@pytest.mark.parametrize(("since", "until"), [
    ("0001-01-01", "0001-01-02"), (None, "0001-01-05"), ("9999-12-30", None), ("1969-12-31", "1970-01-02"),
])
def test_instants_near_the_calendars_ends_are_refused_not_overflowed(since: str | None, until: str | None) -> None:
    """The attribution window is subtracted from `since`: year 1 would overflow into a 500."""
    service = GapReportService(store=None, clock=FixedClock())  # type: ignore[arg-type]
    with pytest.raises(InvalidReportQueryError, match="between 1970 and 9000"):
        service.scope_of("s.myshopify.com", since, until)


# -- counting --------------------------------------------------------------------------------------------------------


def test_every_suppression_reason_is_reported_even_when_zero() -> None:
    """The contract's six reasons and every other outcome the code has (no_destination, forwarded) appear."""
    row = build_gap_report(scope(1), [], [], []).as_json()["totals"]["all"]
    assert set(row["suppressed"]) == set(SUPPRESSION_REASONS)
    assert set(row["suppressed"]) >= CONTRACT_REASONS | {"no_destination", "forwarded"}
    assert "sent" not in row["suppressed"]
    assert row["latency_seconds"] is None
    assert row["lift"] is None


def test_native_is_counted_not_delivered_and_a_recaptured_one_is_delivered() -> None:
    tallies = [tally("native", native=True, count=4), tally("sent", count=2), tally("purchased", count=3),
               tally("not_identifiable", identifiable=False)]
    row = build_gap_report(scope(1), tallies, [], []).as_json()["totals"]["cart"]
    assert (row["seen"], row["native"], row["delivered"], row["recapture_only"]) == (10, 4, 2, 5)
    assert row["suppressed"]["native"] == 4
    assert row["suppressed"]["purchased"] == 3
    assert row["suppressed"]["not_identifiable"] == 1
    assert row["lift"] == 0.5


def test_a_sent_abandonment_not_yet_delivered_is_neither_delivered_nor_suppressed() -> None:
    tallies = [tally("sent", status="pending"), tally("sent", status="dead"), tally("sent", status=None)]
    row = build_gap_report(scope(1), tallies, [], []).as_json()["totals"]["all"]
    assert row["delivered"] == 0
    assert sum(row["suppressed"].values()) == 0
    assert row["undelivered"] == {"pending": 1, "dead": 1, "missing": 1}
    assert row["sent"] == 3


def test_an_outcome_unknown_to_this_version_is_still_counted() -> None:
    row = build_gap_report(scope(1), [tally("sent_to_the_moon")], [], []).as_json()["totals"]["all"]
    assert row["suppressed"]["sent_to_the_moon"] == 1


def test_a_delivered_native_abandonment_is_not_recaptured() -> None:
    """Stores with send_when_native: recapture delivers it, but Klaviyo knew the shopper; the lift ignores it."""
    row = build_gap_report(scope(1), [tally("sent", native=True)], [], []).as_json()["totals"]["all"]
    assert (row["delivered"], row["recaptured"], row["lift"]) == (1, 0, 0.0)


def test_latency_percentiles_are_observed_values() -> None:
    latency = latency_of(float(n) for n in range(100, 0, -1))
    assert latency is not None
    assert (latency.p50, latency.p95, latency.max) == (50.0, 95.0, 100.0)
    single = latency_of([7.0])
    assert single is not None
    assert (single.p50, single.p95, single.max) == (7.0, 7.0, 7.0)


# -- recovered orders ------------------------------------------------------------------------------------------------


def test_an_order_reported_three_times_is_recovered_once() -> None:
    """Pixel checkout_completed, orders/create and orders/paid of one order: one order, its revenue once."""
    reports = [order(1, order_id="9", hours=24), order(2, order_id="9", hours=24.1), order(3, order_id="9", hours=25)]
    [recovered] = attribute_orders([delivered()], reports, WINDOW)
    assert recovered.revenue == Decimal("60.00")


def test_reports_naming_an_order_by_its_checkout_token_or_its_id_are_one_order() -> None:
    """The pixel may report an order by its checkout token alone, the webhooks by id and token: one order."""
    pixel = Order(row_id=1, person=1, order_id=None, checkout_token="c1", revenue=Decimal("60.00"), currency="USD",
                  occurred_at=MONDAY + timedelta(hours=24))
    created = Order(row_id=2, person=1, order_id="9", checkout_token="c1", revenue=Decimal("60.00"), currency="USD",
                    occurred_at=MONDAY + timedelta(hours=24.1))
    paid = Order(row_id=3, person=1, order_id="9", checkout_token=None, revenue=Decimal("60.00"), currency="USD",
                 occurred_at=MONDAY + timedelta(hours=30))
    [merged] = distinct_orders([paid, pixel, created])
    assert (merged.order_id, merged.checkout_token, merged.occurred_at) == ("9", "c1", pixel.occurred_at)
    [recovered] = attribute_orders([delivered()], [paid, pixel, created], WINDOW)
    assert recovered.key == "order:9"


def test_an_order_placed_before_the_delivery_and_paid_after_it_is_not_recovered() -> None:
    """orders/paid days after orders/create (manual capture): the order was placed at its first report."""
    placed = order(1, order_id="9", hours=-2)
    paid = order(2, order_id="9", hours=24)
    assert attribute_orders([delivered()], [placed, paid], WINDOW) == []


def test_a_currency_code_in_another_case_is_the_same_currency() -> None:
    orders = [order(1, currency="usd"), order(2, currency=" USD", hours=25), order(3, currency="", hours=26)]
    row = build_gap_report(scope(1), [tally()], [delivered()], orders).as_json()["totals"]["all"]
    assert row["recovered_revenue"] == {"USD": "120.00", "unknown": "60.00"}


def test_revenue_is_printed_in_positional_notation() -> None:
    row = build_gap_report(scope(1), [tally()], [delivered()], [order(1, revenue="1E+3")]).as_json()["totals"]["all"]
    assert row["recovered_revenue"] == {"USD": "1000"}


def test_an_order_counts_only_after_the_delivery_and_within_the_window() -> None:
    orders = [order(1, hours=0.5), order(2, hours=24 * 5), order(3, hours=24 * 5 + 2), order(4, person=2, hours=3)]
    recovered = attribute_orders([delivered(latency=3600)], orders, WINDOW)
    assert [r.key for r in recovered] == ["order:2"]


def test_an_order_goes_to_the_last_delivery_before_it() -> None:
    first, second = delivered(minutes=0, stage=Stage.BROWSE), delivered(minutes=600, stage=Stage.CART)
    [recovered] = attribute_orders([second, first], [order(1, hours=20)], WINDOW)
    assert recovered.after is second


def test_revenue_is_kept_per_currency_as_decimal_strings() -> None:
    orders = [order(1, revenue="10.10"), order(2, revenue="0.20", hours=25), order(3, revenue="5", currency="EUR"),
              order(4, revenue=None, hours=26), order(5, currency=None, hours=27)]
    row = build_gap_report(scope(1), [tally()], [delivered()], orders).as_json()["totals"]["all"]
    assert row["recovered_orders"] == 5
    assert row["recovered_revenue"] == {"EUR": "5", "USD": "10.30", "unknown": "60.00"}


def test_an_order_after_a_delivery_outside_the_range_is_not_counted() -> None:
    before = DeliveredAbandonment(person=1, stage=Stage.CART, native=False, abandoned_at=MONDAY - timedelta(days=1),
                                  delivered_at=MONDAY - timedelta(hours=1))
    report = build_gap_report(scope(1), [], [before], [order(1, hours=2)]).as_json()
    assert report["totals"]["all"]["recovered_orders"] == 0


# -- the report and its JSON contract --------------------------------------------------------------------------------


def test_the_json_has_every_key_of_the_contract_and_every_period_and_stage() -> None:
    report = build_gap_report(scope(14, Period.WEEK), [tally()], [delivered()], [order(1)]).as_json()
    assert {"shop", "since", "until", "period", "generated_at", "stages", "totals", "series"} <= set(report)
    assert report["stages"] == ["session", "browse", "cart", "checkout"]
    assert set(report["totals"]) == {"session", "browse", "cart", "checkout", "all"}
    assert [(s["period_start"], s["stage"]) for s in report["series"]] == [
        (week, stage) for week in ("2026-10-05", "2026-10-12") for stage in report["stages"]]
    for row in [*report["totals"].values(), *report["series"]]:
        assert set(row) >= ROW_KEYS
        assert set(row["suppressed"]) >= CONTRACT_REASONS
    cart = report["totals"]["cart"]
    assert cart["latency_seconds"] == {"p50": 3600.0, "p95": 3600.0, "max": 3600.0}
    assert cart["recovered_revenue"] == {"USD": "60.00"}
    assert datetime.fromisoformat(report["since"]) == MONDAY
    assert report["period"] == "week"


# -- properties ------------------------------------------------------------------------------------------------------

OUTCOMES = [o.value for o in Outcome]
tallies_strategy = st.lists(st.builds(
    OutcomeTally,
    day=st.dates(min_value=date(2026, 10, 1), max_value=date(2026, 10, 20)),
    stage=st.sampled_from(STAGES),
    outcome=st.sampled_from(OUTCOMES),
    native=st.booleans(),
    identifiable=st.booleans(),
    delivery_status=st.sampled_from(["delivered", "pending", "dead", None]),
    incomplete=st.booleans(),
    awaiting_identity=st.booleans(),
    count=st.integers(min_value=1, max_value=50),
), max_size=30)
instants = st.integers(min_value=0, max_value=20 * 24 * 60).map(lambda m: datetime(2026, 10, 1, tzinfo=UTC)
                                                                 + timedelta(minutes=m))
delivered_strategy = st.lists(st.builds(
    lambda person, stage, at, latency: DeliveredAbandonment(
        person=person, stage=stage, native=False, abandoned_at=at, delivered_at=at + timedelta(seconds=latency)),
    st.one_of(st.none(), st.integers(1, 4)), st.sampled_from(STAGES), instants, st.integers(0, 200_000),
), max_size=20)
orders_strategy = st.lists(st.builds(
    lambda row, person, order_id, cents, currency, at: Order(
        row_id=row, person=person, order_id=order_id, checkout_token=None,
        revenue=None if cents is None else Decimal(cents) / 100, currency=currency, occurred_at=at),
    st.integers(1, 10_000), st.one_of(st.none(), st.integers(1, 4)), st.one_of(st.none(), st.sampled_from("abcdef")),
    st.one_of(st.none(), st.integers(0, 100_000)), st.sampled_from(["USD", "EUR", None]), instants,
), max_size=20)
COUNTED = ("seen", "native", "recapture_only", "delivered", "incomplete", "recovered_orders", "recaptured", "sent",
           "awaiting_identity")


def _sum(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {key: sum(r[key] for r in rows) for key in COUNTED}
    for key in ("suppressed", "undelivered"):
        total[key] = dict(sum((Counter(r[key]) for r in rows), Counter()))
    revenue: dict[str, Decimal] = {}
    for row in rows:
        for currency, amount in row["recovered_revenue"].items():
            revenue[currency] = revenue.get(currency, Decimal(0)) + Decimal(amount)
    total["recovered_revenue"] = revenue
    return total


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    picked = {key: row[key] for key in COUNTED}
    picked["suppressed"] = {k: v for k, v in row["suppressed"].items() if v}
    picked["undelivered"] = {k: v for k, v in row["undelivered"].items() if v}
    picked["recovered_revenue"] = {k: Decimal(v) for k, v in row["recovered_revenue"].items()}
    return picked


@settings(max_examples=150, deadline=None)
@given(tallies=tallies_strategy, shipped=delivered_strategy, orders=orders_strategy,
       period=st.sampled_from(list(Period)), start=st.integers(0, 5), days=st.integers(1, 15))
def test_series_sum_to_the_totals_and_every_abandonment_is_accounted_for(
    tallies: list[OutcomeTally], shipped: list[DeliveredAbandonment], orders: list[Order], period: Period,
    start: int, days: int,
) -> None:
    """Per-period rows add up to the stage totals, stages to `all`; seen = delivered + suppressed + undelivered."""
    since = datetime(2026, 10, 1 + start, tzinfo=UTC)
    in_range = [t for t in tallies if since.date() <= t.day < (since + timedelta(days=days)).date()]
    report = build_gap_report(scope(days, period, since), in_range, shipped, orders).as_json()
    stages = report["stages"]
    assert len(report["series"]) == len({s["period_start"] for s in report["series"]}) * len(stages)
    for stage in stages:
        series = [s for s in report["series"] if s["stage"] == stage]
        assert _comparable(_sum(series)) == _comparable(report["totals"][stage])
    assert _comparable(_sum([report["totals"][s] for s in stages])) == _comparable(report["totals"]["all"])
    assert _comparable(_sum(report["periods"])) == _comparable(report["totals"]["all"])
    for row in [*report["totals"].values(), *report["series"]]:
        assert row["seen"] == row["delivered"] + sum(row["suppressed"].values()) + sum(row["undelivered"].values())
        assert row["recaptured"] <= row["delivered"] <= row["sent"]
        assert row["lift"] == (row["recaptured"] / row["native"] if row["native"] else None)
        if row["latency_seconds"] is not None:
            latency = row["latency_seconds"]
            assert 0 <= latency["p50"] <= latency["p95"] <= latency["max"]
    distinct = {o.order_id or f"row:{o.row_id}" for o in orders}
    assert report["totals"]["all"]["recovered_orders"] <= len(distinct)
