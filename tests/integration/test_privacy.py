"""Shopify's mandatory privacy webhooks: erasure leaves nothing of the customer, on both databases."""

from __future__ import annotations

import json

from sqlalchemy import select
from starlette.testclient import TestClient

from recapture.adapters.storage.schema import event_identifiers, events, privacy_requests
from recapture.domain.events import EventKind
from recapture.wiring import Runtime
from tests.support import SHOP, checkout, envelope, pixel_event, webhook_headers

JSON = {"content-type": "application/json"}


def _collect(client: TestClient, *items: dict) -> None:  # type: ignore[type-arg]
    response = client.post("/collect/shopify", content=json.dumps({"batch": list(items)}), headers=JSON)
    assert response.status_code == 200, response.text


def _webhook(client: TestClient, topic: str, payload: dict, webhook_id: str) -> None:  # type: ignore[type-arg]
    body = json.dumps(payload).encode()
    assert client.post("/webhooks/shopify", content=body, headers=webhook_headers(body, topic, webhook_id)).status_code == 200


def _all_rows(runtime: Runtime) -> str:
    with runtime.engine.connect() as conn:
        return " ".join(str(r) for t in (events, event_identifiers) for r in conn.execute(select(t)))


def test_customer_redact_erases_the_customer_and_their_device_history(client: TestClient, runtime: Runtime) -> None:
    """After customers/redact, no event of that shopper remains (checkout, browsing on their device), others stay."""
    jane_checkout = pixel_event(name="checkout_started", event_id="j2", client_id="jane-phone",
                                data={"checkout": checkout(email="jane@example.com", token="tok-jane")})
    jane_browse = pixel_event(event_id="j1", client_id="jane-phone")
    bob_browse = pixel_event(event_id="b1", client_id="bob-laptop")
    bob_checkout = pixel_event(name="checkout_started", event_id="b2", client_id="bob-laptop",
                               data={"checkout": checkout(email="bob@example.com", token="tok-bob")})
    _collect(client, envelope(jane_browse), envelope(jane_checkout), envelope(bob_browse), envelope(bob_checkout))
    runtime.processor.run_once()
    _webhook(client, "customers/redact", {
        "shop_id": 1, "shop_domain": SHOP, "customer": {"id": 42, "email": "Jane@Example.com", "phone": None},
        "orders_to_redact": [],
    }, "wh-redact")
    result = runtime.processor.run_once()
    assert result.erasures == 1
    with runtime.engine.connect() as conn:
        remaining = set(conn.execute(select(events.c.source_event_id)).scalars())
        [request] = conn.execute(select(privacy_requests)).all()
    assert remaining == {"b1", "b2"}
    assert request.kind == EventKind.PRIVACY_CUSTOMER_REDACT.value
    assert request.outcome["events"] == 3  # two pixel events and the redact request itself
    assert "jane" not in _all_rows(runtime).lower()


def test_customer_redact_reaches_events_not_yet_processed(client: TestClient, runtime: Runtime) -> None:
    """Events wait for processing with their identifiers sealed in their own row; a redact queued behind them (and
    processed in the same batch) still erases them, and the events it leaves are indexed as processed events are."""
    jane_browse = pixel_event(event_id="j1", client_id="jane-phone")
    jane_checkout = pixel_event(name="checkout_started", event_id="j2", client_id="jane-phone",
                                data={"checkout": checkout(email="jane@example.com", token="tok-jane")})
    bob_browse = pixel_event(event_id="b1", client_id="bob-laptop")
    _collect(client, envelope(jane_browse), envelope(jane_checkout), envelope(bob_browse))
    with runtime.engine.connect() as conn:
        assert conn.execute(select(event_identifiers)).first() is None  # not indexed before processing
    _webhook(client, "customers/redact", {
        "shop_id": 1, "shop_domain": SHOP, "customer": {"id": 42, "email": "jane@example.com", "phone": None},
        "orders_to_redact": [],
    }, "wh-redact-early")
    runtime.processor.run_once()
    with runtime.engine.connect() as conn:
        remaining = set(conn.execute(select(events.c.source_event_id)).scalars())
        unindexed = conn.execute(select(events.c.id).where(events.c.sealed_identifiers.is_not(None))).all()
        bob_types = set(conn.execute(select(event_identifiers.c.type)).scalars())
    assert remaining == {"b1"}
    assert unindexed == []
    assert bob_types == {"client_id"}
    assert "jane" not in _all_rows(runtime).lower()


def test_operator_erasure_reaches_events_not_yet_processed(client: TestClient, runtime: Runtime) -> None:
    """`recapture erase` right after a checkout, before the worker saw it, leaves nothing of that shopper."""
    from recapture.domain.events import Identifier, IdentifierType

    jane_checkout = pixel_event(name="checkout_started", event_id="j2", client_id="jane-phone",
                                data={"checkout": checkout(email="jane@example.com", token="tok-jane")})
    _collect(client, envelope(pixel_event(event_id="j1", client_id="jane-phone")), envelope(jane_checkout))
    outcome = runtime.processor.erase_on_request(SHOP, [Identifier(type=IdentifierType.EMAIL, value="jane@example.com")])
    assert outcome["events"] == 2
    assert runtime.store.counts().stored == 0


def test_shop_redact_erases_every_event_of_the_shop(client: TestClient, runtime: Runtime) -> None:
    """shop/redact (48 hours after uninstall) deletes all of the shop's events and identifiers."""
    _collect(client, envelope(pixel_event(event_id="a")), envelope(pixel_event(event_id="b")))
    _webhook(client, "shop/redact", {"shop_id": 1, "shop_domain": SHOP}, "wh-shop")
    runtime.processor.run_once()
    assert runtime.store.counts().stored == 0
    with runtime.engine.connect() as conn:
        assert conn.execute(select(event_identifiers)).first() is None
        assert conn.execute(select(privacy_requests.c.kind)).scalar_one() == EventKind.PRIVACY_SHOP_REDACT.value


def test_data_request_is_recorded_for_the_merchant(client: TestClient, runtime: Runtime) -> None:
    """customers/data_request is acknowledged, processed off the request path and recorded."""
    _webhook(client, "customers/data_request", {
        "shop_id": 1, "shop_domain": SHOP, "customer": {"id": 7, "email": "x@example.com"},
        "orders_requested": [1], "data_request": {"id": 9},
    }, "wh-data")
    runtime.processor.run_once()
    with runtime.engine.connect() as conn:
        request = conn.execute(select(privacy_requests)).one()
    assert request.kind == EventKind.PRIVACY_DATA_REQUEST.value
    assert request.completed_at is not None
