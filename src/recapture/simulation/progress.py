"""Progress bars for a run, one per stage: sending, processing, abandonment decisions, deliveries."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class StageBars:
    """`stage(name)` closes the current bar and opens the next; `progress(done, total)` moves the current one."""

    def __init__(self, console: Console, *, transient: bool = False) -> None:
        self._bars = Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), console=console, transient=transient)
        self._current: TaskID | None = None

    def __enter__(self) -> StageBars:
        self._bars.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:  # a failed stage keeps its bar where it stopped
            self._finish_current()
        self._bars.stop()

    def stage(self, name: str) -> None:
        self._finish_current()
        self._current = self._bars.add_task(name, total=None)

    def progress(self, done: int, total: int) -> None:
        if self._current is not None:
            self._bars.update(self._current, completed=done, total=max(total, done))

    def _finish_current(self) -> None:
        if self._current is None:
            return
        task = self._bars.tasks[self._current]
        finished = task.total if task.total is not None else task.completed
        self._bars.update(self._current, completed=finished, total=finished)
        self._bars.stop_task(self._current)
