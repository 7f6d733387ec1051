"""Abandonment decisions end to end (HTTP in, outbox out) on both databases: each stage and each suppression."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from recapture.adapters.storage.schema import abandonments
from recapture.application.delivery import DeliveryWorker
from recapture.application.delivery_errors import TerminalDeliveryError, TransientDeliveryError
from recapture.domain.delivery import DeliveryEvent
from recapture.domain.sessions import Stage
from recapture.wiring import Runtime, build_runtime, build_web_app
from tests.support import SHOP, RecordingDestination, checkout, envelope, klaviyo_cookie, pixel_event, variant

JSON = {"content-type": "application/json"}


class Store:
    """A shop with a recording destination, driven by hand: collect, process, advance the clock, decide, deliver."""

    def __init__(self, runtime: Runtime, client: TestClient) -> None:
        self.runtime, self.client = runtime, client
        self.destination = RecordingDestination()
        self.worker = DeliveryWorker(runtime.outbox, {(SHOP, "webhook"): self.destination}, runtime.clock)
        self.minute = 0

    def at(self, minutes: int) -> str:
        self.minute = minutes
        return (self.runtime.clock.now().replace(hour=10, minute=0) + timedelta(minutes=minutes)).isoformat()

    def send(self, *items: dict[str, Any]) -> None:
        for item in items:  # events without a time of their own happen now
            if item["event"]["timestamp"] == pixel_event()["timestamp"]:
                item["event"]["timestamp"] = self.runtime.clock.now().isoformat()
        response = self.client.post("/collect/shopify", content=json.dumps({"batch": list(items)}), headers=JSON)
        assert response.status_code == 200, response.text
        self.runtime.processor.run_once()

    def webhook(self, topic: str, resource: dict[str, Any], webhook_id: str) -> None:
        from tests.support import webhook_headers

        body = json.dumps(resource).encode()
        headers = webhook_headers(body, topic, webhook_id, triggered_at=self.runtime.clock.now().isoformat())
        assert self.client.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
        self.runtime.processor.run_once()

    def advance(self, minutes: int) -> None:
        self.runtime.clock.set(self.runtime.clock.now() + timedelta(minutes=minutes))
        self.runtime.abandonment.run_due(self.runtime.clock.now())
        self.worker.run_once()

    def outcomes(self) -> list[tuple[int, str]]:
        with self.runtime.engine.connect() as conn:
            return [(r.stage, r.outcome) for r in conn.execute(select(abandonments).order_by(abandonments.c.id))]


@pytest.fixture
def shop(make_settings) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    settings = make_settings(esp_webhook_url="http://127.0.0.1:9/hook", esp_webhook_secret="whsec")
    runtime = build_runtime(settings)
    runtime.clock.set(runtime.clock.now())
    with TestClient(build_web_app(settings, runtime, worker=False)) as client:
        yield Store(runtime, client)
    runtime.engine.dispose()


def known_shopper(shop: Store, device: str = "laptop", email: str = "ann@example.com") -> None:
    """Yesterday Ann typed her email at checkout on this device (a different session, long decided)."""
    shop.send(envelope(pixel_event(name="checkout_contact_info_submitted", event_id=f"known-{device}", client_id=device,
                                   timestamp=_minutes_ago(shop, 60 * 24),
                                   data={"checkout": checkout(email=email, token=f"old-{device}")})))
    shop.advance(1)
    shop.destination.sent.clear()


def _minutes_ago(shop: Store, minutes: int) -> str:
    return (shop.runtime.clock.now() - timedelta(minutes=minutes)).isoformat()


def add_to_cart(event_id: str, device: str = "laptop", **extra: Any) -> dict[str, Any]:
    line = {"quantity": 2, "merchandise": variant(price=30.0), "cost": {"totalAmount": {"amount": 60.0, "currencyCode": "USD"}}}
    return envelope(pixel_event(name="product_added_to_cart", event_id=event_id, client_id=device,
                                data={"cartLine": line}), **extra)


def test_cart_abandoned_by_a_shopper_klaviyo_cannot_see_is_sent_after_the_hold(shop: Store) -> None:
    """Ann (known from an earlier checkout) adds to cart with Klaviyo blocked, leaves: one Cart Abandoned event."""
    known_shopper(shop)
    shop.send(add_to_cart("a1"))
    shop.advance(59)
    assert shop.destination.sent == []
    shop.advance(2)
    [event] = shop.destination.sent
    assert event.metric == "Cart Abandoned - Recaptured"
    assert event.profile.email == "ann@example.com"
    assert event.properties["CartValue"] == 60.0
    assert event.properties["Items"][0]["ProductName"] == "Organic Tee"
    assert event.properties["MatchMethod"] == "deterministic"
    assert event.value is not None
    assert event.value_currency == "USD"


def test_an_order_during_the_hold_suppresses_the_abandonment(shop: Store) -> None:
    """Nobody is emailed after they bought: the order webhook arrives within the hold window."""
    known_shopper(shop)
    shop.send(add_to_cart("a1"))
    shop.advance(20)
    shop.webhook("orders/create", {"id": 9, "email": "ann@example.com", "total_price": "60.00", "currency": "USD",
                                   "line_items": []}, "o-1")
    shop.advance(60)
    assert shop.destination.sent == []
    assert (3, "purchased") in shop.outcomes()


def test_a_processing_backlog_delays_the_decision_and_never_emails_a_buyer(shop: Store) -> None:
    """The order is stored but not yet processed when the hold ends: nothing is decided until it is."""
    known_shopper(shop)
    shop.send(add_to_cart("a1"))
    shop.advance(20)
    body = json.dumps({"id": 9, "email": "ann@example.com", "total_price": "60.00", "currency": "USD",
                       "line_items": []}).encode()
    from tests.support import webhook_headers

    headers = webhook_headers(body, "orders/create", "o-1", triggered_at=shop.runtime.clock.now().isoformat())
    assert shop.client.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
    shop.advance(60)  # the hold has ended, but the order waits in the processing queue
    assert [o for o in shop.outcomes() if o[0] == Stage.CART] == []
    shop.runtime.processor.run_once()
    shop.advance(1)
    assert shop.destination.sent == []
    assert [o for o in shop.outcomes() if o[0] == Stage.CART] == [(Stage.CART, "purchased")]


def test_klaviyo_identified_session_is_left_to_the_native_flow(shop: Store) -> None:
    """The waterfall: a session whose Klaviyo cookie names the shopper is counted as native, not sent."""
    known_shopper(shop)
    cookie = {"__kla_id": klaviyo_cookie(**{"$exchange_id": "KX1", "$email": "ann@example.com"})}
    shop.send(add_to_cart("a1", cookies=cookie))
    shop.advance(70)
    assert shop.destination.sent == []
    assert (3, "native") in shop.outcomes()


def test_checkout_with_an_email_typed_at_shopify_is_native(shop: Store) -> None:
    """Klaviyo's Shopify integration fires its own Started Checkout once the email is typed."""
    shop.send(envelope(pixel_event(name="checkout_contact_info_submitted", event_id="c1", client_id="phone",
                                   data={"checkout": checkout(email="zoe@example.com")})))
    shop.advance(70)
    assert shop.destination.sent == []
    assert shop.outcomes() == [(4, "native")]


