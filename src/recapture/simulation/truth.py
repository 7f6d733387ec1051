"""What really happened in a simulated store, for checking recapture's answers against.

- `Oracle`: which sessions could be identified at all — a session is deterministically identifiable when its
  true person owns an email, phone, Shopify customer id or Klaviyo exchange id connected to the session's
  clientId through identifiers the store actually received (acknowledged events: same clientId, cart or checkout
  token, order id, `_kx`, email, phone, customer id), at any time up to the end of the simulation.
- `abandonment_truth`: per stage, the abandonments the simulation generated, how many of them Klaviyo's own
  tracking knew, and how many of the others the store's data can name — what recapture's gap report
  (`GET /admin/report`) counts as seen, native and recapture-only.

The abandonment truth applies the definitions of docs/abandonment.md to the true journeys: a session is one
browser's (clientId's) pixel events until 30 minutes of inactivity, its stage the strongest it reached; it is an
abandonment unless its shopper ordered between its start and its decision (a hold window after its last
activity), or the same shopper reached a stronger stage in another session begun by then within 24 hours of it.
Klaviyo knew it when Klaviyo's cookie named someone on one of its envelopes, or an email, phone or customer login
reached Shopify's checkout (which Klaviyo's Shopify integration reports). Hold windows are the default ones.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from recapture.domain.abandonment import DEFAULT_ABANDONMENT_POLICY, AbandonmentPolicy
from recapture.domain.events import EventKind
from recapture.domain.sessions import DEFAULT_INACTIVITY, STAGE_OF, Stage
from recapture.simulation.journeys import (
    CART_TOKEN,
    CHECKOUT_TOKEN,
    CLIENT_ID,
    CUSTOMER_ID,
    EMAIL,
    EXCHANGE_ID,
    ORDER_ID,
    PHONE,
    PIXEL,
    Simulation,
    TrueEvent,
)

# Deterministic evidence: what links two events for certain (IPs, user agents and ad click ids do not).
DETERMINISTIC = frozenset({CLIENT_ID, CHECKOUT_TOKEN, CART_TOKEN, ORDER_ID, EXCHANGE_ID, EMAIL, PHONE, CUSTOMER_ID})
NAMING = frozenset({EMAIL, PHONE, CUSTOMER_ID, EXCHANGE_ID})
# Klaviyo's exchange id addresses a profile as surely as an email: a destination can reach it.
NAMING_CONTACT = frozenset({EMAIL, PHONE, CUSTOMER_ID, EXCHANGE_ID})
# What Shopify's checkout passes to Klaviyo's Shopify integration (an email typed, a phone, a logged-in customer).
SHOPIFY_TELLS_KLAVIYO = frozenset({EMAIL, PHONE, CUSTOMER_ID})
ORDERS = frozenset({"orders/create", "orders/paid", "checkout_completed"})
ALL_STAGES = "all"

Node = tuple[str, str]


class Components:
    """Union-find over identifier values."""

    def __init__(self) -> None:
        self._parent: dict[Node, Node] = {}

    def __contains__(self, node: object) -> bool:
        return node in self._parent

    def find(self, node: Node) -> Node:
        parent = self._parent.setdefault(node, node)
        root = node
        while parent != root:
            root, parent = parent, self._parent[parent]
        while node != root:  # path compression
            self._parent[node], node = root, self._parent[node]
        return root

    def union(self, nodes: Iterable[Node]) -> None:
        items = list(nodes)
        if not items:
            return
        first = self.find(items[0])
        for node in items[1:]:
            other = self.find(node)
            if other != first:
                self._parent[other] = first


@dataclass(slots=True)
class Oracle:
    """Who the acknowledged identifiers connect to each browser (see the module docstring)."""

    components: Components
    named: dict[Node, set[int]] = field(default_factory=lambda: defaultdict(set))
    named_contact: dict[Node, set[int]] = field(default_factory=lambda: defaultdict(set))

    @classmethod
    def of(cls, simulation: Simulation, acknowledged: Set[str]) -> Oracle:
        components = Components()
        for key, event in simulation.events.items():
            if key in acknowledged:
                components.union(node for node in event.identifiers if node[0] in DETERMINISTIC)
        oracle = cls(components)
        for node, owner in simulation.owners().items():
            if node[0] in NAMING and node in components:
                root = components.find(node)
                oracle.named[root].add(owner)
                if node[0] in NAMING_CONTACT:
                    oracle.named_contact[root].add(owner)
        return oracle

    def device(self, client_id: str) -> Node:
        return self.components.find((CLIENT_ID, client_id))

    def identifies(self, client_id: str, person: int, *, contact: bool = False) -> bool:
        """The browser's identifiers connect to one of the person's (contact: addressable ones only)."""
        named = self.named_contact if contact else self.named
        return person in named.get(self.device(client_id), set())


# -- abandonments ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StageTruth:
    """One stage's true sessions and what recapture should decide for them (module docstring: definitions)."""

    stage: str
    sessions: int  # sessions whose strongest stage this is (the report's `seen`)
    klaviyo_knew: int  # of those, the ones Klaviyo's own tracking saw (`native`)
    identifiable_missed: int  # the others whose shopper the store's data names (`recapture_only`)
    purchased: int  # the shopper ordered between the session's start and its decision
    stronger_stage: int  # the shopper reached a stronger stage in another session within 24 hours
    abandoned: int  # sessions - purchased - stronger_stage
    # What becomes of the abandoned ones, in the order recapture decides: Klaviyo's own flow, the shopper refused
    # marketing, recapture can send (or holds it back for the cool-down), nobody to send to.
    abandoned_native: int
    no_consent: int
    to_send: int
    unidentifiable: int


