"""Per-process resources of a worker: settings, Redis, the bucket. Built once, lazily."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from backend_hooks.adapters import gcs, redis_store
from backend_hooks.contract.settings import Settings
from workers.flush import FlushConfig
from workers.planner import Policy
from workers.store import WorkerStore, mark_check_seconds
from workers.validate import Limits


@dataclass
class WorkerContext:
    settings: Settings
    store: WorkerStore
    bucket: gcs.GcsBucket
    policy: Policy
    config: FlushConfig
    clock: Callable[[], float]  # Redis server time unless a test injects another clock
    redis_clock: bool = True  # False when a test injected ``clock``

    def clock_of(self, shard: int) -> Callable[[], float]:
        """The clock of a shard's flushes: Redis server time of the node holding the
        shard (on a cluster each node has its own), or the injected test clock."""
        return self.store.in_shard(shard).time if self.redis_clock else self.clock

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Callable[[], float] | None = None
    ) -> WorkerContext:
        store = _store(settings)
        return cls(
            settings=settings,
            store=store,
            bucket=gcs.GcsBucket.from_settings(settings),
            policy=Policy(
                object_seconds=settings.object_seconds,
                max_age_seconds=settings.batch_max_age_seconds,
                max_bytes=settings.batch_max_bytes,
            ),
            config=FlushConfig(
                lease_seconds=settings.lease_seconds,
                limits=Limits(timestamp_window_seconds=settings.timestamp_window_seconds),
                max_attempts=settings.flush_max_attempts,
                backoff_cap_seconds=settings.flush_backoff_max_seconds,
                max_entry_age_seconds=settings.deleted_mark_seconds,
                recheck_seconds=settings.delete_recheck_seconds,
            ),
            clock=clock or store.time,
            redis_clock=clock is None,
        )


def _store(settings: Settings) -> WorkerStore:
    client = redis_store.connect(settings.redis_url, cluster=settings.redis_cluster)

    def mark_reader() -> redis_store.RedisClient:  # deleted marks: one short attempt each
        return redis_store.connect_one_attempt(
            settings.redis_url,
            cluster=settings.redis_cluster,
            seconds=mark_check_seconds(settings.lease_seconds),
        )

    return WorkerStore(client, settings.due_shards, mark_reader=mark_reader)


@functools.cache
def redis_only_store() -> WorkerStore:
    """The fleet's Redis and nothing else (no bucket, no GCS credentials): for the
    operator commands and the stream store check of a worker's main process."""
    return _store(Settings.from_env(role="fleet"))


@functools.cache
def get_context() -> WorkerContext:
    """This worker process's context, built from the environment on first use."""
    return WorkerContext.from_settings(Settings.from_env(role="fleet"))