def test_same_abandonment_type_is_not_sent_twice_within_the_cool_down(shop: Store) -> None:
    """Two cart abandonments two days apart: only the first is sent (the native flows' 7-day exclusion)."""
    known_shopper(shop)
    shop.send(add_to_cart("a1"))
    shop.advance(70)
    shop.advance(60 * 24 * 2)
    shop.send(add_to_cart("a2"))
    shop.advance(70)
    assert len(shop.destination.sent) == 1
    assert shop.outcomes()[-1] == (3, "cool_down")


def test_no_marketing_consent_means_no_email(shop: Store) -> None:
    """A shopper who declined marketing is never sent an abandonment."""
    known_shopper(shop)
    shop.send(add_to_cart("a1", consent={"analyticsProcessingAllowed": True, "marketingAllowed": False}))
    shop.advance(70)
    assert shop.destination.sent == []
    assert shop.outcomes()[-1] == (3, "no_consent")


def test_a_stronger_stage_on_another_device_wins(shop: Store) -> None:
    """Browsing on the phone, then checkout on the laptop: the browse abandonment is not sent."""
    known_shopper(shop, device="phone")
    known_shopper(shop, device="laptop")
    shop.send(envelope(pixel_event(event_id="b1", client_id="phone")))
    shop.send(envelope(pixel_event(name="checkout_started", event_id="c1", client_id="laptop",
                                   data={"checkout": checkout(email=None, token="new-chk")})))
    shop.advance(70)
    outcomes = dict(shop.outcomes()[-2:])
    assert outcomes[2] == "stronger_stage"
    assert [e.metric for e in shop.destination.sent] == ["Checkout Abandoned - Recaptured"]


