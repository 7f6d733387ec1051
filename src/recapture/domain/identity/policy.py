"""The rules of the identity graph, per shop: what never links, what is unique, how far a person may grow."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from recapture.domain.events import IdentifierType
from recapture.domain.identifiers import is_placeholder

T = IdentifierType

# Highest first: the identifier that decides who an event belongs to when its identifiers disagree.
PRIORITY: tuple[IdentifierType, ...] = (
    T.SHOPIFY_CUSTOMER_ID,
    T.USER_ID,
    T.EMAIL,
    T.PHONE,
    T.KLAVIYO_EXCHANGE_ID,
    T.ORDER_ID,
    T.CHECKOUT_TOKEN,
    T.CART_TOKEN,
    T.CLIENT_ID,
    T.ANONYMOUS_ID,
    T.CLICK_ID,
)
RANK = {kind: index for index, kind in enumerate(PRIORITY)}

# Two persons that each hold a different value of one of these are different people: never merged.
DISTINCT_PERSON_TYPES = frozenset({T.SHOPIFY_CUSTOMER_ID, T.USER_ID, T.EMAIL, T.PHONE})

# Addresses typed to get past a form, or that no person reads; the shop adds its own addresses per shop.
_PLACEHOLDER_LOCAL_PART = re.compile(r"^(no-?reply|do-?not-?reply|null|undefined|none|test|asdf|xxx+)$")
_PLACEHOLDER_EMAILS = frozenset(
    {"test@test.com", "example@example.com", "email@email.com", "a@a.com", "asdf@asdf.com", "user@domain.com"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityPolicy:
    # Segment Unify style limits: how many values of a type one person may hold within `limit_window`.
    limits: dict[IdentifierType, int] = field(
        default_factory=lambda: {
            T.SHOPIFY_CUSTOMER_ID: 1, T.USER_ID: 1, T.EMAIL: 3, T.PHONE: 3, T.KLAVIYO_EXCHANGE_ID: 5,
            T.CLIENT_ID: 25, T.ANONYMOUS_ID: 25, T.CART_TOKEN: 100, T.CHECKOUT_TOKEN: 100, T.ORDER_ID: 500,
            T.CLICK_ID: 100,
        }
    )
    limit_window: timedelta = timedelta(days=30)
    # Unomi caps a merge at 50 profiles; a single event joining more than a handful is a sign of bad data.
    max_persons_per_merge: int = 10
    max_identifiers_per_person: int = 1000
    # Links not refreshed for this long stop being used for matching.
    identity_window: timedelta = timedelta(days=400)
    # Ad click ids are shared when a link is forwarded; they only link visits close in time.
    click_id_window: timedelta = timedelta(hours=1)
    # Family tablets are used by several people: their device id and Klaviyo cookie never say who is there (the
    # accuracy harness measured most wrong-person attributions on them otherwise).
    tablets_are_shared: bool = True
    blocked_values: frozenset[str] = frozenset()
    blocked_email_domains: frozenset[str] = frozenset()

    def is_blocked(self, kind: IdentifierType, value: str) -> bool:
        lowered = value.strip().lower()
        if is_placeholder(lowered) or lowered in self.blocked_values:
            return True
        if kind is T.EMAIL:
            local, _, domain = lowered.rpartition("@")
            return (
                lowered in _PLACEHOLDER_EMAILS
                or bool(_PLACEHOLDER_LOCAL_PART.match(local))
                or domain in self.blocked_email_domains
            )
        return False

    def limit(self, kind: IdentifierType) -> int:
        return self.limits.get(kind, 100)


DEFAULT_POLICY = IdentityPolicy()
