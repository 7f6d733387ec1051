"""When to try a failed delivery again: a pure value, persisted as `not_before` (a worker never sleeps on it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 12
    base: timedelta = timedelta(seconds=5)
    ceiling: timedelta = timedelta(hours=1)
    jitter: float = 0.2


DEFAULT_RETRY_POLICY = RetryPolicy()


def next_attempt(
    *, transient: bool, attempts: int, retry_after: float | None, now: datetime, jitter_draw: float,
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
) -> datetime | None:
    """The time of the next attempt, or None for the dead letter (terminal errors, or attempts exhausted).

    `jitter_draw` is a number in [0, 1) from the caller's random source, so this stays deterministic to test.
    """
    if not transient or attempts >= policy.max_attempts:
        return None
    if retry_after is not None:
        # The platform said when: honour it exactly (plus a little, so a fleet does not return at once).
        return now + timedelta(seconds=retry_after) * (1 + policy.jitter * jitter_draw)
    backoff: timedelta = min(policy.base * 2 ** max(attempts - 1, 0), policy.ceiling)
    spread = 1 - policy.jitter + 2 * policy.jitter * jitter_draw
    return now + backoff * spread
