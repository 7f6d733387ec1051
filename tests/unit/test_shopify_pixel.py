"""Shopify Web Pixels events (shaped like PixelEvents.d.ts) normalized into canonical events."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
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
from recapture.domain.shopify_pixel import STANDARD_EVENTS, PixelEnvelope, RequestFacts, normalize_pixel_event
from recapture.domain.timestamps import DEFAULT_TIMESTAMP_POLICY
from tests.support import SHOP, checkout, envelope, klaviyo_cookie, pixel_event, variant

RECEIVED = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
FACTS = RequestFacts(received_at=RECEIVED, ip="203.0.113.7", user_agent="Mozilla/5.0 (Macintosh)")
ORIGIN = f"https://{SHOP}"
CART_TOKEN = "Z2NwLXVzLWVhc3QxOjAxSjlGV0VQ"
CHECKOUT_HREF = f"{ORIGIN}/checkouts/cn/{CART_TOKEN}/information?utm_source=klaviyo&utm_medium=email&_kx=kx.ABC123"
PRODUCT_URL = f"{ORIGIN}/products/organic-tee"
IMAGE_URL = "https://cdn.shopify.com/tee.jpg"

CHECKOUT_EVENTS = [
    ("checkout_started", EventKind.CHECKOUT_STARTED),
    ("checkout_contact_info_submitted", EventKind.CHECKOUT_CONTACT_INFO_SUBMITTED),
    ("checkout_address_info_submitted", EventKind.CHECKOUT_ADDRESS_INFO_SUBMITTED),
    ("checkout_shipping_info_submitted", EventKind.CHECKOUT_SHIPPING_INFO_SUBMITTED),
    ("payment_info_submitted", EventKind.PAYMENT_INFO_SUBMITTED),
    ("checkout_completed", EventKind.CHECKOUT_COMPLETED),
]


# --- payload builders, field for field as PixelEvents.d.ts declares them ------------------------------------------


def money(amount: float | str, currency: str = "USD") -> dict[str, Any]:
    """MoneyV2."""
    return {"amount": amount, "currencyCode": currency}


def full_variant(product_id: str = "111", variant_id: str = "222", price: float = 25.0) -> dict[str, Any]:
    """ProductVariant with every declared field (Product included)."""
    shaped = variant(product_id, variant_id, price)
    shaped["untranslatedTitle"] = shaped["title"]
    shaped["product"].update({"type": "Shirts", "untranslatedTitle": "Organic Tee"})
    return shaped


def cart_line(quantity: int = 2, price: float = 25.0, merchandise: dict[str, Any] | None = None) -> dict[str, Any]:
    """CartLine."""
    return {
        "cost": {"totalAmount": money(price * quantity)},
        "merchandise": merchandise or full_variant(price=price),
        "quantity": quantity,
    }


def full_cart(token: str = CART_TOKEN) -> dict[str, Any]:
    """Cart with two lines (3 items), id as the pixel sends it: a gid carrying a secret key."""
    return {
        "attributes": [{"key": "gift", "value": "yes"}],
        "cost": {"totalAmount": money(75.0)},
        "id": f"gid://shopify/Cart/{token}?key=0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "lines": [cart_line(2, 25.0), cart_line(1, 25.0, full_variant("333", "444", 25.0))],
        "totalQuantity": 3,
    }


def discount(title: str, kind: str, value: dict[str, Any]) -> dict[str, Any]:
    """DiscountApplication."""
    return {"allocationMethod": "ACROSS", "targetSelection": "ALL", "targetType": "LINE_ITEM",
            "title": title, "type": kind, "value": value}


def full_checkout(
    email: str | None = "Shopper@Example.com", phone: str | None = "+1 (415) 555-2671", order: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Checkout with every declared field; one code discount, one automatic discount."""
    shaped = checkout(email=email, token="chk-token-1", phone=phone)
    shaped["lineItems"][0].update({
        "discountAllocations": [], "finalLinePrice": money(50.0), "id": "gid://shopify/CheckoutLineItem/1",
        "properties": [], "sellingPlanAllocation": None, "variant": full_variant(),
    })
    shaped["discountApplications"] = [
        discount("WELCOME10", "DISCOUNT_CODE", {"percentage": 10}),
        discount("Spend 50, save 5", "AUTOMATIC", money(5.0)),
    ]
    shaped.update({
        "attributes": [], "billingAddress": None, "buyerAcceptsEmailMarketing": True, "buyerAcceptsSmsMarketing": False,
        "delivery": None, "discountsAmount": money(5.0),
        "localization": {"country": {"isoCode": "US"}, "language": {"isoCode": "en"},
                         "market": {"handle": "us", "id": "gid://shopify/Market/1"}},
        "order": order, "shippingAddress": None, "shippingLine": None, "smsMarketingPhone": None,
        "subtotalPrice": money(50.0), "totalTax": money(0.0), "transactions": [],
    })
    return shaped


def with_seq(event: dict[str, Any], seq: int = 7) -> dict[str, Any]:
    event["seq"] = seq
    return event


