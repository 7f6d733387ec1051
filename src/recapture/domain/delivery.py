"""What recapture sends to an email platform: one event for one profile, with a key that makes retries harmless."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class MatchMethod(StrEnum):
    DETERMINISTIC = "deterministic"
    PROBABILISTIC = "probabilistic"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryProfile:
    """Who the event is about. At least one of email, phone_number, exchange_id or external_id is set."""

    email: str | None = None
    phone_number: str | None = None  # E.164, the only format Klaviyo accepts
    exchange_id: str | None = None   # Klaviyo's `_kx`
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    region: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def is_addressable(self) -> bool:
        return any((self.email, self.phone_number, self.exchange_id, self.external_id))


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryEvent:
    """One metric event, e.g. "Checkout Abandoned - Recaptured", for one profile."""

    shop: str
    metric: str
    # Deterministic: the same decision always yields the same id, so a retried send is recorded once.
    unique_id: str
    time: datetime
    profile: DeliveryProfile
    properties: dict[str, Any] = field(default_factory=dict)
    value: Decimal | None = None
    value_currency: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileUpdate:
    """Names and place the shopper gave at checkout, for the platform's profile (Klaviyo profile-import)."""

    shop: str
    unique_id: str
    profile: DeliveryProfile


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    """A list subscription: only ever for a shopper who opted in to email marketing."""

    shop: str
    unique_id: str
    list_id: str
    profile: DeliveryProfile


Delivery = DeliveryEvent | ProfileUpdate | Subscription
DELIVERY_KINDS: dict[str, type[DeliveryEvent] | type[ProfileUpdate] | type[Subscription]] = {
    "event": DeliveryEvent, "profile": ProfileUpdate, "subscription": Subscription,
}


def health_colour(dead: int, oldest_waiting_seconds: float) -> str:
    """A destination's health at a glance: red with dead letters or a wait over an hour, amber over a minute."""
    if dead or oldest_waiting_seconds > 3600:
        return "red"
    return "amber" if oldest_waiting_seconds > 60 else "green"
