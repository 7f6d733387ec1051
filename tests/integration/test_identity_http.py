"""Identity resolution through the real HTTP endpoints, on both databases: the cases users worry about."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from recapture.adapters.storage.schema import events, identifiers, identity_links, persons
from recapture.domain.events import Identifier, IdentifierType
from recapture.wiring import Runtime
from tests.support import AUTH, SHOP, checkout, envelope, klaviyo_cookie, pixel_event, webhook_headers

T = IdentifierType
JSON = {"content-type": "application/json"}


def collect(client: TestClient, *items: dict[str, Any]) -> None:
    response = client.post("/collect/shopify", content=json.dumps({"batch": list(items)}), headers=JSON)
    assert response.status_code == 200, response.text


def person_of(runtime: Runtime, kind: IdentifierType, value: str) -> int | None:
    stored = runtime.graph.find(SHOP, Identifier(type=kind, value=value))
    return stored.person_id if stored else None


def event_person(runtime: Runtime, source_event_id: str) -> int | None:
    with runtime.engine.connect() as conn:
        person = conn.execute(select(events.c.person_id).where(events.c.source_event_id == source_event_id)).scalar()
    return runtime.graph.root(person) if person is not None else None


def test_anonymous_browsing_becomes_attributable_when_the_email_is_typed(client: TestClient, runtime: Runtime) -> None:
    """Retroactive identification: the cart added an hour before the email was typed belongs to that shopper."""
    collect(client, envelope(pixel_event(event_id="view", client_id="phone-1")),
            envelope(pixel_event(name="product_added_to_cart", event_id="add", client_id="phone-1", data={})))
    runtime.processor.run_once()
    anonymous = event_person(runtime, "add")
    collect(client, envelope(pixel_event(name="checkout_contact_info_submitted", event_id="contact", client_id="phone-1",
                                         data={"checkout": checkout(email="ann@example.com")})))
    runtime.processor.run_once()
    ann = person_of(runtime, T.EMAIL, "ann@example.com")
    assert ann is not None
    assert event_person(runtime, "add") == ann == runtime.graph.root(anonymous)  # type: ignore[arg-type]


def test_in_app_browser_and_safari_are_stitched_by_the_klaviyo_email_click(client: TestClient, runtime: Runtime) -> None:
    """Instagram's in-app browser and Safari share no cookie; the `_kx` of an email click joins them."""
    collect(client, envelope(pixel_event(event_id="ig", client_id="instagram-webview",
                                         href=f"https://{SHOP}/products/tee?_kx=KX.abc123")))
    collect(client, envelope(pixel_event(event_id="sf", client_id="safari",
                                         href=f"https://{SHOP}/?_kx=KX.abc123"),
                             cookies={"__kla_id": klaviyo_cookie(**{"$exchange_id": "KX.abc123"})}))
    runtime.processor.run_once()
    assert person_of(runtime, T.CLIENT_ID, "instagram-webview") == person_of(runtime, T.CLIENT_ID, "safari")


def test_shared_family_tablet_keeps_two_people_apart(client: TestClient, runtime: Runtime) -> None:
    """Mom's and Dad's checkouts on one tablet never merge; the later browse belongs to Dad, Mom's cart to Mom."""
    collect(client, envelope(pixel_event(name="checkout_started", event_id="mom", client_id="tablet",
                                         data={"checkout": checkout(email="mom@family-mail.com", token="t-mom")})))
    runtime.processor.run_once()
    collect(client, envelope(pixel_event(name="checkout_started", event_id="dad", client_id="tablet",
                                         timestamp="2026-10-05T09:59:30Z",
                                         data={"checkout": checkout(email="dad@family-mail.com", token="t-dad")})))
    runtime.processor.run_once()
    mom, dad = person_of(runtime, T.EMAIL, "mom@family-mail.com"), person_of(runtime, T.EMAIL, "dad@family-mail.com")
    assert mom != dad
    assert event_person(runtime, "mom") == mom
    assert event_person(runtime, "dad") == dad
    assert person_of(runtime, T.CHECKOUT_TOKEN, "t-mom") == mom
    with runtime.engine.connect() as conn:
        conflicts = conn.execute(select(identity_links.c.detail).where(identity_links.c.action == "conflict")).scalars().all()
    assert [c["kind"] for c in conflicts] == ["distinct_persons"]


def test_order_webhook_joins_the_anonymous_cart_device_to_the_buyer(client: TestClient, runtime: Runtime) -> None:
    """orders/create carries the cart token the pixel saw on the device: device, order and customer are one person."""
    collect(client, envelope(pixel_event(name="cart_viewed", event_id="cart", client_id="laptop", data={
        "cart": {"id": "gid://shopify/Cart/c1-abc?key=secret", "lines": [], "cost": {"totalAmount": {"amount": 5, "currencyCode": "USD"}}, "totalQuantity": 1}})))
    order = json.dumps({"id": 555, "email": "buyer@example.com", "cart_token": "c1-abc", "checkout_token": "chk-555",
                        "total_price": "5.00", "currency": "USD", "customer": {"id": 99, "email": "buyer@example.com"},
                        "line_items": []}).encode()
    assert client.post("/webhooks/shopify", content=order, headers=webhook_headers(order, "orders/create", "o-1")).status_code == 200
    runtime.processor.run_once()
    assert person_of(runtime, T.CLIENT_ID, "laptop") == person_of(runtime, T.SHOPIFY_CUSTOMER_ID, "99") is not None


