"""Prometheus metrics of the worker fleet, served when ``AUDIOSYNC_METRICS_PORT`` is set.

Flushes run in Celery's prefork pool processes, so the counters and histograms use
prometheus-client's multiprocess mode: each process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR``, which a worker's main process sets before its pool forks
(``prepare_worker``, on ``worker_init``: the named directory, or one per port under the
temporary directory, shared by the workers of a host; the celery command line may have
imported prometheus-client already, through Flower's command plugin, so its value class
is picked again). The metric objects are made only after that, in the pool processes
and in the worker's main process when it serves (``serve``), so beat, Flower and the
CLI create nothing. The worker that binds the port serves
``http://<host>:<port>/metrics``: the counters and histograms of every pool process writing
there, summed, and nothing read from Redis. The fleet-wide gauges (the lag per shard, the
audio held, the quarantine, Redis up) come from one process, ``celery -A workers
audiosync exporter`` (workers/exporter.py), so that a hundred worker pods scraped do not
read every shard a hundred times. Every label value known in advance is made at zero when
the metrics are (the serving process makes them at once), so a ``rate()`` has a series
before the first failure (its multiprocess file holds zeros).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import threading
from types import SimpleNamespace
from typing import Any

from backend_hooks.contract.build_info import register_build_info
from backend_hooks.contract.errors import ConfigError

METRICS_PORT_ENV = "AUDIOSYNC_METRICS_PORT"
#: The label values known in advance, each made at zero when the metrics are.
FLUSH_OUTCOMES = ("ok", "skipped", "lease_lost", "handed_back", "failed")
OBJECT_OUTCOMES = ("created", "already_stored")
DELETION_OUTCOMES = ("rechecked", "blind_resolved", "failed")  # workers/deletions.py
#: The errors a flush meets most (the bucket failing, a conflicting object, Redis away);
#: any other error type is a reason of its own, made when it first happens.
FAILURE_REASONS = ("StorageError", "ObjectConflictError", "ConnectionError", "TimeoutError")
log = logging.getLogger(__name__)


def metrics_port(environ: dict[str, str] | None = None) -> int | None:
    """The port to serve metrics on, or None (unset: no metrics server)."""
    text = (os.environ if environ is None else environ).get(METRICS_PORT_ENV, "")
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{METRICS_PORT_ENV} must be a TCP port (1-65535), got {text!r}")
    return int(text)


def multiprocess_dir(port: int) -> str:
    """Where the pool processes of every worker on this host serving ``port`` write their
    values: ``PROMETHEUS_MULTIPROC_DIR`` if set, else one directory per port under the
    temporary directory, shared, so whichever worker binds the port serves them all."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return given or os.path.join(tempfile.gettempdir(), f"audiosync-metrics-{port}")


def prepare_worker() -> None:
    """In a worker's main process, before its pool forks (``worker_init``): point
    prometheus-client's multiprocess mode at the shared directory. Other processes that
    import the app (beat, Flower, the CLI) never do, and create nothing."""
    try:
        port = metrics_port()
    except ConfigError:
        return  # celeryconfig stops the process with the message
    if port is None:
        return
    directory = multiprocess_dir(port)
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    # prometheus-client picks its value class when first imported, and the celery command
    # line imports it before any app code runs (Flower's command plugin does): pick again.
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


_MAKING = threading.Lock()


def _metrics() -> SimpleNamespace:
    """The metric objects, made on first use in each process (after the pool forked, so
    prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` as ``prepare_worker`` set it).
    A shard task's flush threads may all ask at once: made once, under a lock."""
    with _MAKING:
        return _make_metrics()