def to_envelope(body: dict[str, Any]) -> PixelEnvelope:
    """What the wire layer hands the domain for one envelope (seq and type are not part of it)."""
    event = body["event"]
    return PixelEnvelope(
        shop=body["shop"], event_id=event["id"], name=event["name"], timestamp=event.get("timestamp"),
        client_id=event["clientId"], context=event.get("context", {}), data=event.get("data", {}),
        customer=body.get("customer"), consent=body.get("consent"), cookies=body.get("cookies", {}),
        raw=json.dumps(body).encode(),
    )


def normalize(
    event: dict[str, Any] | None = None, *, facts: RequestFacts = FACTS, region: str = "US", **overrides: Any
) -> CanonicalEvent:
    return normalize_pixel_event(to_envelope(envelope(event, **overrides)), facts, default_region=region)


def tee(quantity: int = 1) -> Product:
    """The product full_variant() describes, as the canonical event should carry it."""
    return Product(
        product_id="111", variant_id="222", sku="TEE-BLU-M", title="Organic Tee", variant_title="Blue / M",
        price=Decimal("25.0"), currency="USD", image_url=IMAGE_URL, url=PRODUCT_URL, quantity=quantity,
    )


# --- the 13 standard events ------------------------------------------------------------------------------------------

STANDARD_PAYLOADS: list[tuple[str, dict[str, Any], EventKind]] = [
    ("page_viewed", {}, EventKind.PAGE_VIEWED),
    ("product_viewed", {"productVariant": full_variant()}, EventKind.PRODUCT_VIEWED),
    ("collection_viewed", {"collection": {"id": "gid://shopify/Collection/9", "title": "Tees",
                                          "productVariants": [full_variant()]}}, EventKind.COLLECTION_VIEWED),
    ("search_submitted", {"searchResult": {"query": "tee", "productVariants": [full_variant()]}},
     EventKind.SEARCH_SUBMITTED),
    ("product_added_to_cart", {"cartLine": cart_line()}, EventKind.PRODUCT_ADDED_TO_CART),
    ("product_removed_from_cart", {"cartLine": cart_line()}, EventKind.PRODUCT_REMOVED_FROM_CART),
    ("cart_viewed", {"cart": full_cart()}, EventKind.CART_VIEWED),
    *[(name, {"checkout": full_checkout()}, kind) for name, kind in CHECKOUT_EVENTS],
]


def test_the_thirteen_standard_events_are_exactly_the_known_ones() -> None:
    """The normalizer knows exactly the 13 standard Web Pixels events."""
    assert set(STANDARD_EVENTS) == {name for name, _, _ in STANDARD_PAYLOADS}
    assert len(STANDARD_PAYLOADS) == 13


@pytest.mark.parametrize(("name", "data", "kind"), STANDARD_PAYLOADS, ids=[p[0] for p in STANDARD_PAYLOADS])
def test_standard_event_maps_to_its_kind(name: str, data: dict[str, Any], kind: EventKind) -> None:
    """Each standard event becomes its EventKind, keeping name, shop, id, source and raw bytes."""
    body = envelope(with_seq(pixel_event(name, event_id=f"ev-{name}", data=copy.deepcopy(data))))
    event = normalize_pixel_event(to_envelope(body), FACTS)
    assert event.kind is kind
    assert event.name == name
    assert event.shop == SHOP
    assert event.source is Source.SHOPIFY_PIXEL
    assert event.source_event_id == f"ev-{name}"
    assert event.raw == json.dumps(body).encode()
    assert event.identifier(IdentifierType.CLIENT_ID) == "client-1"


def test_page_viewed_carries_page_attribution_and_device() -> None:
    """page_viewed has no commerce, but the page URL, utm/click ids, consent and device are kept."""
    event = normalize(pixel_event("page_viewed", data={}, href=f"{PRODUCT_URL}?utm_source=fb&fbclid=FB.123"))
    assert event.commerce is EMPTY_COMMERCE
    assert event.page_url == f"{PRODUCT_URL}?utm_source=fb&fbclid=FB.123"
    assert event.attribution.utm == {"utm_source": "fb"}
    assert event.attribution.click_ids == {"fbclid": "FB.123"}
    assert event.consent == Consent(analytics=True, marketing=True)
    assert event.device.ip == "203.0.113.7"
    assert event.device.user_agent == "Mozilla/5.0 (Macintosh)"
    assert event.device.language == "en-US"
    assert event.device.screen == "390x844"
    assert event.occurred_at == datetime(2026, 10, 5, 9, 59, tzinfo=UTC)
    assert event.timestamp_flag is TimestampFlag.OK


def test_product_viewed_carries_the_full_product() -> None:
    """product_viewed gives product and variant ids, SKU, titles, Decimal price, currency, image and absolute URL."""
    event = normalize(pixel_event("product_viewed", data={"productVariant": full_variant()}))
    assert event.commerce == Commerce(products=(tee(),), value=Decimal("25.0"), currency="USD", item_count=1)
    assert isinstance(event.commerce.products[0].price, Decimal)


