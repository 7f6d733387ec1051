"""Collecting events: normalize each item, persist the good ones together, report on every item."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Protocol

import msgspec

from recapture.application.ports import Clock
from recapture.domain.events import CanonicalEvent
from recapture.domain.shopify_pixel import PixelEnvelope, RequestFacts, normalize_pixel_event
from recapture.domain.shopify_webhook import WebhookDelivery, normalize_webhook
from recapture.domain.timestamps import DEFAULT_TIMESTAMP_POLICY, TimestampPolicy


class EventWriter(Protocol):
    async def write(self, events: Sequence[CanonicalEvent]) -> list[bool]:
        """Commit the events durably; True for stored, False for a duplicate. Raises when nothing was stored."""
        ...


class ItemStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class ItemResult(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    status: ItemStatus
    id: str | None = None
    error: str | None = None
    message: str | None = None
    flags: tuple[str, ...] = ()


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """An item the edge could not read, with a machine-readable reason."""

    code: str
    message: str
    id: str | None = None


class Collector:
    def __init__(
        self,
        writer: EventWriter,
        clock: Clock,
        phone_regions: Mapping[str, str],
        policy: TimestampPolicy = DEFAULT_TIMESTAMP_POLICY,
    ) -> None:
        self._writer = writer
        self._clock = clock
        self._phone_regions = phone_regions
        self._policy = policy

    def knows_shop(self, shop: str) -> bool:
        return shop in self._phone_regions

    async def collect_pixel_events(
        self, items: Sequence[PixelEnvelope | Rejection], ip: str | None, user_agent: str | None
    ) -> list[ItemResult]:
        facts = RequestFacts(received_at=self._clock.now(), ip=ip, user_agent=user_agent)
        results: list[ItemResult | None] = []
        events: list[tuple[int, CanonicalEvent]] = []
        for index, item in enumerate(items):
            if isinstance(item, Rejection):
                results.append(_rejected(index, item))
            elif not self.knows_shop(item.shop):
                message = f"shop {item.shop!r} is not configured"
                unknown = Rejection(code="unknown_shop", message=message, id=item.event_id)
                results.append(_rejected(index, unknown))
            else:
                outcome = self._normalize(item, facts)
                if isinstance(outcome, Rejection):
                    results.append(_rejected(index, outcome))
                else:
                    events.append((index, outcome))
                    results.append(None)
        return await self._persist(results, events)

    def _normalize(self, item: PixelEnvelope, facts: RequestFacts) -> CanonicalEvent | Rejection:
        try:
            return normalize_pixel_event(
                item, facts, default_region=self._phone_regions[item.shop], policy=self._policy
            )
        except (TypeError, ValueError, AttributeError, KeyError) as error:
            # The edge checked the envelope's shape; this is a value inside `data` we could not read.
            return Rejection(code="unprocessable", message=f"{type(error).__name__}: {error}"[:300], id=item.event_id)

    async def collect_webhook(self, delivery: WebhookDelivery) -> ItemResult:
        event = normalize_webhook(
            delivery, self._clock.now(), default_region=self._phone_regions[delivery.shop], policy=self._policy
        )
        return (await self._persist([None], [(0, event)]))[0]

    async def _persist(
        self, results: list[ItemResult | None], events: list[tuple[int, CanonicalEvent]]
    ) -> list[ItemResult]:
        outcomes = await self._writer.write([e for _, e in events]) if events else []
        for (index, event), stored in zip(events, outcomes, strict=True):
            flags = () if event.timestamp_flag.value == "ok" else (f"timestamp_{event.timestamp_flag.value}",)
            status = ItemStatus.ACCEPTED if stored else ItemStatus.DUPLICATE
            results[index] = ItemResult(index=index, status=status, id=event.source_event_id, flags=flags)
        return [r for r in results if r is not None]


def _rejected(index: int, rejection: Rejection) -> ItemResult:
    return ItemResult(
        index=index, status=ItemStatus.REJECTED, id=rejection.id, error=rejection.code, message=rejection.message
    )
