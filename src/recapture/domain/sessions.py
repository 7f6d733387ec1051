"""Sessions: a device's visit, ended by inactivity; what the shopper reached in it decides the abandonment stage."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import IntEnum
from typing import Protocol

import msgspec

from recapture.domain.events import Commerce, Consent, EventKind, Identifier, IdentifierType, Product

DEFAULT_INACTIVITY = timedelta(minutes=30)


class Stage(IntEnum):
    """Ordered: the strongest stage reached in a session wins."""

    SESSION = 1   # visited, nothing more
    BROWSE = 2    # viewed a product
    CART = 3      # added to cart
    CHECKOUT = 4  # started checkout


STAGE_OF: dict[EventKind, Stage] = {
    EventKind.PAGE_VIEWED: Stage.SESSION,
    EventKind.COLLECTION_VIEWED: Stage.SESSION,
    EventKind.SEARCH_SUBMITTED: Stage.SESSION,
    EventKind.PRODUCT_VIEWED: Stage.BROWSE,
    EventKind.PRODUCT_ADDED_TO_CART: Stage.CART,
    EventKind.CART_VIEWED: Stage.CART,
    EventKind.CHECKOUT_STARTED: Stage.CHECKOUT,
    EventKind.CHECKOUT_CONTACT_INFO_SUBMITTED: Stage.CHECKOUT,
    EventKind.CHECKOUT_ADDRESS_INFO_SUBMITTED: Stage.CHECKOUT,
    EventKind.CHECKOUT_SHIPPING_INFO_SUBMITTED: Stage.CHECKOUT,
    EventKind.PAYMENT_INFO_SUBMITTED: Stage.CHECKOUT,
}
CONVERSION_KINDS = frozenset({EventKind.CHECKOUT_COMPLETED, EventKind.ORDER_PLACED, EventKind.ORDER_PAID})
# Shopify tells Klaviyo's own integration about a checkout once an email is typed or the customer is logged in.
_SHOPIFY_KNOWS = frozenset({IdentifierType.EMAIL, IdentifierType.PHONE, IdentifierType.SHOPIFY_CUSTOMER_ID})


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionState:
    started_at: datetime
    last_activity_at: datetime
    stage: Stage = Stage.SESSION
    events: int = 0
    # Klaviyo's cookie named this browser (it carried $exchange_id or $email): Klaviyo's flows will fire.
    klaviyo_identified: bool = False
    # The shopper typed an email (or was logged in) at Shopify's checkout: Klaviyo's Shopify integration knows.
    shopify_knows_checkout: bool = False
    marketing_consent: bool | None = None
    products_viewed: tuple[Product, ...] = ()
    cart: Commerce | None = None
    checkout: Commerce | None = None
    landing_url: str | None = None
    tokens: frozenset[str] = field(default_factory=frozenset)

    def expired(self, at: datetime, inactivity: timedelta = DEFAULT_INACTIVITY) -> bool:
        return at - self.last_activity_at > inactivity


class SessionEvent(Protocol):
    """What a session needs of an event (a CanonicalEvent, or an event read back from storage)."""

    @property
    def kind(self) -> EventKind: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def identifiers(self) -> tuple[Identifier, ...]: ...
    @property
    def consent(self) -> Consent | None: ...
    @property
    def commerce(self) -> Commerce: ...
    @property
    def page_url(self) -> str | None: ...


def start_session(event: SessionEvent) -> SessionState:
    return observe(SessionState(started_at=event.occurred_at, last_activity_at=event.occurred_at), event)


def observe(state: SessionState, event: SessionEvent) -> SessionState:
    """The session after one more event of its device."""
    stage = max(state.stage, STAGE_OF.get(event.kind, Stage.SESSION))
    types = {i.type for i in event.identifiers}
    consent = event.consent.marketing if event.consent and event.consent.marketing is not None else None
    commerce = event.commerce
    return replace(
        state,
        last_activity_at=max(state.last_activity_at, event.occurred_at),
        stage=stage,
        events=state.events + 1,
        klaviyo_identified=state.klaviyo_identified
        or bool(types & {IdentifierType.KLAVIYO_COOKIE_EXCHANGE_ID, IdentifierType.KLAVIYO_KNOWN_EMAIL}),
        shopify_knows_checkout=state.shopify_knows_checkout
        or (STAGE_OF.get(event.kind) is Stage.CHECKOUT and bool(types & _SHOPIFY_KNOWS)),
        marketing_consent=consent if consent is not None else state.marketing_consent,
        products_viewed=_viewed(state.products_viewed, event),
        cart=_cart(state.cart, event),
        checkout=commerce if STAGE_OF.get(event.kind) is Stage.CHECKOUT and not commerce.is_empty else state.checkout,
        landing_url=state.landing_url or event.page_url,
        tokens=state.tokens | {t for t in (commerce.checkout_token, commerce.cart_token) if t},
    )


def _viewed(viewed: tuple[Product, ...], event: SessionEvent) -> tuple[Product, ...]:
    if event.kind is not EventKind.PRODUCT_VIEWED or not event.commerce.products:
        return viewed
    product = event.commerce.products[0]
    # Most recent first, each product once: the browse email shows what was looked at last.
    return (product, *(p for p in viewed if p.variant_id != product.variant_id))[:10]


def _cart(cart: Commerce | None, event: SessionEvent) -> Commerce | None:
    commerce = event.commerce
    if event.kind is EventKind.CART_VIEWED and commerce.products:
        return commerce
    if event.kind is EventKind.PRODUCT_ADDED_TO_CART and commerce.products:
        lines = {p.variant_id or p.product_id: p for p in (cart.products if cart else ())}
        for product in commerce.products:
            key = product.variant_id or product.product_id
            earlier = lines.get(key)
            quantity = product.quantity + (earlier.quantity if earlier else 0)
            lines[key] = msgspec.structs.replace(product, quantity=quantity)
        products = tuple(lines.values())
        value = _value(products)
        return Commerce(products=products, value=value, currency=commerce.currency,
                        item_count=sum(p.quantity for p in products),
                        cart_token=commerce.cart_token or (cart.cart_token if cart else None))
    if event.kind is EventKind.PRODUCT_REMOVED_FROM_CART and cart and commerce.products:
        removed = {p.variant_id or p.product_id for p in commerce.products}
        kept = tuple(p for p in cart.products if (p.variant_id or p.product_id) not in removed)
        return msgspec.structs.replace(cart, products=kept, item_count=sum(p.quantity for p in kept),
                       value=_value(kept))
    return cart


def _value(products: tuple[Product, ...]) -> Decimal:
    return sum(((p.price or Decimal(0)) * p.quantity for p in products), Decimal(0))
