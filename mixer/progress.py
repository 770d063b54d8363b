"""Build progress: one rich bar per source on a terminal (MB/s, documents/s, tokens), else none."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _Rates(ProgressColumn):
    """MB/s, documents/s and tokens so far, from the task's counters."""

    def render(self, task) -> Text:
        elapsed = max(task.elapsed or 0.0, 1e-9)
        f = task.fields
        return Text(
            f"{task.completed / elapsed / 1e6:6.1f} MB/s {f['docs'] / elapsed:8.0f} docs/s"
            f" {f['tokens']:>13,} tokens",
            style="progress.data.speed",
        )


class BuildProgress:
    """``update(source, docs, tokens, bytes)`` from any thread; a no-op when disabled."""

    def __init__(self, totals: dict[str, int], console: Console, enabled: bool):
        self.enabled = enabled
        self.started = time.perf_counter()
        if not enabled:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description:<12}"),
            BarColumn(),
            TaskProgressColumn(),
            _Rates(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks = {
            name: self._progress.add_task(name, total=max(total, 1), docs=0, tokens=0)
            for name, total in totals.items()
        }

    def __enter__(self) -> BuildProgress:
        if self.enabled:
            self._progress.start()
        return self

    def update(self, source: str, docs: int, tokens: int, nbytes: int) -> None:
        if not self.enabled:
            return
        task_id = self._tasks[source]
        task = self._progress.tasks[task_id]
        self._progress.update(
            task_id,
            advance=nbytes,
            docs=task.fields["docs"] + docs,
            tokens=task.fields["tokens"] + tokens,
        )

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._progress.stop()
