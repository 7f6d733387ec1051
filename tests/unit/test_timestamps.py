"""Event time: ISO and epoch-ms parsing, and clamping of clocks that are wrong."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recapture.domain.events import TimestampFlag
from recapture.domain.timestamps import (
    DEFAULT_TIMESTAMP_POLICY,
    TimestampPolicy,
    clamp_occurred_at,
    parse_timestamp,
)

RECEIVED = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-10-05T09:59:00.000Z", datetime(2026, 10, 5, 9, 59, tzinfo=UTC)),
        ("2026-10-05T09:59:00Z", datetime(2026, 10, 5, 9, 59, tzinfo=UTC)),
        ("2026-10-05T09:59:00.123456+00:00", datetime(2026, 10, 5, 9, 59, 0, 123456, tzinfo=UTC)),
        ("2012-10-12T07:05:27-04:00", datetime(2012, 10, 12, 11, 5, 27, tzinfo=UTC)),
        ("2026-10-05T11:59:00+02:00", datetime(2026, 10, 5, 9, 59, tzinfo=UTC)),
        (" 2026-10-05T09:59:00Z ", datetime(2026, 10, 5, 9, 59, tzinfo=UTC)),
        ("2026-10-05T09:59:00", datetime(2026, 10, 5, 9, 59, tzinfo=UTC)),
        ("2026-10-05", datetime(2026, 10, 5, tzinfo=UTC)),
    ],
)
def test_parse_iso_timestamps_to_utc(value: str, expected: datetime) -> None:
    """ISO-8601 text (Z, offsets, naive = UTC) parses to an aware UTC datetime."""
    parsed = parse_timestamp(value)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1791194340000, datetime(2026, 10, 5, 9, 59, tzinfo=UTC)),
        (1791194340000.0, datetime(2026, 10, 5, 9, 59, tzinfo=UTC)),
        (1791194340500, datetime(2026, 10, 5, 9, 59, 0, 500000, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_epoch_milliseconds(value: float, expected: datetime) -> None:
    """Numbers are epoch milliseconds (JavaScript's Date.now())."""
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, "", "yesterday", "2026-13-01T00:00:00Z", "2026-10-05T25:00:00Z", {"t": 1}, [1],
        math.nan, math.inf, -math.inf, 10**30, -(10**30), 1e300,
        "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00",
    ],
)
def test_unparseable_timestamps_give_none(value: object) -> None:
    """Garbage, booleans, non-finite and out-of-range values (even after UTC conversion) give None."""
    assert parse_timestamp(value) is None


def test_timestamp_within_limits_is_kept() -> None:
    """A plausible claimed time is kept as is and flagged OK."""
    claimed = RECEIVED - timedelta(minutes=1)
    assert clamp_occurred_at(claimed, RECEIVED) == (claimed, TimestampFlag.OK)


def test_timestamp_at_the_limits_is_kept() -> None:
    """Exactly max_future_skew ahead and exactly max_age behind are still accepted."""
    ahead = RECEIVED + DEFAULT_TIMESTAMP_POLICY.max_future_skew
    behind = RECEIVED - DEFAULT_TIMESTAMP_POLICY.max_age
    assert clamp_occurred_at(ahead, RECEIVED) == (ahead, TimestampFlag.OK)
    assert clamp_occurred_at(behind, RECEIVED) == (behind, TimestampFlag.OK)


def test_far_future_timestamp_is_clamped_to_receipt() -> None:
    """A clock in the future is replaced by the receipt time and flagged CLAMPED_FUTURE."""
    claimed = RECEIVED + timedelta(days=365)
    assert clamp_occurred_at(claimed, RECEIVED) == (RECEIVED, TimestampFlag.CLAMPED_FUTURE)


def test_slightly_future_timestamp_beyond_skew_is_clamped() -> None:
    """One second past the allowed skew is already clamped."""
    claimed = RECEIVED + DEFAULT_TIMESTAMP_POLICY.max_future_skew + timedelta(seconds=1)
    assert clamp_occurred_at(claimed, RECEIVED) == (RECEIVED, TimestampFlag.CLAMPED_FUTURE)


def test_far_past_timestamp_is_clamped_to_max_age() -> None:
    """A time older than max_age becomes receipt minus max_age, flagged CLAMPED_PAST."""
    claimed = datetime(2001, 1, 1, tzinfo=UTC)
    assert clamp_occurred_at(claimed, RECEIVED) == (RECEIVED - timedelta(days=7), TimestampFlag.CLAMPED_PAST)


def test_missing_timestamp_uses_receipt_time() -> None:
    """No claimed time means the receipt time, flagged MISSING."""
    assert clamp_occurred_at(None, RECEIVED) == (RECEIVED, TimestampFlag.MISSING)


def test_custom_policy_limits_apply() -> None:
    """A stricter policy clamps what the default would accept."""
    policy = TimestampPolicy(max_future_skew=timedelta(seconds=5), max_age=timedelta(hours=1))
    assert clamp_occurred_at(RECEIVED + timedelta(minutes=1), RECEIVED, policy) == (
        RECEIVED, TimestampFlag.CLAMPED_FUTURE,
    )
    assert clamp_occurred_at(RECEIVED - timedelta(hours=2), RECEIVED, policy) == (
        RECEIVED - timedelta(hours=1), TimestampFlag.CLAMPED_PAST,
    )


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
        st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.isoformat()),
    )
)
def test_parse_timestamp_never_raises_and_returns_utc(value: object) -> None:
    """Any scalar parses to None or an aware UTC datetime, never an exception."""
    parsed = parse_timestamp(value)
    assert parsed is None or parsed.utcoffset() == timedelta(0)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.just(UTC)) | st.none())
def test_clamped_time_always_within_policy_window(claimed: datetime | None) -> None:
    """Whatever was claimed, the result lies within [received - max_age, received + skew]."""
    occurred, flag = clamp_occurred_at(claimed, RECEIVED)
    policy = DEFAULT_TIMESTAMP_POLICY
    assert RECEIVED - policy.max_age <= occurred <= RECEIVED + policy.max_future_skew
    assert (flag is TimestampFlag.OK) == (occurred == claimed)
