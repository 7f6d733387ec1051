"""Clocks: the system clock in production, a manual clock (persisted, never going backwards) in simulations."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from recapture.adapters.storage.schema import service_state

_CLOCK_KEY = "manual_clock"


class ClockWentBackwardsError(ValueError):
    def __init__(self, current: datetime, requested: datetime) -> None:
        super().__init__(f"the clock is at {current.isoformat()}; it cannot go back to {requested.isoformat()}")
        self.current = current


class SystemClock:
    mode = "system"

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """Stands still once set; its time survives restarts so a simulation can resume.

    Until the first `set` it follows the system clock, so a driver may start its simulation at any date.
    """

    mode = "manual"

    def __init__(self, engine: Engine, *, follow: bool = False) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        # A worker in another process than the one that serves /admin/clock reads the time each time it asks.
        self._follow = follow
        self._now: datetime | None = self._stored()
        self._listeners: list[Callable[[], None]] = []

    def on_set(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every `set` (time moved: timers may be due now)."""
        self._listeners.append(listener)

    def _stored(self) -> datetime | None:
        with self._engine.connect() as conn:
            stored = conn.execute(select(service_state.c.value).where(service_state.c.key == _CLOCK_KEY)).scalar()
        return datetime.fromisoformat(stored) if stored else None

    def now(self) -> datetime:
        if self._follow:
            self._now = self._stored() or self._now
        return self._now or datetime.now(UTC)

    def set(self, when: datetime) -> datetime:
        when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
        with self._lock:
            if self._now is not None and when < self._now:
                raise ClockWentBackwardsError(self._now, when)
            self._persist(when)
            self._now = when
        for listener in self._listeners:
            listener()
        return when

    def _persist(self, when: datetime) -> None:
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(service_state).values(key=_CLOCK_KEY, value=when.isoformat())
        statement = statement.on_conflict_do_update(index_elements=["key"], set_={"value": when.isoformat()})
        with self._engine.begin() as conn:
            conn.execute(statement)
