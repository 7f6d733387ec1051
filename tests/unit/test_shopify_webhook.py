"""Shopify webhook resources (the official fixtures and the privacy topics) normalized into canonical events."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recapture.domain.events import (
    EMPTY_COMMERCE,
    CanonicalEvent,
    Commerce,
    Consent,
    EventKind,
    Identifier,
    IdentifierType,
    Product,
    Source,
    TimestampFlag,
)
from recapture.domain.identifiers import is_placeholder
from recapture.domain.shopify_webhook import TOPICS, WebhookDelivery, normalize_webhook
from recapture.domain.timestamps import DEFAULT_TIMESTAMP_POLICY
from tests.support import SHOP, fixture_bytes

RECEIVED = datetime(2026, 10, 5, 10, 0, 30, tzinfo=UTC)
TRIGGERED = "2026-10-05T10:00:00Z"
ORDER_CART_TOKEN = "68778783ad298f1c80c3bafcddeea02f"


def delivery(
    topic: str, resource: dict[str, Any] | bytes, *, triggered_at: str | None = TRIGGERED,
    event_id: str | None = "evt-1", api_version: str | None = "2026-07",
) -> WebhookDelivery:
    """A delivery as the webhook adapter builds it after verifying the HMAC."""
    raw = resource if isinstance(resource, bytes) else json.dumps(resource).encode()
    return WebhookDelivery(
        shop=SHOP, topic=topic, webhook_id="wh-1", event_id=event_id, triggered_at=triggered_at,
        api_version=api_version, resource=json.loads(raw), raw=raw,
    )


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixture_bytes(name))
    return loaded


def normalize(topic: str, resource: dict[str, Any] | bytes, region: str = "US", **kwargs: Any) -> CanonicalEvent:
    return normalize_webhook(delivery(topic, resource, **kwargs), RECEIVED, default_region=region)


def ipod(sku: str, variant_id: str, variant_title: str, title: str = "IPod Nano - 8gb") -> Product:
    return Product(
        product_id="632910392", variant_id=variant_id, sku=sku, title=title, variant_title=variant_title,
        price=Decimal("199.00"), currency="USD", quantity=1,
    )


# --- topics ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "kind"),
    [
        ("checkouts/create", EventKind.CHECKOUT_STARTED), ("checkouts/update", EventKind.CHECKOUT_UPDATED),
        ("orders/create", EventKind.ORDER_PLACED), ("orders/paid", EventKind.ORDER_PAID),
        ("carts/create", EventKind.CART_UPDATED), ("carts/update", EventKind.CART_UPDATED),
        ("customers/create", EventKind.CUSTOMER_UPDATED), ("customers/update", EventKind.CUSTOMER_UPDATED),
        ("customers/data_request", EventKind.PRIVACY_DATA_REQUEST),
        ("customers/redact", EventKind.PRIVACY_CUSTOMER_REDACT), ("shop/redact", EventKind.PRIVACY_SHOP_REDACT),
    ],
)
def test_topic_maps_to_kind(topic: str, kind: EventKind) -> None:
    """Each subscribed topic becomes its EventKind, with name, source, webhook id and metadata kept."""
    assert TOPICS[topic] is kind
    event = normalize(topic, {"id": 1})
    assert event.kind is kind
    assert (event.name, event.source, event.source_event_id, event.shop) == (topic, Source.SHOPIFY_WEBHOOK, "wh-1", SHOP)
    assert event.source_meta == {"topic": topic, "event_id": "evt-1", "triggered_at": TRIGGERED,
                                 "api_version": "2026-07"}


@pytest.mark.parametrize("topic", ["products/update", "app/uninstalled", "", "ORDERS/CREATE", "orders/create/extra"])
def test_unknown_topic_is_kept_as_other(topic: str) -> None:
    """A topic we do not know is stored as OTHER without commerce, its name kept."""
    event = normalize(topic, fixture("orders-create.json"))
    assert event.kind is EventKind.OTHER
    assert event.name == topic
    assert event.commerce is EMPTY_COMMERCE
    assert event.source_meta["topic"] == topic


# --- orders/create ---------------------------------------------------------------------------------------------------


def test_orders_create_fixture() -> None:
    """orders/create: ORDER_PLACED with order id, cart token, revenue, currency, TENOFF and all three lines."""
    event = normalize("orders/create", fixture_bytes("orders-create.json"))
    assert event.kind is EventKind.ORDER_PLACED
    assert event.commerce == Commerce(
        products=(
            ipod("IPOD2008GREEN", "39072856", "green"),
            ipod("IPOD2008RED", "49148385", "red"),
            ipod("IPOD2008BLACK", "457924702", "black"),
        ),
        value=Decimal("409.94"), currency="USD", item_count=3, checkout_token=None, cart_token=ORDER_CART_TOKEN,
        checkout_url=None, order_id="450789469", discount_codes=("TENOFF",),
    )
    assert isinstance(event.commerce.value, Decimal)


def test_orders_create_fixture_identifiers() -> None:
    """orders/create identifies the buyer by customer id, email, cart token and order id (the 555 phone is invalid)."""
    event = normalize("orders/create", fixture_bytes("orders-create.json"))
    assert event.identifiers == (
        Identifier(type=IdentifierType.SHOPIFY_CUSTOMER_ID, value="207119551"),
        Identifier(type=IdentifierType.EMAIL, value="bob.norman@hostmail.com"),
        Identifier(type=IdentifierType.CART_TOKEN, value=ORDER_CART_TOKEN),
        Identifier(type=IdentifierType.ORDER_ID, value="450789469"),
    )


def test_orders_create_with_checkout_token() -> None:
    """An order placed through checkout carries checkout_token: it becomes the checkout token, not the order token."""
    order = fixture("orders-create.json")
    order["checkout_token"] = "2a1ace52255252df566af0faaedfbfa7"
    event = normalize("orders/create", order)
    assert event.commerce.checkout_token == "2a1ace52255252df566af0faaedfbfa7"
    assert event.identifier(IdentifierType.CHECKOUT_TOKEN) == "2a1ace52255252df566af0faaedfbfa7"
    assert "b1946ac92492d2347c6235b4d2611184" not in {i.value for i in event.identifiers}


def test_orders_create_fixture_context() -> None:
    """orders/create: the 0.0.0.0 browser ip is dropped, marketing consent read, and the Shopify time trusted."""
    event = normalize("orders/create", fixture_bytes("orders-create.json"))
    assert event.device.ip is None
    assert event.device.user_agent is None
    assert event.consent == Consent(marketing=False)
    assert event.attribution.utm == {}
    assert event.occurred_at == datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
    assert event.timestamp_flag is TimestampFlag.OK
    assert event.received_at == RECEIVED
    assert event.raw == fixture_bytes("orders-create.json")
    assert event.page_url is None


def test_order_phone_email_consent_and_landing_attribution() -> None:
    """A valid phone (from addresses), a subscribed customer and a landing site with utm/click ids are all read."""
    order = fixture("orders-create.json")
    order["billing_address"]["phone"] = "(415) 555-2671"
    order["customer"]["email_marketing_consent"] = {"state": "subscribed", "opt_in_level": "single_opt_in"}
    order["landing_site"] = "/products/ipod?utm_source=klaviyo&utm_campaign=flow&_kx=kx.1&gclid=G1"
    order["client_details"] = {"browser_ip": "198.51.100.4", "user_agent": "Mozilla/5.0", "accept_language": "en"}
    event = normalize("orders/create", order)
    assert event.identifier(IdentifierType.PHONE) == "+14155552671"
    assert event.consent == Consent(marketing=True)
    assert event.attribution.utm == {"utm_source": "klaviyo", "utm_campaign": "flow"}
    assert event.attribution.click_ids == {"_kx": "kx.1", "gclid": "G1"}
    assert (event.device.ip, event.device.user_agent, event.device.language) == ("198.51.100.4", "Mozilla/5.0", "en")


def test_orders_paid_is_order_paid_with_the_same_commerce() -> None:
    """orders/paid carries the same order commerce as orders/create."""
    created = normalize("orders/create", fixture_bytes("orders-create.json"))
    paid = normalize("orders/paid", fixture_bytes("orders-create.json"))
    assert paid.kind is EventKind.ORDER_PAID
    assert paid.commerce == created.commerce


def test_order_time_falls_back_to_resource_and_is_clamped() -> None:
    """Without X-Shopify-Triggered-At the resource's updated_at is used; a 2008 order is clamped and flagged."""
    event = normalize("orders/create", fixture_bytes("orders-create.json"), triggered_at=None, event_id=None,
                      api_version=None)
    assert event.occurred_at == RECEIVED - DEFAULT_TIMESTAMP_POLICY.max_age
    assert event.timestamp_flag is TimestampFlag.CLAMPED_PAST
    assert event.source_meta == {"topic": "orders/create"}


