"""POST /webhooks/shopify on both databases, with Shopify's own resource fixtures signed with real HMACs."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from recapture.domain.events import EventKind, IdentifierType
from recapture.wiring import Runtime
from tests.support import PREVIOUS_WEBHOOK_SECRET, SHOP, fixture_bytes, webhook_headers

FIXTURES = [
    ("orders-create.json", "orders/create", EventKind.ORDER_PLACED),
    ("orders-create.json", "orders/paid", EventKind.ORDER_PAID),
    ("checkouts-create.json", "checkouts/create", EventKind.CHECKOUT_STARTED),
    ("checkouts-create.json", "checkouts/update", EventKind.CHECKOUT_UPDATED),
    ("carts-update.json", "carts/create", EventKind.CART_UPDATED),
    ("carts-update.json", "carts/update", EventKind.CART_UPDATED),
    ("customers-create.json", "customers/create", EventKind.CUSTOMER_UPDATED),
    ("customers-create.json", "customers/update", EventKind.CUSTOMER_UPDATED),
]


@pytest.mark.parametrize(("fixture", "topic", "kind"), FIXTURES)
def test_signed_fixture_is_stored_with_its_kind(
    client: TestClient, runtime: Runtime, fixture: str, topic: str, kind: EventKind
) -> None:
    """Every subscribed topic is verified, stored and normalized to its canonical kind."""
    body = fixture_bytes(fixture)
    response = client.post("/webhooks/shopify", content=body, headers=webhook_headers(body, topic, "wh-1"))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    [event] = runtime.store.pending(10)
    assert event.kind is kind
    assert runtime.store.read_raw(event.id) == body


def test_order_webhook_carries_the_identifiers_that_tie_an_order_to_its_shopper(
    client: TestClient, runtime: Runtime
) -> None:
    """orders/create yields order id, checkout and cart tokens, customer id and normalized email."""
    resource = json.loads(fixture_bytes("orders-create.json"))
    resource["checkout_token"] = "9d7c1f0e2b3a4c5d6e7f8091a2b3c4d5"  # Shopify's fixture leaves it null
    body = json.dumps(resource).encode()
    client.post("/webhooks/shopify", content=body, headers=webhook_headers(body, "orders/create", "wh-order"))
    [event] = runtime.store.pending(10)
    found = {(i.type, i.value) for i in event.identifiers}
    assert (IdentifierType.ORDER_ID, str(resource["id"])) in found
    assert (IdentifierType.CHECKOUT_TOKEN, resource["checkout_token"]) in found
    assert (IdentifierType.CART_TOKEN, resource["cart_token"]) in found
    assert (IdentifierType.SHOPIFY_CUSTOMER_ID, str(resource["customer"]["id"])) in found
    assert (IdentifierType.EMAIL, "bob.norman@hostmail.com") in found


def test_redelivery_with_the_same_webhook_id_is_stored_once(client: TestClient, runtime: Runtime) -> None:
    """Shopify retries deliver the same X-Shopify-Webhook-Id; the second is acknowledged but not stored."""
    body = fixture_bytes("orders-create.json")
    headers = webhook_headers(body, "orders/create", "wh-dup")
    first = client.post("/webhooks/shopify", content=body, headers=headers)
    second = client.post("/webhooks/shopify", content=body, headers=headers)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["status"] == "duplicate"
    assert runtime.store.counts().stored == 1


def test_previous_secret_still_verifies_during_rotation(client: TestClient, runtime: Runtime) -> None:
    """While Shopify rotates the app secret, webhooks signed with the old one are still accepted."""
    body = fixture_bytes("customers-create.json")
    headers = webhook_headers(body, "customers/create", "wh-rot", secret=PREVIOUS_WEBHOOK_SECRET)
    assert client.post("/webhooks/shopify", content=body, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda h: h.pop("X-Shopify-Hmac-Sha256"), 401, "bad_signature"),
        (lambda h: h.update({"X-Shopify-Hmac-Sha256": "AAAA"}), 401, "bad_signature"),
        (lambda h: h.update({"X-Shopify-Shop-Domain": "stranger.myshopify.com"}), 404, "unknown_shop"),
        (lambda h: h.pop("X-Shopify-Webhook-Id"), 400, "missing_header"),
        (lambda h: h.pop("X-Shopify-Topic"), 400, "missing_header"),
    ],
)
def test_unverifiable_webhooks_are_refused_and_nothing_is_stored(
    client: TestClient, runtime: Runtime, mutate, status: int, code: str  # type: ignore[no-untyped-def]
) -> None:
    """A missing or wrong signature, an unknown shop or missing headers: a typed error, a counter, no row."""
    body = fixture_bytes("orders-create.json")
    headers = webhook_headers(body, "orders/create", "wh-bad")
    mutate(headers)
    response = client.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert runtime.store.counts().stored == 0
    assert f'reason="{code}"' in client.get("/metrics").text


def test_body_tampered_after_signing_is_refused(client: TestClient, runtime: Runtime) -> None:
    """The HMAC covers the raw body: one changed byte fails verification."""
    body = fixture_bytes("orders-create.json")
    headers = webhook_headers(body, "orders/create", "wh-tamper")
    tampered = body.replace(b"409.94", b"0.01")
    assert client.post("/webhooks/shopify", content=tampered, headers=headers).status_code == 401
    assert runtime.store.counts().stored == 0


def test_signed_but_malformed_json_is_a_clear_400(client: TestClient, runtime: Runtime) -> None:
    """A verified body that is not JSON is refused with a typed error, not a crash."""
    body = b"{not json"
    response = client.post("/webhooks/shopify", content=body, headers=webhook_headers(body, "orders/create", "wh-x"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_event_id_and_triggered_at_are_kept(client: TestClient, runtime: Runtime) -> None:
    """X-Shopify-Event-Id and X-Shopify-Triggered-At are stored with the event; occurred_at is the trigger time."""
    body = fixture_bytes("checkouts-create.json")
    headers = webhook_headers(
        body, "checkouts/create", "wh-meta", event_id="evt-77", triggered_at="2026-10-05T09:30:00Z"
    )
    assert client.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
    [event] = runtime.store.pending(10)
    assert event.occurred_at.isoformat() == "2026-10-05T09:30:00+00:00"
    with runtime.engine.connect() as conn:
        from sqlalchemy import select

        from recapture.adapters.storage.schema import events

        meta = conn.execute(select(events.c.body)).scalar_one()["meta"]
    assert meta["event_id"] == "evt-77"
    assert meta["triggered_at"] == "2026-10-05T09:30:00Z"


def test_unknown_topic_is_acknowledged_and_kept_raw(client: TestClient, runtime: Runtime) -> None:
    """A topic we did not expect is still stored (Shopify would retry a refusal for hours)."""
    body = json.dumps({"id": 1, "title": "x"}).encode()
    headers = webhook_headers(body, "products/update", "wh-other")
    assert client.post("/webhooks/shopify", content=body, headers=headers).status_code == 200
    [event] = runtime.store.pending(10)
    assert event.kind is EventKind.OTHER
    assert SHOP in runtime.store.pending(10)[0].shop
