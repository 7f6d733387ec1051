"""The pure abandonment rules: stages, the order of suppressions, event content, retry timing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest

from recapture.domain.abandonment import (
    AbandonmentPolicy,
    Facts,
    Outcome,
    abandonment_event,
    decide,
    is_incomplete,
    unique_id,
)
from recapture.domain.delivery import DeliveryProfile, MatchMethod
from recapture.domain.events import (
    EMPTY_COMMERCE,
    Commerce,
    Consent,
    EventKind,
    Identifier,
    IdentifierType,
    Product,
)
from recapture.domain.forwarding import forwarded_metrics
from recapture.domain.retry import RetryPolicy, next_attempt
from recapture.domain.sessions import SessionState, Stage, observe, start_session

NOW = datetime(2026, 10, 5, 10, tzinfo=UTC)
TEE = Product(product_id="1", variant_id="11", title="Tee", price=Decimal("20"), currency="USD",
              image_url="https://cdn/tee.jpg", url="https://shop/products/tee")


class Seen:
    def __init__(self, kind: EventKind, minutes: int = 0, commerce: Commerce = EMPTY_COMMERCE,
                 identifiers: tuple[Identifier, ...] = (), consent: Consent | None = None) -> None:
        self.kind, self.occurred_at, self.commerce = kind, NOW + timedelta(minutes=minutes), commerce
        self.identifiers, self.consent, self.page_url = identifiers, consent, "https://shop/"


def session(*events: Seen) -> SessionState:
    state = start_session(events[0])
    for event in events[1:]:
        state = observe(state, event)
    return state


FINE = Facts(purchased=False, stronger_stage_elsewhere=False, reachable=True, match=MatchMethod.DETERMINISTIC,
             sent_same_stage_recently=False)


def test_the_strongest_stage_of_a_session_wins() -> None:
    """View, add to cart, view again: a cart abandonment, with the cart's contents and value."""
    state = session(Seen(EventKind.PAGE_VIEWED), Seen(EventKind.PRODUCT_VIEWED, 1, Commerce(products=(TEE,))),
                    Seen(EventKind.PRODUCT_ADDED_TO_CART, 2, Commerce(products=(msgspec.structs.replace(TEE, quantity=2),))),
                    Seen(EventKind.PRODUCT_VIEWED, 3, Commerce(products=(TEE,))))
    assert state.stage is Stage.CART
    assert state.cart is not None
    assert state.cart.value == Decimal("40")
    assert state.last_activity_at == NOW + timedelta(minutes=3)


@pytest.mark.parametrize(
    ("facts", "outcome"),
    [
        (replace(FINE, purchased=True, stronger_stage_elsewhere=True), Outcome.PURCHASED),
        (replace(FINE, stronger_stage_elsewhere=True, reachable=False), Outcome.STRONGER_STAGE),
        (replace(FINE, reachable=False, match=None), Outcome.NOT_IDENTIFIABLE),
        (replace(FINE, sent_same_stage_recently=True), Outcome.COOL_DOWN),
        (replace(FINE, match=MatchMethod.PROBABILISTIC), Outcome.NOT_IDENTIFIABLE),
        (FINE, Outcome.SENT),
    ],
)
def test_the_first_reason_not_to_send_wins(facts: Facts, outcome: Outcome) -> None:
    """Purchased beats everything; a probabilistic match is not enough unless the shop allows it."""
    assert decide(session(Seen(EventKind.PRODUCT_VIEWED)), facts, AbandonmentPolicy()) is outcome


