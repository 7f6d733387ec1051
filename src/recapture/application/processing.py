"""The processing queue: stored events are worked through in order after they were acknowledged."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from recapture.application.identity import IdentityResolver
from recapture.application.ports import Clock, ErasureReport, EventStore, PendingEvent
from recapture.application.reidentify import DeviceMatcher
from recapture.domain.events import PRIVACY_KINDS, EventKind, Identifier, IdentifierType
from recapture.domain.masking import scrub_contacts

# Identifiers a privacy request names the customer by.
NAMING_TYPES = frozenset({IdentifierType.SHOPIFY_CUSTOMER_ID, IdentifierType.EMAIL, IdentifierType.PHONE})


class SessionTracker(Protocol):
    def track(self, event: PendingEvent, person: int | None) -> None: ...


class PersonRecords(Protocol):
    def assign_events(self, assignments: Sequence[tuple[int, int]]) -> None: ...

    def persons_holding(self, shop: str, held: Sequence[Identifier]) -> list[int]: ...

    def erase_persons(self, shop: str, person_ids: Sequence[int]) -> dict[str, int]: ...

    def erase_shop(self, shop: str) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessingResult:
    processed: int
    erasures: int = 0
    identified: int = 0
    conflicts: Counter[str] = field(default_factory=Counter)
    blocked: int = 0
    probabilistic_links: int = 0
    # Events that failed on their own (isolated from their batch) and were set aside, with why.
    failures: tuple[tuple[int, str], ...] = ()


class EventProcessor:
    """Resolves identity and handles privacy requests, off the request path (Shopify wants 2xx within 5 s).

    One batch is one transaction: its identity changes, attributions and `processed` marks commit together,
    so a crash replays the batch instead of leaving half of it applied.
    """

    def __init__(
        self,
        store: EventStore,
        clock: Clock,
        resolver: IdentityResolver,
        people: PersonRecords,
        unit_of_work: Callable[[], AbstractContextManager[object]],
        matcher: DeviceMatcher | None = None,
        tracker: SessionTracker | None = None,
        batch_size: int = 200,
    ) -> None:
        self._matcher = matcher
        self._tracker = tracker
        self._store = store
        self._clock = clock
        self._resolver = resolver
        self._people = people
        self._unit_of_work = unit_of_work
        self._batch_size = batch_size

    def run_once(self, limit: int | None = None) -> ProcessingResult:
        """Work off up to `limit` (default: the batch size) of the oldest unprocessed events in one transaction."""
        pending = self._store.pending(limit or self._batch_size)
        if not pending:
            return ProcessingResult(processed=0)
        try:
            with self._unit_of_work():
                return self._process(pending)
        except Exception:
            # One bad event must not wedge the queue (and, with it, every abandonment decision): the batch is rolled
            # back and its events are tried one by one; an event that fails alone is set aside with its error.
            return self._process_one_by_one(pending)

    def _process_one_by_one(self, pending: Sequence[PendingEvent]) -> ProcessingResult:
        results: list[ProcessingResult] = []
        failures: list[tuple[int, str]] = []
        for event in pending:
            try:
                with self._unit_of_work():
                    results.append(self._process([event]))
            except Exception as error:
                reason = f"{type(error).__name__}: {scrub_contacts(str(error))}"[:500]
                with self._unit_of_work():
                    self._store.set_aside(event.id, self._clock.now(), reason)
                failures.append((event.id, reason))
        return ProcessingResult(
            processed=sum(r.processed for r in results), erasures=sum(r.erasures for r in results),
            identified=sum(r.identified for r in results), conflicts=sum((r.conflicts for r in results), Counter()),
            blocked=sum(r.blocked for r in results),
            probabilistic_links=sum(r.probabilistic_links for r in results), failures=tuple(failures),
        )

    def _process(self, pending: Sequence[PendingEvent]) -> ProcessingResult:
        conflicts: Counter[str] = Counter()
        identified = blocked = erasures = guesses = 0
        assignments: list[tuple[int, int]] = []
        for event in pending:
            if event.kind in PRIVACY_KINDS:
                erasures += self._handle_privacy(event)
                continue
            resolution = self._resolver.resolve(event)
            if resolution.person is not None:
                assignments.append((event.id, resolution.person))
                if self._matcher is not None and self._matcher.observe(event, resolution.person) is not None:
                    guesses += 1
            if self._tracker is not None:
                self._tracker.track(event, resolution.person)
            identified += resolution.identified
            blocked += resolution.blocked
            conflicts.update(c.kind.value for c in resolution.conflicts)
        self._people.assign_events(assignments)
        self._store.mark_processed([e.id for e in pending], self._clock.now())
        return ProcessingResult(
            processed=len(pending), erasures=erasures, identified=identified, conflicts=conflicts, blocked=blocked,
            probabilistic_links=guesses,
        )

    def _handle_privacy(self, event: PendingEvent) -> int:
        if event.kind is EventKind.PRIVACY_SHOP_REDACT:
            outcome = {**self._people.erase_shop(event.shop), **_counts(self._store.erase_shop(event.shop))}
        elif event.kind is EventKind.PRIVACY_CUSTOMER_REDACT:
            outcome = self.erase_customer(event.shop, event.identifiers)
        else:
            # A data request is recorded for the merchant; recapture holds nothing Shopify does not already hold.
            self._record(event, {"identifiers": len(event.identifiers)})
            return 0
        self._record(event, outcome)
        return 1

    def erase_customer(self, shop: str, identifiers: Sequence[Identifier]) -> dict[str, int]:
        """Everything of the customer: their persons (with every device and event), then any unresolved event."""
        naming = [i for i in identifiers if i.type in NAMING_TYPES]
        people = self._people.erase_persons(shop, self._people.persons_holding(shop, naming))
        unresolved = self._store.erase_customer(shop, naming)
        return {
            "persons": people["persons"], "identifiers": people["identifiers"] + unresolved.identifiers,
            "links": people["links"], "events": people["events"] + unresolved.events,
        }

    def erase_on_request(self, shop: str, identifiers: Sequence[Identifier]) -> dict[str, int]:
        """An operator's erasure (`recapture erase`): the same as customers/redact, recorded likewise."""
        with self._unit_of_work():
            outcome = self.erase_customer(shop, identifiers)
            now = self._clock.now()
            self._store.record_privacy_request(shop, EventKind.PRIVACY_CUSTOMER_REDACT, None, now, now, outcome)
        return outcome

    def _record(self, event: PendingEvent, outcome: dict[str, int]) -> None:
        self._store.record_privacy_request(
            event.shop, event.kind, event.id, event.occurred_at, self._clock.now(), outcome
        )


def _counts(report: ErasureReport) -> dict[str, int]:
    return {"events": report.events, "event_identifiers": report.identifiers}