@functools.cache
def _make_metrics() -> SimpleNamespace:
    from prometheus_client import Counter, Histogram

    made = SimpleNamespace(
        flushes=Counter(
            "audiosync_flushes_total",
            "Flushes by outcome: ok, skipped (another flush held the lease), lease_lost (a "
            "fenced zombie), handed_back (shutdown), failed.",
            ["outcome"],
        ),
        objects=Counter(
            "audiosync_objects_flushed_total",
            "Objects committed: created, or already_stored (a 412 checked equal).",
            ["outcome"],
        ),
        chunks=Counter("audiosync_chunks_flushed_total", "Chunks in committed objects."),
        bytes=Counter("audiosync_bytes_flushed_total", "Bytes of committed objects."),
        quarantined=Counter("audiosync_entries_quarantined_total", "Entries moved to quarantine."),
        dropped_deleted=Counter(
            "audiosync_chunks_dropped_deleted_total",
            "Chunks of deleted conversations dropped instead of uploaded.",
        ),
        blind_uploads=Counter(
            "audiosync_blind_uploads_total",
            "Objects uploaded while their conversation's deleted mark could not be read.",
        ),
        deletion_items=Counter(
            "audiosync_deletion_items_total",
            "Deleted-conversation re-checks and blind-upload notes carried out, by outcome.",
            ["outcome"],
        ),
        late_objects=Counter(
            "audiosync_late_objects_deleted_total",
            "Objects a re-check or a blind-upload note found in a deleted conversation.",
        ),
        parked=Counter(
            "audiosync_sessions_parked_total", "Sessions parked after repeated failures."
        ),
        failures=Counter(
            "audiosync_flush_failures_total", "Failed flushes by error type.", ["reason"]
        ),
        object_conflicts=Counter(
            "audiosync_object_conflicts_total",
            "Uploads that met their object name taken by other bytes (a 412, the object "
            "there not equal): nothing was overwritten, the entries stay in Redis.",
        ),
        upload_seconds=Histogram(
            "audiosync_upload_seconds",
            "Wall time of one create-only upload, retries included.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        ),
        shard_tasks=Counter(
            "audiosync_shard_tasks_sent_total",
            "Flush tasks sent, one per shard with due sessions and no task queued or running.",
        ),
        flush_seconds=Histogram(
            "audiosync_flush_seconds",
            "Wall time of one flush.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        ),
    )
    for outcome in FLUSH_OUTCOMES:
        made.flushes.labels(outcome=outcome)
    for outcome in OBJECT_OUTCOMES:
        made.objects.labels(outcome=outcome)
    for reason in FAILURE_REASONS:
        made.failures.labels(reason=reason)
    for outcome in DELETION_OUTCOMES:
        made.deletion_items.labels(outcome=outcome)
    return made


def record_error(exc: BaseException, seconds: float) -> None:
    """Count a flush task that raised (Redis refusing writes, say) as failed."""
    m = _metrics()
    m.flushes.labels(outcome="failed").inc()
    m.failures.labels(reason=type(exc).__name__[:60]).inc()
    m.flush_seconds.observe(seconds)


def record_dispatch(sent: int) -> None:
    _metrics().shard_tasks.inc(sent)


def record_flush(result: Any, seconds: float) -> None:
    """Count one flush (a ``workers.flush.FlushResult``)."""
    m = _metrics()
    if result.failed and not result.skipped:
        outcome = "failed"
        m.failures.labels(reason=result.failed.split(":", 1)[0][:60]).inc()
    elif result.skipped == "lease lost":
        outcome = "lease_lost"
    elif result.skipped and result.skipped.startswith("handed back"):
        outcome = "handed_back"
    elif result.skipped:
        outcome = "skipped"
    else:
        outcome = "ok"
    m.flushes.labels(outcome=outcome).inc()
    m.objects.labels(outcome="created").inc(result.objects_created)
    m.objects.labels(outcome="already_stored").inc(result.objects_already_stored)
    m.chunks.inc(result.chunks_stored)
    m.bytes.inc(result.bytes_stored)
    m.quarantined.inc(result.quarantined)
    m.dropped_deleted.inc(result.chunks_dropped_deleted)
    m.blind_uploads.inc(result.blind_uploads)
    if result.parked:
        m.parked.inc()
    m.object_conflicts.inc(result.object_conflicts)
    for upload in result.upload_seconds:
        m.upload_seconds.observe(upload)
    m.flush_seconds.observe(seconds)


def record_deletion_run(result: Any) -> None:
    """Count one run of the deletion work (a ``workers.deletions.DeletionRun``)."""
    m = _metrics()
    m.deletion_items.labels(outcome="rechecked").inc(result.rechecks)
    m.deletion_items.labels(outcome="blind_resolved").inc(result.blind_resolved)
    m.deletion_items.labels(outcome="failed").inc(result.failed)
    m.late_objects.inc(result.late_objects + result.blind_deleted)


def serve(port: int) -> bool:
    """Serve /metrics from this (a worker's main) process; False if the port is taken."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    _metrics()  # every known series at zero from the start, before the pool's first flush
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    register_build_info(registry)
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        log.warning(
            "metrics: port %d is taken (%s); the worker serving it reads %s, where this "
            "worker's pool writes too",
            port,
            exc,
            os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
        )
        return False
    log.info("metrics on http://0.0.0.0:%d/metrics", port)
    return True


def process_exited(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
