"""Probabilistic re-identification after deterministic resolution, for shops that switch it on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from recapture.application.identity import LinkContext
from recapture.application.ports import PendingEvent
from recapture.domain.events import Identifier, IdentifierType
from recapture.domain.identity.probabilistic import Candidate, DeviceSignature, Guess, ProbabilisticPolicy, best_guess
from recapture.domain.identity.probabilistic import signature as device_signature
from recapture.domain.identity.resolver import Key

SHARED_NETWORK_PERIOD = timedelta(days=1)


class Sightings(Protocol):
    def record(self, shop: str, device_key: bytes, person: int, seen: DeviceSignature, at: datetime) -> None: ...

    def candidates(self, shop: str, prefix: str, since: datetime, exclude: int) -> list[Candidate]: ...

    def devices_on_network(self, shop: str, prefix: str, since: datetime) -> int: ...


class ProbableLinks(Protocol):
    def key(self, shop: str, identifier: Identifier) -> Key: ...

    def is_identified(self, person: int) -> bool: ...

    def probable_person(self, anonymous: int) -> tuple[int, float] | None: ...

    def link_probable(self, anonymous: int, person: int, confidence: float, context: LinkContext) -> None: ...


class DeviceMatcher:
    def __init__(
        self, sightings: Sightings, links: ProbableLinks, policy_for: Callable[[str], ProbabilisticPolicy]
    ) -> None:
        self._sightings = sightings
        self._links = links
        self._policy_for = policy_for

    def observe(self, event: PendingEvent, person: int) -> Guess | None:
        """Record where this device was seen; if its person is anonymous, guess who it is (or nothing)."""
        policy = self._policy_for(event.shop)
        client = next((i for i in event.identifiers if i.type is IdentifierType.CLIENT_ID), None)
        if not policy.enabled or client is None or event.device is None:
            return None
        device = event.device
        seen = device_signature(device.ip, device.user_agent, device.language, device.screen, device.timezone)
        if seen.ip_prefix is None:
            return None
        self._sightings.record(event.shop, self._links.key(event.shop, client), person, seen, event.occurred_at)
        if self._links.is_identified(person) or self._links.probable_person(person) is not None:
            return None
        at = event.occurred_at
        guess = best_guess(
            seen,
            self._sightings.candidates(event.shop, seen.ip_prefix, at - policy.lookback, exclude=person),
            self._sightings.devices_on_network(event.shop, seen.ip_prefix, at - SHARED_NETWORK_PERIOD),
            at,
            policy,
        )
        if guess is not None:
            context = LinkContext(event_id=event.id, shop=event.shop, observed_at=at, rule="probabilistic")
            self._links.link_probable(person, guess.person, guess.confidence, context)
        return guess