@dataclass(slots=True)
class _TrueSession:
    client_id: str
    person: int
    first: datetime
    last: datetime
    stage: Stage = Stage.SESSION
    klaviyo_knew: bool = False
    events: list[TrueEvent] = field(default_factory=list)

    def add(self, event: TrueEvent) -> None:
        self.events.append(event)
        self.last = max(self.last, event.at)
        stage = STAGE_OF.get(EventKind(event.name), Stage.SESSION) if event.name in _KINDS else Stage.SESSION
        self.stage = max(self.stage, stage)
        kinds = {kind for kind, _ in event.identifiers}
        self.klaviyo_knew = self.klaviyo_knew or event.klaviyo_person is not None or (
            stage is Stage.CHECKOUT and bool(kinds & SHOPIFY_TELLS_KLAVIYO))


_KINDS = frozenset(kind.value for kind in EventKind)


def true_sessions(simulation: Simulation, inactivity: timedelta = DEFAULT_INACTIVITY) -> list[_TrueSession]:
    """Each browser's pixel events, split at gaps longer than `inactivity` (the person of its first event)."""
    by_browser: dict[str, list[TrueEvent]] = defaultdict(list)
    for event in simulation.events.values():
        if event.source == PIXEL and event.client_id is not None:
            by_browser[event.client_id].append(event)
    sessions: list[_TrueSession] = []
    for client_id, events in by_browser.items():
        current: _TrueSession | None = None
        for event in sorted(events, key=lambda e: e.at):
            if current is None or event.at - current.last > inactivity:
                current = _TrueSession(client_id=client_id, person=event.person, first=event.at, last=event.at)
                sessions.append(current)
            current.add(event)
    return sorted(sessions, key=lambda s: s.first)


def identification_times(
    simulation: Simulation, acknowledged: Set[str], sessions: Iterable[_TrueSession],
) -> dict[tuple[str, int], tuple[datetime, datetime]]:
    """(clientId, person) -> when the browser first became connected to one of the person's addressable contacts,
    and the end of what the store was receiving then (the rest of that session, when it is a pixel event).

    The oracle over time: the same union-find over acknowledged identifiers, event by event in time order.
    """
    owners = {node: person for node, person in simulation.owners().items() if node[0] in NAMING_CONTACT}
    session_end = {event.key: session.last for session in sessions for event in session.events}
    components = Components()
    clients: dict[Node, set[str]] = {}
    people: dict[Node, set[int]] = {}
    found: dict[tuple[str, int], tuple[datetime, datetime]] = {}
    for event in sorted((e for key, e in simulation.events.items() if key in acknowledged), key=lambda e: e.at):
        nodes = [node for node in event.identifiers if node[0] in DETERMINISTIC]
        if not nodes:
            continue
        roots = {components.find(node) for node in nodes}
        components.union(nodes)
        root = components.find(nodes[0])
        joined_clients = {value for kind, value in nodes if kind == CLIENT_ID}.union(
            *(clients.pop(r, set()) for r in roots))
        joined_people = {owners[node] for node in nodes if node in owners}.union(
            *(people.pop(r, set()) for r in roots))
        clients[root], people[root] = joined_clients, joined_people
        horizon = session_end.get(event.key, event.at)
        for client in joined_clients:
            for person in joined_people:
                found.setdefault((client, person), (event.at, horizon))
    return found


