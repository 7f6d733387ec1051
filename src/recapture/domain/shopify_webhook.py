"""Shopify webhook resources (REST shapes, resource at the JSON root) to canonical events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

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
    normalize_email,
    normalize_phone,
    shopify_numeric_id,
    unique_identifiers,
)
from recapture.domain.money import to_decimal
from recapture.domain.profile_facts import ProfileFacts, profile_facts
from recapture.domain.timestamps import (
    DEFAULT_TIMESTAMP_POLICY,
    TimestampPolicy,
    clamp_occurred_at,
    parse_timestamp,
)

TOPICS: dict[str, EventKind] = {
    "checkouts/create": EventKind.CHECKOUT_STARTED,
    "checkouts/update": EventKind.CHECKOUT_UPDATED,
    "orders/create": EventKind.ORDER_PLACED,
    "orders/paid": EventKind.ORDER_PAID,
    "carts/create": EventKind.CART_UPDATED,
    "carts/update": EventKind.CART_UPDATED,
    "customers/create": EventKind.CUSTOMER_UPDATED,
    "customers/update": EventKind.CUSTOMER_UPDATED,
    "customers/data_request": EventKind.PRIVACY_DATA_REQUEST,
    "customers/redact": EventKind.PRIVACY_CUSTOMER_REDACT,
    "shop/redact": EventKind.PRIVACY_SHOP_REDACT,
}

Json = Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookDelivery:
    shop: str
    topic: str
    webhook_id: str
    event_id: str | None
    triggered_at: str | None
    api_version: str | None
    resource: Json
    raw: bytes


def _dict(value: object) -> Json:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _line_product(line: Json, currency: str | None) -> Product:
    quantity = line.get("quantity")
    return Product(
        product_id=shopify_numeric_id(line.get("product_id")),
        variant_id=shopify_numeric_id(line.get("variant_id")),
        sku=clean_token(line.get("sku")),
        title=_text(line.get("title")) or _text(line.get("name")),
        variant_title=_text(line.get("variant_title")),
        price=to_decimal(line.get("price")),
        currency=currency,
        quantity=quantity if isinstance(quantity, int) and not isinstance(quantity, bool) and quantity > 0 else 1,
    )


def _lines_value(products: tuple[Product, ...]) -> Decimal | None:
    try:
        priced = [p.price * p.quantity for p in products if p.price is not None]
        return sum(priced, Decimal(0)) if priced else None
    except ArithmeticError:  # decimal.Overflow: an absurd price is no value
        return None


def _commerce(kind: EventKind, resource: Json) -> Commerce:
    if kind in (EventKind.CUSTOMER_UPDATED, EventKind.OTHER, *_PRIVACY):
        return EMPTY_COMMERCE
    currency = _text(resource.get("currency")) or _text(resource.get("presentment_currency"))
    products = tuple(_line_product(_dict(line), currency) for line in _list(resource.get("line_items")))
    is_order = kind in (EventKind.ORDER_PLACED, EventKind.ORDER_PAID)
    is_cart = kind is EventKind.CART_UPDATED
    recovery_url = _text(resource.get("abandoned_checkout_url"))
    return Commerce(
        products=products,
        value=_lines_value(products) if is_cart else to_decimal(resource.get("total_price")),
        currency=currency,
        item_count=sum(p.quantity for p in products),
        checkout_token=clean_token(resource.get("checkout_token" if is_order else "token")) if not is_cart else None,
        cart_token=clean_token(resource.get("token" if is_cart else "cart_token"))
        or cart_token_from_url(recovery_url),
        checkout_url=recovery_url,
        order_id=shopify_numeric_id(resource.get("id")) if is_order else None,
        discount_codes=tuple(
            code for code in (_text(_dict(c).get("code")) for c in _list(resource.get("discount_codes"))) if code
        ),
    )


_PRIVACY = (EventKind.PRIVACY_DATA_REQUEST, EventKind.PRIVACY_CUSTOMER_REDACT, EventKind.PRIVACY_SHOP_REDACT)


def _person_sources(kind: EventKind, resource: Json) -> list[Json]:
    if kind is EventKind.CUSTOMER_UPDATED:
        return [resource, _dict(resource.get("default_address"))]
    customer = _dict(resource.get("customer"))
    return [
        resource, customer, _dict(customer.get("default_address")),
        _dict(resource.get("billing_address")), _dict(resource.get("shipping_address")),
    ]


def identifiers_of(kind: EventKind, resource: Json, commerce: Commerce, region: str) -> tuple[Identifier, ...]:
    found: list[Identifier] = []
    customer = resource if kind is EventKind.CUSTOMER_UPDATED else _dict(resource.get("customer"))
    customer_id = shopify_numeric_id(customer.get("id"))
    if customer_id:
        found.append(Identifier(type=IdentifierType.SHOPIFY_CUSTOMER_ID, value=customer_id))
    for source in _person_sources(kind, resource):
        email = normalize_email(source.get("email") or source.get("contact_email"))
        if email:
            found.append(Identifier(type=IdentifierType.EMAIL, value=email))
        phone = normalize_phone(source.get("phone"), region)
        if phone:
            found.append(Identifier(type=IdentifierType.PHONE, value=phone))
    for kind_, value in (
        (IdentifierType.CHECKOUT_TOKEN, commerce.checkout_token),
        (IdentifierType.CART_TOKEN, commerce.cart_token),
        (IdentifierType.ORDER_ID, commerce.order_id),
    ):
        if value:
            found.append(Identifier(type=kind_, value=value))
    if kind in _PRIVACY:
        # Shopify names the orders to redact (or report): erasure must reach events linked only by those orders.
        for order in (*_list(resource.get("orders_to_redact")), *_list(resource.get("orders_requested"))):
            order_id = shopify_numeric_id(order)
            if order_id:
                found.append(Identifier(type=IdentifierType.ORDER_ID, value=order_id))
    return unique_identifiers(found)


def _consent(resource: Json) -> Consent | None:
    marketing = _dict(_dict(resource.get("customer")).get("email_marketing_consent")) or _dict(
        resource.get("email_marketing_consent")
    )
    accepts = resource.get("buyer_accepts_marketing")
    if marketing.get("state"):
        return Consent(marketing=marketing.get("state") == "subscribed")
    return Consent(marketing=accepts) if isinstance(accepts, bool) else None


def _device(resource: Json) -> Device:
    client = _dict(resource.get("client_details"))
    ip = clean_token(client.get("browser_ip") or resource.get("browser_ip"))
    return Device(ip=ip, user_agent=_text(client.get("user_agent")), language=_text(client.get("accept_language")))


def _profile(kind: EventKind, resource: Json) -> ProfileFacts | None:
    if kind in (EventKind.OTHER, *_PRIVACY):
        return None
    consent = _consent(resource)
    if kind is EventKind.CUSTOMER_UPDATED:
        sources = [resource, _dict(resource.get("default_address"))]
    else:
        # The buyer's own records before the shipping address, which may name a gift's recipient.
        customer = _dict(resource.get("customer"))
        sources = [customer, _dict(resource.get("billing_address")), _dict(customer.get("default_address")),
                   _dict(resource.get("shipping_address"))]
    return profile_facts(sources, consent.marketing if consent else None)


def normalize_webhook(
    delivery: WebhookDelivery,
    received_at: datetime,
    *,
    default_region: str = "US",
    policy: TimestampPolicy = DEFAULT_TIMESTAMP_POLICY,
) -> CanonicalEvent:
    # A topic we did not expect is still stored raw: Shopify retries whatever we do not acknowledge.
    kind = TOPICS.get(delivery.topic, EventKind.OTHER)
    resource = delivery.resource
    commerce = _commerce(kind, resource)
    claimed = parse_timestamp(delivery.triggered_at) or parse_timestamp(
        resource.get("updated_at") or resource.get("created_at")
    )
    occurred_at, flag = clamp_occurred_at(claimed, received_at, policy)
    landing = resource.get("landing_site")
    attribution = attribution_from_url(landing if isinstance(landing, str) else None)
    headers = {
        "event_id": delivery.event_id, "triggered_at": delivery.triggered_at, "api_version": delivery.api_version,
    }
    meta = {"topic": delivery.topic} | {key: value for key, value in headers.items() if value}
    return CanonicalEvent(
        shop=delivery.shop,
        source=Source.SHOPIFY_WEBHOOK,
        source_event_id=delivery.webhook_id,
        kind=kind,
        name=delivery.topic,
        occurred_at=occurred_at,
        received_at=received_at,
        timestamp_flag=flag,
        identifiers=unique_identifiers([*identifiers_of(kind, resource, commerce, default_region),
                                        *attribution_identifiers(attribution)]),
        commerce=commerce,
        attribution=attribution,
        consent=_consent(resource),
        device=_device(resource),
        page_url=None,
        source_meta=meta,
        profile=_profile(kind, resource),
        raw=delivery.raw,
    )