def test_product_viewed_reads_gid_ids_and_string_prices() -> None:
    """GraphQL gids become numeric ids and a string amount is still an exact Decimal."""
    shaped = full_variant()
    shaped["id"] = "gid://shopify/ProductVariant/43661439271125"
    shaped["product"]["id"] = "gid://shopify/Product/8123456789"
    shaped["price"] = money("19.99", "eur")
    product = normalize(pixel_event("product_viewed", data={"productVariant": shaped})).commerce.products[0]
    assert (product.product_id, product.variant_id) == ("8123456789", "43661439271125")
    assert (product.price, product.currency) == (Decimal("19.99"), "EUR")


def test_product_viewed_makes_protocol_relative_image_absolute() -> None:
    """Shopify sends image src as `//host/...`; an email needs an absolute https URL."""
    shaped = full_variant()
    shaped["image"] = {"src": f"//{SHOP}/cdn/shop/products/tee.webp?v=1664345120"}
    product = normalize(pixel_event("product_viewed", data={"productVariant": shaped})).commerce.products[0]
    assert product.image_url == f"https://{SHOP}/cdn/shop/products/tee.webp?v=1664345120"


def test_product_url_stays_absolute_and_relative_url_needs_origin() -> None:
    """An absolute product URL is kept; a relative one without a page origin stays relative, not invented."""
    shaped = full_variant()
    shaped["product"]["url"] = "https://other.example/products/x"
    product = normalize(pixel_event("product_viewed", data={"productVariant": shaped})).commerce.products[0]
    assert product.url == "https://other.example/products/x"
    event = pixel_event("product_viewed", data={"productVariant": full_variant()})
    del event["context"]["document"]["location"]["origin"]
    assert normalize(event).commerce.products[0].url == "/products/organic-tee"


def test_product_viewed_with_minimal_variant() -> None:
    """A variant with null sku, image and product id still normalizes with those fields empty."""
    shaped = full_variant()
    shaped.update({"sku": None, "image": None, "title": None})
    shaped["product"].update({"id": None, "url": None})
    product = normalize(pixel_event("product_viewed", data={"productVariant": shaped})).commerce.products[0]
    assert product == Product(variant_id="222", title="Organic Tee", price=Decimal("25.0"), currency="USD")


def test_collection_viewed_keeps_collection_title() -> None:
    """collection_viewed records which collection was browsed."""
    data = {"collection": {"id": "gid://shopify/Collection/9", "title": "Summer Tees", "productVariants": []}}
    assert normalize(pixel_event("collection_viewed", data=data)).commerce == Commerce(collection_title="Summer Tees")


def test_search_submitted_keeps_query() -> None:
    """search_submitted records the search query."""
    data = {"searchResult": {"query": "organic tee", "productVariants": [full_variant()]}}
    assert normalize(pixel_event("search_submitted", data=data)).commerce == Commerce(search_query="organic tee")


@pytest.mark.parametrize(
    ("name", "kind"),
    [("product_added_to_cart", EventKind.PRODUCT_ADDED_TO_CART),
     ("product_removed_from_cart", EventKind.PRODUCT_REMOVED_FROM_CART)],
)
def test_cart_line_events_carry_product_quantity_and_line_value(name: str, kind: EventKind) -> None:
    """Add/remove events give the product with its quantity, the line total as value and the item count."""
    event = normalize(pixel_event(name, data={"cartLine": cart_line(quantity=2, price=25.0)}))
    assert event.kind is kind
    assert event.commerce == Commerce(products=(tee(2),), value=Decimal("50.0"), currency="USD", item_count=2)


def test_cart_line_free_item_keeps_zero_value() -> None:
    """A line whose total is 0 (a free gift) has value 0, not the unit price."""
    line = cart_line(quantity=1, price=25.0)
    line["cost"] = {"totalAmount": money(0.0)}
    commerce = normalize(pixel_event("product_added_to_cart", data={"cartLine": line})).commerce
    assert commerce.value == Decimal("0.0")


def test_cart_line_without_cost_falls_back_to_price() -> None:
    """Without a line cost, the unit price is the value."""
    line = cart_line(quantity=1)
    del line["cost"]
    assert normalize(pixel_event("product_added_to_cart", data={"cartLine": line})).commerce.value == Decimal("25.0")


@pytest.mark.parametrize("name", ["product_added_to_cart", "product_removed_from_cart"])
def test_null_cart_line_gives_no_phantom_product(name: str) -> None:
    """`cartLine: null` (allowed by the contract) gives no product rather than an empty one counted as an item."""
    event = normalize(pixel_event(name, data={"cartLine": None}))
    assert event.commerce.products == ()
    assert event.commerce.item_count in (None, 0)


def test_cart_viewed_carries_lines_value_count_and_cart_token() -> None:
    """cart_viewed gives every line, the cart total, totalQuantity and the cart token without its secret key."""
    event = normalize(pixel_event("cart_viewed", data={"cart": full_cart()}))
    other = Product(product_id="333", variant_id="444", sku="TEE-BLU-M", title="Organic Tee",
                    variant_title="Blue / M", price=Decimal("25.0"), currency="USD", image_url=IMAGE_URL,
                    url=PRODUCT_URL, quantity=1)
    assert event.commerce == Commerce(
        products=(tee(2), other), value=Decimal("75.0"), currency="USD", item_count=3, cart_token=CART_TOKEN,
    )
    assert event.identifier(IdentifierType.CART_TOKEN) == CART_TOKEN
    assert not any("key=" in i.value or "0f1e2d3c" in i.value for i in event.identifiers)