def test_missing_timestamp_is_flagged() -> None:
    """A resource with no time at all and no header gives the receipt time, flagged MISSING."""
    event = normalize("shop/redact", {"shop_id": 1, "shop_domain": SHOP}, triggered_at=None)
    assert (event.occurred_at, event.timestamp_flag) == (RECEIVED, TimestampFlag.MISSING)


def test_future_triggered_at_is_clamped() -> None:
    """A triggered-at far in the future is clamped to receipt."""
    event = normalize("orders/create", fixture_bytes("orders-create.json"), triggered_at="2030-01-01T00:00:00Z")
    assert (event.occurred_at, event.timestamp_flag) == (RECEIVED, TimestampFlag.CLAMPED_FUTURE)


# --- checkouts/create -----------------------------------------------------------------------------------------------


def test_checkouts_create_fixture() -> None:
    """checkouts/create: CHECKOUT_STARTED with checkout token, cart token, recovery URL, value, lines and TENOFF."""
    event = normalize("checkouts/create", fixture_bytes("checkouts-create.json"))
    assert event.kind is EventKind.CHECKOUT_STARTED
    assert event.commerce == Commerce(
        products=(
            ipod("IPOD2008RED", "49148385", "Red", "IPod Nano - 8GB"),
            Product(product_id="632910392", variant_id="808950810", sku="IPOD2008PINK", title="IPod Nano - 8GB",
                    variant_title="Pink", price=Decimal("199.00"), currency="USD", quantity=1),
        ),
        value=Decimal("409.94"), currency="USD", item_count=2, checkout_token="2a1ace52255252df566af0faaedfbfa7",
        cart_token=ORDER_CART_TOKEN,
        checkout_url="https://checkout.local/orders/690933842/2a1ace52255252df566af0faaedfbfa7?recovered=1",
        order_id=None, discount_codes=("TENOFF",),
    )


