"""Joining what recapture attributed to the ground truth: identified sessions, the oracle, recall, precision.

Definitions (docs/accuracy.md explains them at length):

- A *session* is one generated visit; its events are its pixel events (webhooks are counted as events, not
  sessions).
- Klaviyo identifies a session natively when one of its envelopes carries an identified `__kla_id` cookie
  (`$email` or `$exchange_id`; an anonymous cookie with only `cid` does not count).
- Each attributed event gets one *outcome*: `unattributed` (no person), `anonymous` (a person without email or
  phone), or, for a reachable person, by the true owners of the contacts that person holds: `correct` (only the
  event's true person), `wrong_person` (only other people), `mixed` (the true person and others: a wrong merge),
  `unverified` (the contacts could not be read back).
- recapture identifies a session when one of its events is attributed to a reachable person; it identifies it
  *correctly* when at least one event is `correct` and none is `wrong_person` or `mixed`.
- The *oracle*: a session is deterministically identifiable when its true person owns an email, phone, Shopify
  customer id or Klaviyo exchange id that is connected to the session's clientId through identifiers the store
  actually received (acknowledged events: same clientId, cart or checkout token, order id, `_kx`, email, phone,
  customer id), at any time up to the end of the simulation. `oracle_contact` leaves the exchange id out (recapture's
  `reachable` means an email or phone).
- recall = sessions identified correctly among oracle sessions / oracle sessions.
- Precision of person links, pairwise: over all pairs of events put in one person, the share whose true persons
  are the same. Also reported per event: the share of events whose true person is their cluster's majority.
- Wrong-person rate = (`wrong_person` + `mixed`) / reachable attributions: an email for that event could reach
  someone else.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from recapture.domain.events import IdentifierType
from recapture.domain.masking import masked as masked_value
from recapture.simulation.driver import Attributed, Observed, PersonRecord
from recapture.simulation.gap import StageComparison, compare, render_comparison
from recapture.simulation.journeys import EMAIL, EXCHANGE_ID, PHONE, PIXEL, Simulation, TrueEvent
from recapture.simulation.truth import NAMING_CONTACT, Oracle, StageTruth, abandonment_truth

REACHABLE_OUTCOMES = ("correct", "wrong_person", "mixed", "unverified")
OUTCOMES = ("unattributed", "anonymous", *REACHABLE_OUTCOMES)

# The targets the identity resolution must meet.
TARGET_WRONG_PERSON = 0.0005
TARGET_PRECISION = 0.999
TARGET_RECALL = 0.95


def masked(kind: str, value: str) -> str:
    """What the admin API shows of a contact value, so held contacts can be matched to candidates."""
    return masked_value(IdentifierType(kind), value)


@dataclass(frozen=True, slots=True, kw_only=True)
class BrowserRow:
    browser: str
    sessions: int
    klaviyo: int
    recapture: int
    recapture_correct: int
    oracle: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    seed: int
    visitors: int
    days: float
    start: str
    # events
    events: int
    pixel_events: int
    webhook_events: int
    acknowledged: int
    rejected: dict[str, int]
    attributed: int
    missing: int  # acknowledged events absent from /admin/attributions
    outcomes: dict[str, int]
    # sessions
    sessions: int
    klaviyo_sessions: int
    klaviyo_wrong_sessions: int  # Klaviyo's cookie named someone else (a shared device)
    recapture_sessions: int
    recapture_correct_sessions: int
    recapture_wrong_sessions: int
    added_sessions: int  # identified correctly by recapture and not by Klaviyo's cookie
    klaviyo_rate: float
    recapture_rate: float
    lift: float | None  # recapture_rate / klaviyo_rate - 1
    oracle_sessions: int
    oracle_contact_sessions: int
    recall: float | None
    recall_contact: float | None
    misses: dict[str, int]
    # links
    linked_pairs: int
    pair_precision: float | None
    reachable_pair_precision: float | None  # the same over persons with an email or phone only
    event_precision: float | None
    merged_people: int  # clusters holding events of more than one true person
    reachable_events: int
    wrong_person_events: int
    wrong_person_rate: float | None
    # Why: own_identity_overruled (the event named its own person, by email, phone or customer id, and still went
    # to someone else), foreign_klaviyo_cookie (Klaviyo's cookie on the envelope named another user of the
    # browser), shared_device (a browser several people use), other.
    wrong_person_causes: dict[str, int]
    # The waterfall: recapture's flows only send for sessions Klaviyo's cookie missed. Wrong-person attributions
    # there are the deliveries recapture itself would add to the wrong person.
    backup_reachable_events: int
    backup_wrong_person_events: int
    backup_wrong_person_rate: float | None
    ambiguous_contacts: int
    probabilistic: dict[str, Any] | None
    by_browser: list[BrowserRow]
    targets: dict[str, dict[str, Any]]
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: float = 0.0
    # Abandonments: the truth per stage, and beside it recapture's gap report for the simulated range (None when
    # the service has no GET /admin/report).
    abandonment_truth: dict[str, StageTruth] = field(default_factory=dict)
    report_range: dict[str, str] | None = None
    truth_vs_report: list[StageComparison] | None = None

    def to_json(self) -> str:
        document = asdict(self)
        if self.truth_vs_report is not None:
            document["truth_vs_report"] = [row.as_json() for row in self.truth_vs_report]
        return json.dumps(document, indent=2, sort_keys=False)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _held_contacts(
    record: PersonRecord, by_source_id: Mapping[str, TrueEvent], attributed_to: Iterable[TrueEvent],
) -> tuple[set[tuple[str, str]], int]:
    """The true contact values a person holds: masked values read back, matched to what its events carried."""
    sources = [by_source_id[s] for s in record.attached_by if s in by_source_id] or list(attributed_to)
    candidates = {(k, v) for event in sources for k, v in event.identifiers if k in (EMAIL, PHONE, EXCHANGE_ID)}
    shown = Counter(record.contacts)
    held: set[tuple[str, str]] = set()
    ambiguous = 0
    by_mask: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for kind, value in candidates:
        by_mask[(kind, masked(kind, value))].append((kind, value))
    for mask, values in by_mask.items():
        if shown[mask] == 0:
            continue
        held.update(values)  # when two candidates share a mask, both count as held (the cautious reading)
        if len(values) > shown[mask]:
            ambiguous += 1
    return held, ambiguous


def build_report(simulation: Simulation, observed: Observed) -> Report:
    events = simulation.events
    owners = simulation.owners()
    by_source_id = {e.source_event_id: e for e in events.values()}
    attributions = observed.attributions

    # -- contacts held by each reachable person, and who truly owns them ------------------------------------------
    members: dict[int, list[TrueEvent]] = defaultdict(list)
    for key, attributed in attributions.items():
        if attributed.person is not None:
            members[attributed.person].append(events[key])
    holders: dict[int, set[int]] = {}
    ambiguous = 0
    for person, record in observed.persons.items():
        held, unclear = _held_contacts(record, by_source_id, members.get(person, []))
        ambiguous += unclear
        holders[person] = {owners[c] for c in held if c in owners}

    def outcome(attributed: Attributed | None, truth: int) -> str:
        if attributed is None or attributed.person is None:
            return "unattributed"
        if not attributed.reachable:
            return "anonymous"
        owned = holders.get(attributed.person)
        if not owned:
            return "unverified"
        if owned == {truth}:
            return "correct"
        return "mixed" if truth in owned else "wrong_person"

    event_outcome = {key: outcome(attributions.get(key), event.person) for key, event in events.items()
                     if key in attributions}
    outcomes = Counter(event_outcome.values())
    shared = {s.id for s in simulation.sessions if s.client_id in
              {b.client_id for b in simulation.browsers if len(b.users) > 1}}
    causes = Counter(
        _wrong_cause(events[key], owners, shared) for key, result in event_outcome.items()
        if result in ("wrong_person", "mixed")
    )

    oracle = Oracle.of(simulation, observed.acknowledged)

    # -- sessions ------------------------------------------------------------------------------------------------
    counts: Counter[str] = Counter()
    misses: Counter[str] = Counter()
    browsers: dict[str, Counter[str]] = defaultdict(Counter)
    examples: dict[str, list[dict[str, Any]]] = {"wrong_person": [], "missed": []}
    for session in simulation.sessions:
        keys = [k for k in session.events if k in observed.acknowledged]
        results = [event_outcome.get(k, "unattributed") for k in keys]
        klaviyo = any(events[k].klaviyo_person is not None for k in session.events)
        klaviyo_wrong = any(events[k].klaviyo_person not in (None, session.person) for k in session.events)
        wrong = any(r in ("wrong_person", "mixed") for r in results)
        identified = any(r in REACHABLE_OUTCOMES for r in results)
        correct = not wrong and "correct" in results
        in_oracle = bool(keys) and oracle.identifies(session.client_id, session.person)
        in_contact_oracle = bool(keys) and oracle.identifies(session.client_id, session.person, contact=True)
        if not klaviyo:
            counts["backup_reachable"] += sum(r in REACHABLE_OUTCOMES for r in results)
            counts["backup_wrong"] += sum(r in ("wrong_person", "mixed") for r in results)
            counts["backup_correct"] += sum(r == "correct" for r in results)
        counts.update({
            "sessions": 1, "klaviyo": klaviyo, "klaviyo_wrong": klaviyo_wrong, "recapture": identified,
            "correct": correct, "wrong": wrong, "added": correct and not klaviyo, "oracle": in_oracle,
            "oracle_contact": in_contact_oracle, "hit": in_oracle and correct,
            "hit_contact": in_contact_oracle and correct,
        })
        row = browsers[session.browser.value]
        row.update({"sessions": 1, "klaviyo": klaviyo, "recapture": identified, "correct": correct,
                    "oracle": in_oracle})
        if in_oracle and not correct:
            reason = ("wrong_person" if wrong else "exchange_id_only" if not in_contact_oracle
                      else "anonymous" if "anonymous" in results else "unattributed" if "unattributed" in results
                      else "unverified")
            misses[reason] += 1
            if len(examples["missed"]) < 25:
                examples["missed"].append(_describe(simulation, session.id, keys, attributions, event_outcome, holders,
                                                    reason))
        if wrong and len(examples["wrong_person"]) < 25:
            examples["wrong_person"].append(_describe(simulation, session.id, keys, attributions, event_outcome,
                                                      holders, "wrong_person"))

    # -- precision of links ----------------------------------------------------------------------------------------
    clusters: dict[int, Counter[int]] = defaultdict(Counter)
    for key, attributed in attributions.items():
        if attributed.person is not None:
            clusters[attributed.person][events[key].person] += 1
    pairs = same = majority = clustered = merged = reachable_pairs = reachable_same = 0
    examples["merged"] = []
    reachable_people = {a.person for a in attributions.values() if a.reachable and a.person is not None}
    for person, people in sorted(clusters.items()):
        size = sum(people.values())
        pairs += size * (size - 1) // 2
        same += sum(n * (n - 1) // 2 for n in people.values())
        if person in reachable_people:
            reachable_pairs += size * (size - 1) // 2
            reachable_same += sum(n * (n - 1) // 2 for n in people.values())
        majority += max(people.values())
        clustered += size
        merged += len(people) > 1
        if len(people) > 1 and len(examples["merged"]) < 25:
            examples["merged"].append(_describe_cluster(simulation, person, people, members[person], holders))

    # -- probabilistic guesses (a later field of /admin/attributions) ----------------------------------------------
    probabilistic = None
    guesses = [(key, a) for key, a in attributions.items() if a.probable_person is not None]
    if guesses:
        right = 0
        networks: Counter[str] = Counter()
        examples["probabilistic"] = []
        for key, attributed in guesses:
            assert attributed.probable_person is not None
            event = events[key]
            owned = holders.get(attributed.probable_person)
            cluster = clusters.get(attributed.probable_person)
            guessed = owned if owned else ({cluster.most_common(1)[0][0]} if cluster else set())
            right += guessed == {event.person}
            visit = simulation.sessions[event.session] if event.session is not None else None
            network = visit.network if visit else "unknown"
            networks[f"{network}:{'right' if guessed == {event.person} else 'wrong'}"] += 1
            if len(examples["probabilistic"]) < 25 and all(
                    (x["anonymous_person"], x["probable_person"]) != (attributed.person, attributed.probable_person)
                    for x in examples["probabilistic"]):
                examples["probabilistic"].append({
                    "event": event.source_event_id, "name": event.name, "true_person": event.person,
                    "browser": visit.browser.value if visit else None, "network": network,
                    "ip": visit.ip if visit else None, "anonymous_person": attributed.person,
                    "probable_person": attributed.probable_person, "probable_is": sorted(guessed),
                })
        links = {(a.person, a.probable_person): events[k].person for k, a in guesses}
        links_right = sum(
            (holders.get(guess) or ({clusters[guess].most_common(1)[0][0]} if guess in clusters else set())) == {truth}
            for (_, guess), truth in links.items() if guess is not None
        )
        probabilistic = {"events": len(guesses), "correct": right, "precision": right / len(guesses),
                         "links": len(links), "links_correct": links_right, "by_network": dict(networks)}

    reachable = sum(outcomes[o] for o in REACHABLE_OUTCOMES)
    wrong_events = outcomes["wrong_person"] + outcomes["mixed"]
    sessions = counts["sessions"]
    klaviyo_rate = counts["klaviyo"] / sessions if sessions else 0.0
    recapture_rate = counts["recapture"] / sessions if sessions else 0.0
    recall = _ratio(counts["hit"], counts["oracle"])
    pair_precision = same / pairs if pairs else None
    wrong_rate = _ratio(wrong_events, reachable)
    # The targets are about what recapture delivers on: reachable attributions in sessions Klaviyo did not identify
    # (Klaviyo-identified sessions are left to the native flows). The all-sessions figures are reported beside.
    delivery_wrong = _ratio(counts["backup_wrong"], counts["backup_reachable"])
    delivery_precision = _ratio(counts["backup_correct"], counts["backup_correct"] + counts["backup_wrong"])
    targets = {
        "delivery_wrong_person_rate": {"target": f"<= {TARGET_WRONG_PERSON:.2%}", "value": delivery_wrong,
                                       "pass": delivery_wrong is not None and delivery_wrong <= TARGET_WRONG_PERSON},
        "delivery_link_precision": {"target": f">= {TARGET_PRECISION:.1%}", "value": delivery_precision,
                                    "pass": delivery_precision is not None and delivery_precision >= TARGET_PRECISION},
        "recall": {"target": f">= {TARGET_RECALL:.0%} of the oracle", "value": recall,
                   "pass": recall is not None and recall >= TARGET_RECALL},
    }
    pixel_events = sum(e.source == PIXEL for e in events.values())
    return Report(
        seed=simulation.seed, visitors=len(simulation.persons),
        days=(simulation.end - simulation.start).total_seconds() / 86400, start=simulation.start.isoformat(),
        events=len(events), pixel_events=pixel_events, webhook_events=len(events) - pixel_events,
        acknowledged=len(observed.acknowledged), rejected=dict(Counter(observed.rejected.values())),
        attributed=len(event_outcome), missing=len(observed.acknowledged - set(attributions)),
        outcomes={name: outcomes[name] for name in OUTCOMES},
        sessions=sessions, klaviyo_sessions=counts["klaviyo"], klaviyo_wrong_sessions=counts["klaviyo_wrong"],
        recapture_sessions=counts["recapture"], recapture_correct_sessions=counts["correct"],
        recapture_wrong_sessions=counts["wrong"], added_sessions=counts["added"],
        klaviyo_rate=klaviyo_rate, recapture_rate=recapture_rate,
        lift=recapture_rate / klaviyo_rate - 1 if klaviyo_rate else None,
        oracle_sessions=counts["oracle"], oracle_contact_sessions=counts["oracle_contact"], recall=recall,
        recall_contact=_ratio(counts["hit_contact"], counts["oracle_contact"]), misses=dict(misses),
        linked_pairs=pairs, pair_precision=pair_precision,
        reachable_pair_precision=_ratio(reachable_same, reachable_pairs), event_precision=_ratio(majority, clustered),
        merged_people=merged, reachable_events=reachable, wrong_person_events=wrong_events,
        wrong_person_rate=wrong_rate, wrong_person_causes=dict(causes),
        backup_reachable_events=counts["backup_reachable"],
        backup_wrong_person_events=counts["backup_wrong"],
        backup_wrong_person_rate=_ratio(counts["backup_wrong"], counts["backup_reachable"]),
        ambiguous_contacts=ambiguous, probabilistic=probabilistic,
        by_browser=[
            BrowserRow(browser=name, sessions=row["sessions"], klaviyo=row["klaviyo"], recapture=row["recapture"],
                       recapture_correct=row["correct"], oracle=row["oracle"])
            for name, row in sorted(browsers.items())
        ],
        targets=targets, examples=examples, seconds=round(observed.seconds, 1),
        **_abandonments(simulation, observed),
    )


def _abandonments(simulation: Simulation, observed: Observed) -> dict[str, Any]:
    """The true abandonments per stage and, when the service reported on them, the report beside them."""
    truth = abandonment_truth(simulation, observed.acknowledged)
    gap = observed.gap_report
    if gap is None:
        return {"abandonment_truth": truth}
    return {"abandonment_truth": truth, "truth_vs_report": compare(truth, gap),
            "report_range": {"since": str(gap.get("since")), "until": str(gap.get("until"))}}


def _describe(
    simulation: Simulation, session_id: int, keys: list[str], attributions: Mapping[str, Attributed],
    outcomes: Mapping[str, str], holders: Mapping[int, set[int]], reason: str,
) -> dict[str, Any]:
    """One session, event by event, for a person to read: what happened and what recapture made of it."""
    session = simulation.sessions[session_id]
    browser = next(b for b in simulation.browsers if b.client_id == session.client_id)
    rows = []
    for key in keys:
        event = simulation.events[key]
        attributed = attributions.get(key)
        person = attributed.person if attributed else None
        rows.append({
            "event": event.source_event_id, "name": event.name, "at": event.at.isoformat(),
            "klaviyo_cookie_of": event.klaviyo_person, "person": person,
            "holds_contacts_of": sorted(holders.get(person, set())) if person is not None else [],
            "outcome": outcomes.get(key, "unattributed"),
        })
    return {
        "reason": reason, "session": session.id, "true_person": session.person, "browser": session.browser.value,
        "device_users": list(browser.users), "klaviyo_blocked": browser.klaviyo_blocked, "source": session.source.value,
        "start": session.start.isoformat(), "client_id": session.client_id, "events": rows,
    }


def _wrong_cause(event: TrueEvent, owners: Mapping[tuple[str, str], int], shared: set[int]) -> str:
    if any(owners.get(node) == event.person for node in event.identifiers if node[0] in NAMING_CONTACT):
        return "own_identity_overruled"
    if event.klaviyo_person is not None and event.klaviyo_person != event.person:
        return "foreign_klaviyo_cookie"
    if event.session in shared:  # a webhook counts with the visit (and browser) that caused it
        return "shared_device"
    return "other"


def _describe_cluster(
    simulation: Simulation, person: int, people: Counter[int], events: list[TrueEvent], holders: Mapping[int, set[int]],
) -> dict[str, Any]:
    """A person of recapture's that holds events of several true people: whose, on which browsers, by which events."""
    kinds = {b.client_id: b for b in simulation.browsers}
    truths = []
    for truth, count in people.most_common():
        own = [e for e in events if e.person == truth]
        browsers = sorted({
            f"{kinds[e.client_id].kind.value}({'shared' if len(kinds[e.client_id].users) > 1 else 'own'})"
            for e in own if e.client_id
        })
        truths.append({"true_person": truth, "events": count, "browsers": browsers,
                       "first": min(e.at for e in own).isoformat(), "kinds": dict(Counter(e.name for e in own))})
    return {"person": person, "holds_contacts_of": sorted(holders.get(person, set())), "true_people": truths}