def test_cart_viewed_with_null_cart() -> None:
    """`cart: null` gives no products, no value and no cart token."""
    commerce = normalize(pixel_event("cart_viewed", data={"cart": None})).commerce
    assert (commerce.products, commerce.value, commerce.cart_token) == ((), None, None)


def test_cart_viewed_counts_items_when_total_quantity_is_missing() -> None:
    """Without totalQuantity (or with a non-number), the item count is the sum of line quantities."""
    for total in (None, "3", "many"):
        cart = full_cart()
        cart["totalQuantity"] = total
        assert normalize(pixel_event("cart_viewed", data={"cart": cart})).commerce.item_count == 3


@pytest.mark.parametrize(("name", "kind"), CHECKOUT_EVENTS, ids=[n for n, _ in CHECKOUT_EVENTS])
def test_checkout_events_carry_checkout_commerce(name: str, kind: EventKind) -> None:
    """Every checkout event gives lines, total, count, checkout token, cart token, checkout URL and discount codes."""
    event = normalize(pixel_event(name, href=CHECKOUT_HREF, data={"checkout": full_checkout()}))
    assert event.kind is kind
    assert event.commerce == Commerce(
        products=(tee(2),), value=Decimal("55.0"), currency="USD", item_count=2, checkout_token="chk-token-1",
        cart_token=CART_TOKEN, checkout_url=CHECKOUT_HREF, discount_codes=("WELCOME10",),
    )


@pytest.mark.parametrize(("name", "kind"), CHECKOUT_EVENTS, ids=[n for n, _ in CHECKOUT_EVENTS])
def test_checkout_events_carry_checkout_identifiers(name: str, kind: EventKind) -> None:
    """Checkout events identify the shopper by client id, email, phone, checkout and cart tokens, and `_kx`."""
    event = normalize(pixel_event(name, href=CHECKOUT_HREF, data={"checkout": full_checkout()}))
    assert event.identifiers == (
        Identifier(type=IdentifierType.CLIENT_ID, value="client-1"),
        Identifier(type=IdentifierType.EMAIL, value="shopper@example.com"),
        Identifier(type=IdentifierType.PHONE, value="+14155552671"),
        Identifier(type=IdentifierType.CHECKOUT_TOKEN, value="chk-token-1"),
        Identifier(type=IdentifierType.CART_TOKEN, value=CART_TOKEN),
        Identifier(type=IdentifierType.KLAVIYO_EXCHANGE_ID, value="kx.ABC123"),
    )
    assert event.attribution.utm == {"utm_source": "klaviyo", "utm_medium": "email"}


def test_checkout_completed_carries_order_id_and_order_customer() -> None:
    """checkout_completed gives the order id (from an OrderIdentity gid) and the order's customer id."""
    order = {"id": "gid://shopify/OrderIdentity/5678", "customer": {"id": "gid://shopify/Customer/123", "isFirstOrder": True}}
    event = normalize(pixel_event("checkout_completed", href=f"{ORIGIN}/checkouts/cn/{CART_TOKEN}/thank-you",
                                  data={"checkout": full_checkout(order=order)}))
    assert event.commerce.order_id == "5678"
    assert event.identifier(IdentifierType.ORDER_ID) == "5678"
    assert event.identifier(IdentifierType.SHOPIFY_CUSTOMER_ID) == "123"


def test_checkout_value_falls_back_to_subtotal_and_currency_code() -> None:
    """With totalPrice null the subtotal is the value, and currencyCode fills in the currency."""
    shaped = full_checkout()
    shaped["totalPrice"] = None
    shaped["subtotalPrice"] = {"amount": 50.0}
    commerce = normalize(pixel_event("checkout_started", href=CHECKOUT_HREF, data={"checkout": shaped})).commerce
    assert (commerce.value, commerce.currency) == (Decimal("50.0"), "USD")


def test_checkout_only_discount_codes_are_codes() -> None:
    """Automatic, manual and script discounts are not discount codes; several codes are all kept in order."""
    shaped = full_checkout()
    shaped["discountApplications"] = [
        discount("FREESHIP", "DISCOUNT_CODE", money(5.0)),
        discount("Auto 5%", "AUTOMATIC", {"percentage": 5}),
        discount("Staff", "MANUAL", money(1.0)),
        discount("Script", "SCRIPT", money(1.0)),
        discount("VIP20", "DISCOUNT_CODE", {"percentage": 20}),
    ]
    commerce = normalize(pixel_event("checkout_started", href=CHECKOUT_HREF, data={"checkout": shaped})).commerce
    assert commerce.discount_codes == ("FREESHIP", "VIP20")


def test_checkout_outside_checkout_page_has_no_checkout_url() -> None:
    """A checkout event whose page is not a /checkouts/ URL gives no checkout URL or cart token."""
    commerce = normalize(pixel_event("checkout_started", href=f"{ORIGIN}/cart", data={"checkout": full_checkout()})).commerce
    assert (commerce.checkout_url, commerce.cart_token) == (None, None)
    assert commerce.checkout_token == "chk-token-1"