def test_anonymous_abandonment_is_sent_when_the_shopper_becomes_identifiable(shop: Store) -> None:
    """Retroactive identification: an anonymous cart waits; a later email click on the phone makes it sendable."""
    shop.send(add_to_cart("a1", device="phone"))
    shop.advance(70)
    assert shop.destination.sent == []
    shop.advance(30)
    shop.send(envelope(pixel_event(event_id="v1", client_id="phone", timestamp=_minutes_ago(shop, 0),
                                   href=f"https://{SHOP}/?_kx=KX.mia")))
    shop.advance(1)
    [event] = shop.destination.sent
    assert event.metric == "Cart Abandoned - Recaptured"
    assert event.profile.exchange_id == "KX.mia"


def test_an_anonymous_cart_nobody_identifies_within_the_lookback_is_finally_decided(shop: Store) -> None:
    """Waiting ends: after the lookback the session is recorded as not identifiable, with its value and currency."""
    shop.send(add_to_cart("a1", device="phone"))
    shop.advance(70)
    assert shop.outcomes() == []
    assert shop.runtime.outbox.count_sessions(shop.runtime.clock.now())["awaiting_identity"] == 1
    shop.advance(60 * 24 * 15)
    assert shop.outcomes() == [(Stage.CART, "not_identifiable")]
    assert shop.runtime.outbox.count_sessions(shop.runtime.clock.now())["awaiting_identity"] == 0
    with shop.runtime.engine.connect() as conn:
        [row] = conn.execute(select(abandonments.c.value, abandonments.c.currency)).all()
    assert (row.value, row.currency) == ("60.0", "USD")
    assert shop.destination.sent == []


def test_transient_failures_are_retried_and_terminal_ones_dead_lettered(shop: Store) -> None:
    """429 waits for Retry-After then succeeds; a 400 goes to the dead letter and `retry` replays it."""
    known_shopper(shop)
    shop.destination.failures = [TransientDeliveryError(30.0, 429, "slow down")]
    shop.send(add_to_cart("a1"))
    shop.advance(61)
    assert shop.destination.sent == []
    shop.advance(1)
    assert [e.profile.email for e in shop.destination.sent] == ["ann@example.com"]
    known_shopper(shop, device="phone", email="bo@example.com")
    shop.destination.failures = [TerminalDeliveryError(400, "bad payload")]
    shop.send(add_to_cart("b1", device="phone"))
    shop.advance(61)
    health = shop.runtime.outbox.delivery_health(shop.runtime.clock.now())["webhook"]
    assert health["dead"] == 1
    assert health["health"] == "red"
    assert "bad payload" in str(health["last_error"])
    assert shop.runtime.outbox.retry_dead(shop.runtime.clock.now()) == 1
    shop.advance(0)
    assert [e.profile.email for e in shop.destination.sent] == ["bo@example.com"]


def test_a_replayed_decision_never_duplicates_a_delivery(shop: Store) -> None:
    """The outbox refuses a second row with the same unique_id: a crash-and-replay cannot send twice."""
    known_shopper(shop)
    shop.send(add_to_cart("a1"))
    shop.advance(61)
    [event] = shop.destination.sent
    assert shop.runtime.outbox.enqueue("webhook", event, shop.runtime.clock.now()) is None


@pytest.fixture
def forwarding_shop(make_settings) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    settings = make_settings(esp_webhook_url="http://127.0.0.1:9/hook", esp_webhook_secret="whsec",
                             delivery_mode="forward")
    runtime = build_runtime(settings)
    with TestClient(build_web_app(settings, runtime, worker=False)) as client:
        yield Store(runtime, client)
    runtime.engine.dispose()


def test_forward_mode_sends_events_as_they_happen_only_where_klaviyo_is_blind(forwarding_shop: Store) -> None:
    """Viewed Product / Added to Cart go at once for the unseen session; the Klaviyo-cookie session sends nothing."""
    shop = forwarding_shop
    known_shopper(shop)
    shop.send(envelope(pixel_event(event_id="v1", client_id="laptop")), add_to_cart("a1"))
    shop.advance(0)
    assert [e.metric for e in shop.destination.sent] == [
        "Active on Site - Recaptured", "Viewed Product - Recaptured", "Added to Cart - Recaptured"]
    added = shop.destination.sent[-1]
    assert added.properties["CartValue"] == 60.0
    assert added.properties["ProductName"] == "Organic Tee"
    shop.destination.sent.clear()
    cookie = {"__kla_id": klaviyo_cookie(**{"$exchange_id": "KX1"})}
    shop.advance(45)
    shop.send(add_to_cart("a2", cookies=cookie))
    shop.advance(0)
    assert shop.destination.sent == []
    shop.advance(70)
    assert "forwarded" in {outcome for _, outcome in shop.outcomes()}
    assert all(not e.metric.startswith("Cart Abandoned") for e in shop.destination.sent)


