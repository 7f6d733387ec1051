"""The served Shopify custom pixel, end to end: run in headless Chromium, posting across CORS to the live service.

Every assertion is about what the collector stored (read back from the database), not only what the page sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from recapture.application.ports import PendingEvent
from recapture.domain.events import EventKind, IdentifierType
from tests.browser.conftest import (
    Collector,
    Site,
    Storefront,
    cart_line,
    checkout,
    envelopes_sent,
    kla_cookie,
    product_variant,
)
from tests.support import SHOP

pytestmark = pytest.mark.browser

OpenStorefront = Callable[..., Storefront]
MAX_BATCH = 20
KEEPALIVE_QUOTA_BYTES = 64 * 1024


def identifiers_of(event: PendingEvent) -> dict[IdentifierType, set[str]]:
    found: dict[IdentifierType, set[str]] = {}
    for identifier in event.identifiers:
        found.setdefault(identifier.type, set()).add(identifier.value)
    return found


def assert_plain_keepalive_posts(fetches: list[dict[str, object]], collector: Collector) -> None:
    for record in fetches:
        assert record["url"] == collector.endpoint
        assert record["method"] == "POST"
        assert record["keepalive"] is True, record
        assert str(record["contentType"]).startswith("text/plain")
        assert record["status"] == 200, record


def test_served_script_journey_is_stored_once_per_event_with_its_kind(
    open_storefront: OpenStorefront, collector: Collector
) -> None:
    """A shopper's journey, from page view to purchase, reaches the collector once per event with the right kind."""
    assert collector.endpoint in collector.script
    assert "__RECAPTURE_" not in collector.script
    shop = open_storefront()
    contact = checkout(email="Shopper@Example.com", phone="+14155552671")
    events = [
        shop.event("page_viewed"),
        shop.event("product_viewed", {"productVariant": product_variant()}),
        shop.event("product_added_to_cart", {"cartLine": cart_line()}),
        shop.event("checkout_started", {"checkout": checkout()}),
        shop.event("checkout_contact_info_submitted", {"checkout": contact}),
        shop.event("checkout_completed", {"checkout": checkout(email="Shopper@Example.com", order_id="5001")}),
    ]
    shop.publish(*events)

    assert collector.wait_for_stored(len(events)) == len(events)
    fetches = shop.wait_for_settled_requests()
    assert_plain_keepalive_posts(fetches, collector)
    assert sorted(e["event"]["id"] for batch in envelopes_sent(fetches) for e in batch) == sorted(
        e["id"] for e in events
    ), "each event is posted exactly once"
    stored = collector.by_pixel_id()
    assert collector.stored() == len(events)
    assert {pixel_id: event.kind for pixel_id, (event, _) in stored.items()} == {
        e["id"]: EventKind(e["name"]) for e in events
    }
    for event, raw in stored.values():
        assert event.shop == SHOP
        assert raw["shop"] == SHOP
        assert identifiers_of(event)[IdentifierType.CLIENT_ID] == {shop.client_id}
    completed, _ = stored[events[-1]["id"]]
    assert identifiers_of(completed)[IdentifierType.ORDER_ID] == {"5001"}


def test_klaviyo_cookie_and_logged_in_customer_become_identifiers(
    open_storefront: OpenStorefront, collector: Collector
) -> None:
    """Klaviyo's __kla_id cookie and the logged-in customer identify the shopper on every stored event."""
    cookie = kla_cookie(cid="ZjYxNGE4", **{"$exchange_id": "01HZX4exchangeAbc.KlAvIyO", "$email": "Known@Example.COM"})
    shop = open_storefront(
        cookies={"__kla_id": cookie},
        customer={"id": "8123456789", "email": "Returning.Shopper@Example.com", "firstName": "Ada",
                  "lastName": "Lovelace", "phone": None, "ordersCount": 3},
    )
    events = [shop.event("page_viewed"), shop.event("product_viewed", {"productVariant": product_variant()})]
    shop.publish(*events)

    assert collector.wait_for_stored(2) == 2
    for event, raw in collector.by_pixel_id().values():
        assert raw["cookies"] == {"__kla_id": cookie}
        found = identifiers_of(event)
        assert found[IdentifierType.KLAVIYO_COOKIE_EXCHANGE_ID] == {"01HZX4exchangeAbc.KlAvIyO"}
        assert found[IdentifierType.KLAVIYO_KNOWN_EMAIL] == {"known@example.com"}
        assert found[IdentifierType.SHOPIFY_CUSTOMER_ID] == {"8123456789"}
        assert found[IdentifierType.EMAIL] == {"returning.shopper@example.com"}
        assert found[IdentifierType.CLIENT_ID] == {shop.client_id}