def test_checkout_started_with_nulls_everywhere() -> None:
    """A checkout with every nullable field null (early checkout_started) still normalizes."""
    shaped = full_checkout(email=None, phone=None)
    shaped.update({"token": None, "totalPrice": None, "subtotalPrice": None, "currencyCode": None,
                   "discountApplications": [], "lineItems": [{**shaped["lineItems"][0], "variant": None}]})
    event = normalize(pixel_event("checkout_started", href=CHECKOUT_HREF, data={"checkout": shaped}))
    assert event.commerce.value is None
    assert event.commerce.checkout_token is None
    assert event.identifier(IdentifierType.EMAIL) is None
    assert event.identifier(IdentifierType.CART_TOKEN) == CART_TOKEN


@pytest.mark.parametrize(("name", "kind"), [(n, k) for n, _, k in STANDARD_PAYLOADS], ids=[p[0] for p in STANDARD_PAYLOADS])
def test_standard_event_with_empty_data_and_context(name: str, kind: EventKind) -> None:
    """Missing data and context break nothing: the kind is kept and no product is invented."""
    event = normalize({"id": "e", "name": name, "clientId": "c", "timestamp": "2026-10-05T09:59:00Z"})
    assert event.kind is kind
    assert event.commerce.products == ()
    assert event.commerce.value is None
    assert event.page_url is None


def test_optional_fields_and_extra_keys_do_not_change_the_result() -> None:
    """seq/type present or absent, and unknown extra keys in data and context, give the same event."""
    plain = pixel_event("checkout_started", href=CHECKOUT_HREF, data={"checkout": full_checkout()})
    plain.pop("type")
    decorated = with_seq(copy.deepcopy(plain), 12)
    decorated["type"] = "standard"
    decorated["data"]["futureField"] = {"x": [1, 2]}
    decorated["data"]["checkout"]["brandNewField"] = "x"
    decorated["context"]["experimental"] = True
    a, b = normalize(plain), normalize(decorated)
    assert (a.kind, a.commerce, a.identifiers, a.attribution, a.device) == (
        b.kind, b.commerce, b.identifiers, b.attribution, b.device
    )


# --- unknown and custom events -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("my_custom_event", {"customData": {"checkout": {"token": "x"}}}),
        ("clicked", {"element": {"href": "/x", "id": None, "name": None, "tagName": "A", "type": None, "value": None}}),
        ("ui_extension_errored", {"error": {"message": "boom"}}),
        ("alert_displayed", {"alert": {"message": "card declined"}}),
        ("Checkout_Started", {"checkout": {"token": "x"}}),
    ],
)
def test_unknown_and_custom_events_are_kept_as_other(name: str, data: dict[str, Any]) -> None:
    """Custom, DOM and unknown events are kept as OTHER with their name, without commerce, still identified."""
    event = normalize(pixel_event(name, data=data))
    assert event.kind is EventKind.OTHER
    assert event.name == name
    assert event.commerce is EMPTY_COMMERCE
    assert event.identifier(IdentifierType.CHECKOUT_TOKEN) is None
    assert event.identifier(IdentifierType.CLIENT_ID) == "client-1"
    assert event.attribution.utm == {"utm_source": "fb"}


def test_custom_event_checkout_data_is_not_trusted_as_a_checkout() -> None:
    """A custom event carrying a `checkout` key is not turned into checkout commerce or tokens."""
    event = normalize(pixel_event("my_custom_event", data={"checkout": full_checkout()}))
    assert event.commerce is EMPTY_COMMERCE
    assert event.identifier(IdentifierType.CHECKOUT_TOKEN) is None


# --- identifiers ------------------------------------------------------------------------------------------------------


def test_customer_identifiers_from_init_customer() -> None:
    """The logged-in customer gives the Shopify customer id (from a gid), email and phone, normalized."""
    customer = {"id": "gid://shopify/Customer/123", "email": " Shopper@Example.COM ", "firstName": "Ann",
                "lastName": "Lee", "ordersCount": 2, "phone": "(415) 555-2671"}
    event = normalize(pixel_event("page_viewed", data={}), customer=customer)
    assert event.identifiers == (
        Identifier(type=IdentifierType.CLIENT_ID, value="client-1"),
        Identifier(type=IdentifierType.SHOPIFY_CUSTOMER_ID, value="123"),
        Identifier(type=IdentifierType.EMAIL, value="shopper@example.com"),
        Identifier(type=IdentifierType.PHONE, value="+14155552671"),
    )


def test_customer_numeric_id() -> None:
    """A plain numeric customer id is kept as is."""
    event = normalize(pixel_event("page_viewed", data={}), customer={"id": "207119551"})
    assert event.identifier(IdentifierType.SHOPIFY_CUSTOMER_ID) == "207119551"


