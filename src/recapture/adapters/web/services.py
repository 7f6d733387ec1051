"""What the dashboard reads and does, as the wiring hands it over; every contact value in here is already masked."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from recapture.application.ports import Clock
from recapture.domain.delivery import health_colour

# (shop, since, until, period "day" | "week") -> the gap report's JSON document (docs/report.md).
GapReport = Callable[[str, datetime, datetime, str], Mapping[str, Any]]
# (now, shop or None for all shops, one delivery id or None for all) -> how many dead letters were queued again:
# the code of `recapture deliveries retry`.
RetryDead = Callable[[datetime, str | None, int | None], int]


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationHealth:
    destination: str
    delivered: int = 0
    pending: int = 0
    # Pending deliveries that failed at least once and wait for their next attempt.
    failing: int = 0
    # Of those, the ones held back by a rate limit (Klaviyo's 429 or our own pacing).
    throttled: int = 0
    dead: int = 0
    oldest_pending_seconds: float = 0.0
    last_error: str | None = None

    @property
    def health(self) -> str:
        """The colour rule of `recapture deliveries status`."""
        return health_colour(self.dead, self.oldest_pending_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    id: int
    destination: str
    metric: str
    attempts: int
    created_at: datetime
    last_error: str
    recipient: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedEvent:
    id: int
    occurred_at: datetime
    name: str
    source: str
    person: int | None
    person_label: str
    resolution: str
    rule: str
    confidence: float | None


class DashboardReadModel(Protocol):
    def destinations(self, shop: str, configured: Sequence[str], now: datetime) -> list[DestinationHealth]: ...

    def dead_letters(self, shop: str, limit: int) -> tuple[list[DeadLetter], int]:
        """The newest dead letters of the shop and how many there are in all."""
        ...

    def recent_events(self, shop: str, limit: int) -> list[ResolvedEvent]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DashboardServices:
    read_model: DashboardReadModel
    retry_dead: RetryDead
    clock: Clock
    gap_report: GapReport | None = None