def _percent(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def render(report: Report) -> Any:
    """The report as rich renderables (a group of tables)."""
    from rich.console import Group
    from rich.table import Table

    summary = Table(title=f"recapture accuracy — seed {report.seed}, {report.visitors} visitors, "
                          f"{report.days:g} days", show_header=True)
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    summary.add_column("note")
    rejected = sum(report.rejected.values())
    summary.add_row("events (pixel / webhook)",
                    f"{report.events} ({report.pixel_events} / {report.webhook_events})", "")
    summary.add_row("acknowledged / rejected / in attributions",
                    f"{report.acknowledged} / {rejected} / {report.attributed}",
                    f"missing from attributions: {report.missing}")
    summary.add_row("sessions", str(report.sessions), "")
    summary.add_row("Klaviyo identifies natively", f"{report.klaviyo_sessions} ({_percent(report.klaviyo_rate)})",
                    f"cookie names someone else: {report.klaviyo_wrong_sessions}")
    summary.add_row("recapture identifies (reachable)",
                    f"{report.recapture_sessions} ({_percent(report.recapture_rate)})",
                    f"correctly: {report.recapture_correct_sessions}, wrong person: {report.recapture_wrong_sessions}")
    summary.add_row("lift over Klaviyo", _percent(report.lift), f"sessions added: {report.added_sessions}")
    summary.add_row("oracle-identifiable sessions", str(report.oracle_sessions),
                    f"by email/phone/customer id only: {report.oracle_contact_sessions}")
    summary.add_row("recall of the oracle", _percent(report.recall),
                    f"of the contact oracle: {_percent(report.recall_contact)}")
    summary.add_row("precision of links (pairs)", _percent(report.pair_precision, 3),
                    f"{report.linked_pairs} pairs; per event (majority): {_percent(report.event_precision, 3)}")
    summary.add_row("  over reachable persons", _percent(report.reachable_pair_precision, 3), "")
    summary.add_row("wrong-person rate", _percent(report.wrong_person_rate, 3),
                    f"{report.wrong_person_events} of {report.reachable_events} reachable attributions")
    if report.wrong_person_causes:
        summary.add_row("  causes", "", ", ".join(f"{k}: {v}" for k, v in sorted(report.wrong_person_causes.items())))
    summary.add_row("  in sessions Klaviyo missed", _percent(report.backup_wrong_person_rate, 3),
                    f"{report.backup_wrong_person_events} of {report.backup_reachable_events} (recapture's own flows)")
    if report.probabilistic:
        summary.add_row("probabilistic precision", _percent(report.probabilistic["precision"], 2),
                        f"{report.probabilistic['events']} events; links right: "
                        f"{report.probabilistic['links_correct']} of {report.probabilistic['links']}")
    outcomes = Table(title="events by outcome")
    outcomes.add_column("outcome")
    outcomes.add_column("events", justify="right")
    for name, count in report.outcomes.items():
        outcomes.add_row(name, str(count))
    misses = Table(title="oracle sessions not identified correctly")
    misses.add_column("reason")
    misses.add_column("sessions", justify="right")
    for name, count in sorted(report.misses.items(), key=lambda item: -item[1]):
        misses.add_row(name, str(count))
    browsers = Table(title="sessions by browser")
    for column in ("browser", "sessions", "Klaviyo", "recapture", "correct", "oracle"):
        browsers.add_column(column, justify="left" if column == "browser" else "right")
    for row in report.by_browser:
        browsers.add_row(row.browser, str(row.sessions), str(row.klaviyo), str(row.recapture),
                         str(row.recapture_correct), str(row.oracle))
    targets = Table(title="targets")
    for column in ("metric", "target", "value", "result"):
        targets.add_column(column)
    for name, target in report.targets.items():
        value = target["value"]
        targets.add_row(name, target["target"], _percent(value, 3),
                        "[green]pass[/green]" if target["pass"] else "[red]FAIL[/red]")
    if report.truth_vs_report is None:
        from rich.text import Text

        abandonments: Any = Text("abandonments: the service has no gap report (GET /admin/report) to compare with")
    else:
        abandonments = render_comparison(report.truth_vs_report, "abandonments: the truth beside recapture's report")
    return Group(summary, outcomes, misses, browsers, targets, abandonments)