@pytest.mark.parametrize("placeholder", ["", "null", "undefined", "0", "00000000", "NULL", " none "])
def test_placeholders_never_become_identifiers(placeholder: str) -> None:
    """Placeholder client id, customer id, email, phone, checkout token, cookie and `_kx` give no identifier."""
    shaped = full_checkout(email=placeholder, phone=placeholder)
    shaped["token"] = placeholder
    shaped["order"] = {"id": placeholder, "customer": {"id": placeholder}}
    event = normalize(
        pixel_event("checkout_completed", client_id=placeholder or " ", data={"checkout": shaped},
                    href=f"{ORIGIN}/checkouts/cn/{placeholder or 'null'}?_kx={placeholder}"),
        customer={"id": placeholder, "email": placeholder, "phone": placeholder},
        cookies={"__kla_id": klaviyo_cookie(**{"$exchange_id": placeholder, "$email": placeholder})},
    )
    assert event.identifiers == ()


def test_all_zero_gid_customer_is_not_an_identifier() -> None:
    """gid://shopify/Customer/0 is an unset customer, not customer 0."""
    event = normalize(pixel_event("page_viewed", data={}), customer={"id": "gid://shopify/Customer/0"})
    assert event.identifier(IdentifierType.SHOPIFY_CUSTOMER_ID) is None


def test_invalid_email_and_phone_are_dropped() -> None:
    """An invalid checkout email or phone gives no identifier, but the rest of the event is kept."""
    event = normalize(pixel_event("checkout_contact_info_submitted", href=CHECKOUT_HREF,
                                  data={"checkout": full_checkout(email="shopper@", phone="12")}))
    assert event.identifier(IdentifierType.EMAIL) is None
    assert event.identifier(IdentifierType.PHONE) is None
    assert event.identifier(IdentifierType.CHECKOUT_TOKEN) == "chk-token-1"


def test_sms_marketing_phone_and_default_region() -> None:
    """smsMarketingPhone is a phone too, and national numbers are read in the shop's default region."""
    shaped = full_checkout(phone=None)
    shaped["smsMarketingPhone"] = "020 7946 0018"
    event = normalize(pixel_event("checkout_contact_info_submitted", href=CHECKOUT_HREF, data={"checkout": shaped}),
                      region="GB")
    assert event.identifier(IdentifierType.PHONE) == "+442079460018"


def test_same_email_in_customer_and_checkout_appears_once() -> None:
    """An email seen in both the customer and the checkout is one identifier."""
    event = normalize(pixel_event("checkout_started", href=CHECKOUT_HREF, data={"checkout": full_checkout()}),
                      customer={"id": "123", "email": "SHOPPER@example.com"})
    assert [i.value for i in event.identifiers if i.type is IdentifierType.EMAIL] == ["shopper@example.com"]


def test_klaviyo_cookie_gives_exchange_id_and_known_email() -> None:
    """The `__kla_id` cookie gives `$exchange_id` and `$email`, both marked as what Klaviyo's cookie remembers."""
    cookie = klaviyo_cookie(cid="abc", **{"$exchange_id": "01HXYZ.abc", "$email": "Known@Example.com"})
    event = normalize(pixel_event("page_viewed", data={}), cookies={"__kla_id": cookie})
    assert event.identifier(IdentifierType.KLAVIYO_COOKIE_EXCHANGE_ID) == "01HXYZ.abc"
    assert event.identifier(IdentifierType.KLAVIYO_EXCHANGE_ID) is None
    assert event.identifier(IdentifierType.KLAVIYO_KNOWN_EMAIL) == "known@example.com"
    assert event.identifier(IdentifierType.EMAIL) is None


def test_kx_in_landing_url_gives_exchange_id() -> None:
    """Klaviyo's `_kx` on an email link identifies the shopper even without a cookie."""
    event = normalize(pixel_event("page_viewed", href=f"{PRODUCT_URL}?_kx=kx.FROMURL&utm_source=klaviyo", data={}))
    assert event.identifier(IdentifierType.KLAVIYO_EXCHANGE_ID) == "kx.FROMURL"
    assert event.attribution.click_ids == {"_kx": "kx.FROMURL"}


def test_exchange_id_from_the_url_and_from_the_cookie_stay_apart() -> None:
    """`_kx` on the link says who clicked now; the cookie's exchange id says whom the browser knew before."""
    cookie = klaviyo_cookie(**{"$exchange_id": "kx.OLD"})
    event = normalize(pixel_event("page_viewed", href=f"{PRODUCT_URL}?_kx=kx.NEW", data={}), cookies={"__kla_id": cookie})
    assert event.identifier(IdentifierType.KLAVIYO_EXCHANGE_ID) == "kx.NEW"
    assert event.identifier(IdentifierType.KLAVIYO_COOKIE_EXCHANGE_ID) == "kx.OLD"


def test_garbage_klaviyo_cookie_is_ignored() -> None:
    """An undecodable `__kla_id` cookie adds nothing and breaks nothing."""
    event = normalize(pixel_event("page_viewed", data={}), cookies={"__kla_id": "%%%not-base64"})
    assert [i.type for i in event.identifiers] == [IdentifierType.CLIENT_ID]


