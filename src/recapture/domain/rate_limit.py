"""Rate limits as token buckets on an injected clock: asking never sleeps, it says how long to wait.

A `TokenBucket` holds up to `capacity` tokens and regains `refill_per_second` of them continuously.
A `RateLimit` is several buckets that must all agree (Klaviyo documents a burst window per second and a
steady window per minute for every operation). `try_acquire(now)` takes a token from every bucket and
returns 0.0, or takes nothing and returns the seconds to wait, so a caller can store a `not_before`
instead of sleeping. Time is any monotonic float in seconds; a clock that steps back refills nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_WINDOWS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([smhd])\s*$")
# Float refills never land exactly on a whole token (3500/60 per second; epoch clocks near 1.8e9 s resolve only
# ~2e-7 s), so a shortfall under a thousandth of a token counts as none.
_EPSILON = 1e-3


def parse_rate(text: str) -> tuple[float, float]:
    """`"350/s"` -> (350, 1.0): a count and the window it applies to, in seconds ("s", "m", "h", "d")."""
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"not a rate like '350/s' or '3500/m': {text!r}")
    count = float(match.group(1))
    if count <= 0:
        raise ValueError(f"a rate allows at least one request: {text!r}")
    return count, _WINDOWS[match.group(2)]


@dataclass(slots=True)
class TokenBucket:
    """`capacity` requests at once, refilled at `refill_per_second`; starts full."""

    capacity: float
    refill_per_second: float
    _tokens: float = field(init=False, repr=False)
    _updated: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.refill_per_second <= 0:
            raise ValueError("a bucket holds at least one token and refills at a positive rate")
        self._tokens = float(self.capacity)

    @classmethod
    def allowing(cls, count: float, per_seconds: float) -> TokenBucket:
        """At most `count` at once, and `count` more every `per_seconds` on average."""
        return cls(capacity=count, refill_per_second=count / per_seconds)

    def available(self, now: float) -> float:
        """The tokens held at `now` (fractional while refilling)."""
        self._refill(now)
        return self._tokens

    def wait_seconds(self, now: float, cost: float = 1.0) -> float:
        """How long until `cost` tokens are available; 0.0 when they are now."""
        if cost > self.capacity:
            raise ValueError(f"a cost of {cost} never fits a bucket of {self.capacity}")
        missing = cost - self.available(now)
        return 0.0 if missing <= _EPSILON else missing / self.refill_per_second

    def try_acquire(self, now: float, cost: float = 1.0) -> float:
        """Take `cost` tokens and return 0.0, or take nothing and return the seconds to wait."""
        wait = self.wait_seconds(now, cost)
        if wait == 0.0:
            self._tokens = max(0.0, self._tokens - cost)
        return wait

    def _refill(self, now: float) -> None:
        if self._updated is not None and now > self._updated:
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.refill_per_second)
        if self._updated is None or now > self._updated:
            self._updated = now


@dataclass(slots=True)
class RateLimit:
    """Several buckets that must all have a token: e.g. a burst of 350/s and a steady 3,500/min."""

    buckets: tuple[TokenBucket, ...]

    def __post_init__(self) -> None:
        if not self.buckets:
            raise ValueError("a rate limit needs at least one bucket")

    @classmethod
    def of(cls, *rates: str, headroom: float = 1.0) -> RateLimit:
        """`RateLimit.of("350/s", "3500/m")`; `headroom` < 1 keeps that fraction of each limit (e.g. 0.9)."""
        if not 0 < headroom <= 1:
            raise ValueError("headroom is a fraction in (0, 1]")
        buckets = []
        for rate in rates:
            count, window = parse_rate(rate)
            buckets.append(TokenBucket.allowing(max(1.0, math.floor(count * headroom)), window))
        return cls(tuple(buckets))

    @classmethod
    def within_fixed_windows(cls, *rates: str, headroom: float) -> RateLimit:
        """Pacing that stays under limits counted in fixed windows (how Klaviyo documents its limits).

        A full bucket of the limit's size lets up to twice the count through in one window (the full bucket, then a
        window's refill). Here the bucket holds only half of the unused margin, so what one window can see — the
        bucket plus one window of refill at `headroom` — never exceeds the documented count (bench/delivery.py,
        --fixed-windows: 18.8% of bulk requests refused with full buckets, 0.5% with these).
        """
        if not 0 < headroom < 1:
            raise ValueError("fixed-window pacing needs a headroom below 1")
        buckets = []
        for rate in rates:
            count, window = parse_rate(rate)
            paced = max(1.0, math.floor(count * headroom))
            capacity = max(1.0, float((math.floor(count) - paced) // 2))
            buckets.append(TokenBucket(capacity=capacity, refill_per_second=paced / window))
        return cls(tuple(buckets))

    def wait_seconds(self, now: float, cost: float = 1.0) -> float:
        return max(bucket.wait_seconds(now, cost) for bucket in self.buckets)

    def try_acquire(self, now: float, cost: float = 1.0) -> float:
        """Take a token from every bucket and return 0.0, or take none and return the longest wait."""
        wait = self.wait_seconds(now, cost)
        if wait == 0.0:
            for bucket in self.buckets:
                bucket.try_acquire(now, cost)
        return wait
