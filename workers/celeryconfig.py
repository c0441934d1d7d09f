"""Celery settings of the audiosync worker fleet, all from the environment.

Every variable audiosync reads, its default and its parser is a row of
``backend_hooks.contract.settings.VARIABLES`` (README.md has the table). They are validated here,
so a worker, beat or Flower started with a missing or invalid setting stops at once with
a message naming the variable.
"""

from __future__ import annotations

from backend_hooks.contract.errors import ConfigError
from backend_hooks.contract.settings import Settings
from workers.logs import log_format
from workers.metrics import metrics_port

try:
    _settings = Settings.from_env(role="fleet")
    metrics_port()
    log_format()
except ConfigError as exc:  # a clear one-line message instead of a traceback
    raise SystemExit(f"audiosync: invalid setting: {exc}") from None

broker_url = _settings.broker_url
broker_connection_retry_on_startup = True
# A task whose worker died unacknowledged comes back after this long; the sweep's claim
# (AUDIOSYNC_LEASE_SECONDS) usually re-dispatches the session sooner.
broker_transport_options = {"visibility_timeout": 3600}
task_default_queue = "audiosync"
task_ignore_result = True
result_backend = None
# Flushes are idempotent (deterministic names, create-only uploads, delete after store),
# so they are acknowledged only when done and requeued when their worker process dies.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# Shutdown: SIGTERM to the main process is a warm shutdown. Each running flush finishes
# the upload it is in (at most half of AUDIOSYNC_LEASE_SECONDS), commits it, and hands its
# session back (due now, lease released: workers/shutdown.py), so the worker is gone
# within one upload. With REMAP_SIGTERM=SIGQUIT in the environment, SIGTERM is Celery's
# soft shutdown instead: the flushes hand back the same way, but Celery waits out the
# whole AUDIOSYNC_SHUTDOWN_SECONDS before it stops (and cancels what still runs then).
worker_soft_shutdown_timeout = _settings.shutdown_seconds
# A backstop, never the normal end of a flush: a flush writes at most 8 objects, each
# upload within half the lease, and renews its lease before each. A task past this is
# stuck; its pool process is killed and the session taken over when its lease ends.
task_time_limit = 10 * _settings.lease_seconds
# A shard task claims for AUDIOSYNC_SHARD_TASK_SECONDS, then waits for its last flushes
# (each at most 8 uploads of half a lease): its backstop is that much longer.
task_annotations = {
    "audiosync.flush_shard": {
        "time_limit": _settings.shard_task_seconds + 10 * _settings.lease_seconds
    }
}
# Backfill tasks need opuslib and the key, which the flush fleet has not: they go to a
# queue of their own (workers.tasks.BACKFILL_QUEUE), served by
# `celery -A workers worker -Q audiosync.backfill` (workers/backfill.py).
task_routes = {"audiosync.backfill_conversation": {"queue": "audiosync.backfill"}}
worker_send_task_events = True  # for Flower
task_send_sent_event = True
timezone = "UTC"
imports = ("workers.tasks",)
beat_schedule = {
    "audiosync-sweep": {
        "task": "audiosync.sweep",
        "schedule": _settings.sweep_interval_seconds,
        # A sweep that waited longer than one interval is superseded by the next one.
        "options": {"expires": _settings.sweep_interval_seconds},
    },
    # Deleted conversations listed again, blind uploads settled (workers/deletions.py).
    "audiosync-recheck-deletions": {
        "task": "audiosync.recheck_deletions",
        "schedule": _settings.sweep_interval_seconds,
        "options": {"expires": _settings.sweep_interval_seconds},
    },
}
