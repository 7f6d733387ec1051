"""The `forward` delivery mode (the waterfall of cloned Klaviyo flows): shopper events as they happen."""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from typing import Any

from recapture.domain.abandonment import (
    AbandonmentPolicy,
    cart_properties,
    checkout_properties,
    item,
    product_properties,
)
from recapture.domain.delivery import DeliveryEvent, DeliveryProfile, MatchMethod
from recapture.domain.events import Commerce, EventKind
from recapture.domain.sessions import SessionState

FORWARDED_METRICS: dict[EventKind, str] = {
    EventKind.PRODUCT_VIEWED: "Viewed Product",
    EventKind.PRODUCT_ADDED_TO_CART: "Added to Cart",
    EventKind.CHECKOUT_STARTED: "Started Checkout",
    EventKind.CHECKOUT_COMPLETED: "Placed Order",
    EventKind.ORDER_PLACED: "Placed Order",
}
ACTIVE_ON_SITE = "Active on Site"
# Placed Order always goes, so that the cloned flows' "has not placed an order since" filter works.
ALWAYS_FORWARDED = frozenset({"Placed Order"})


def forwarded_metrics(kind: EventKind, first_in_session: bool) -> list[str]:
    """"Active on Site" opens every session (the session-abandonment signal), then the event's own metric."""
    metrics = [ACTIVE_ON_SITE] if first_in_session else []
    return metrics + ([FORWARDED_METRICS[kind]] if kind in FORWARDED_METRICS else [])


def forward_content(metric: str, commerce: Commerce, session: SessionState | None,
                    page_url: str | None) -> tuple[dict[str, Any], Decimal | None, str | None]:
    if metric == "Viewed Product" and commerce.products:
        product = commerce.products[0]
        return product_properties(product), product.price, product.currency
    if metric == "Added to Cart" and session is not None and session.cart is not None:
        added = commerce.products[0] if commerce.products else None
        properties = cart_properties(session.cart) | (product_properties(added) if added else {})
        return properties | {"Quantity": added.quantity if added else None}, session.cart.value, session.cart.currency
    if metric == "Started Checkout":
        return checkout_properties(commerce), commerce.value, commerce.currency
    if metric == "Placed Order":
        properties = {"OrderID": commerce.order_id, "Revenue": float(commerce.value) if commerce.value else None,
                      "Items": [item(p) for p in commerce.products], "DiscountCodes": list(commerce.discount_codes)}
        return properties, commerce.value, commerce.currency
    return {"URL": page_url}, None, None


def forwarded_event(
    *, shop: str, event_key: str, metric: str, at: datetime, commerce: Commerce, session: SessionState | None,
    page_url: str | None, profile: DeliveryProfile, match: MatchMethod, confidence: float, identified_by: str,
    policy: AbandonmentPolicy,
) -> DeliveryEvent:
    properties, value, currency = forward_content(metric, commerce, session, page_url)
    properties |= {"MatchMethod": match.value, "MatchConfidence": confidence, "IdentifiedBy": identified_by}
    return DeliveryEvent(
        shop=shop, metric=f"{metric}{policy.metric_suffix}",
        unique_id=hashlib.sha256(f"{shop}|{event_key}|{metric}".encode()).hexdigest()[:40],
        time=at, profile=profile, properties=properties, value=value,
        value_currency=currency if value is not None else None,
    )
