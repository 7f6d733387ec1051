"""Resolving events to persons: blocked values out, the neighbourhood in, a plan applied."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from recapture.application.ports import PendingEvent
from recapture.domain.events import Identifier, IdentifierType
from recapture.domain.identity.policy import IdentityPolicy
from recapture.domain.identity.probabilistic import is_tablet
from recapture.domain.identity.resolver import Conflict, Key, Known, Observed, PersonSummary, Plan, plan_resolution


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkContext:
    """Why the links of one event exist: the evidence stored beside each of them."""

    event_id: int
    shop: str
    observed_at: datetime
    rule: str
    confidence: float = 1.0


class IdentityGraph(Protocol):
    def key(self, shop: str, identifier: Identifier) -> Key: ...

    def neighbourhood(
        self, shop: str, keys: Sequence[Key], now: datetime, policy: IdentityPolicy
    ) -> tuple[dict[Key, Known], dict[int, PersonSummary]]: ...

    def apply(self, plan: Plan, values: Mapping[Key, Identifier], context: LinkContext) -> int | None:
        """Carry out the plan; returns the person the event belongs to (None: the event had no identifiers)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    person: int | None
    identified: bool
    conflicts: tuple[Conflict, ...] = ()
    blocked: int = 0


# Klaviyo's cookie remembers who used the browser before: matched as what it names, but only as a hint.
COOKIE_HINTS = {
    IdentifierType.KLAVIYO_KNOWN_EMAIL: IdentifierType.EMAIL,
    IdentifierType.KLAVIYO_COOKIE_EXCHANGE_ID: IdentifierType.KLAVIYO_EXCHANGE_ID,
}


def identity_identifiers(
    identifiers: Sequence[Identifier], shared_device: bool = False
) -> tuple[list[Identifier], set[Identifier]]:
    """The identifiers that take part in stitching, and which of them are hints.

    On a device of a shared kind (a tablet) neither the device id nor its cookie says who is there: both are left out.
    """
    usable: list[Identifier] = []
    hints: set[Identifier] = set()
    direct = {i for i in identifiers if i.type not in COOKIE_HINTS}
    for identifier in identifiers:
        if shared_device and (identifier.type in COOKIE_HINTS or identifier.type is IdentifierType.CLIENT_ID):
            continue
        if identifier.type in COOKIE_HINTS:
            identifier = Identifier(type=COOKIE_HINTS[identifier.type], value=identifier.value)
            if identifier not in direct:
                hints.add(identifier)
        if identifier not in usable:
            usable.append(identifier)
    return usable, hints


class IdentityResolver:
    def __init__(self, graph: IdentityGraph, policy_for: Callable[[str], IdentityPolicy]) -> None:
        self._graph = graph
        self._policy_for = policy_for

    def resolve(self, event: PendingEvent) -> Resolution:
        policy = self._policy_for(event.shop)
        shared_kind = policy.tablets_are_shared and event.device is not None and is_tablet(event.device.user_agent)
        candidates, hints = identity_identifiers(event.identifiers, shared_kind)
        allowed = [i for i in candidates if not policy.is_blocked(i.type, i.value)]
        values = {self._graph.key(event.shop, i): i for i in allowed}
        known, persons = self._graph.neighbourhood(event.shop, list(values), event.occurred_at, policy)
        observed = [Observed(type=i.type, key=k, hint=i in hints) for k, i in values.items()]
        plan = plan_resolution(observed, known, persons, event.occurred_at, policy)
        context = LinkContext(
            event_id=event.id, shop=event.shop, observed_at=event.occurred_at, rule=f"deterministic:{event.kind.value}"
        )
        changes = plan.person is not None or plan.attach or plan.merges or plan.move
        person = self._graph.apply(plan, values, context) if values and changes else None
        return Resolution(
            person=person, identified=plan.identified, conflicts=tuple(plan.conflicts),
            blocked=len(candidates) - len(allowed),
        )
