"""Token buckets on an injected clock: how many requests pass, and how long a caller is told to wait."""

from __future__ import annotations

import bisect

import pytest

from recapture.domain.rate_limit import RateLimit, TokenBucket, parse_rate


def test_a_full_bucket_lets_its_capacity_through_then_names_the_wait() -> None:
    """A 10/s bucket admits 10 requests at once; the 11th is told to wait a tenth of a second."""
    bucket = TokenBucket.allowing(10, 1.0)
    assert [bucket.try_acquire(100.0) for _ in range(10)] == [0.0] * 10
    assert bucket.try_acquire(100.0) == pytest.approx(0.1)


def test_a_refused_request_takes_no_token() -> None:
    """Asking while empty consumes nothing, so asking again after the announced wait succeeds."""
    bucket = TokenBucket.allowing(2, 1.0)
    bucket.try_acquire(0.0)
    bucket.try_acquire(0.0)
    wait = bucket.try_acquire(0.0)
    assert wait == pytest.approx(0.5)
    assert bucket.try_acquire(0.0) == pytest.approx(0.5)
    assert bucket.try_acquire(0.0 + wait) == 0.0


def test_tokens_refill_with_time_up_to_the_capacity() -> None:
    """After a long pause a bucket holds its capacity, never more."""
    bucket = TokenBucket.allowing(5, 1.0)
    for _ in range(5):
        bucket.try_acquire(0.0)
    assert bucket.available(0.2) == pytest.approx(1.0)
    assert bucket.available(3600.0) == 5.0


def test_a_clock_that_steps_back_refills_nothing() -> None:
    """Time going backwards neither adds tokens nor breaks the next refill."""
    bucket = TokenBucket.allowing(1, 1.0)
    assert bucket.try_acquire(10.0) == 0.0
    assert bucket.try_acquire(5.0) == pytest.approx(1.0)
    assert bucket.try_acquire(11.0) == 0.0


def test_burst_and_steady_windows_must_both_agree() -> None:
    """Klaviyo's 10/s and 150/min: bursts of 10 a second, yet at most 150 plus one minute of refill per minute."""
    limit = RateLimit.of("10/s", "150/m")
    admitted = 0
    now = 0.0
    for _ in range(10_000):  # bounded: one attempt per announced wait
        if now >= 60.0:
            break
        wait = limit.try_acquire(now)
        if wait == 0.0:
            admitted += 1
        else:
            now += wait
    # 150 at the start plus what the steady bucket regains in 60 s (150/min) is the ceiling.
    assert 290 <= admitted <= 300


def test_a_refusal_by_one_window_takes_nothing_from_the_other() -> None:
    """When the steady window refuses, the burst window keeps its token for later."""
    limit = RateLimit.of("5/s", "5/m")
    for _ in range(5):
        assert limit.try_acquire(0.0) == 0.0
    wait = limit.try_acquire(2.0)
    assert wait == pytest.approx(12.0 - 2.0)
    burst = limit.buckets[0]
    assert burst.available(2.0) == 5.0


def test_callers_can_compute_not_before_from_the_wait() -> None:
    """The wait is exact: acquiring at now + wait succeeds, a moment earlier does not."""
    limit = RateLimit.of("350/s", "3500/m")
    for _ in range(350):
        assert limit.try_acquire(0.0) == 0.0
    wait = limit.try_acquire(0.0)
    assert wait > 0
    assert limit.try_acquire(wait * 0.5) > 0
    assert limit.try_acquire(wait) == 0.0


def test_headroom_keeps_a_fraction_of_each_documented_limit() -> None:
    """With 90 % headroom a 350/s limit admits 315 at once."""
    limit = RateLimit.of("350/s", "3500/m", headroom=0.9)
    admitted = sum(1 for _ in range(400) if limit.try_acquire(0.0) == 0.0)
    assert admitted == 315


@pytest.mark.parametrize(
    ("text", "expected"), [("350/s", (350.0, 1.0)), ("3500/m", (3500.0, 60.0)), ("150/d", (150.0, 86400.0))]
)
def test_rates_are_read_as_klaviyo_writes_them(text: str, expected: tuple[float, float]) -> None:
    """Klaviyo's `x-klaviyo-ratelimit` strings parse to a count and a window in seconds."""
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "350", "0/s", "10/w", "x/s"])
def test_malformed_rates_are_refused(text: str) -> None:
    """A rate that is not `<count>/<s|m|h|d>` with a positive count is an error, not a silent no-limit."""
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def test_a_cost_larger_than_the_bucket_is_an_error() -> None:
    """Asking for more tokens than a bucket can ever hold fails loudly instead of waiting forever."""
    with pytest.raises(ValueError, match="never fits"):
        TokenBucket.allowing(2, 1.0).try_acquire(0.0, cost=3)


@pytest.mark.parametrize(("rates", "headroom"), [(("10/s", "150/m"), 0.97), (("350/s", "3500/m"), 0.97),
                                                 (("75/s", "700/m"), 0.9)])
def test_fixed_window_pacing_never_exceeds_a_documented_window(rates: tuple[str, ...], headroom: float) -> None:
    """Greedy sending under fixed-window pacing: no 1-s or 60-s window ever holds more than the documented count."""
    limit = RateLimit.within_fixed_windows(*rates, headroom=headroom)
    now, sent = 0.0, []
    while now < 180.0:
        wait = limit.try_acquire(now)
        if wait == 0.0:
            sent.append(now)
        else:
            now += wait
    for rate in rates:
        count, window = parse_rate(rate)
        for index, start in enumerate(sent):
            assert bisect.bisect_left(sent, start + window) - index <= count
    steady_count, steady_window = parse_rate(rates[-1])
    assert len([t for t in sent if 60 <= t < 120]) >= 0.95 * steady_count * (60 / steady_window) * headroom
