"""The ports the application needs; adapters implement them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from recapture.domain.events import EMPTY_COMMERCE, CanonicalEvent, Commerce, Consent, Device, EventKind, Identifier
from recapture.domain.profile_facts import ProfileFacts


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingEvent:
    id: int
    shop: str
    kind: EventKind
    occurred_at: datetime
    identifiers: tuple[Identifier, ...]
    device: Device | None = None
    commerce: Commerce = EMPTY_COMMERCE
    consent: Consent | None = None
    page_url: str | None = None
    source: str = ""
    profile: ProfileFacts | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventCounts:
    stored: int
    processed: int
    pending: int
    set_aside: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ErasureReport:
    events: int = 0
    identifiers: int = 0
    details: dict[str, int] = field(default_factory=dict)


class EventStore(Protocol):
    def store(self, events: Sequence[CanonicalEvent]) -> list[bool]:
        """Persist and commit; True for each event stored, False for a duplicate of one stored before."""
        ...

    def pending(self, limit: int) -> list[PendingEvent]: ...

    def mark_processed(self, ids: Sequence[int], at: datetime) -> None: ...

    def set_aside(self, event_id: int, at: datetime, reason: str) -> None:
        """Take an event that cannot be processed out of the queue, keeping it and the reason."""
        ...

    def counts(self) -> EventCounts: ...

    def erase_customer(self, shop: str, identifiers: Sequence[Identifier]) -> ErasureReport: ...

    def erase_shop(self, shop: str) -> ErasureReport: ...

    def record_privacy_request(
        self, shop: str, kind: EventKind, event_id: int | None, requested_at: datetime, completed_at: datetime,
        outcome: dict[str, int],
    ) -> None: ...