def test_forward_mode_always_sends_placed_order(forwarding_shop: Store) -> None:
    """Placed Order is forwarded even for a Klaviyo-identified shopper, so flow filters see the purchase."""
    shop = forwarding_shop
    known_shopper(shop)
    shop.send(envelope(pixel_event(name="checkout_completed", event_id="done", client_id="laptop",
                                   data={"checkout": checkout(email="ann@example.com") | {"order": {"id": "77"}}}),
                       cookies={"__kla_id": klaviyo_cookie(**{"$exchange_id": "KX1"})}))
    shop.advance(0)
    [order] = [e for e in shop.destination.sent if e.metric == "Placed Order - Recaptured"]
    assert order.properties["OrderID"] == "77"
    assert order.value is not None


def test_names_typed_at_checkout_update_the_profile_and_opt_in_subscribes(make_settings) -> None:  # type: ignore[no-untyped-def]
    """First/last name and town go to the profile; a list subscription only for the shopper who ticked opt-in."""
    settings = make_settings(esp_webhook_url="http://127.0.0.1:9/hook", esp_webhook_secret="whsec",
                             klaviyo_list_id="LIST1")
    runtime = build_runtime(settings)
    with TestClient(build_web_app(settings, runtime, worker=False)) as client:
        shop = Store(runtime, client)
        address = {"firstName": "Ann", "lastName": "Lee", "city": "Oslo", "province": None, "countryCode": "NO"}
        for n, opted_in in ((1, True), (2, False)):
            shape = checkout(email=f"buyer{n}@example.com", token=f"t{n}") | {
                "shippingAddress": address, "buyerAcceptsEmailMarketing": opted_in}
            shop.send(envelope(pixel_event(name="checkout_address_info_submitted", event_id=f"c{n}",
                                           client_id=f"d{n}", data={"checkout": shape})))
        shop.advance(0)
    runtime.engine.dispose()
    assert {(p.email, p.first_name, p.last_name, p.city) for p in shop.destination.profiles} == {
        ("buyer1@example.com", "Ann", "Lee", "Oslo"), ("buyer2@example.com", "Ann", "Lee", "Oslo")}
    assert shop.destination.subscriptions == [("LIST1", "buyer1@example.com")]


class BulkRecordingDestination(RecordingDestination):
    def __init__(self) -> None:
        super().__init__()
        self.bulk_sizes: list[int] = []
        self.bulk_failures: list[Exception] = []

    def send_events(self, events: Sequence[DeliveryEvent]) -> None:
        if self.bulk_failures:
            raise self.bulk_failures.pop(0)
        self.bulk_sizes.append(len(events))
        self.sent.extend(events)


def test_a_backlog_goes_in_bulk_and_a_bad_bulk_falls_back_to_single_sends(shop: Store) -> None:
    """30 due abandonments: one bulk request; a refused bulk is retried event by event so only the bad one dies."""
    bulk = BulkRecordingDestination()
    shop.worker = DeliveryWorker(shop.runtime.outbox, {(SHOP, "webhook"): bulk}, shop.runtime.clock)
    shop.destination = bulk
    for n in range(30):
        known_shopper(shop, device=f"d{n}", email=f"s{n}@example.com")
    bulk.sent.clear()
    bulk.bulk_sizes.clear()
    for n in range(30):
        shop.send(add_to_cart(f"a{n}", device=f"d{n}"))
    shop.advance(61)
    assert bulk.bulk_sizes == [30]
    assert len({e.profile.email for e in bulk.sent}) == 30
    for n in range(30, 55):
        known_shopper(shop, device=f"d{n}", email=f"s{n}@example.com")
    bulk.sent.clear()
    bulk.bulk_failures = [TerminalDeliveryError(400, "one event is invalid")]
    bulk.failures = [TerminalDeliveryError(400, "this one is invalid")]
    for n in range(30, 55):
        shop.send(add_to_cart(f"b{n}", device=f"d{n}"))
    shop.advance(61)
    assert len(bulk.sent) == 24
    assert shop.runtime.outbox.delivery_health(shop.runtime.clock.now())["webhook"]["dead"] == 1
