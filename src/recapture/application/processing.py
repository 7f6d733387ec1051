"""The processing queue: stored events are worked through in order after they were acknowledged."""

from __future__ import annotations

from dataclasses import dataclass

from recapture.application.ports import Clock, EventStore, PendingEvent
from recapture.domain.events import EventKind


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessingResult:
    processed: int
    erasures: int = 0


class EventProcessor:
    """Handles what must not run inline in a request (Shopify wants its 2xx within 5 seconds)."""

    def __init__(self, store: EventStore, clock: Clock, batch_size: int = 500) -> None:
        self._store = store
        self._clock = clock
        self._batch_size = batch_size

    def run_once(self) -> ProcessingResult:
        pending = self._store.pending(self._batch_size)
        erasures = sum(self._handle_privacy(event) for event in pending if event.kind in _PRIVACY_HANDLERS)
        self._store.mark_processed([e.id for e in pending], self._clock.now())
        return ProcessingResult(processed=len(pending), erasures=erasures)

    def _handle_privacy(self, event: PendingEvent) -> int:
        if event.kind is EventKind.PRIVACY_SHOP_REDACT:
            report = self._store.erase_shop(event.shop)
        elif event.kind is EventKind.PRIVACY_CUSTOMER_REDACT:
            report = self._store.erase_customer(event.shop, event.identifiers)
        else:
            # A data request is recorded for the merchant; recapture holds nothing Shopify does not already hold.
            self._record(event, {"identifiers": len(event.identifiers)})
            return 0
        self._record(event, {"events": report.events, "identifiers": report.identifiers, **report.details})
        return 1

    def _record(self, event: PendingEvent, outcome: dict[str, int]) -> None:
        self._store.record_privacy_request(
            event.shop, event.kind, event.id, event.occurred_at, self._clock.now(), outcome
        )


_PRIVACY_HANDLERS = frozenset(
    {EventKind.PRIVACY_DATA_REQUEST, EventKind.PRIVACY_CUSTOMER_REDACT, EventKind.PRIVACY_SHOP_REDACT}
)