def test_checkout_contact_details_are_normalized(open_storefront: OpenStorefront, collector: Collector) -> None:
    """An anonymous shopper's checkout email and phone are stored normalized (lower-case email, E.164 phone)."""
    shop = open_storefront()
    token = "9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d"
    event = shop.event("checkout_contact_info_submitted", {
        "checkout": checkout(email="  Jane.DOE@Example.COM ", phone="+1 (415) 555-2671", token=token),
    })
    shop.publish(event)

    assert collector.wait_for_stored(1) == 1
    [(stored, raw)] = collector.by_pixel_id().values()
    assert stored.kind is EventKind.CHECKOUT_CONTACT_INFO_SUBMITTED
    assert raw["customer"] is None
    assert raw["cookies"] == {}
    found = identifiers_of(stored)
    assert found[IdentifierType.EMAIL] == {"jane.doe@example.com"}
    assert found[IdentifierType.PHONE] == {"+14155552671"}
    assert found[IdentifierType.CHECKOUT_TOKEN] == {token}
    assert IdentifierType.SHOPIFY_CUSTOMER_ID not in found
    assert IdentifierType.KLAVIYO_COOKIE_EXCHANGE_ID not in found


def test_burst_is_batched_into_fewer_keepalive_requests(
    open_storefront: OpenStorefront, collector: Collector
) -> None:
    """A burst of events travels in fewer requests than events, each a keepalive text/plain POST."""
    shop = open_storefront()
    events = [shop.event("page_viewed"), shop.event("product_viewed", {"productVariant": product_variant()})]
    events += [shop.event("product_viewed", {"productVariant": product_variant(variant_id=str(42002 + i))})
               for i in range(3)]
    shop.publish(*events)

    assert collector.wait_for_stored(len(events)) == len(events)
    fetches = shop.wait_for_settled_requests()
    assert len(fetches) < len(events)
    assert_plain_keepalive_posts(fetches, collector)
    assert any("batch" in json.loads(record["body"]) for record in fetches)
    assert collector.stored() == len(events)


def test_big_burst_is_split_into_requests_of_at_most_twenty(
    open_storefront: OpenStorefront, collector: Collector
) -> None:
    """A burst larger than one batch is split into several requests and every event still arrives once."""
    shop = open_storefront()
    events = [shop.event("product_viewed", {"productVariant": product_variant(variant_id=str(50000 + i))})
              for i in range(45)]
    shop.publish(*events)

    assert collector.wait_for_stored(len(events)) == len(events)
    fetches = shop.wait_for_settled_requests(3)
    sizes = [len(batch) for batch in envelopes_sent(fetches)]
    assert sum(sizes) == len(events)
    assert max(sizes) <= MAX_BATCH
    assert len(sizes) >= 3
    assert_plain_keepalive_posts(fetches, collector)
    assert len(collector.by_pixel_id()) == len(events)


def test_purchase_is_sent_without_waiting_for_the_batch_timer(
    open_storefront: OpenStorefront, collector: Collector
) -> None:
    """checkout_completed goes out at once, taking the queued events with it, while the batch timer never fires."""
    shop = open_storefront(hold_timers=True)
    viewed = shop.event("page_viewed", path="/checkouts/cn/Z2NwLXVzLWVhc3QxOjAxSjk/thank-you")
    shop.publish(viewed)
    shop.wait_for_held_timer()
    assert shop.fetches() == []

    completed = shop.event("checkout_completed", {"checkout": checkout(email="Buyer@Example.com", order_id="5002")})
    shop.publish(completed)

    assert collector.wait_for_stored(2) == 2
    fetches = shop.wait_for_settled_requests()
    assert_plain_keepalive_posts(fetches, collector)
    assert [[e["event"]["id"] for e in batch] for batch in envelopes_sent(fetches)] == [[viewed["id"], completed["id"]]]
    kinds = {pixel_id: event.kind for pixel_id, (event, _) in collector.by_pixel_id().items()}
    assert kinds == {viewed["id"]: EventKind.PAGE_VIEWED, completed["id"]: EventKind.CHECKOUT_COMPLETED}


