"""Per-process resources of a worker: settings, Redis, the bucket. Built once, lazily."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from backend_hooks import gcs, redis_store
from backend_hooks.settings import Settings
from workers.planner import Policy


@dataclass
class WorkerContext:
    settings: Settings
    store: redis_store.WorkerStore
    bucket: gcs.GcsBucket
    policy: Policy
    clock: Callable[[], float]

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Callable[[], float] = time.time
    ) -> WorkerContext:
        return cls(
            settings=settings,
            store=redis_store.WorkerStore(redis_store.connect(settings.redis_url)),
            bucket=gcs.GcsBucket(gcs.make_client(settings), settings.bucket),
            policy=Policy(
                object_seconds=settings.object_seconds,
                max_age_seconds=settings.batch_max_age_seconds,
                max_bytes=settings.batch_max_bytes,
            ),
            clock=clock,
        )


_context: WorkerContext | None = None
_lock = threading.Lock()


def get_context() -> WorkerContext:
    global _context
    with _lock:
        if _context is None:
            _context = WorkerContext.from_settings(Settings.from_env())
        return _context
