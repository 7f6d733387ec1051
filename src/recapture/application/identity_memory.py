"""An identity graph in memory: the reference semantics, for unit and property tests (no database)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from recapture.application.identity import LinkContext
from recapture.domain.events import Identifier, IdentifierType
from recapture.domain.identity.policy import DISTINCT_PERSON_TYPES, IdentityPolicy
from recapture.domain.identity.resolver import Key, Known, PersonSummary, Plan


@dataclass(slots=True)
class _Entry:
    type: IdentifierType
    value: str
    person: int
    last_seen: datetime
    shared: bool = False


@dataclass(slots=True)
class _Person:
    identified_at: datetime | None = None
    merged_into: int | None = None


@dataclass(slots=True)
class InMemoryIdentityGraph:
    entries: dict[Key, _Entry] = field(default_factory=dict)
    persons: dict[int, _Person] = field(default_factory=dict)
    evidence: list[tuple[str, int, LinkContext]] = field(default_factory=list)

    def key(self, shop: str, identifier: Identifier) -> Key:
        return hashlib.sha256(f"{shop}\x1f{identifier.type.value}\x1f{identifier.value}".encode()).digest()

    def find(self, person: int) -> int:
        while (parent := self.persons[person].merged_into) is not None:
            person = parent
        return person

    def members(self, person: int) -> list[_Entry]:
        return [e for e in self.entries.values() if e.person == person]

    def neighbourhood(
        self, shop: str, keys: Sequence[Key], now: datetime, policy: IdentityPolicy
    ) -> tuple[dict[Key, Known], dict[int, PersonSummary]]:
        known = {
            k: Known(type=e.type, key=k, person=e.person, last_seen=e.last_seen, shared=e.shared)
            for k in keys if (e := self.entries.get(k)) is not None
        }
        persons = {p: self._summary(p, now, policy) for p in {k.person for k in known.values()}}
        return known, persons

    def _summary(self, person: int, now: datetime, policy: IdentityPolicy) -> PersonSummary:
        members = [(k, e) for k, e in self.entries.items() if e.person == person]
        distinct: dict[IdentifierType, set[Key]] = {}
        counts: dict[IdentifierType, int] = {}
        for key, entry in members:
            if entry.type in DISTINCT_PERSON_TYPES:
                distinct.setdefault(entry.type, set()).add(key)
            if now - entry.last_seen <= policy.limit_window:
                counts[entry.type] = counts.get(entry.type, 0) + 1
        return PersonSummary(
            id=person, distinct={t: frozenset(v) for t, v in distinct.items()}, recent_counts=counts,
            size=len(members), identified_at=self.persons[person].identified_at,
        )

    def apply(self, plan: Plan, values: Mapping[Key, Identifier], context: LinkContext) -> int | None:
        person = plan.person
        if person is None:
            person = len(self.persons) + 1
            self.persons[person] = _Person()
        for absorbed in plan.merges:
            for entry in self.entries.values():
                if entry.person == absorbed:
                    entry.person = person
            self.persons[absorbed].merged_into = person
            self.evidence.append(("merge", absorbed, context))
        for known in plan.move:
            self.entries[known.key].person = person
            self.entries[known.key].last_seen = context.observed_at
            self.entries[known.key].shared = True
            self.evidence.append(("move", known.person, context))
        for known in plan.refresh:
            entry = self.entries[known.key]
            entry.last_seen = max(entry.last_seen, context.observed_at)
        for observed in plan.attach:
            identifier = values[observed.key]
            self.entries[observed.key] = _Entry(identifier.type, identifier.value, person, context.observed_at)
            self.evidence.append(("attach", person, context))
        if plan.identified:
            self.persons[person].identified_at = context.observed_at
        return person