def test_ad_click_ids_become_click_id_identifiers_and_kx_an_exchange_id() -> None:
    """fbclid/gclid/ttclid/msclkid on the landing URL are short-lived identifiers; `_kx` names a Klaviyo profile."""
    href = "https://demo-store.myshopify.com/?gclid=G-1&ttclid=T-2&msclkid=M-3&_kx=KX.9&utm_source=google"
    event = normalize(pixel_event("page_viewed", data={}, href=href))
    found = {(i.type, i.value) for i in event.identifiers}
    assert {(IdentifierType.CLICK_ID, "gclid:G-1"), (IdentifierType.CLICK_ID, "ttclid:T-2"),
            (IdentifierType.CLICK_ID, "msclkid:M-3"), (IdentifierType.KLAVIYO_EXCHANGE_ID, "KX.9")} <= found


# --- consent, device, time ----------------------------------------------------------------------------------------


def test_consent_flags_flat_and_nested() -> None:
    """Consent is read flat (init.customerPrivacy) or nested (visitorConsentCollected); non-booleans are unknown."""
    flat = {"analyticsProcessingAllowed": True, "marketingAllowed": False, "preferencesProcessingAllowed": True,
            "saleOfDataAllowed": False}
    assert normalize(consent=flat).consent == Consent(analytics=True, marketing=False, preferences=True,
                                                      sale_of_data=False)
    nested = {"customerPrivacy": {"marketingAllowed": True, "analyticsProcessingAllowed": "yes"}}
    assert normalize(consent=nested).consent == Consent(marketing=True)
    assert normalize(consent=None).consent is None


def test_device_falls_back_to_navigator_user_agent() -> None:
    """Without a request User-Agent, the navigator's userAgent is used."""
    facts = RequestFacts(received_at=RECEIVED, ip=None, user_agent=None)
    device = normalize(facts=facts).device
    assert (device.ip, device.user_agent) == (None, "Mozilla/5.0 (iPhone)")


def test_device_ignores_non_text_navigator_values() -> None:
    """A non-text userAgent or language and a non-integer screen size are dropped, not stored."""
    event = pixel_event()
    event["context"]["navigator"] = {"userAgent": {"ua": 1}, "language": ["en"]}
    event["context"]["window"] = {"screen": {"width": "390", "height": 844}}
    device = normalize(event, facts=RequestFacts(received_at=RECEIVED, ip=None, user_agent=None)).device
    assert (device.user_agent, device.language, device.screen) == (None, None, None)


@pytest.mark.parametrize(
    ("timestamp", "occurred_at", "flag"),
    [
        ("2026-10-05T09:59:00.000Z", datetime(2026, 10, 5, 9, 59, tzinfo=UTC), TimestampFlag.OK),
        (1791194340000, datetime(2026, 10, 5, 9, 59, tzinfo=UTC), TimestampFlag.OK),
        ("2031-01-01T00:00:00Z", RECEIVED, TimestampFlag.CLAMPED_FUTURE),
        ("2020-01-01T00:00:00Z", RECEIVED - DEFAULT_TIMESTAMP_POLICY.max_age, TimestampFlag.CLAMPED_PAST),
        ("not a time", RECEIVED, TimestampFlag.MISSING),
        (None, RECEIVED, TimestampFlag.MISSING),
        ("0001-01-01T00:00:00+01:00", RECEIVED, TimestampFlag.MISSING),
    ],
)
def test_pixel_timestamp_is_parsed_and_clamped(timestamp: object, occurred_at: datetime, flag: TimestampFlag) -> None:
    """The pixel's timestamp is parsed (ISO or epoch ms), clamped and flagged; receipt time is kept."""
    event = pixel_event()
    event["timestamp"] = timestamp
    normalized = normalize(event)
    assert (normalized.occurred_at, normalized.timestamp_flag) == (occurred_at, flag)
    assert normalized.received_at == RECEIVED


# --- robustness: the collector must never crash on odd input ------------------------------------------------------

ODD_STRINGS = [
    "", " ", "null", "undefined", "0", "NaN", "[object Object]", "gid://shopify/Customer/0",
    "gid://shopify/Cart/tok?key=secret", "//cdn.shopify.com/x.jpg", "/products/x", "http://[::1", "http://[::1/x",
    "https://s.myshopify.com/checkouts/cn/tok/information?_kx=undefined&utm_source=x&fbclid=",
    "DISCOUNT_CODE", "shopper@example.com", "Shopper@", "+14155552671", "2026-10-05T09:59:00Z",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00", "é\x00\ud7ff", "1e999999", "-1",
]
KEYS = [
    "productVariant", "cartLine", "cart", "checkout", "collection", "searchResult", "id", "title", "url", "image",
    "src", "price", "amount", "currencyCode", "product", "sku", "merchandise", "quantity", "cost", "totalAmount",
    "lines", "totalQuantity", "lineItems", "variant", "totalPrice", "subtotalPrice", "discountApplications", "type",
    "token", "order", "customer", "email", "phone", "smsMarketingPhone", "query", "document", "location", "href",
    "origin", "navigator", "userAgent", "language", "window", "screen", "width", "height", "customerPrivacy",
    "marketingAllowed",
]
leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(),
    st.text(max_size=20), st.sampled_from(ODD_STRINGS),
)
key = st.sampled_from(KEYS) | st.text(max_size=8)
json_value = st.recursive(
    leaf, lambda children: st.lists(children, max_size=4) | st.dictionaries(key, children, max_size=5), max_leaves=25
)
json_object = st.dictionaries(key, json_value, max_size=6)


