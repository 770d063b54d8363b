"""Build progress: rich bars on a terminal, a JSON line per finished unit otherwise.

Events come from the workers (through the executor): ``("batch", source, documents, tokens)``
while a unit is read, ``("unit", source, index, documents, tokens, bytes)`` when it is done.
"""

from __future__ import annotations

import json
import threading
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

MODES = ("bars", "log", "off")


class _Rates(ProgressColumn):
    """MB/s, documents/s and tokens so far, from the task's counters."""

    def render(self, task) -> Text:
        elapsed = max(task.elapsed or 0.0, 1e-9)
        f = task.fields
        return Text(
            f"{task.completed / 1e6:9.1f} MB read {task.completed / elapsed / 1e6:6.1f} MB/s"
            f" {f['docs'] / elapsed:8.0f} docs/s {f['tokens']:>13,} tokens",
            style="progress.data.speed",
        )


class BuildProgress:
    """Thread-safe ``update(*event)``; ``mode`` is "bars", "log" or "off". A total of None (a
    source with a take: it stops where its take is met) shows no percentage."""

    def __init__(
        self,
        totals: dict[str, int | None],
        units: dict[str, int | None],
        console: Console,
        mode: str,
    ):
        assert mode in MODES
        self.mode, self.console, self.units = mode, console, units
        self.started = time.perf_counter()
        self._lock = threading.Lock()
        if mode != "bars":
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description:<12}"),
            BarColumn(),
            TaskProgressColumn(),
            _Rates(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._tasks = {
            name: self._progress.add_task(name, total=_total(total), docs=0, tokens=0)
            for name, total in totals.items()
        }
        if len(totals) > 1:
            known = None in totals.values()
            every = None if known else sum(totals.values())
            self._tasks[None] = self._progress.add_task(
                "all", total=_total(every), docs=0, tokens=0
            )

    def note(self, message: str) -> None:
        """A line worth seeing (which encoder runs, and why)."""
        if self.mode == "log":
            self._log({"event": "note", "message": message})
        elif self.mode == "bars":
            self.console.print(message, highlight=False, soft_wrap=True)

    def update(self, kind: str, source: str, *args) -> None:
        with self._lock:
            if kind == "batch" and self.mode == "bars":
                self._advance(source, docs=args[0], tokens=args[1])
            elif kind == "unit":
                index, docs, tokens, nbytes = args
                if self.mode == "bars":
                    self._advance(source, nbytes=nbytes)
                elif self.mode == "log":
                    self._log(
                        {
                            "event": "unit",
                            "source": source,
                            "unit": index,
                            "units": self.units[source],
                            "documents": docs,
                            "tokens": tokens,
                            "bytes": nbytes,
                        }
                    )

    def _advance(self, source: str, docs: int = 0, tokens: int = 0, nbytes: int = 0) -> None:
        for key in (source, None):
            task_id = self._tasks.get(key)
            if task_id is None:
                continue
            f = self._progress.tasks[task_id].fields
            self._progress.update(
                task_id, advance=nbytes, docs=f["docs"] + docs, tokens=f["tokens"] + tokens
            )

    def _log(self, record: dict) -> None:
        record["elapsed_s"] = round(time.perf_counter() - self.started, 3)
        self.console.print(json.dumps(record), highlight=False, soft_wrap=True, markup=False)

    def __enter__(self) -> BuildProgress:
        if self.mode == "bars":
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.mode == "bars":
            self._progress.stop()


def _total(total: int | None) -> int | None:
    return None if total is None else max(total, 1)
