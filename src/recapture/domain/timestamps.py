"""Event time, trusted only within limits: clients have wrong clocks and queues replay old events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from recapture.domain.events import TimestampFlag


@dataclass(frozen=True, slots=True, kw_only=True)
class TimestampPolicy:
    max_future_skew: timedelta = timedelta(minutes=10)
    # Shopify retries webhooks for 4 hours and browsers flush queued beacons late; older than this is suspect.
    max_age: timedelta = timedelta(days=7)


DEFAULT_TIMESTAMP_POLICY = TimestampPolicy()


def parse_timestamp(value: object) -> datetime | None:
    """ISO-8601 text or epoch milliseconds, always returned timezone-aware in UTC."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, int | float):
            parsed = datetime.fromtimestamp(value / 1000, tz=UTC)
        elif isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        else:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        # Inside the try: 0001-01-01T00:00+01:00 parses, but falls before year 1 in UTC.
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None


def clamp_occurred_at(
    claimed: datetime | None, received_at: datetime, policy: TimestampPolicy = DEFAULT_TIMESTAMP_POLICY
) -> tuple[datetime, TimestampFlag]:
    if claimed is None:
        return received_at, TimestampFlag.MISSING
    if claimed > received_at + policy.max_future_skew:
        return received_at, TimestampFlag.CLAMPED_FUTURE
    if claimed < received_at - policy.max_age:
        return received_at - policy.max_age, TimestampFlag.CLAMPED_PAST
    return claimed, TimestampFlag.OK
