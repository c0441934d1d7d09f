"""Prometheus metrics of the worker fleet, served when ``AUDIOSYNC_METRICS_PORT`` is set.

Flushes run in Celery's prefork pool processes, so the counters and histograms use
prometheus-client's multiprocess mode: each process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory unless the environment names
one), which must be set before ``prometheus_client`` is imported anywhere in the
process; this module is imported first by ``workers.celery_app`` for that reason. The
worker's main process serves ``http://<host>:<port>/metrics``: the pool's counters
summed, plus gauges read from Redis at scrape time (due sessions and the oldest due age,
per shard: the fleet's lag; quarantined sessions).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from backend_hooks.errors import ConfigError

METRICS_PORT_ENV = "AUDIOSYNC_METRICS_PORT"
log = logging.getLogger(__name__)


def metrics_port(environ: dict[str, str] | None = None) -> int | None:
    """The port to serve metrics on, or None (unset: no metrics server)."""
    text = (os.environ if environ is None else environ).get(METRICS_PORT_ENV, "")
    if not text:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{METRICS_PORT_ENV} must be a TCP port (1-65535), got {text!r}")
    return int(text)


def _wanted() -> bool:
    try:
        return metrics_port() is not None
    except ConfigError:
        return False  # celeryconfig stops the process with the message


if _wanted() and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="audiosync-metrics-")

from prometheus_client import (  # noqa: E402  (after PROMETHEUS_MULTIPROC_DIR is set)
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402

FLUSHES = Counter(
    "audiosync_flushes_total",
    "Flushes by outcome: ok, skipped (another flush held the lease), lease_lost (a fenced "
    "zombie), handed_back (shutdown), failed.",
    ["outcome"],
)
OBJECTS = Counter(
    "audiosync_objects_flushed_total",
    "Objects committed: created, or already_stored (a 412 checked equal).",
    ["outcome"],
)
CHUNKS = Counter("audiosync_chunks_flushed_total", "Chunks in committed objects.")
BYTES = Counter("audiosync_bytes_flushed_total", "Bytes of committed objects.")
QUARANTINED = Counter("audiosync_entries_quarantined_total", "Entries moved to quarantine.")
PARKED = Counter("audiosync_sessions_parked_total", "Sessions parked after repeated failures.")
FAILURES = Counter("audiosync_flush_failures_total", "Failed flushes by error type.", ["reason"])
UPLOAD_SECONDS = Histogram(
    "audiosync_upload_seconds",
    "Wall time of one create-only upload, retries included.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
FLUSH_SECONDS = Histogram(
    "audiosync_flush_seconds",
    "Wall time of one flush.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def record_flush(result: Any, seconds: float) -> None:
    """Count one flush (a ``workers.flush.FlushResult``)."""
    if result.failed and not result.skipped:
        outcome = "failed"
        FAILURES.labels(reason=result.failed.split(":", 1)[0][:60]).inc()
    elif result.skipped == "lease lost":
        outcome = "lease_lost"
    elif result.skipped and result.skipped.startswith("handed back"):
        outcome = "handed_back"
    elif result.skipped:
        outcome = "skipped"
    else:
        outcome = "ok"
    FLUSHES.labels(outcome=outcome).inc()
    OBJECTS.labels(outcome="created").inc(result.objects_created)
    OBJECTS.labels(outcome="already_stored").inc(result.objects_already_stored)
    CHUNKS.inc(result.chunks_stored)
    BYTES.inc(result.bytes_stored)
    QUARANTINED.inc(result.quarantined)
    if result.parked:
        PARKED.inc()
    for upload in result.upload_seconds:
        UPLOAD_SECONDS.observe(upload)
    FLUSH_SECONDS.observe(seconds)


class RedisCollector:
    """Gauges read from Redis when scraped: the lag per due shard, quarantined sessions."""

    def __init__(self, store_factory: Any) -> None:
        self._store_factory = store_factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from workers import operations  # the fleet's Redis reads

        up = GaugeMetricFamily("audiosync_redis_up", "1 if the scrape could read Redis.")
        try:
            store = self._store_factory()
            now = store.time()
            shards = operations.due_shards(store, now)
            quarantined = len(store.quarantined_sessions(operations.SCAN_LIMIT))
        except Exception as exc:  # a scrape must answer even when Redis is away
            log.warning("metrics: cannot read Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        due = GaugeMetricFamily(
            "audiosync_due_sessions", "Sessions whose due time has come.", labels=["shard"]
        )
        age = GaugeMetricFamily(
            "audiosync_due_oldest_age_seconds",
            "How long the longest-waiting due session has waited: the fleet's lag.",
            labels=["shard"],
        )
        held = GaugeMetricFamily(
            "audiosync_sessions_held", "Sessions with entries in Redis.", labels=["shard"]
        )
        for shard in shards:
            due.add_metric([str(shard.shard)], shard.due)
            age.add_metric([str(shard.shard)], shard.oldest_due_seconds)
            held.add_metric([str(shard.shard)], shard.sessions)
        yield from (due, age, held)
        q = GaugeMetricFamily("audiosync_quarantined_sessions", "Sessions with a quarantine.")
        q.add_metric([], quarantined)
        yield q


def serve(port: int, store_factory: Any) -> None:
    """Serve /metrics from this (the worker's main) process."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(RedisCollector(store_factory))
    start_http_server(port, registry=registry)
    log.info("metrics on http://0.0.0.0:%d/metrics", port)


def process_exited(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
