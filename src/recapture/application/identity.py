"""Resolving events to persons: blocked values out, the neighbourhood in, a plan applied."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from recapture.application.ports import PendingEvent
from recapture.domain.events import Identifier, IdentifierType
from recapture.domain.identity.policy import IdentityPolicy
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


def identity_identifiers(identifiers: Sequence[Identifier]) -> tuple[list[Identifier], set[Identifier]]:
    """The identifiers that take part in stitching, and which of them are hints.

    Klaviyo's cookie email is matched as an email, but as a hint: it tells who used the browser before.
    """
    usable: list[Identifier] = []
    hints: set[Identifier] = set()
    typed = {i for i in identifiers if i.type is not IdentifierType.KLAVIYO_KNOWN_EMAIL}
    for identifier in identifiers:
        if identifier.type is IdentifierType.KLAVIYO_KNOWN_EMAIL:
            identifier = Identifier(type=IdentifierType.EMAIL, value=identifier.value)
            if identifier not in typed:
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
        candidates, hints = identity_identifiers(event.identifiers)
        allowed = [i for i in candidates if not policy.is_blocked(i.type, i.value)]
        values = {self._graph.key(event.shop, i): i for i in allowed}
        known, persons = self._graph.neighbourhood(event.shop, list(values), event.occurred_at, policy)
        observed = [Observed(type=i.type, key=k, hint=i in hints) for k, i in values.items()]
        plan = plan_resolution(observed, known, persons, event.occurred_at, policy)
        context = LinkContext(
            event_id=event.id, shop=event.shop, observed_at=event.occurred_at, rule=f"{event.kind.value}"
        )
        person = self._graph.apply(plan, values, context) if values else None
        return Resolution(
            person=person, identified=plan.identified, conflicts=tuple(plan.conflicts),
            blocked=len(candidates) - len(allowed),
        )
