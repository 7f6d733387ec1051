"""One transaction shared by several stores while a unit of work runs on this thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.engine import Connection


class Transactions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()

    @contextmanager
    def unit(self) -> Iterator[Connection]:
        """Everything the stores do on this thread inside the block commits (or rolls back) together."""
        if getattr(self._local, "connection", None) is not None:
            yield self._local.connection
            return
        with self.engine.begin() as connection:
            self._local.connection = connection
            try:
                yield connection
            finally:
                self._local.connection = None

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """The current unit's connection, or a transaction of its own."""
        with self.unit() as connection:
            yield connection
