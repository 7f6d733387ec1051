"""Shopify Web Pixels events (as `analytics.subscribe` delivers them) to canonical events."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

import msgspec

from recapture.domain.attribution import attribution_from_url, attribution_identifiers
from recapture.domain.events import (
    EMPTY_COMMERCE,
    CanonicalEvent,
    Commerce,
    Consent,
    Device,
    EventKind,
    Identifier,
    IdentifierType,
    Product,
    Source,
)
from recapture.domain.identifiers import (
    cart_token_from_url,
    clean_token,
    klaviyo_cookie_identifiers,
    normalize_email,
    normalize_phone,
    shopify_numeric_id,
    unique_identifiers,
)
from recapture.domain.money import currency_of, to_decimal
from recapture.domain.profile_facts import profile_facts
from recapture.domain.timestamps import (
    DEFAULT_TIMESTAMP_POLICY,
    TimestampPolicy,
    clamp_occurred_at,
    parse_timestamp,
)

STANDARD_EVENTS: dict[str, EventKind] = {
    kind.value: kind
    for kind in (
        EventKind.PAGE_VIEWED,
        EventKind.PRODUCT_VIEWED,
        EventKind.COLLECTION_VIEWED,
        EventKind.SEARCH_SUBMITTED,
        EventKind.PRODUCT_ADDED_TO_CART,
        EventKind.PRODUCT_REMOVED_FROM_CART,
        EventKind.CART_VIEWED,
        EventKind.CHECKOUT_STARTED,
        EventKind.CHECKOUT_CONTACT_INFO_SUBMITTED,
        EventKind.CHECKOUT_ADDRESS_INFO_SUBMITTED,
        EventKind.CHECKOUT_SHIPPING_INFO_SUBMITTED,
        EventKind.PAYMENT_INFO_SUBMITTED,
        EventKind.CHECKOUT_COMPLETED,
    )
}

Json = Mapping[str, Any]


class PixelEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """The collector's public wire format: one pixel event and what the pixel knew beside it."""

    shop: str
    event_id: str
    name: str
    timestamp: object
    client_id: str
    context: Json
    data: Json
    customer: Json | None
    consent: Json | None
    cookies: Mapping[str, str]
    raw: bytes


class RequestFacts(msgspec.Struct, frozen=True, kw_only=True):
    received_at: datetime
    ip: str | None
    user_agent: str | None