def abandonment_truth(
    simulation: Simulation, acknowledged: Set[str], policy: AbandonmentPolicy = DEFAULT_ABANDONMENT_POLICY,
) -> dict[str, StageTruth]:
    """Per stage name (and "all"): the true sessions, abandonments and what Klaviyo and the store knew of them."""
    sessions = true_sessions(simulation)
    facts = _Facts(simulation, sessions, policy)
    identified = identification_times(simulation, acknowledged, sessions)
    consent = {browser.client_id: browser.consent_marketing for browser in simulation.browsers}
    tallies: dict[Stage, Counter[str]] = {stage: Counter() for stage in Stage}
    for session in sessions:
        known = identified.get((session.client_id, session.person))
        tallies[session.stage].update({
            "sessions": 1, "klaviyo_knew": int(session.klaviyo_knew),
            "identifiable_missed": int(known is not None and not session.klaviyo_knew),
            _fate(session, facts, known, consent.get(session.client_id, True)): 1,
        })
    truths = {stage.name.lower(): _stage_truth(stage.name.lower(), tally) for stage, tally in tallies.items()}
    truths[ALL_STAGES] = _stage_truth(ALL_STAGES, sum(tallies.values(), Counter()))
    return truths


class _Facts:
    """What the store knows of a shopper at a moment: orders placed, other sessions begun."""

    def __init__(self, simulation: Simulation, sessions: Iterable[_TrueSession], policy: AbandonmentPolicy) -> None:
        self.policy = policy
        self._orders: dict[int, list[datetime]] = defaultdict(list)
        for event in simulation.events.values():
            if event.name in ORDERS:
                self._orders[event.person].append(event.at)
        self._sessions: dict[int, list[_TrueSession]] = defaultdict(list)
        for session in sessions:
            self._sessions[session.person].append(session)

    def purchased(self, session: _TrueSession, by: datetime) -> bool:
        return any(session.first <= at <= by for at in self._orders[session.person])

    def stronger_stage(self, session: _TrueSession, by: datetime) -> bool:
        return _stronger_elsewhere(session, self._sessions[session.person], by, self.policy.stronger_stage_window)


def _fate(session: _TrueSession, facts: _Facts, identified: tuple[datetime, datetime] | None,
          consented: bool) -> str:
    """What recapture should decide (docs/abandonment.md): the first reason not to send, else `to_send`.

    At the end of the hold window; a shopper nobody can name yet waits (up to the lookback) and is decided again
    once identified, with what the store knows by then.
    """

    def reason_not_to_send(at: datetime) -> str | None:
        if facts.purchased(session, at):
            return "purchased"
        if facts.stronger_stage(session, at):
            return "stronger_stage"
        if session.klaviyo_knew:
            return "abandoned_native"
        return None if consented else "no_consent"

    decided_at = session.last + facts.policy.holds[session.stage]
    if reason := reason_not_to_send(decided_at):
        return reason
    if identified is None or identified[0] > session.last + facts.policy.lookback:
        return "unidentifiable"
    if identified[0] <= decided_at:
        return "to_send"
    return reason_not_to_send(max(decided_at, identified[1])) or "to_send"


def _stronger_elsewhere(session: _TrueSession, others: Iterable[_TrueSession], decided_at: datetime,
                        window: timedelta) -> bool:
    return any(
        other is not session and other.stage > session.stage and other.first <= decided_at
        and other.last >= session.last - window and other.first <= session.last + window
        for other in others
    )


def _stage_truth(stage: str, tally: Counter[str]) -> StageTruth:
    fates = ("abandoned_native", "no_consent", "to_send", "unidentifiable")
    return StageTruth(
        stage=stage, sessions=tally["sessions"], klaviyo_knew=tally["klaviyo_knew"],
        identifiable_missed=tally["identifiable_missed"], purchased=tally["purchased"],
        stronger_stage=tally["stronger_stage"], abandoned=sum(tally[fate] for fate in fates),
        abandoned_native=tally["abandoned_native"], no_consent=tally["no_consent"], to_send=tally["to_send"],
        unidentifiable=tally["unidentifiable"],
    )
