"""Where work units run: in this process, in a pool of worker processes, or on Ray.

``map`` yields results in input order whatever order they finish in, so the build's output does
not depend on the executor or the number of workers; it keeps at most ``WINDOW`` tasks in
flight. Its items are a feed: an item None means "nothing to start until the next result is
in" (a source under a take waits for what its first units hold, `mixer.builder.schedule`); a feed
says so only while a task is in flight. Workers are started with ``spawn``: the
parent has used `tokenizers` (whose thread pool does not survive ``fork``), and spawn gives
each worker a clean interpreter that imports only what a unit needs.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import queue
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

#: Tasks submitted ahead of the oldest unfinished one: enough that a long unit never leaves the
#: other workers idle, few enough that a build of 10^5 units does not hold 10^5 futures.
WINDOW = 1024
_END = object()
_STATE: dict[str, Any] = {}  # per-process worker state set by the initializer
_PARALLELISM = "TOKENIZERS_PARALLELISM"
#: A Ray task whose worker or node dies is run again this many times (on any node).
RAY_RETRIES = 2


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


#: Inputs smaller than this are tokenized in the main process unless ``--workers`` says
#: otherwise: starting a worker (an interpreter, imports, the vocabulary) costs about half a
#: second, about what one core takes to encode this much text.
SMALL_INPUT = 8 << 20


def auto_workers(todo: list) -> int:
    """The default number of workers: all cores, or 1 for a small input read from files."""
    if all(s.hf is None for s in todo) and sum(_file_bytes(s) for s in todo) < SMALL_INPUT:
        return 1
    return default_workers()


def _file_bytes(spec) -> int:
    return sum(os.path.getsize(f) for f in spec.files)


def worker_state() -> dict[str, Any]:
    return _STATE


def _init(setup: Callable[[], dict[str, Any]] | None, events) -> None:
    os.environ[_PARALLELISM] = "false"  # one core per worker: no oversubscription
    _STATE.clear()
    _STATE["events"] = events
    if setup is not None:
        _STATE.update(setup())


def emit(*event: Any) -> None:
    """Send a progress event to the parent (no-op when nobody listens)."""
    events = _STATE.get("events")
    if events is not None:
        events.put(event)


class LocalExecutor:
    """``workers == 1`` runs units in this process; more use a spawn process pool."""

    def __init__(
        self,
        workers: int,
        setup: Callable[[], dict[str, Any]] | None = None,
        on_event: Callable[..., None] | None = None,
    ):
        self.workers = max(1, int(workers))
        self.setup, self.on_event = setup, on_event
        self._pool: ProcessPoolExecutor | None = None
        self._events = None
        self._drain: threading.Thread | None = None
        self._saved_env: str | None = None

    def __enter__(self) -> LocalExecutor:
        if self.workers == 1:  # in this process: _init's settings are undone on exit
            self._saved_env = os.environ.get(_PARALLELISM)
            self._events = _Direct(self.on_event)
            _init(self.setup, self._events)
            return self
        ctx = mp.get_context("spawn")
        self._events = ctx.Queue() if self.on_event else None
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_init, initargs=(self.setup, self._events)
        )
        if self._events is not None:
            self._drain = threading.Thread(target=self._pump, daemon=True)
            self._drain.start()
        return self

    def _pump(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=0.2)
            except queue.Empty:
                if self._pool is None:
                    return
                continue
            except (EOFError, OSError):
                return
            if event is None:
                return
            self.on_event(*event)

    def map(self, fn: Callable[..., Any], items: Iterable[Any]) -> Iterator[Any]:
        """``fn(item)`` for each item, results in item order. A pool starts on the first tasks
        at once (in this process, each runs when its result is asked for)."""
        if self._pool is None:
            return (fn(item) for item in _no_waits(items))
        futures: collections.deque = collections.deque()
        fill = _filler(iter(items), lambda item: self._pool.submit(fn, item), futures)
        fill()  # the workers start at once
        return self._results(fill, futures)

    def _results(self, fill, futures) -> Iterator[Any]:
        try:
            while futures:
                result = futures.popleft().result()
                fill()  # keep the pool busy while the caller takes the result ...
                yield result
                fill()  # ... and again once it has (a waiting feed may go on)
        finally:
            for fut in futures:
                fut.cancel()

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            if self._events is not None:
                self._events.put(None)
                self._drain.join(timeout=5)
        elif self.workers == 1:
            if self._saved_env is None:
                os.environ.pop(_PARALLELISM, None)
            else:
                os.environ[_PARALLELISM] = self._saved_env
        _STATE.clear()


def _no_waits(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        assert item is not None, "a feed waited with no task in flight"
        yield item


def _filler(items: Iterator[Any], submit, inflight: collections.deque):
    """``fill()``: submit feed items until WINDOW are in flight, the feed waits or ends."""

    def fill() -> None:
        while len(inflight) < WINDOW:
            item = next(items, _END)
            if item is _END or item is None:  # None: wait for the result being taken
                return
            inflight.append(submit(item))

    return fill


class _Direct:
    """A queue stand-in for in-process runs: events go straight to the callback."""

    def __init__(self, on_event):
        self.on_event = on_event

    def put(self, event) -> None:
        if self.on_event is not None:
            self.on_event(*event)


def _ray_call(setup, key: str, fn, item):
    """Inside a Ray worker: set the worker up once per build (the encoder), then run fn."""
    if _STATE.get("ray_build") != key:
        _init(setup, None)
        _STATE["ray_build"] = key
    return fn(item)


class RayExecutor:
    """The same units as Ray tasks, on a running cluster (``address``) or a local instance.

    Tasks read their inputs and write their spill files on storage every node sees (a shared
    file system); results come back in input order, so the output is byte-identical to the
    local executor's. Progress is reported per finished unit (no per-batch events).
    """

    def __init__(
        self,
        address: str | None,
        setup: Callable[[], dict[str, Any]] | None = None,
        num_cpus: int | None = None,
    ):
        self.address, self.setup, self.num_cpus = address, setup, num_cpus
        self._started = False

    def __enter__(self) -> RayExecutor:
        try:
            import ray
        except ImportError:
            from mixer.errors import MixerError

            raise MixerError("--engine ray needs Ray: pip install 'mixer[ray]'") from None
        if not ray.is_initialized():
            # "local": a new instance of our own, even where a cluster left its address behind
            local = {"address": "local", "num_cpus": self.num_cpus}
            kwargs = {"address": self.address} if self.address else local
            ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
            self._started = True
        self._ray = ray
        self._setup_ref = ray.put(self.setup)
        self._key = uuid.uuid4().hex
        self._remote = ray.remote(_ray_call).options(num_cpus=1, max_retries=RAY_RETRIES)
        return self

    def map(self, fn: Callable[..., Any], items: Iterable[Any]) -> Iterator[Any]:
        """``fn(item)`` for each item as Ray tasks, started at once; results in item order."""

        def submit(item):
            return self._remote.remote(self._setup_ref, self._key, fn, item)

        refs: collections.deque = collections.deque()
        fill = _filler(iter(items), submit, refs)
        fill()
        return self._results(fill, refs)

    def _results(self, fill, refs) -> Iterator[Any]:
        try:
            while refs:
                result = self._get(refs.popleft())
                fill()
                yield result
                fill()
        except BaseException:
            for ref in refs:
                self._ray.cancel(ref)
            raise

    def _get(self, ref):
        """The task's result; a mixer error it raised as itself; a lost task (its node died
        and its retries were used up, the cluster went away) as one line: EngineError."""
        from mixer.errors import EngineError, MixerError

        try:
            return self._ray.get(ref)
        except MixerError:  # the task's own (Ray raises it as a subclass of the cause)
            raise
        except self._ray.exceptions.RayError as e:
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise EngineError(
                f"--engine ray: a work unit was lost after {RAY_RETRIES} retries"
                f" ({type(e).__name__}: {first}); nothing was published and the finished"
                " units are kept: run the same build again to resume"
            ) from None

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            self._ray.shutdown()
