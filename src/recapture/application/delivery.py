"""The delivery worker: the outbox to the destinations, retried on transient errors, dead-lettered on terminal ones."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from recapture.application.delivery_errors import TerminalDeliveryError, TransientDeliveryError
from recapture.application.ports import Clock
from recapture.domain.delivery import Delivery, DeliveryEvent, DeliveryProfile, ProfileUpdate
from recapture.domain.retry import DEFAULT_RETRY_POLICY, RetryPolicy, next_attempt


@runtime_checkable
class BulkDestination(Protocol):
    def send_events(self, events: Sequence[DeliveryEvent]) -> None:
        """All or nothing: one request for many events (their unique_ids all differ)."""
        ...


# A backlog this large for one destination goes in bulk requests of at most BULK_SIZE events.
BULK_THRESHOLD = 20
BULK_SIZE = 100


class Destination(Protocol):
    """Each call delivers or raises TransientDeliveryError / TerminalDeliveryError."""

    def send_event(self, event: DeliveryEvent) -> None: ...
    def import_profile(self, profile: DeliveryProfile) -> str | None: ...
    def subscribe(self, profiles: Sequence[DeliveryProfile], list_id: str) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedDelivery:
    id: int
    shop: str
    destination: str
    attempts: int
    item: Delivery


class Outbox(Protocol):
    def due_deliveries(self, now: datetime, limit: int) -> Sequence[QueuedDelivery]: ...
    def mark_delivered(self, delivery_id: int, at: datetime) -> None: ...
    def mark_all_delivered(self, delivery_ids: Sequence[int], at: datetime) -> None: ...
    def reschedule(self, delivery_id: int, not_before: datetime | None, error: str) -> None: ...


class DeliveryWorker:
    def __init__(
        self, outbox: Outbox, destinations: Mapping[tuple[str, str], Destination], clock: Clock,
        policy: RetryPolicy = DEFAULT_RETRY_POLICY, rng: random.Random | None = None,
    ) -> None:
        self._outbox = outbox
        # Keyed by (shop, destination name): every shop has its own account and key.
        self._destinations = destinations
        self._clock = clock
        self._policy = policy
        self._rng = rng or random.Random()  # noqa: S311 - retry jitter, not security

    def run_once(self, limit: int = 500) -> Counter[str]:
        """Send what is due. No transaction is held open while a destination is called.

        A backlog of events for one destination that can take them in bulk (Klaviyo's event-bulk-create-jobs) goes
        in bulk requests: one request per `BULK_SIZE` events instead of one per event.
        """
        results: Counter[str] = Counter()
        single: list[QueuedDelivery] = []
        for (shop, name), group in _event_backlogs(self._outbox.due_deliveries(self._clock.now(), limit), single):
            destination = self._destinations.get((shop, name))
            if isinstance(destination, BulkDestination) and len(group) >= BULK_THRESHOLD:
                for start in range(0, len(group), BULK_SIZE):
                    results.update(self._deliver_bulk(destination, group[start : start + BULK_SIZE]))
            else:
                single.extend(group)
        for delivery in single:
            results[self._deliver(delivery)] += 1
        return results

    def _deliver_bulk(self, destination: BulkDestination, group: list[QueuedDelivery]) -> Counter[str]:
        events = [d.item for d in group if isinstance(d.item, DeliveryEvent)]
        try:
            destination.send_events(events)
        except TransientDeliveryError as error:
            return Counter(self._retry(d, error) for d in group)
        except TerminalDeliveryError:
            # One bad event fails the whole bulk request: send them one by one so only that one is dead-lettered.
            return Counter(self._deliver(d) for d in group)
        # Marked only now that Klaviyo accepted them, all in one transaction (a crash before it: a harmless re-send).
        self._outbox.mark_all_delivered([d.id for d in group], self._clock.now())
        return Counter({"delivered": len(group)})

    def _retry(self, delivery: QueuedDelivery, error: TransientDeliveryError) -> str:
        when = next_attempt(transient=True, attempts=delivery.attempts + 1, retry_after=error.retry_after,
                            now=self._clock.now(), jitter_draw=self._rng.random(), policy=self._policy)
        self._outbox.reschedule(delivery.id, when, str(error))
        return "retry" if when else "dead"

    def _deliver(self, delivery: QueuedDelivery) -> str:
        destination = self._destinations.get((delivery.shop, delivery.destination))
        if destination is None:
            self._outbox.reschedule(delivery.id, None, f"destination {delivery.destination!r} is not configured")
            return "dead"
        try:
            _send(destination, delivery.item)
        except TransientDeliveryError as error:
            return self._retry(delivery, error)
        except TerminalDeliveryError as error:
            self._outbox.reschedule(delivery.id, None, str(error))
            return "dead"
        self._outbox.mark_delivered(delivery.id, self._clock.now())
        return "delivered"


def _send(destination: Destination, item: Delivery) -> None:
    if isinstance(item, DeliveryEvent):
        destination.send_event(item)
    elif isinstance(item, ProfileUpdate):
        destination.import_profile(item.profile)
    else:
        destination.subscribe([item.profile], item.list_id)


def _event_backlogs(
    due: Sequence[QueuedDelivery], others: list[QueuedDelivery]
) -> list[tuple[tuple[str, str], list[QueuedDelivery]]]:
    """Due events grouped by (shop, destination); profiles and subscriptions go to `others`."""
    groups: dict[tuple[str, str], list[QueuedDelivery]] = {}
    for delivery in due:
        if isinstance(delivery.item, DeliveryEvent):
            groups.setdefault((delivery.shop, delivery.destination), []).append(delivery)
        else:
            others.append(delivery)
    return list(groups.items())