def test_batch_timer_sends_queued_events(open_storefront: OpenStorefront, collector: Collector) -> None:
    """Events short of a full batch wait for the batch timer and then travel together in one request."""
    shop = open_storefront(hold_timers=True)
    events = [shop.event("page_viewed"), shop.event("product_viewed", {"productVariant": product_variant()}),
              shop.event("product_added_to_cart", {"cartLine": cart_line()})]
    shop.publish(*events)
    shop.wait_for_held_timer()
    assert shop.fetches() == []

    assert shop.release_timers() == 1
    assert collector.wait_for_stored(3) == 3
    fetches = shop.wait_for_settled_requests()
    assert_plain_keepalive_posts(fetches, collector)
    assert [[e["event"]["id"] for e in batch] for batch in envelopes_sent(fetches)] == [[e["id"] for e in events]]


def test_queued_events_are_sent_when_the_shopper_leaves_the_page(
    open_storefront: OpenStorefront, collector: Collector, storefront_site: Site
) -> None:
    """An add-to-cart still waiting for the batch timer reaches the collector when the shopper navigates away."""
    shop = open_storefront(hold_timers=True)
    added = shop.event("product_added_to_cart", {"cartLine": cart_line()})
    shop.publish(added)
    shop.wait_for_held_timer()
    assert shop.fetches() == []

    shop.page.goto(storefront_site.origin + "/cart")

    assert collector.wait_for_stored(1) == 1
    event, _ = collector.by_pixel_id()[added["id"]]
    assert event.kind is EventKind.PRODUCT_ADDED_TO_CART


def test_consent_update_applies_to_later_events(open_storefront: OpenStorefront, collector: Collector) -> None:
    """After visitorConsentCollected, later events carry the new consent while earlier ones keep the old one."""
    declined = {"analyticsProcessingAllowed": True, "marketingAllowed": False,
                "preferencesProcessingAllowed": False, "saleOfDataAllowed": False}
    granted = dict.fromkeys(declined, True)
    shop = open_storefront(consent=declined)
    before = shop.event("page_viewed")
    after = shop.event("product_viewed", {"productVariant": product_variant()})
    # In one task: the event, then the banner's answer, then the next event.
    shop.page.evaluate(
        "([before, flags, after]) => { const h = window.__harness;"
        " h.publish(before); h.collectConsent(flags); h.publish(after); }",
        [before, granted, after],
    )

    assert collector.wait_for_stored(2) == 2
    stored = collector.by_pixel_id()
    assert stored[before["id"]][1]["consent"] == declined
    assert stored[after["id"]][1]["consent"] == granted

    later = shop.event("product_added_to_cart", {"cartLine": cart_line()})
    shop.collect_consent(declined)
    shop.publish(later)
    assert collector.wait_for_stored(3) == 3
    assert collector.by_pixel_id()[later["id"]][1]["consent"] == declined


def test_burst_of_non_latin_events_fits_the_keepalive_quota(
    open_storefront: OpenStorefront, collector: Collector
) -> None:
    """A burst in a non-Latin shop (over 64 KiB of UTF-8, under 60,000 characters) still reaches the collector."""
    shop = open_storefront()
    title = "オーガニックコットンTシャツ・ブルー" * 55
    events = [shop.event("product_viewed", {"productVariant": product_variant(variant_id=str(60000 + i), title=title)})
              for i in range(14)]
    texts = [json.dumps(e, ensure_ascii=False) for e in events]
    assert sum(len(t) for t in texts) < 60_000 < KEEPALIVE_QUOTA_BYTES < sum(len(t.encode()) for t in texts)
    shop.publish(*events)

    assert collector.wait_for_stored(len(events)) == len(events)
    fetches = shop.wait_for_settled_requests()
    assert all(record["status"] == 200 for record in fetches), fetches
    assert fetches[0]["keepalive"] is True
    assert all(len(record["body"].encode()) <= KEEPALIVE_QUOTA_BYTES for record in fetches if record["keepalive"])
    assert len(collector.by_pixel_id()) == len(events)


def test_page_on_a_foreign_origin_gets_nothing_stored(
    open_storefront: OpenStorefront, collector: Collector, foreign_site: Site
) -> None:
    """The pixel running on an origin the shop does not list is refused (403, blocked by CORS): nothing is stored."""
    shop = open_storefront(site=foreign_site)
    shop.publish(shop.event("page_viewed"),
                 shop.event("checkout_completed", {"checkout": checkout(email="x@example.com", order_id="5003")}))

    fetches = shop.wait_for_settled_requests()
    assert fetches
    assert all(record["error"] and record["status"] is None for record in fetches), fetches
    assert collector.wait_for_rejected("origin_not_allowed") >= 1
    assert collector.stored() == 0