def test_checkouts_create_fixture_identifiers() -> None:
    """checkouts/create identifies the shopper by customer id, email, checkout token and cart token."""
    event = normalize("checkouts/create", fixture_bytes("checkouts-create.json"))
    assert event.identifiers == (
        Identifier(type=IdentifierType.SHOPIFY_CUSTOMER_ID, value="207119551"),
        Identifier(type=IdentifierType.EMAIL, value="bob.norman@hostmail.com"),
        Identifier(type=IdentifierType.CHECKOUT_TOKEN, value="2a1ace52255252df566af0faaedfbfa7"),
        Identifier(type=IdentifierType.CART_TOKEN, value=ORDER_CART_TOKEN),
    )
    assert event.consent == Consent(marketing=False)


def test_checkout_cart_token_from_one_page_recovery_url() -> None:
    """Without cart_token, a `/checkouts/cn/<token>` recovery URL still gives the cart token."""
    checkout = fixture("checkouts-create.json")
    checkout["cart_token"] = None
    checkout["abandoned_checkout_url"] = f"https://{SHOP}/checkouts/cn/Z2NwLXVzLWVhc3Qx/recover?key=abc"
    assert normalize("checkouts/create", checkout).commerce.cart_token == "Z2NwLXVzLWVhc3Qx"


def test_guest_checkout_without_customer() -> None:
    """A guest checkout (customer null, contact email only) is still identified by email."""
    checkout = fixture("checkouts-create.json")
    checkout.update({"customer": None, "email": None, "contact_email": "Guest@Example.com"})
    event = normalize("checkouts/create", checkout)
    assert event.identifier(IdentifierType.SHOPIFY_CUSTOMER_ID) is None
    assert event.identifier(IdentifierType.EMAIL) == "guest@example.com"


# --- carts/update ---------------------------------------------------------------------------------------------------


