"""The gap report on both databases, from real events sent through the HTTP API on the manual clock.

Three shoppers typed their email at a checkout three days ago. Today Ann adds to cart with Klaviyo blocked
(recaptured, delivered, and she orders the next day), Bob adds to cart with Klaviyo's cookie (native), Cat adds to
cart and orders within the hold window (purchased), and an anonymous visitor views a product (not identifiable).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert
from starlette.testclient import TestClient

from recapture.adapters.storage.report_store import SqlReportStore
from recapture.adapters.storage.schema import abandonments, conversions, deliveries, persons, sessions
from recapture.application.delivery import DeliveryWorker
from recapture.application.gap_report import GapReportService
from recapture.domain.gap_report import Period
from recapture.settings import Settings
from recapture.wiring import Runtime, build_runtime, build_web_app
from tests.support import (
    AUTH,
    SHOP,
    RecordingDestination,
    checkout,
    envelope,
    klaviyo_cookie,
    pixel_event,
    variant,
    webhook_headers,
)

START = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
JSON = {"content-type": "application/json"}


class Store:
    """One shop driven by hand: events in over HTTP, the clock moved, hold windows decided, the outbox delivered."""

    def __init__(self, runtime: Runtime, client: TestClient) -> None:
        self.runtime, self.client = runtime, client
        self.destination = RecordingDestination()
        self.worker = DeliveryWorker(runtime.outbox, {(SHOP, "webhook"): self.destination}, runtime.clock)

    @property
    def now(self) -> datetime:
        return self.runtime.clock.now()

    def send(self, *items: dict[str, Any]) -> None:
        response = self.client.post("/collect/shopify", content=json.dumps({"batch": list(items)}), headers=JSON)
        assert response.status_code == 200, response.text
        self.runtime.processor.run_once()

    def order(self, order_id: int, email: str, total: str, topic: str = "orders/create") -> None:
        resource = {"id": order_id, "email": email, "total_price": total, "currency": "USD", "line_items": []}
        body = json.dumps(resource).encode()
        headers = webhook_headers(body, topic, f"{topic}-{order_id}", triggered_at=self.now.isoformat())
        assert self.client.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
        self.runtime.processor.run_once()

    def advance(self, minutes: float) -> None:
        self.runtime.clock.set(self.now + timedelta(minutes=minutes))
        self.runtime.abandonment.run_due(self.now)
        self.worker.run_once()

    def report(self, **query: str) -> dict[str, Any]:
        response = self.client.get("/admin/report", params=query, headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def shop(make_settings: Callable[..., Settings]) -> Iterator[Store]:
    settings = make_settings(esp_webhook_url="http://127.0.0.1:9/hook", esp_webhook_secret="whsec")
    runtime = build_runtime(settings)
    runtime.clock.set(START)
    with TestClient(build_web_app(settings, runtime, worker=False)) as client:
        yield Store(runtime, client)
    runtime.engine.dispose()


def cart(device: str, event_id: str, **extra: Any) -> dict[str, Any]:
    line = {"quantity": 2, "merchandise": variant(price=30.0),
            "cost": {"totalAmount": {"amount": 60.0, "currencyCode": "USD"}}}
    return envelope(pixel_event(name="product_added_to_cart", event_id=event_id, client_id=device,
                                timestamp=(START + timedelta(minutes=1)).isoformat(), data={"cartLine": line}),
                    **extra)


def known(device: str, email: str) -> dict[str, Any]:
    """The shopper typed their email at a checkout on this device three days ago."""
    return envelope(pixel_event(name="checkout_contact_info_submitted", event_id=f"known-{device}", client_id=device,
                                timestamp=(START - timedelta(days=3)).isoformat(),
                                data={"checkout": checkout(email=email, token=f"old-{device}")}))


def play_the_week(shop: Store) -> None:
    shop.send(known("laptop", "ann@example.com"), known("phone", "bob@example.com"),
              known("tablet", "cat@example.com"))
    shop.advance(0)  # the three old checkouts: Shopify saw the emails, so Klaviyo's own flows had them (native)
    cookie = {"__kla_id": klaviyo_cookie(**{"$exchange_id": "KX.bob", "$email": "bob@example.com"})}
    shop.send(cart("laptop", "ann-1"), cart("phone", "bob-1", cookies=cookie), cart("tablet", "cat-1"),
              envelope(pixel_event(event_id="anon-1", client_id="kiosk", timestamp=START.isoformat())))
    shop.advance(20)
    shop.order(501, "cat@example.com", "45.00")  # Cat buys within the hold window
    shop.advance(60)  # 11:20: the hold windows ended at 11:01; Ann's cart is sent and delivered
    assert [e.profile.email for e in shop.destination.sent] == ["ann@example.com"]
    shop.advance(60 * 24)  # the next day Ann buys: Shopify reports the order twice
    shop.order(777, "ann@example.com", "60.00")
    shop.order(777, "ann@example.com", "60.00", topic="orders/paid")
    shop.advance(60 * 24 * 6)  # a week later she buys again: outside the 5-day attribution window
    shop.order(778, "ann@example.com", "80.00")


def test_what_a_merchant_sees_after_a_week(shop: Store) -> None:
    play_the_week(shop)
    report = shop.report(since="2026-10-02", until="2026-10-12")
    assert report["shop"] == SHOP
    assert report["stages"] == ["session", "browse", "cart", "checkout"]
    cart_row, checkout_row, browse_row = (report["totals"][s] for s in ("cart", "checkout", "browse"))
    # Bob is counted native, not delivered; Ann delivered; Cat suppressed as purchased.
    assert (cart_row["seen"], cart_row["native"], cart_row["delivered"]) == (3, 1, 1)
    assert cart_row["suppressed"]["native"] == 1
    assert cart_row["suppressed"]["purchased"] == 1
    assert cart_row["recapture_only"] == 2  # Ann and Cat: emails recapture knows, Klaviyo did not see them
    assert cart_row["latency_seconds"] == {"p50": 4740.0, "p95": 4740.0, "max": 4740.0}  # 10:01 -> 11:20
    assert cart_row["incomplete"] == 0
    # Ann's next-day order counts once (orders/create + orders/paid), her order a week later not at all.
    assert cart_row["recovered_orders"] == 1
    assert cart_row["recovered_revenue"] == {"USD": "60.00"}
    assert cart_row["lift"] == 1.0
    assert (checkout_row["seen"], checkout_row["native"], checkout_row["suppressed"]["native"]) == (3, 3, 3)
    assert browse_row["seen"] == 1
    assert browse_row["suppressed"]["not_identifiable"] == 1
    assert browse_row["awaiting_identity"] == 1
    everything = report["totals"]["all"]
    assert (everything["seen"], everything["native"], everything["delivered"]) == (7, 4, 1)
    assert everything["lift"] == 0.25
    assert everything["seen"] == (everything["delivered"] + sum(everything["suppressed"].values())
                                  + sum(everything["undelivered"].values()))


def test_the_series_puts_each_abandonment_on_its_day_and_week(shop: Store) -> None:
    play_the_week(shop)
    daily = shop.report(since="2026-10-02", until="2026-10-12", period="day")
    cells = {(s["period_start"], s["stage"]): s for s in daily["series"]}
    assert len(cells) == 11 * 4
    assert cells["2026-10-02", "checkout"]["native"] == 3
    assert cells["2026-10-05", "cart"]["delivered"] == 1
    assert cells["2026-10-05", "cart"]["recovered_revenue"] == {"USD": "60.00"}
    assert cells["2026-10-06", "cart"]["seen"] == 0
    weekly = shop.report(since="2026-10-02", until="2026-10-12", period="week")
    assert sorted({s["period_start"] for s in weekly["series"]}) == ["2026-09-28", "2026-10-05", "2026-10-12"]
    week = {(s["period_start"], s["stage"]): s for s in weekly["series"]}
    assert week["2026-09-28", "checkout"]["seen"] == 3
    assert week["2026-10-05", "cart"]["seen"] == 3
    only_today = shop.report(since="2026-10-05", until="2026-10-05")
    assert only_today["totals"]["all"]["seen"] == 4


def test_the_attribution_window_is_an_argument(shop: Store) -> None:
    play_the_week(shop)
    wide = shop.report(since="2026-10-02", until="2026-10-12", attribution_days="10")
    assert wide["totals"]["cart"]["recovered_orders"] == 2
    assert wide["totals"]["cart"]["recovered_revenue"] == {"USD": "140.00"}
    narrow = shop.report(since="2026-10-02", until="2026-10-12", attribution_days="0.5")
    assert narrow["totals"]["cart"]["recovered_orders"] == 0


@pytest.mark.parametrize("query", [
    {"period": "month"}, {"since": "yesterday"}, {"since": "2026-10-09", "until": "2026-10-01"},
    {"shop": "other.myshopify.com"}, {"attribution_days": "-1"}, {"since": "2020-01-01", "until": "2026-01-01"},
])
def test_a_bad_query_is_refused_with_422(shop: Store, query: dict[str, str]) -> None:
    response = shop.client.get("/admin/report", params=query, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_query"


def test_the_report_needs_the_admin_token(shop: Store) -> None:
    assert shop.client.get("/admin/report").status_code == 401
    assert shop.client.get("/admin/report", headers={"Authorization": "Bearer wrong"}).status_code == 401


# -- the store on rows the event path makes rarely: merged persons, late-evening days ----------------------------------


def test_orders_follow_merged_persons_and_days_are_utc(runtime: Runtime) -> None:
    """The abandonment's person was absorbed after the delivery: the survivor's order is still recovered."""
    late = datetime(2026, 10, 5, 23, 30, tzinfo=UTC)  # 23:30 UTC is 2026-10-05 whatever the server's time zone
    with runtime.engine.begin() as conn:
        survivor, absorbed = (conn.execute(insert(persons).values(shop=SHOP, created_at=late, size=1)
                                           .returning(persons.c.id)).scalar_one() for _ in range(2))
        conn.execute(persons.update().where(persons.c.id == absorbed).values(merged_into=survivor))
        delivery = conn.execute(insert(deliveries).values(
            shop=SHOP, destination="klaviyo", kind="event", unique_id="u1", metric="Cart Abandoned - Recaptured",
            sealed_payload=b"-", status="delivered", attempts=1, not_before=late, created_at=late,
            delivered_at=late + timedelta(minutes=61)).returning(deliveries.c.id)).scalar_one()
        conn.execute(insert(abandonments).values(
            shop=SHOP, session_id=1, person_id=absorbed, stage=3, outcome="sent", native=0, incomplete=1,
            value="60.00", currency=None, abandoned_at=late, decided_at=late + timedelta(minutes=60),
            delivery_id=delivery))
        conn.execute(insert(conversions).values(shop=SHOP, person_id=survivor, order_id="9", revenue="19.99",
                                                currency="EUR", occurred_at=late + timedelta(days=1)))
        conn.execute(insert(sessions).values(
            shop=SHOP, device_key=b"k" * 32, person_id=None, stage=2, started_at=late, last_activity_at=late,
            status="waiting", due_at=late, decided_at=late, expires_at=late + timedelta(days=14),
            outcome="not_identifiable", state={"klaviyo_identified": True, "shopify_knows_checkout": False}))
    reports = GapReportService(SqlReportStore(runtime.engine), runtime.clock)
    since = datetime(2026, 10, 5, tzinfo=UTC)
    report = reports.report(reports.scope(SHOP, since, since + timedelta(days=2), Period.DAY)).as_json()
    cells = {(s["period_start"], s["stage"]): s for s in report["series"]}
    cart_cell, browse_cell = cells["2026-10-05", "cart"], cells["2026-10-05", "browse"]
    assert (cart_cell["delivered"], cart_cell["incomplete"], cart_cell["recovered_orders"]) == (1, 1, 1)
    assert cart_cell["recovered_revenue"] == {"EUR": "19.99"}
    assert (browse_cell["seen"], browse_cell["native"], browse_cell["awaiting_identity"]) == (1, 1, 1)
    assert cells["2026-10-06", "cart"]["seen"] == 0


def test_an_order_placed_before_the_range_and_paid_in_it_is_not_recovered(runtime: Runtime) -> None:
    """orders/paid can come days after orders/create (manual capture, bank transfer). The report reads the orders
    from `since` on, but an order is placed at its first report: one placed before the delivery is not recovered,
    whether its reports share an order id (POS, draft orders) or a checkout token."""
    day = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
    with runtime.engine.begin() as conn:
        person = conn.execute(insert(persons).values(shop=SHOP, created_at=day, size=1)
                              .returning(persons.c.id)).scalar_one()
        delivery = conn.execute(insert(deliveries).values(
            shop=SHOP, destination="klaviyo", kind="event", unique_id="u1", metric="Cart Abandoned - Recaptured",
            sealed_payload=b"-", status="delivered", attempts=1, not_before=day, created_at=day,
            delivered_at=day + timedelta(minutes=61)).returning(deliveries.c.id)).scalar_one()
        conn.execute(insert(abandonments).values(
            shop=SHOP, session_id=1, person_id=person, stage=3, outcome="sent", native=0, incomplete=0,
            abandoned_at=day, decided_at=day + timedelta(minutes=60), delivery_id=delivery))
        for order_id, token in (("9", None), ("10", "chk-10")):
            conn.execute(insert(conversions).values(shop=SHOP, person_id=person, order_id=order_id,
                                                    checkout_token=token, revenue="50.00", currency="USD",
                                                    occurred_at=day - timedelta(days=3)))
            conn.execute(insert(conversions).values(shop=SHOP, person_id=person, order_id=order_id,
                                                    checkout_token=token, revenue="50.00", currency="USD",
                                                    occurred_at=day + timedelta(days=1)))
    reports = GapReportService(SqlReportStore(runtime.engine), runtime.clock)
    since = datetime(2026, 10, 5, tzinfo=UTC)
    report = reports.report(reports.scope(SHOP, since, since + timedelta(days=3), Period.DAY)).as_json()
    cart = report["totals"]["cart"]
    assert cart["delivered"] == 1
    assert (cart["recovered_orders"], cart["recovered_revenue"]) == (0, {})


def test_an_unknown_shop_is_named_in_the_refusal(shop: Store) -> None:
    response = shop.client.get("/admin/report", params={"shop": "Other.myshopify.com"}, headers=AUTH)
    assert response.status_code == 422
    assert "no shop other.myshopify.com is configured" in response.json()["error"]["message"]
