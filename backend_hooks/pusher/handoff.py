"""Hand-off from the caller's thread (the event loop included) to a bounded thread pool.

A ``SerialQueue`` takes items without ever waiting: ``put`` appends to a deque and, if no
task of this queue is running, submits one. At most one task per queue runs at a time, so
the items of one queue (one session) are processed in order, while different queues run
in parallel on the pool. The "is a task running" flag is a lock taken only with
``acquire(blocking=False)``: nobody ever waits on it, and no wake-up is lost — a task
re-checks the deque after releasing the flag.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")


class SerialQueue(Generic[T]):
    def __init__(self, executor: Executor, process: Callable[[list[T]], None]) -> None:
        """``process`` gets the items in order, several at a time; it must not raise."""
        self._executor = executor
        self._process = process
        self._items: deque[T] = deque()
        self._running = threading.Lock()

    def put(self, item: T) -> None:
        self._items.append(item)
        self._schedule()

    def snapshot(self) -> list[T]:
        """The items not yet taken by a task (a copy; for metrics)."""
        return list(self._items)

    @property
    def depth(self) -> int:
        """Items handed over and not yet taken by a task."""
        return len(self._items)

    def _schedule(self) -> None:
        if self._running.acquire(blocking=False):
            try:
                self._executor.submit(self._run)
            except BaseException:
                self._running.release()
                raise

    def _run(self) -> None:
        while True:
            try:
                while self._items:
                    batch = []
                    while self._items:
                        batch.append(self._items.popleft())
                    self._process(batch)
            finally:
                self._running.release()
            # A put between our last look and the release found the flag taken: look again.
            if not self._items or not self._running.acquire(blocking=False):
                return