def test_blocked_placeholder_email_does_not_join_strangers(client: TestClient, runtime: Runtime) -> None:
    """Two shoppers who typed no-reply@ addresses stay two persons; nothing stores the placeholder."""
    for n in (1, 2):
        collect(client, envelope(pixel_event(name="checkout_started", event_id=f"p{n}", client_id=f"dev-{n}",
                                             data={"checkout": checkout(email="noreply@gmail.com", token=f"t{n}")})))
    runtime.processor.run_once()
    assert person_of(runtime, T.CLIENT_ID, "dev-1") != person_of(runtime, T.CLIENT_ID, "dev-2")
    assert person_of(runtime, T.EMAIL, "noreply@gmail.com") is None


def test_admin_person_explains_identifiers_masked_and_the_evidence(client: TestClient, runtime: Runtime) -> None:
    """GET /admin/persons/{id}: every identifier (email masked) and the chain of evidence with rules."""
    collect(client, envelope(pixel_event(event_id="v", client_id="d1")),
            envelope(pixel_event(name="checkout_started", event_id="c", client_id="d1",
                                 data={"checkout": checkout(email="jane.doe@example.com")})))
    runtime.processor.run_once()
    person = person_of(runtime, T.EMAIL, "jane.doe@example.com")
    report = client.get(f"/admin/persons/{person}", headers=AUTH).json()
    values = {i["type"]: i["value"] for i in report["identifiers"]}
    assert values["email"] == "j***@e***.com"
    assert values["client_id"] == "d1"
    assert "jane" not in json.dumps(report)
    assert {e["action"] for e in report["evidence"]} >= {"attach"}
    assert {e["event"] for e in report["evidence"]} >= {"v", "c"}
    assert client.get("/admin/persons/999999", headers=AUTH).status_code == 404
    assert client.get(f"/admin/persons/{person}").status_code == 401


def test_customer_redact_erases_persons_identifiers_evidence_and_events(client: TestClient, runtime: Runtime) -> None:
    """After customers/redact nothing of the person remains in any table; the other shopper is untouched."""
    collect(client, envelope(pixel_event(event_id="a1", client_id="ann-phone")),
            envelope(pixel_event(name="checkout_started", event_id="a2", client_id="ann-phone",
                                 data={"checkout": checkout(email="ann@example.com", token="ann-t")})),
            envelope(pixel_event(event_id="a3", client_id="ann-laptop")),
            envelope(pixel_event(name="checkout_started", event_id="a4", client_id="ann-laptop",
                                 data={"checkout": checkout(email="ann@example.com", token="ann-t2")})),
            envelope(pixel_event(event_id="b1", client_id="bob")))
    runtime.processor.run_once()
    ann = person_of(runtime, T.EMAIL, "ann@example.com")
    redact = json.dumps({"shop_id": 1, "shop_domain": SHOP, "customer": {"id": 1, "email": "ann@example.com"}}).encode()
    client.post("/webhooks/shopify", content=redact, headers=webhook_headers(redact, "customers/redact", "r-1"))
    runtime.processor.run_once()
    with runtime.engine.connect() as conn:
        assert set(conn.execute(select(events.c.source_event_id)).scalars()) == {"b1"}
        assert conn.execute(select(persons.c.id).where(persons.c.id == ann)).first() is None
        assert conn.execute(select(identity_links).where(identity_links.c.person_id == ann)).first() is None
        remaining = {(r.type, r.value) for r in conn.execute(select(identifiers.c.type, identifiers.c.value))}
    assert remaining == {("client_id", "bob")}


def test_admin_attributions_pages_through_resolved_events(client: TestClient, runtime: Runtime) -> None:
    """GET /admin/attributions lists processed events with their current person and reachability."""
    collect(client, envelope(pixel_event(event_id="x1", client_id="dx")),
            envelope(pixel_event(name="checkout_started", event_id="x2", client_id="dx",
                                 data={"checkout": checkout(email="pat@example.com")})),
            envelope(pixel_event(event_id="y1", client_id="dy")))
    runtime.processor.run_once()
    page = client.get("/admin/attributions?limit=2", headers=AUTH).json()
    rows = page["attributions"]
    assert [r["source_event_id"] for r in rows] == ["x1", "x2"]
    assert rows[0]["person"] == rows[1]["person"]
    assert rows[0]["reachable"] is True
    rest = client.get(f"/admin/attributions?after={page['next']}", headers=AUTH).json()["attributions"]
    assert [(r["source_event_id"], r["reachable"]) for r in rest] == [("y1", False)]
    assert client.get("/admin/attributions?after=x", headers=AUTH).status_code == 422