def test_carts_update_fixture() -> None:
    """carts/update: CART_UPDATED with the cart token, the value summed from lines and the item count."""
    event = normalize("carts/update", fixture_bytes("carts-update.json"))
    assert event.kind is EventKind.CART_UPDATED
    assert event.commerce == Commerce(
        products=(Product(variant_id="1", title="test", price=Decimal("1.00"), quantity=1),),
        value=Decimal("1.00"), item_count=1, cart_token="3eed8183d4281db6ea82ee2b8f23e9cc",
    )
    assert event.identifiers == (Identifier(type=IdentifierType.CART_TOKEN, value="3eed8183d4281db6ea82ee2b8f23e9cc"),)


def test_cart_value_multiplies_price_by_quantity() -> None:
    """A cart's value is the sum of price times quantity over its lines."""
    cart = fixture("carts-update.json")
    cart["line_items"].append({"id": 2, "title": "mug", "price": "12.50", "quantity": 3, "variant_id": 7})
    commerce = normalize("carts/update", cart).commerce
    assert (commerce.value, commerce.item_count) == (Decimal("38.50"), 4)


def test_empty_cart_has_no_value() -> None:
    """A cart with no lines has no value and zero items, but keeps its token."""
    cart = fixture("carts-update.json")
    cart["line_items"] = []
    commerce = normalize("carts/update", cart).commerce
    assert (commerce.value, commerce.item_count, commerce.cart_token) == (None, 0, "3eed8183d4281db6ea82ee2b8f23e9cc")


# --- customers/create -----------------------------------------------------------------------------------------------


def test_customers_create_fixture() -> None:
    """customers/create: CUSTOMER_UPDATED with customer id and email, and no commerce."""
    event = normalize("customers/create", fixture_bytes("customers-create.json"))
    assert event.kind is EventKind.CUSTOMER_UPDATED
    assert event.commerce is EMPTY_COMMERCE
    assert event.identifiers == (
        Identifier(type=IdentifierType.SHOPIFY_CUSTOMER_ID, value="207119551"),
        Identifier(type=IdentifierType.EMAIL, value="bob.norman@hostmail.com"),
    )


def test_customer_phone_and_email_consent() -> None:
    """A customer's valid phone is E.164 and email_marketing_consent gives the marketing flag."""
    customer = fixture("customers-create.json")
    customer["phone"] = "+16135551111"
    customer["email_marketing_consent"] = {"state": "unsubscribed"}
    event = normalize("customers/update", customer)
    assert event.identifier(IdentifierType.PHONE) == "+16135551111"
    assert event.consent == Consent(marketing=False)


# --- privacy topics (payloads per Shopify's mandatory compliance webhooks) -------------------------------------------

REDACT = {
    "shop_id": 954889, "shop_domain": SHOP,
    "customer": {"id": 191167, "email": "John@Example.com", "phone": "+1 415 555 2671"},
    "orders_to_redact": [299938, 280263, 220458],
}
DATA_REQUEST = {
    "shop_id": 954889, "shop_domain": SHOP, "orders_requested": [299938, 280263, 220458],
    "customer": {"id": 191167, "email": "john@example.com", "phone": "555-625-1199"},
    "data_request": {"id": 9999},
}
SHOP_REDACT = {"shop_id": 954889, "shop_domain": SHOP}


def test_customers_redact() -> None:
    """customers/redact names the customer (id, email, phone) and every order to redact, with no commerce."""
    event = normalize("customers/redact", REDACT)
    assert event.kind is EventKind.PRIVACY_CUSTOMER_REDACT
    assert event.commerce is EMPTY_COMMERCE
    assert event.identifiers == (
        Identifier(type=IdentifierType.SHOPIFY_CUSTOMER_ID, value="191167"),
        Identifier(type=IdentifierType.EMAIL, value="john@example.com"),
        Identifier(type=IdentifierType.PHONE, value="+14155552671"),
        Identifier(type=IdentifierType.ORDER_ID, value="299938"),
        Identifier(type=IdentifierType.ORDER_ID, value="280263"),
        Identifier(type=IdentifierType.ORDER_ID, value="220458"),
    )


def test_customers_data_request() -> None:
    """customers/data_request names the customer and the requested orders (the invalid 555 phone is dropped)."""
    event = normalize("customers/data_request", DATA_REQUEST)
    assert event.kind is EventKind.PRIVACY_DATA_REQUEST
    assert event.commerce is EMPTY_COMMERCE
    assert event.identifiers == (
        Identifier(type=IdentifierType.SHOPIFY_CUSTOMER_ID, value="191167"),
        Identifier(type=IdentifierType.EMAIL, value="john@example.com"),
        Identifier(type=IdentifierType.ORDER_ID, value="299938"),
        Identifier(type=IdentifierType.ORDER_ID, value="280263"),
        Identifier(type=IdentifierType.ORDER_ID, value="220458"),
    )