_EMPTY: Json = {}
# Paths urljoin would return unchanged after the origin: no dot segments, fragment or characters it strips.
_PLAIN_SITE_PATH = re.compile(r"/[A-Za-z0-9\-_~%!$&'()*+,=:@/.?]*")
_PLAIN_ABSOLUTE_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(?::[0-9]+)?(?:/[A-Za-z0-9\-_~%!$&'()*+,=:@/.?]*)?")


def _dict(value: object) -> Json:
    # Decoded JSON is plain dicts or null: both answered before the Mapping ABC check, which costs ten times more.
    if type(value) is dict:
        return value
    if value is None:
        return _EMPTY
    return value if isinstance(value, Mapping) else _EMPTY


def _list(value: object) -> list[Any]:
    # A pixel field that should be a list may arrive as a number or a string; iterating those is wrong or fails.
    return value if isinstance(value, list) else []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _absolute_url(url: object, origin: str | None) -> str | None:
    """Product URLs are site-relative and image srcs protocol-relative (`//cdn...`); emails need absolute URLs."""
    text = _text(url)
    if text is None:
        return None
    if text.startswith("//"):
        return "https:" + text
    if not origin:
        return text
    # The common cases, answered as urljoin would at a tenth of its cost: a plain site path, a plain absolute URL.
    if "/." not in text and text[-1] != "?":
        if origin.count("/") == 2 and _PLAIN_SITE_PATH.fullmatch(text):
            return origin + text
        if _PLAIN_ABSOLUTE_URL.fullmatch(text):
            return text
    try:
        return urljoin(origin, text)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return text


def _cart_token_from_gid(cart_id: object) -> str | None:
    # Pixel carts are gid://shopify/Cart/<token>?key=<secret>; the key must never be stored as an identifier.
    text = clean_token(cart_id)
    if text is None:
        return None
    token = text.rsplit("/", 1)[-1].split("?", 1)[0]
    return clean_token(token)


def variant_product(variant: Json, quantity: object = 1, page_origin: str | None = None) -> Product:
    product = _dict(variant.get("product"))
    price = _dict(variant.get("price"))
    product_title, variant_title = _text(product.get("title")), _text(variant.get("title"))
    return Product(
        product_id=shopify_numeric_id(product.get("id")),
        variant_id=shopify_numeric_id(variant.get("id")),
        sku=clean_token(variant.get("sku")),
        title=product_title or variant_title,
        variant_title=variant_title if product_title else None,
        price=to_decimal(price),
        currency=currency_of(price),
        image_url=_absolute_url(_dict(variant.get("image")).get("src"), page_origin),
        url=_absolute_url(product.get("url"), page_origin),
        quantity=_count(quantity) or 1,
    )


def _checkout_commerce(checkout: Json, page_url: str | None, origin: str | None) -> Commerce:
    products = []
    for line in _list(checkout.get("lineItems")):
        line = _dict(line)
        variant = _dict(line.get("variant"))
        products.append(variant_product(variant, line.get("quantity"), origin))
    total = _dict(checkout.get("totalPrice")) or _dict(checkout.get("subtotalPrice"))
    applications = [_dict(x) for x in _list(checkout.get("discountApplications"))]
    codes = tuple(t for d in applications if d.get("type") == "DISCOUNT_CODE" and (t := _text(d.get("title"))))
    order = _dict(checkout.get("order"))
    return Commerce(
        products=tuple(products),
        value=to_decimal(total),
        currency=currency_of(total) or _text(checkout.get("currencyCode")),
        item_count=sum(p.quantity for p in products),
        checkout_token=clean_token(checkout.get("token")),
        cart_token=cart_token_from_url(page_url),
        checkout_url=page_url if page_url and "/checkouts/" in page_url else None,
        order_id=shopify_numeric_id(order.get("id")),
        discount_codes=codes,
    )


def _cart_commerce(cart: Json, origin: str | None) -> Commerce:
    products = tuple(
        variant_product(_dict(line.get("merchandise")), line.get("quantity"), origin)
        for line in (_dict(x) for x in _list(cart.get("lines")))
    )
    total = _dict(_dict(cart.get("cost")).get("totalAmount"))
    return Commerce(
        products=products,
        value=to_decimal(total),
        currency=currency_of(total),
        item_count=_count(cart.get("totalQuantity")) or sum(p.quantity for p in products),
        cart_token=_cart_token_from_gid(cart.get("id")),
    )


def commerce_of(kind: EventKind, data: Json, page_url: str | None, origin: str | None) -> Commerce:
    # `productVariant` and `cartLine` may be null: that is no product, not an empty one counted as an item.
    if kind is EventKind.PRODUCT_VIEWED:
        variant = _dict(data.get("productVariant"))
        if not variant:
            return EMPTY_COMMERCE
        product = variant_product(variant, 1, origin)
        return Commerce(products=(product,), value=product.price, currency=product.currency, item_count=1)
    if kind in (EventKind.PRODUCT_ADDED_TO_CART, EventKind.PRODUCT_REMOVED_FROM_CART):
        line = _dict(data.get("cartLine"))
        if not line:
            return EMPTY_COMMERCE
        product = variant_product(_dict(line.get("merchandise")), line.get("quantity"), origin)
        cost = _dict(_dict(line.get("cost")).get("totalAmount"))
        line_total = to_decimal(cost)  # 0 for a free gift: still the line's value
        return Commerce(
            products=(product,), value=product.price if line_total is None else line_total,
            currency=currency_of(cost) or product.currency, item_count=product.quantity,
        )
    if kind is EventKind.CART_VIEWED:
        return _cart_commerce(_dict(data.get("cart")), origin)
    if kind is EventKind.COLLECTION_VIEWED:
        return Commerce(collection_title=_text(_dict(data.get("collection")).get("title")))
    if kind is EventKind.SEARCH_SUBMITTED:
        return Commerce(search_query=_text(_dict(data.get("searchResult")).get("query")))
    if "checkout" in data:
        return _checkout_commerce(_dict(data.get("checkout")), page_url, origin)
    return EMPTY_COMMERCE


def _contact_identifiers(source: Json, default_region: str) -> list[Identifier]:
    if not source:
        return []
    found = []
    email = normalize_email(source.get("email"))
    if email:
        found.append(Identifier(type=IdentifierType.EMAIL, value=email))
    for key in ("phone", "smsMarketingPhone"):
        phone = normalize_phone(source.get(key), default_region)
        if phone:
            found.append(Identifier(type=IdentifierType.PHONE, value=phone))
    return found


def identifiers_of(envelope: PixelEnvelope, commerce: Commerce, default_region: str) -> list[Identifier]:
    """Every identifier the envelope holds, repeats included (the caller deduplicates once, with the URL's)."""
    found: list[Identifier] = []
    client_id = clean_token(envelope.client_id)
    if client_id:
        found.append(Identifier(type=IdentifierType.CLIENT_ID, value=client_id))
    customer = _dict(envelope.customer)
    checkout = _dict(envelope.data.get("checkout"))
    # A guest's checkout_completed names the customer only on the order.
    order_customer = _dict(_dict(checkout.get("order")).get("customer"))
    for source in (customer, order_customer):
        customer_id = shopify_numeric_id(source.get("id"))
        if customer_id:
            found.append(Identifier(type=IdentifierType.SHOPIFY_CUSTOMER_ID, value=customer_id))
    found += _contact_identifiers(customer, default_region)
    found += _contact_identifiers(checkout, default_region)
    for kind, value in (
        (IdentifierType.CHECKOUT_TOKEN, commerce.checkout_token),
        (IdentifierType.CART_TOKEN, commerce.cart_token),
        (IdentifierType.ORDER_ID, commerce.order_id),
    ):
        if value:
            found.append(Identifier(type=kind, value=value))
    found += klaviyo_cookie_identifiers(envelope.cookies.get("__kla_id"))
    return found


def consent_of(payload: Json | None) -> Consent | None:
    if not isinstance(payload, Mapping):
        return None
    # visitorConsentCollected nests the flags under `customerPrivacy`; init.customerPrivacy does not.
    flags = _dict(payload.get("customerPrivacy")) or payload

    def flag(key: str) -> bool | None:
        value = flags.get(key)
        return value if isinstance(value, bool) else None

    return Consent(
        analytics=flag("analyticsProcessingAllowed"),
        marketing=flag("marketingAllowed"),
        preferences=flag("preferencesProcessingAllowed"),
        sale_of_data=flag("saleOfDataAllowed"),
    )


def device_of(context: Json, facts: RequestFacts) -> Device:
    navigator = _dict(context.get("navigator"))
    screen = _dict(_dict(context.get("window")).get("screen"))
    width, height = screen.get("width"), screen.get("height")
    return Device(
        ip=facts.ip,
        user_agent=facts.user_agent or _text(navigator.get("userAgent")),
        language=_text(navigator.get("language")),
        screen=f"{width}x{height}" if _count(width) is not None and _count(height) is not None else None,
    )


def normalize_pixel_event(
    envelope: PixelEnvelope,
    facts: RequestFacts,
    *,
    default_region: str = "US",
    policy: TimestampPolicy = DEFAULT_TIMESTAMP_POLICY,
) -> CanonicalEvent:
    location = _dict(_dict(envelope.context.get("document")).get("location"))
    page_url = location.get("href") if isinstance(location.get("href"), str) else None
    origin = location.get("origin") if isinstance(location.get("origin"), str) else None
    kind = STANDARD_EVENTS.get(envelope.name, EventKind.OTHER)
    commerce = commerce_of(kind, envelope.data, page_url, origin) if kind is not EventKind.OTHER else EMPTY_COMMERCE
    attribution = attribution_from_url(page_url)
    identifiers = unique_identifiers(
        [*identifiers_of(envelope, commerce, default_region), *attribution_identifiers(attribution)]
    )
    occurred_at, flag = clamp_occurred_at(parse_timestamp(envelope.timestamp), facts.received_at, policy)
    checkout = _dict(envelope.data.get("checkout"))
    accepts = checkout.get("buyerAcceptsEmailMarketing")
    profile = profile_facts(
        [_dict(envelope.customer), _dict(checkout.get("billingAddress")), _dict(checkout.get("shippingAddress"))],
        accepts if isinstance(accepts, bool) else None,
    )
    return CanonicalEvent(
        shop=envelope.shop,
        source=Source.SHOPIFY_PIXEL,
        source_event_id=envelope.event_id,
        kind=kind,
        name=envelope.name,
        occurred_at=occurred_at,
        received_at=facts.received_at,
        timestamp_flag=flag,
        identifiers=identifiers,
        commerce=commerce,
        attribution=attribution,
        consent=consent_of(envelope.consent),
        device=device_of(envelope.context, facts),
        page_url=page_url,
        profile=profile,
        raw=envelope.raw,
    )
