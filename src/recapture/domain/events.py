"""The one canonical event every source is normalized into."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import msgspec

from recapture.domain.profile_facts import ProfileFacts


class Source(StrEnum):
    SHOPIFY_PIXEL = "shopify_pixel"
    SHOPIFY_WEBHOOK = "shopify_webhook"
    TRACKING_API = "tracking_api"


class EventKind(StrEnum):
    PAGE_VIEWED = "page_viewed"
    PRODUCT_VIEWED = "product_viewed"
    COLLECTION_VIEWED = "collection_viewed"
    SEARCH_SUBMITTED = "search_submitted"
    PRODUCT_ADDED_TO_CART = "product_added_to_cart"
    PRODUCT_REMOVED_FROM_CART = "product_removed_from_cart"
    CART_VIEWED = "cart_viewed"
    CART_UPDATED = "cart_updated"
    CHECKOUT_STARTED = "checkout_started"
    CHECKOUT_UPDATED = "checkout_updated"
    CHECKOUT_CONTACT_INFO_SUBMITTED = "checkout_contact_info_submitted"
    CHECKOUT_ADDRESS_INFO_SUBMITTED = "checkout_address_info_submitted"
    CHECKOUT_SHIPPING_INFO_SUBMITTED = "checkout_shipping_info_submitted"
    PAYMENT_INFO_SUBMITTED = "payment_info_submitted"
    CHECKOUT_COMPLETED = "checkout_completed"
    ORDER_PLACED = "order_placed"
    ORDER_PAID = "order_paid"
    CUSTOMER_UPDATED = "customer_updated"
    PRIVACY_DATA_REQUEST = "privacy_data_request"
    PRIVACY_CUSTOMER_REDACT = "privacy_customer_redact"
    PRIVACY_SHOP_REDACT = "privacy_shop_redact"
    OTHER = "other"


PRIVACY_KINDS = frozenset(
    {EventKind.PRIVACY_DATA_REQUEST, EventKind.PRIVACY_CUSTOMER_REDACT, EventKind.PRIVACY_SHOP_REDACT}
)


class IdentifierType(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    SHOPIFY_CUSTOMER_ID = "shopify_customer_id"
    CLIENT_ID = "client_id"
    CHECKOUT_TOKEN = "checkout_token"  # noqa: S105 - an identifier type name, not a secret
    CART_TOKEN = "cart_token"  # noqa: S105 - an identifier type name, not a secret
    ORDER_ID = "order_id"
    KLAVIYO_EXCHANGE_ID = "klaviyo_exchange_id"
    # The exchange id in Klaviyo's cookie: Klaviyo's script identified this browser (someone, some time ago).
    KLAVIYO_COOKIE_EXCHANGE_ID = "klaviyo_cookie_exchange_id"
    # The email Klaviyo's own cookie says it already knows: proof that Klaviyo identified this browser.
    KLAVIYO_KNOWN_EMAIL = "klaviyo_known_email"
    ANONYMOUS_ID = "anonymous_id"
    USER_ID = "user_id"
    # An ad network's click id (fbclid, gclid, ttclid, msclkid) as "<name>:<value>"; links only briefly.
    CLICK_ID = "click_id"


# Contact values are personal data: stored encrypted at rest and masked in every display.
CONTACT_TYPES = frozenset({IdentifierType.EMAIL, IdentifierType.PHONE, IdentifierType.KLAVIYO_KNOWN_EMAIL})


class Identifier(msgspec.Struct, frozen=True, kw_only=True):
    type: IdentifierType
    value: str

    @property
    def is_contact(self) -> bool:
        return self.type in CONTACT_TYPES


class Product(msgspec.Struct, frozen=True, kw_only=True):
    product_id: str | None = None
    variant_id: str | None = None
    sku: str | None = None
    title: str | None = None
    variant_title: str | None = None
    price: Decimal | None = None
    currency: str | None = None
    image_url: str | None = None
    url: str | None = None
    quantity: int = 1


class Commerce(msgspec.Struct, frozen=True, kw_only=True):
    products: tuple[Product, ...] = ()
    value: Decimal | None = None
    currency: str | None = None
    item_count: int | None = None
    checkout_token: str | None = None
    cart_token: str | None = None
    checkout_url: str | None = None
    order_id: str | None = None
    discount_codes: tuple[str, ...] = ()
    search_query: str | None = None
    collection_title: str | None = None

    @property
    def is_empty(self) -> bool:
        return self == EMPTY_COMMERCE


EMPTY_COMMERCE = Commerce()


class Attribution(msgspec.Struct, frozen=True, kw_only=True):
    """Campaign parameters and click ids found on the landing URL."""

    utm: dict[str, str] = msgspec.field(default_factory=dict)
    click_ids: dict[str, str] = msgspec.field(default_factory=dict)


class Consent(msgspec.Struct, frozen=True, kw_only=True):
    analytics: bool | None = None
    marketing: bool | None = None
    preferences: bool | None = None
    sale_of_data: bool | None = None


class Device(msgspec.Struct, frozen=True, kw_only=True):
    ip: str | None = None
    user_agent: str | None = None
    language: str | None = None
    screen: str | None = None
    timezone: str | None = None


class TimestampFlag(StrEnum):
    OK = "ok"
    CLAMPED_FUTURE = "clamped_future"
    CLAMPED_PAST = "clamped_past"
    MISSING = "missing"


class CanonicalEvent(msgspec.Struct, frozen=True, kw_only=True):
    shop: str
    source: Source
    source_event_id: str
    kind: EventKind
    name: str
    occurred_at: datetime
    received_at: datetime
    timestamp_flag: TimestampFlag = TimestampFlag.OK
    identifiers: tuple[Identifier, ...] = ()
    commerce: Commerce = EMPTY_COMMERCE
    attribution: Attribution = msgspec.field(default_factory=Attribution)
    consent: Consent | None = None
    device: Device = msgspec.field(default_factory=Device)
    page_url: str | None = None
    # Shopify's X-Shopify-Event-Id / X-Shopify-Triggered-At for webhooks: one merchant action, many deliveries.
    source_meta: dict[str, str] = msgspec.field(default_factory=dict)
    # Names, town and marketing opt-in the shopper gave (sealed at rest; never in logs).
    profile: ProfileFacts | None = None
    # The exact bytes received, kept (sealed) for audit and replay.
    raw: bytes = b""

    def identifier(self, kind: IdentifierType) -> str | None:
        return next((i.value for i in self.identifiers if i.type == kind), None)