def test_native_and_consent_suppressions() -> None:
    """Klaviyo's cookie or an email typed at Shopify's checkout leaves it to native flows; declined marketing stops it."""
    cookie = Seen(EventKind.PRODUCT_VIEWED, identifiers=(Identifier(type=IdentifierType.KLAVIYO_COOKIE_EXCHANGE_ID, value="k"),))
    assert decide(session(cookie), FINE, AbandonmentPolicy()) is Outcome.NATIVE
    assert decide(session(cookie), FINE, AbandonmentPolicy(send_when_native=True)) is Outcome.SENT
    typed = Seen(EventKind.CHECKOUT_CONTACT_INFO_SUBMITTED, identifiers=(Identifier(type=IdentifierType.EMAIL, value="a@b.com"),))
    assert decide(session(typed), FINE, AbandonmentPolicy()) is Outcome.NATIVE
    declined = Seen(EventKind.PRODUCT_VIEWED, consent=Consent(marketing=False))
    assert decide(session(declined), FINE, AbandonmentPolicy()) is Outcome.NO_CONSENT


def test_hold_windows_per_stage() -> None:
    """Checkout, cart and browse are final an hour after the last activity; a bare session after two."""
    policy = AbandonmentPolicy()
    assert policy.due_at(session(Seen(EventKind.PAGE_VIEWED))) == NOW + timedelta(hours=2)
    assert policy.due_at(session(Seen(EventKind.CHECKOUT_STARTED))) == NOW + timedelta(hours=1)


def test_abandonment_event_carries_what_emails_render() -> None:
    """Checkout Abandoned: value, items with image and price, checkout URL, discount codes, match details."""
    checkout = Commerce(products=(TEE,), value=Decimal("20"), currency="USD", item_count=1,
                        checkout_url="https://shop/checkouts/cn/abc", discount_codes=("SAVE",))
    state = session(Seen(EventKind.CHECKOUT_STARTED, commerce=checkout))
    event = abandonment_event(shop="s", session_key="7", session=state, profile=DeliveryProfile(email="a@b.com"),
                              match=MatchMethod.DETERMINISTIC, confidence=1.0, identified_by="email",
                              policy=AbandonmentPolicy())
    assert event.metric == "Checkout Abandoned - Recaptured"
    assert event.properties["CheckoutURL"] == "https://shop/checkouts/cn/abc"
    assert event.properties["DiscountCodes"] == ["SAVE"]
    assert event.properties["Items"][0]["ImageURL"] == "https://cdn/tee.jpg"
    assert (event.value, event.value_currency) == (Decimal("20"), "USD")
    assert not is_incomplete(event.properties)
    assert is_incomplete({"Items": [{"ProductName": "Tee", "ImageURL": None, "Price": 1.0}]})


def test_unique_id_is_stable_per_session_and_stage() -> None:
    """Retries and replays of one decision share an id; another stage or session does not."""
    assert unique_id("s", "1", Stage.CART) == unique_id("s", "1", Stage.CART)
    assert len({unique_id("s", "1", Stage.CART), unique_id("s", "1", Stage.CHECKOUT), unique_id("s", "2", Stage.CART)}) == 3


def test_forwarded_metrics() -> None:
    """A session opens with Active on Site; product views and orders have their own metric."""
    assert forwarded_metrics(EventKind.PRODUCT_VIEWED, first_in_session=True) == ["Active on Site", "Viewed Product"]
    assert forwarded_metrics(EventKind.PAGE_VIEWED, first_in_session=False) == []
    assert forwarded_metrics(EventKind.ORDER_PLACED, first_in_session=False) == ["Placed Order"]


def test_retry_timing() -> None:
    """Retry-After is honoured; otherwise exponential backoff to a ceiling; terminal or exhausted: dead letter."""
    policy = RetryPolicy(max_attempts=5, jitter=0.0)
    assert next_attempt(transient=True, attempts=1, retry_after=30, now=NOW, jitter_draw=0.5, policy=policy) == NOW + timedelta(seconds=30)
    assert next_attempt(transient=True, attempts=3, retry_after=None, now=NOW, jitter_draw=0.5, policy=policy) == NOW + timedelta(seconds=20)
    assert next_attempt(transient=True, attempts=5, retry_after=None, now=NOW, jitter_draw=0.5, policy=policy) is None
    assert next_attempt(transient=False, attempts=1, retry_after=None, now=NOW, jitter_draw=0.5, policy=policy) is None
