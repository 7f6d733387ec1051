"""Group commit: requests that arrive while a commit is in flight share the next one.

Each request still waits for its own events to be committed before it is acknowledged, so durability costs
one fsync per group rather than one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from recapture.adapters.storage.event_store import SqlEventStore
from recapture.domain.events import CanonicalEvent

_Pending = tuple[Sequence[CanonicalEvent], "asyncio.Future[list[bool]]"]


class GroupCommitWriter:
    def __init__(
        self, store: SqlEventStore, max_group_events: int = 2000,
        on_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        self._store = store
        self.on_commit = on_commit
        self._max_group_events = max_group_events
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        if self._task is None or self._queue is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue else 0

    async def write(self, events: Sequence[CanonicalEvent]) -> list[bool]:
        if self._queue is None:
            raise RuntimeError("the writer is not started")
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((events, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            group = [await self._queue.get()]
            size = len(group[0][0])
            while size < self._max_group_events and not self._queue.empty():
                group.append(self._queue.get_nowait())
                size += len(group[-1][0])
            await self._commit(group)
            for _ in group:
                self._queue.task_done()

    async def _commit(self, group: list[_Pending]) -> None:
        flat = [event for events, _ in group for event in events]
        started = time.perf_counter()
        try:
            outcomes = await asyncio.to_thread(self._store.store, flat)
        except Exception as error:
            for _, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        self.commits += 1
        if self.on_commit is not None:
            self.on_commit(len(flat), time.perf_counter() - started)
        start = 0
        for events, future in group:
            if not future.done():
                future.set_result(outcomes[start : start + len(events)])
            start += len(events)
