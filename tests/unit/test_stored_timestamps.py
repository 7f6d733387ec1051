"""Timestamps written to SQLite: the fast text conversion stores exactly what SQLAlchemy's own DATETIME would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from recapture.adapters.storage.schema import Timestamp

SQLITE = sqlite.dialect()
FAST = Timestamp.bind_processor(SQLITE)
REFERENCE = DateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(moment=st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=OFFSETS))
def test_sqlite_text_matches_sqlalchemys_datetime(moment: datetime) -> None:
    """Same text, so that comparisons with values SQLAlchemy binds elsewhere (reads, updates) stay exact."""
    assert FAST is not None
    assert REFERENCE is not None
    assert FAST(moment) == REFERENCE(moment.astimezone(UTC).replace(tzinfo=None))


def test_naive_datetimes_are_refused() -> None:
    assert FAST is not None
    with pytest.raises(ValueError, match="naive"):
        FAST(datetime(2026, 12, 5, 7, 0))
    assert FAST(None) is None
