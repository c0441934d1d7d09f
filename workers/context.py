"""Per-process resources of a worker: settings, Redis, the bucket. Built once, lazily."""

from __future__ import annotations

import functools
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
            bucket=gcs.GcsBucket.from_settings(settings),
            policy=Policy(
                object_seconds=settings.object_seconds,
                max_age_seconds=settings.batch_max_age_seconds,
                max_bytes=settings.batch_max_bytes,
            ),
            clock=clock,
        )


@functools.cache
def get_context() -> WorkerContext:
    """This worker process's context, built from the environment on first use."""
    return WorkerContext.from_settings(Settings.from_env())
