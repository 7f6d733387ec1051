"""Sessions as events arrive; abandonment decisions when hold windows end; the outbox in the same transaction."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from recapture.application.ports import PendingEvent
from recapture.domain.abandonment import (
    AbandonmentPolicy,
    Facts,
    Outcome,
    abandonment_event,
    decide,
    is_incomplete,
)
from recapture.domain.delivery import Delivery, DeliveryProfile, MatchMethod, ProfileUpdate, Subscription
from recapture.domain.events import Identifier, IdentifierType
from recapture.domain.forwarding import ALWAYS_FORWARDED, forwarded_event, forwarded_metrics
from recapture.domain.profile_facts import ProfileFacts
from recapture.domain.sessions import (
    CONVERSION_KINDS,
    DEFAULT_INACTIVITY,
    SessionState,
    Stage,
    observe,
    start_session,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    id: int
    shop: str
    person_id: int | None
    state: SessionState
    status: str


class AbandonmentStore(Protocol):
    def open_session(self, shop: str, device_key: bytes, since: datetime) -> SessionRecord | None: ...
    def save_session(self, session_id: int | None, shop: str, device_key: bytes, person: int | None,
                     state: SessionState, due_at: datetime) -> int: ...
    def due_sessions(self, now: datetime, limit: int, horizon: datetime | None = None) -> Sequence[SessionRecord]:
        """Sessions to decide: hold window ended by `horizon` (default `now`), or revived by an identification."""
        ...
    def oldest_unprocessed_event(self) -> datetime | None:
        """When the oldest event not yet worked into sessions happened (None: all processed)."""
        ...
    def close_session(self, session_id: int, status: str, outcome: str, at: datetime,
                      expires_at: datetime | None = None) -> None: ...
    def family(self, person: int) -> list[int]: ...
    def record_conversion(
        self, shop: str, person: int | None, checkout_token: str | None, cart_token: str | None,
        order_id: str | None, revenue: Decimal | None, currency: str | None, at: datetime,
    ) -> None: ...
    def purchased(self, shop: str, family: Sequence[int], tokens: Sequence[str], since: datetime) -> bool: ...
    def stronger_stage(self, shop: str, family: Sequence[int], stage: Stage, session_id: int,
                       start: datetime, end: datetime) -> bool: ...
    def sent_recently(self, shop: str, family: Sequence[int], stage: Stage, since: datetime) -> bool: ...
    def record_abandonment(self, session: SessionRecord, person: int | None, outcome: str, native: bool,
                           incomplete: bool, value: Decimal | None, currency: str | None, at: datetime,
                           delivery_id: int | None) -> None: ...
    def enqueue(self, destination: str, item: Delivery, at: datetime) -> int | None: ...


class Profiles(Protocol):
    def key(self, shop: str, identifier: Identifier) -> bytes: ...
    def profile_of(self, person: int) -> tuple[DeliveryProfile, str] | None:
        """The contactable profile of a person and the identifier type that makes it contactable."""
        ...
    def probable_person(self, anonymous: int) -> tuple[int, float] | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ShopDelivery:
    policy: AbandonmentPolicy
    destinations: tuple[str, ...]
    list_id: str | None = None


class AbandonmentService:
    def __init__(
        self,
        store: AbandonmentStore,
        profiles: Profiles,
        shop_delivery: Callable[[str], ShopDelivery],
        unit_of_work: Callable[[], AbstractContextManager[object]],
        inactivity: timedelta = DEFAULT_INACTIVITY,
    ) -> None:
        self._store = store
        self._profiles = profiles
        self._shop_delivery = shop_delivery
        self._unit_of_work = unit_of_work
        self._inactivity = inactivity

    # -- as events arrive (inside the processor's unit of work) ------------------------------------------------

    def track(self, event: PendingEvent, person: int | None) -> None:
        config = self._shop_delivery(event.shop)
        state: SessionState | None = None
        if event.kind in CONVERSION_KINDS:
            commerce = event.commerce
            self._store.record_conversion(event.shop, person, commerce.checkout_token, commerce.cart_token,
                                          commerce.order_id, commerce.value, commerce.currency, event.occurred_at)
        elif (client := next((i for i in event.identifiers if i.type is IdentifierType.CLIENT_ID), None)) is not None:
            device_key = self._profiles.key(event.shop, client)
            current = self._store.open_session(event.shop, device_key, event.occurred_at - self._inactivity)
            state = observe(current.state, event) if current else start_session(event)
            # An event with no person (a shared tablet's anonymous page) keeps the person the session already had.
            owner = person if person is not None else (current.person_id if current else None)
            self._store.save_session(current.id if current else None, event.shop, device_key, owner, state,
                                     config.policy.due_at(state))
        if person is not None and event.profile is not None:
            self._update_profile(event, person, event.profile, config)
        if config.policy.mode == "forward" and person is not None:
            self._forward(event, person, state, config)

    def _update_profile(self, event: PendingEvent, person: int, facts: ProfileFacts, config: ShopDelivery) -> None:
        """Names and place for the profile; a list subscription only for a shopper who opted in."""
        found = self._profiles.profile_of(self._store.family(person)[0])
        if found is None or not config.destinations:
            return
        profile = replace(found[0], first_name=facts.first_name, last_name=facts.last_name, city=facts.city,
                          region=facts.region)
        key = f"{event.shop}|{event.source}:{event.id}"
        update = ProfileUpdate(shop=event.shop, unique_id=_digest(f"{key}|profile"), profile=profile)
        subscribe = facts.accepts_email_marketing is True and config.list_id is not None and profile.email
        for destination in config.destinations:
            self._store.enqueue(destination, update, event.occurred_at)
            if subscribe and config.list_id is not None:
                subscription = Subscription(shop=event.shop, list_id=config.list_id, profile=replace(profile),
                                            unique_id=_digest(f"{event.shop}|{profile.email}|{config.list_id}"))
                self._store.enqueue(destination, subscription, event.occurred_at)

    def _forward(self, event: PendingEvent, person: int, session: SessionState | None, config: ShopDelivery) -> None:
        """Near real time, only for sessions Klaviyo cannot see itself (Placed Order always)."""
        unseen = session is None or not (
            session.klaviyo_identified or session.shopify_knows_checkout or session.marketing_consent is False
        )
        metrics = [m for m in forwarded_metrics(event.kind, session is not None and session.events == 1)
                   if unseen or m in ALWAYS_FORWARDED]
        contact = self._contact(self._store.family(person)[0], config.policy) if metrics else None
        if contact is None:
            return
        profile, match, confidence, identified_by = contact
        for metric in metrics:
            forwarded = forwarded_event(
                shop=event.shop, event_key=f"{event.source}:{event.id}", metric=metric, at=event.occurred_at,
                commerce=event.commerce, session=session, page_url=event.page_url, profile=profile, match=match,
                confidence=confidence, identified_by=identified_by, policy=config.policy,
            )
            for destination in config.destinations:
                self._store.enqueue(destination, forwarded, event.occurred_at)

    # -- when hold windows end -------------------------------------------------------------------------------

    def run_due(self, now: datetime, limit: int = 100) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        # A session may only be judged on events that have been processed: one whose hold ended after the oldest
        # unprocessed event might still be extended, or ended by a purchase, by it. A processing backlog delays
        # decisions; it never makes one early.
        oldest = self._store.oldest_unprocessed_event()
        horizon = now if oldest is None else min(now, oldest)
        with self._unit_of_work():
            for session in self._store.due_sessions(now, limit, horizon):
                outcomes[self._decide(session, now)] += 1
        return outcomes

    def _decide(self, session: SessionRecord, now: datetime) -> str:
        state, shop = session.state, session.shop
        config = self._shop_delivery(shop)
        policy = config.policy
        family = self._store.family(session.person_id) if session.person_id is not None else []
        contact = self._contact(family[0] if family else None, policy)
        facts = Facts(
            purchased=self._store.purchased(shop, family, sorted(state.tokens), state.started_at),
            stronger_stage_elsewhere=bool(family) and self._store.stronger_stage(
                shop, family, state.stage, session.id, state.last_activity_at - policy.stronger_stage_window,
                state.last_activity_at + policy.stronger_stage_window),
            reachable=contact is not None,
            match=contact[1] if contact else None,
            sent_same_stage_recently=bool(family) and self._store.sent_recently(
                shop, family, state.stage, now - policy.cool_down),
        )
        outcome = decide(state, facts, policy)
        if outcome is Outcome.SENT and policy.mode == "forward":
            outcome = Outcome.FORWARDED
        if outcome is Outcome.NOT_IDENTIFIABLE and now < state.last_activity_at + policy.lookback:
            # Retroactive identification: wait for the shopper to become identifiable within the lookback.
            expires = state.last_activity_at + policy.lookback
            self._store.close_session(session.id, "waiting", outcome.value, now, expires)
            return "awaiting_identity"
        delivery_id = None
        if outcome is Outcome.SENT and contact is not None:
            profile, match, confidence, identified_by = contact
            event = abandonment_event(
                shop=shop, session_key=str(session.id), session=state, profile=profile, match=match,
                confidence=confidence, identified_by=identified_by, policy=policy)
            ids = [self._store.enqueue(d, event, now) for d in config.destinations]
            delivery_id = next((i for i in ids if i is not None), None)
            if not config.destinations:
                outcome = Outcome.NO_DESTINATION
            incomplete = is_incomplete(event.properties)
        else:
            incomplete = False
        basket = state.checkout or state.cart
        value, currency = (basket.value, basket.currency) if basket else (None, None)
        native = state.klaviyo_identified or state.shopify_knows_checkout
        self._store.record_abandonment(session, family[0] if family else None, outcome.value, native, incomplete,
                                       value, currency, now, delivery_id)
        self._store.close_session(session.id, "decided", outcome.value, now)
        return outcome.value

    def _contact(
        self, person: int | None, policy: AbandonmentPolicy
    ) -> tuple[DeliveryProfile, MatchMethod, float, str] | None:
        if person is None:
            return None
        found = self._profiles.profile_of(person)
        if found is not None:
            return found[0], MatchMethod.DETERMINISTIC, 1.0, found[1]
        guess = self._profiles.probable_person(person)
        if guess is None:
            return None
        probable = self._profiles.profile_of(guess[0])
        if probable is None:
            return None
        return probable[0], MatchMethod.PROBABILISTIC, guess[1], probable[1]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]