def test_shop_redact() -> None:
    """shop/redact carries no customer: no identifiers, no commerce."""
    event = normalize("shop/redact", SHOP_REDACT)
    assert event.kind is EventKind.PRIVACY_SHOP_REDACT
    assert event.identifiers == ()
    assert event.commerce is EMPTY_COMMERCE
    assert event.consent is None


def test_redact_without_orders_or_with_placeholders() -> None:
    """A redaction with no orders, or placeholder values, gives only real identifiers."""
    payload = copy.deepcopy(REDACT)
    payload["customer"] = {"id": 0, "email": "null", "phone": "undefined"}
    payload["orders_to_redact"] = [0, None, "", 5]
    event = normalize("customers/redact", payload)
    assert event.identifiers == (Identifier(type=IdentifierType.ORDER_ID, value="5"),)
    del payload["orders_to_redact"]
    assert normalize("customers/redact", payload).identifiers == ()


# --- robustness --------------------------------------------------------------------------------------------------------

ODD = [
    "", "null", "0", "0.0.0.0", "9e999999",  # noqa: S104 - Shopify's placeholder browser_ip, not a bind address "NaN", "gid://shopify/Customer/0", "bob@example.com", "+14155552671",
    "http://[::1", "https://s/checkouts/cn/tok?utm_source=x", "2008-01-10T11:00:00-05:00", "0001-01-01T00:00:00+01:00",
]
KEYS = [
    "id", "email", "contact_email", "phone", "customer", "default_address", "billing_address", "shipping_address",
    "line_items", "price", "quantity", "title", "name", "sku", "product_id", "variant_id", "variant_title", "currency",
    "presentment_currency", "total_price", "token", "cart_token", "checkout_token", "abandoned_checkout_url",
    "discount_codes", "code", "landing_site", "client_details", "browser_ip", "user_agent", "accept_language",
    "email_marketing_consent", "state", "buyer_accepts_marketing", "updated_at", "created_at", "orders_to_redact",
    "orders_requested",
]
leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(),
                 st.text(max_size=15), st.sampled_from(ODD))
json_value = st.recursive(
    leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(KEYS), children, max_size=6),
    max_leaves=30,
)


def is_text_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    topic=st.sampled_from([*TOPICS, "products/update"]),
    resource=st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), json_value, max_size=10),
    triggered_at=st.none() | st.sampled_from(ODD) | st.text(max_size=10),
)
def test_normalize_webhook_never_raises_on_arbitrary_json(
    topic: str, resource: dict[str, Any], triggered_at: str | None
) -> None:
    """Any JSON object as a resource gives a well-typed, storable event, never an exception."""
    event = normalize_webhook(
        WebhookDelivery(shop=SHOP, topic=topic, webhook_id="wh", event_id=None, triggered_at=triggered_at,
                        api_version=None, resource=resource, raw=b"{}"),
        RECEIVED,
    )
    assert event.kind is TOPICS.get(topic, EventKind.OTHER)
    for identifier in event.identifiers:
        assert isinstance(identifier.value, str)
        assert not is_placeholder(identifier.value)
        assert len(identifier.value) <= 512
    commerce = event.commerce
    assert commerce.value is None or commerce.value.is_finite()
    for text in (commerce.currency, commerce.checkout_token, commerce.cart_token, commerce.checkout_url,
                 commerce.order_id):
        assert is_text_or_none(text)
    assert all(isinstance(code, str) for code in commerce.discount_codes)
    for product in commerce.products:
        assert type(product.quantity) is int
        assert product.quantity >= 1
        for text in (product.title, product.variant_title, product.sku, product.currency):
            assert is_text_or_none(text)
    for text in (event.device.ip, event.device.user_agent, event.device.language):
        assert is_text_or_none(text)
    assert event.consent is None or event.consent.marketing in (True, False, None)
    msgspec.json.encode(msgspec.to_builtins(event.commerce))
    msgspec.json.encode(msgspec.to_builtins(event.attribution))
    if event.consent:
        msgspec.json.encode(msgspec.to_builtins(event.consent))
