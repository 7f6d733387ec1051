"""Deciding, for one event, which person it belongs to and how the graph changes.

The graph is a union-find over persons: every identifier points at one person, and a merge re-points the
absorbed person's identifiers. This module only plans; an adapter loads the neighbourhood of the event's
identifiers (never the whole graph) and applies the plan, so resolving an event costs O(its identifiers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from recapture.domain.events import IdentifierType
from recapture.domain.identity.policy import DISTINCT_PERSON_TYPES, RANK, IdentityPolicy

Key = bytes  # an identifier's keyed hash: equal values, equal keys; the plaintext is not needed to resolve


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """One identifier of the event being resolved."""

    type: IdentifierType
    key: Key
    # A hint (the email in Klaviyo's cookie) says who used this browser before, not who is using it now: it links
    # a device to a person but never names the person of this event nor joins a second email to anyone.
    hint: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """An identifier already in the graph."""

    type: IdentifierType
    key: Key
    person: int
    last_seen: datetime
    # Seen with two different people (a family tablet, an office PC): it no longer tells who is there.
    shared: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonSummary:
    """What a merge decision needs to know about a person: its distinct identifiers and its size."""

    id: int
    distinct: Mapping[IdentifierType, frozenset[Key]]
    recent_counts: Mapping[IdentifierType, int]
    size: int
    identified_at: datetime | None


class ConflictKind(StrEnum):
    DISTINCT_PERSONS = "distinct_persons"  # both hold a different customer id / email / phone
    TYPE_LIMIT = "type_limit"              # the merge would exceed a per-type limit
    MERGE_CAP = "merge_cap"                # the event would join too many persons
    SIZE_CAP = "size_cap"                  # the person would hold too many identifiers
    BLOCKED = "blocked"                    # a placeholder value that never links


@dataclass(frozen=True, slots=True, kw_only=True)
class Conflict:
    kind: ConflictKind
    persons: tuple[int, ...]
    types: tuple[IdentifierType, ...] = ()


@dataclass(slots=True, kw_only=True)
class Plan:
    """The change to the graph. `person` None means: create a new person (it receives `attach`)."""

    person: int | None
    merges: list[int] = field(default_factory=list)      # persons absorbed into `person`
    attach: list[Observed] = field(default_factory=list)  # new (or stale) identifiers to point at `person`
    move: list[Known] = field(default_factory=list)       # identifiers re-pointed from another person
    refresh: list[Known] = field(default_factory=list)    # identifiers that stay and are seen again
    refused: list[Observed] = field(default_factory=list)  # identifiers not linked because of a conflict
    conflicts: list[Conflict] = field(default_factory=list)
    identified: bool = False                               # the event carried a person-distinguishing id


# A device or a session follows whoever used it last; ids that name a person or an order never move.
MOVABLE_TYPES = frozenset(
    {IdentifierType.CLIENT_ID, IdentifierType.ANONYMOUS_ID, IdentifierType.CART_TOKEN,
     IdentifierType.CHECKOUT_TOKEN, IdentifierType.CLICK_ID}
)
# Identifiers that make a person reachable; seeing one refreshes `identified_at`.
IDENTIFYING_TYPES = DISTINCT_PERSON_TYPES | {IdentifierType.KLAVIYO_EXCHANGE_ID}
_NEW = -1  # the pseudo-person made of the event's identifiers that the graph does not know yet


@dataclass(slots=True)
class _Group:
    person: int
    members: list[Observed | Known]
    distinct: dict[IdentifierType, set[Key]]
    counts: dict[IdentifierType, int]
    size: int
    identified_at: datetime | None
    hints: frozenset[Key] = frozenset()

    @property
    def confirmed(self) -> bool:
        """The event itself names this person (an email typed, a customer logged in; not a cookie's memory)."""
        return any(m.type in DISTINCT_PERSON_TYPES and m.key not in self.hints for m in self.members)

    @property
    def best_rank(self) -> int:
        return min(RANK.get(m.type, len(RANK)) for m in self.members)


def _usable(known: Known, now: datetime, policy: IdentityPolicy) -> bool:
    window = policy.click_id_window if known.type is IdentifierType.CLICK_ID else policy.identity_window
    return now - known.last_seen <= window


def _groups(
    observed: Sequence[Observed], known: Mapping[Key, Known], persons: Mapping[int, PersonSummary],
    now: datetime, policy: IdentityPolicy,
) -> list[_Group]:
    groups: dict[int, _Group] = {}
    hints = frozenset(o.key for o in observed if o.hint)
    # A browser's Klaviyo cookie is as shared as the browser: on a shared device it names nobody either.
    on_shared_device = any((hit := known.get(o.key)) is not None and hit.shared for o in observed)
    for item in observed:
        hit = known.get(item.key)
        if (hit is not None and hit.shared) or (item.hint and on_shared_device):
            continue  # a shared device links nobody: the event is attributed by its other identifiers
        if hit is not None and _usable(hit, now, policy) and hit.person in persons:
            summary = persons[hit.person]
            group = groups.get(hit.person)
            if group is None:
                group = groups[hit.person] = _Group(
                    hit.person, [], {t: set(v) for t, v in summary.distinct.items()},
                    dict(summary.recent_counts), summary.size, summary.identified_at, hints,
                )
            group.members.append(hit)
        else:
            fresh = groups.setdefault(_NEW, _Group(_NEW, [], {}, {}, 0, None, hints))
            fresh.members.append(item)
            if item.type in DISTINCT_PERSON_TYPES and not item.hint:
                fresh.distinct.setdefault(item.type, set()).add(item.key)
    return sorted(groups.values(), key=_anchor_order(now))


def _anchor_order(now: datetime):  # type: ignore[no-untyped-def]
    """Who the event belongs to first: a person the event names, then the most recently identified."""

    def order(group: _Group) -> tuple[int, float, int, int]:
        identified = now if group.confirmed else group.identified_at
        recency = -identified.timestamp() if identified else float("inf")
        return (0 if group.confirmed else 1, recency, group.best_rank, -group.size)

    return order


def _clashes(a: _Group, b: _Group) -> tuple[IdentifierType, ...]:
    return tuple(t for t in DISTINCT_PERSON_TYPES if a.distinct.get(t) and b.distinct.get(t)
                 and a.distinct[t] != b.distinct[t] and not (a.distinct[t] & b.distinct[t]))


def _over_limit(a: _Group, b: _Group, policy: IdentityPolicy) -> tuple[IdentifierType, ...]:
    joined = {t: a.counts.get(t, 0) + b.counts.get(t, 0) for t in set(a.counts) | set(b.counts)}
    return tuple(sorted((t for t, n in joined.items() if n > policy.limit(t)), key=lambda t: t.value))


def _absorb(anchor: _Group, other: _Group) -> None:
    for kind, keys in other.distinct.items():
        anchor.distinct.setdefault(kind, set()).update(keys)
    for kind, count in other.counts.items():
        anchor.counts[kind] = anchor.counts.get(kind, 0) + count
    anchor.size += other.size
    anchor.members.extend(other.members)


def plan_resolution(
    observed: Sequence[Observed],
    known: Mapping[Key, Known],
    persons: Mapping[int, PersonSummary],
    now: datetime,
    policy: IdentityPolicy,
) -> Plan:
    groups = _groups(observed, known, persons, now, policy)
    if not groups:
        return Plan(person=None)
    anchor, others = groups[0], groups[1:]
    plan = Plan(person=None if anchor.person == _NEW else anchor.person, identified=anchor.confirmed)
    if anchor.person == _NEW:
        _attach_fresh(plan, anchor, anchor.members, policy)
    else:
        plan.refresh.extend(m for m in anchor.members if isinstance(m, Known))
    joined = 1
    for other in others:
        if other.person == _NEW:
            _join_fresh(plan, anchor, other, policy)
            continue
        refusal = _refusal(anchor, other, joined, policy)
        if refusal is None:
            plan.merges.append(other.person)
            plan.refresh.extend(m for m in other.members if isinstance(m, Known))
            _absorb(anchor, other)
            joined += 1
        else:
            _keep_apart(plan, anchor, other, refusal)
    refused = {o.key for o in plan.refused}
    plan.identified = any(o.type in IDENTIFYING_TYPES and o.key not in refused and not o.hint for o in observed)
    if plan.person is None and plan.merges:
        # A person the graph already has survives; the event's new identifiers join it.
        plan.person = plan.merges.pop(0)
    return plan


def _refusal(anchor: _Group, other: _Group, joined: int, policy: IdentityPolicy) -> Conflict | None:
    persons = tuple(p for p in (anchor.person, other.person) if p != _NEW)
    if clash := _clashes(anchor, other):
        return Conflict(kind=ConflictKind.DISTINCT_PERSONS, persons=persons, types=clash)
    if joined + 1 > policy.max_persons_per_merge:
        return Conflict(kind=ConflictKind.MERGE_CAP, persons=persons)
    if over := _over_limit(anchor, other, policy):
        return Conflict(kind=ConflictKind.TYPE_LIMIT, persons=persons, types=over)
    if anchor.size + other.size + len(other.members) > policy.max_identifiers_per_person:
        return Conflict(kind=ConflictKind.SIZE_CAP, persons=persons)
    return None


def _join_fresh(plan: Plan, anchor: _Group, fresh: _Group, policy: IdentityPolicy) -> None:
    """New identifiers join the anchor, except a second customer id / email / phone that names someone else.

    A second email in the same event as one the anchor already holds is evidence of its own (an account email
    beside a checkout email) and joins, within the per-type limit.
    """
    named_here = {m.type for m in anchor.members if m.type in DISTINCT_PERSON_TYPES and m.key not in anchor.hints}
    if clash := tuple(t for t in _clashes(anchor, fresh) if t not in named_here):
        persons = (anchor.person,) if anchor.person != _NEW else ()
        plan.conflicts.append(Conflict(kind=ConflictKind.DISTINCT_PERSONS, persons=persons, types=clash))
        plan.refused.extend(Observed(type=m.type, key=m.key) for m in fresh.members if m.type in DISTINCT_PERSON_TYPES)
        members = [m for m in fresh.members if m.type not in DISTINCT_PERSON_TYPES]
    else:
        members = fresh.members
    _attach_fresh(plan, anchor, members, policy)
    anchor.size += len(members)


def _attach_fresh(plan: Plan, anchor: _Group, members: Sequence[Observed | Known], policy: IdentityPolicy) -> None:
    for member in sorted(members, key=lambda m: (RANK.get(m.type, len(RANK)), m.key in anchor.hints)):
        observed = Observed(type=member.type, key=member.key)
        if member.key in anchor.hints and anchor.distinct.get(member.type, set()) - {member.key}:
            plan.refused.append(observed)  # the cookie remembers someone else: not this person's second email
            continue
        count = anchor.counts.get(member.type, 0)
        if count + 1 > policy.limit(member.type):
            plan.refused.append(observed)
            persons = (anchor.person,) if anchor.person != _NEW else ()
            plan.conflicts.append(Conflict(kind=ConflictKind.TYPE_LIMIT, persons=persons, types=(member.type,)))
            continue
        anchor.counts[member.type] = anchor.counts.get(member.type, 0) + 1
        if member.type in DISTINCT_PERSON_TYPES:
            anchor.distinct.setdefault(member.type, set()).add(member.key)
        plan.attach.append(observed)


def _keep_apart(plan: Plan, anchor: _Group, other: _Group, refusal: Conflict) -> None:
    """Different people on one device: the device and session go with the person this event names.

    Only a clash of person-distinguishing identifiers moves anything; a refusal for size leaves the graph as it is.
    """
    plan.conflicts.append(refusal)
    for member in other.members:
        if refusal.kind is ConflictKind.DISTINCT_PERSONS and member.type in MOVABLE_TYPES and isinstance(member, Known):
            plan.move.append(member)
        else:
            plan.refused.append(Observed(type=member.type, key=member.key))