def shaped(*keys: str) -> st.SearchStrategy[dict[str, Any]]:
    """A dict using (some of) the contract's keys, each holding any JSON value."""
    return st.dictionaries(st.sampled_from(keys), json_value, max_size=len(keys))


def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={k: v | json_value for k, v in fields.items()})


money_s = shaped("amount", "currencyCode")
variant_s = optional(
    id=st.sampled_from(ODD_STRINGS), image=shaped("src"), price=money_s, product=shaped("id", "title", "url"),
    sku=leaf, title=leaf,
)
line_s = optional(cost=optional(totalAmount=money_s), merchandise=variant_s, quantity=leaf)
checkout_s = optional(
    lineItems=st.lists(optional(quantity=leaf, variant=variant_s), max_size=3), totalPrice=money_s,
    subtotalPrice=money_s, currencyCode=leaf, token=leaf, email=leaf, phone=leaf, smsMarketingPhone=leaf,
    discountApplications=st.lists(shaped("type", "title"), max_size=3),
    order=optional(id=leaf, customer=shaped("id")),
)
data_s = optional(
    productVariant=variant_s, cartLine=line_s, cart=optional(cost=optional(totalAmount=money_s), id=leaf,
                                                             lines=st.lists(line_s, max_size=3), totalQuantity=leaf),
    checkout=checkout_s, collection=shaped("id", "title"), searchResult=shaped("query"),
) | json_object
context_s = optional(
    document=optional(location=shaped("href", "origin")),
    navigator=shaped("userAgent", "language"),
    window=optional(screen=shaped("width", "height")),
) | json_object
cookie_s = st.text(max_size=30) | json_object.map(lambda d: base64.b64encode(json.dumps(d).encode()).decode())


def is_text_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    name=st.sampled_from([*STANDARD_EVENTS, "my_custom_event", "clicked"]) | st.text(max_size=12),
    data=data_s,
    context=context_s,
    timestamp=leaf,
    client_id=st.sampled_from(ODD_STRINGS) | st.text(min_size=1, max_size=20),
    customer=st.none() | shaped("id", "email", "phone") | json_object,
    consent=st.none() | shaped("analyticsProcessingAllowed", "marketingAllowed", "customerPrivacy") | json_object,
    cookies=st.dictionaries(st.just("__kla_id") | st.text(max_size=5), cookie_s, max_size=2),
)
def test_normalize_pixel_event_never_raises_on_arbitrary_json(
    name: str, data: dict[str, Any], context: dict[str, Any], timestamp: object, client_id: str,
    customer: dict[str, Any] | None, consent: dict[str, Any] | None, cookies: dict[str, str],
) -> None:
    """Any JSON-like data/context/customer/consent/cookies give a well-typed, storable event, never an exception."""
    body = PixelEnvelope(
        shop=SHOP, event_id="ev", name=name, timestamp=timestamp, client_id=client_id, context=context, data=data,
        customer=customer, consent=consent, cookies=cookies, raw=b"{}",
    )
    event = normalize_pixel_event(body, FACTS)

    assert event.kind is STANDARD_EVENTS.get(name, EventKind.OTHER)
    assert len(set(event.identifiers)) == len(event.identifiers)
    for identifier in event.identifiers:
        assert isinstance(identifier.type, IdentifierType)
        assert isinstance(identifier.value, str)
        assert identifier.value == identifier.value.strip()
        assert not is_placeholder(identifier.value)
        assert 0 < len(identifier.value) <= 512

    commerce = event.commerce
    assert commerce.value is None or (isinstance(commerce.value, Decimal) and commerce.value.is_finite())
    assert commerce.item_count is None or (type(commerce.item_count) is int and commerce.item_count >= 0)
    for text in (commerce.currency, commerce.checkout_token, commerce.cart_token, commerce.checkout_url,
                 commerce.order_id, commerce.search_query, commerce.collection_title):
        assert is_text_or_none(text)
    assert all(isinstance(code, str) for code in commerce.discount_codes)
    for product in commerce.products:
        assert type(product.quantity) is int
        assert product.quantity >= 1
        assert product.price is None or product.price.is_finite()
        for text in (product.product_id, product.variant_id, product.sku, product.title, product.variant_title,
                     product.currency, product.image_url, product.url):
            assert is_text_or_none(text)

    for text in (event.device.user_agent, event.device.language, event.device.screen, event.page_url):
        assert is_text_or_none(text)
    assert event.occurred_at.tzinfo is not None
    policy = DEFAULT_TIMESTAMP_POLICY
    assert RECEIVED - policy.max_age <= event.occurred_at <= RECEIVED + policy.max_future_skew
    # What the event store does with it must work too.
    msgspec.json.encode(msgspec.to_builtins(event.commerce))
    msgspec.json.encode(msgspec.to_builtins(event.attribution))


def test_pixel_timestamp_slightly_ahead_is_kept() -> None:
    """A browser clock a few minutes fast (within the allowed skew) is trusted as is."""
    event = pixel_event()
    event["timestamp"] = (RECEIVED + timedelta(minutes=5)).isoformat()
    assert normalize(event).occurred_at == RECEIVED + timedelta(minutes=5)
