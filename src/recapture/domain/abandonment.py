"""When an abandonment is final, whether recapture sends it, and what the event says so that emails render."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from recapture.domain.delivery import DeliveryEvent, DeliveryProfile, MatchMethod
from recapture.domain.events import Commerce, Product
from recapture.domain.sessions import SessionState, Stage

METRIC_OF: dict[Stage, str] = {
    Stage.CHECKOUT: "Checkout Abandoned",
    Stage.CART: "Cart Abandoned",
    Stage.BROWSE: "Browse Abandoned",
    Stage.SESSION: "Session Abandoned",
}


class Outcome(StrEnum):
    SENT = "sent"
    PURCHASED = "purchased"
    STRONGER_STAGE = "stronger_stage"
    NATIVE = "native"
    NO_CONSENT = "no_consent"
    NOT_IDENTIFIABLE = "not_identifiable"
    COOL_DOWN = "cool_down"
    NO_DESTINATION = "no_destination"
    # `forward` mode: the shopper's events went to Klaviyo as they happened; its cloned flows decide.
    FORWARDED = "forwarded"


def _default_holds() -> dict[Stage, timedelta]:
    return {Stage.CHECKOUT: timedelta(hours=1), Stage.CART: timedelta(hours=1), Stage.BROWSE: timedelta(hours=1),
            Stage.SESSION: timedelta(hours=2)}


@dataclass(frozen=True, slots=True, kw_only=True)
class AbandonmentPolicy:
    holds: dict[Stage, timedelta] = field(default_factory=_default_holds)
    # The exclusion window Klaviyo's native abandonment flows use.
    cool_down: timedelta = timedelta(days=7)
    # How long an abandonment waits for its shopper to become identifiable (Klaviyo backfills 14 days).
    lookback: timedelta = timedelta(days=14)
    # A stronger stage of the same person this close to the abandonment replaces it.
    stronger_stage_window: timedelta = timedelta(hours=24)
    metric_suffix: str = " - Recaptured"
    # Stores that turned Klaviyo's native metric off ask recapture to send these too.
    send_when_native: bool = False
    deliver_probabilistic: bool = False
    mode: str = "abandonment"

    def due_at(self, session: SessionState) -> datetime:
        return session.last_activity_at + self.holds[session.stage]

    def metric(self, stage: Stage) -> str:
        return f"{METRIC_OF[stage]}{self.metric_suffix}"


DEFAULT_ABANDONMENT_POLICY = AbandonmentPolicy()


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What the rest of the store knows about the session's shopper when the hold window ends."""

    purchased: bool
    stronger_stage_elsewhere: bool
    reachable: bool
    match: MatchMethod | None
    sent_same_stage_recently: bool


def decide(session: SessionState, facts: Facts, policy: AbandonmentPolicy) -> Outcome:
    """The first reason not to send wins; otherwise the abandonment is sent (once: see `unique_id`)."""
    if facts.purchased:
        return Outcome.PURCHASED
    if facts.stronger_stage_elsewhere:
        return Outcome.STRONGER_STAGE
    if (session.klaviyo_identified or session.shopify_knows_checkout) and not policy.send_when_native:
        return Outcome.NATIVE
    if session.marketing_consent is False:
        return Outcome.NO_CONSENT
    if not facts.reachable or facts.match is None or (
        facts.match is MatchMethod.PROBABILISTIC and not policy.deliver_probabilistic
    ):
        return Outcome.NOT_IDENTIFIABLE
    if facts.sent_same_stage_recently:
        return Outcome.COOL_DOWN
    return Outcome.SENT


def unique_id(shop: str, session_key: str, stage: Stage) -> str:
    """The same abandonment always has the same id: a retried or replayed send is recorded once by Klaviyo."""
    return hashlib.sha256(f"{shop}|{session_key}|{stage.name}".encode()).hexdigest()[:40]


# -- the event content ---------------------------------------------------------------------------------------------


def item(product: Product) -> dict[str, Any]:
    return {
        "ProductName": product.title, "ProductID": product.product_id, "VariantID": product.variant_id,
        "SKU": product.sku, "Quantity": product.quantity, "Price": _money(product.price),
        "ImageURL": product.image_url, "URL": product.url,
    }


def _money(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def product_properties(product: Product) -> dict[str, Any]:
    """Viewed Product: what a product block in an email needs."""
    return {
        "ProductName": product.title, "ProductID": product.product_id, "VariantID": product.variant_id,
        "SKU": product.sku, "Price": _money(product.price), "Currency": product.currency,
        "ImageURL": product.image_url, "URL": product.url,
    }


def cart_properties(cart: Commerce) -> dict[str, Any]:
    last = cart.products[-1] if cart.products else None
    return {
        **(product_properties(last) if last else {}),
        "Quantity": last.quantity if last else None,
        "CartValue": _money(cart.value), "ItemCount": cart.item_count, "Items": [item(p) for p in cart.products],
    }


def checkout_properties(checkout: Commerce) -> dict[str, Any]:
    return {
        "CartValue": _money(checkout.value), "ItemCount": checkout.item_count,
        "Items": [item(p) for p in checkout.products], "CheckoutURL": checkout.checkout_url,
        "DiscountCodes": list(checkout.discount_codes), "Currency": checkout.currency,
    }


def is_incomplete(properties: dict[str, Any]) -> bool:
    """A product block without a name, image or price renders broken: sent anyway, but counted."""
    items = properties.get("Items") or ([properties] if "ProductName" in properties else [])
    return any(not i.get("ProductName") or not i.get("ImageURL") or i.get("Price") is None for i in items)


def abandonment_content(session: SessionState, stage: Stage) -> tuple[dict[str, Any], Decimal | None, str | None]:
    if stage is Stage.CHECKOUT and session.checkout is not None:
        checkout = session.checkout
        return checkout_properties(checkout), checkout.value, checkout.currency
    if stage in (Stage.CHECKOUT, Stage.CART) and session.cart is not None:
        return cart_properties(session.cart), session.cart.value, session.cart.currency
    if stage is Stage.BROWSE and session.products_viewed:
        viewed = session.products_viewed[0]
        properties = product_properties(viewed) | {"Items": [item(p) for p in session.products_viewed]}
        return properties, viewed.price, viewed.currency
    return {"LandingURL": session.landing_url, "SessionStartedAt": session.started_at.isoformat()}, None, None


def abandonment_event(
    *, shop: str, session_key: str, session: SessionState, profile: DeliveryProfile, match: MatchMethod,
    confidence: float, identified_by: str, policy: AbandonmentPolicy,
) -> DeliveryEvent:
    stage = session.stage
    properties, value, currency = abandonment_content(session, stage)
    properties |= {"MatchMethod": match.value, "MatchConfidence": confidence, "IdentifiedBy": identified_by}
    return DeliveryEvent(
        shop=shop, metric=policy.metric(stage), unique_id=unique_id(shop, session_key, stage),
        time=session.last_activity_at, profile=profile, properties=properties, value=value,
        value_currency=currency if value is not None else None,
    )
