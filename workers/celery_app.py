"""The Celery app of the worker fleet: ``celery -A workers worker|beat|flower``."""

from __future__ import annotations

import logging

from celery import Celery, signals

# shutdown: its flag must exist before the pool forks; metrics and logs: signal handlers.
from workers import logs, metrics, shutdown  # noqa: F401

log = logging.getLogger(__name__)
app = Celery("audiosync")
app.config_from_object("workers.celeryconfig")


@signals.worker_init.connect  # type: ignore[untyped-decorator]
def _prepare_metrics(**_: object) -> None:  # the worker's main process, before the pool
    metrics.prepare_worker()


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _serve_metrics(**_: object) -> None:  # the worker's main process
    port = metrics.metrics_port()
    if port is None:
        return
    metrics.serve(port)


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _check_the_store(**_: object) -> None:  # the worker's main process
    """A WARNING in the worker's log when the stream store may evict (docs/ARCHITECTURE.md,
    "Redis memory"); status and the audiosync_redis_noeviction gauge say it too."""
    from workers.context import redis_only_store
    from workers.store import eviction_warnings

    try:
        policies = redis_only_store().memory_policies()
    except Exception as exc:  # Redis away at start: the flushes will say so
        log.warning("cannot read the stream store's maxmemory-policy: %s", exc)
        return
    for line in eviction_warnings(policies):
        log.warning(line)


@signals.worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _pool_process_exited(pid: int | None = None, **_: object) -> None:
    import os

    metrics.process_exited(pid or os.getpid())
