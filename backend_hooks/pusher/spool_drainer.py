"""The spool drainer: ``python -m backend_hooks.spool_cli drain --watch``.

A long-running process on a spool directory shared by many pusher pods (an RWX volume):
every ``--interval`` seconds it adopts the owner directories of dead pushers and appends
their files to Redis, exactly as a starting pusher does (``spool.drain_dead_owners``), and
says what waits on its metrics port. It holds an owner directory of its own (locked and
leased, heartbeaten by a thread), so two drainers, or a drainer and the pushers, never take
the same directory: a dead owner's directory is renamed by exactly one adopter.

- A failed pass (Redis away, a refusal, the volume away) is logged and counted in
  ``audiosync_spool_drain_errors_total``; the next pass waits ``interval`` doubled per
  failed pass in a row, at most ``max_backoff`` seconds; the files stay where they were.
- An entry it cannot read, list or probe (another user's file or directory, a FIFO, EIO)
  is quarantined or skipped with a logged reason and counted in
  ``audiosync_spool_skipped_entries_total{reason}``; the other entries go on.
- ``audiosync_spool_drain_pass_timestamp_seconds`` is the end of the last pass: a pass
  stuck in the volume stops it (the other gauges keep their last values meanwhile).
- SIGTERM/SIGINT: the append in flight finishes (its files are renamed ``.done``), the
  next batch is not started (its files go back to ``.ready``), the process exits 0; what it
  adopted and did not append is adopted by the next drainer or pusher (its lock is gone).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from backend_hooks.adapters import redis_store
from backend_hooks.contract import redis_keys
from backend_hooks.contract.build_info import register_build_info
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher import spool
from backend_hooks.pusher.appender import Appender
from backend_hooks.pusher.spool_format import SpoolRecord, consecutive_runs

log = logging.getLogger("backend_hooks.spool_drainer")

DEFAULT_INTERVAL_SECONDS = 10.0
DEFAULT_MAX_BACKOFF_SECONDS = 60.0
MAX_WAIT_SECONDS = 3600.0  # the bound of --interval and --max-backoff
DRAIN_BATCH = 32  # spooled entries per append call


class DrainerStopping(Exception):
    """The drainer was asked to stop: the batch not yet appended goes back to ``.ready``."""


def redis_append(settings: Settings) -> spool.AppendFn:
    """Append spooled records to the stream store ``settings`` names, one call per run of
    consecutive entries of a session, due at once (they are late already)."""
    appender = Appender(
        redis_store.connect(settings.redis_url, cluster=settings.redis_cluster),
        settings.due_shards,
    )

    def append(records: list[SpoolRecord]) -> None:
        for run in consecutive_runs(records):
            appender.append(
                redis_keys.SessionKeys(run[0].session_id, run[0].shard),
                [r.entry for r in run],
                first_n=run[0].n,
                urgent=True,
                max_age_seconds=settings.batch_max_age_seconds,
            )

    return append


def next_wait(interval: float, max_backoff: float, failed_in_a_row: int) -> float:
    """Seconds until the next pass: ``interval``, doubled per failed pass in a row, at most
    ``max_backoff`` (never less than ``interval``)."""
    if failed_in_a_row <= 0:
        return interval
    return min(max(interval, max_backoff), interval * 2.0 ** min(failed_in_a_row, 32))


def checked_seconds(name: str, value: float) -> float:
    """``value`` if it is a finite number of seconds in (0, MAX_WAIT_SECONDS], else ValueError."""
    if not math.isfinite(value) or not 0 < value <= MAX_WAIT_SECONDS:
        raise ValueError(f"{name} must be seconds in (0, {MAX_WAIT_SECONDS:.0f}], got {value}")
    return value


class DrainerMetrics:
    """The drainer's Prometheus series. The gauges describe the whole directory: every
    drainer on it reports the same numbers (take ``max()`` over them, never ``sum()``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.bytes = Gauge(
            "audiosync_spool_bytes",
            "Bytes of the entry files waiting in the spool directory (every owner's)",
            registry=registry,
        )
        self.files = Gauge(
            "audiosync_spool_files",
            "Entry files waiting in the spool directory (every owner's, live or dead)",
            registry=registry,
        )
        self.oldest_age = Gauge(
            "audiosync_spool_oldest_file_age_seconds",
            "Age of the oldest entry file in the spool directory (0 when empty)",
            registry=registry,
        )
        self.quarantined = Gauge(
            "audiosync_spool_quarantined_files",
            "Files in the spool's quarantine/ (torn or undecodable; see their .reason)",
            registry=registry,
        )
        self.drained = Counter(
            "audiosync_spool_drained_entries",
            "Spooled entries this drainer appended to Redis",
            registry=registry,
        )
        self.errors = Counter(
            "audiosync_spool_drain_errors",
            "Failed appends and failed passes of this drainer (Redis or the volume away)",
            registry=registry,
        )
        self.skipped = Counter(
            "audiosync_spool_skipped_entries",
            "Spool entries this drainer could not read, list or probe, by reason: "
            "unreadable_file (quarantined), unlistable_directory, unprobeable_owner "
            "(skipped, tried again next pass)",
            ["reason"],
            registry=registry,
        )
        for reason in spool.SKIP_REASONS:
            self.skipped.labels(reason=reason)
        self.pass_timestamp = Gauge(
            "audiosync_spool_drain_pass_timestamp_seconds",
            "Unix time this drainer last finished a pass (0 before its first): a pass stuck "
            "in the volume (a hard NFS mount whose server is gone) stops it while the "
            "metrics port still answers and every other gauge keeps its last value",
            registry=registry,
        )

    def observe(self, seen: spool.SpoolSurvey, now: float) -> None:
        self.files.set(seen.files)
        self.bytes.set(seen.bytes)
        self.oldest_age.set(0.0 if seen.oldest_mtime is None else max(0.0, now - seen.oldest_mtime))
        self.quarantined.set(seen.quarantined_files)


@dataclass
class PassOutcome:
    appended: int = 0
    errors: int = 0


class Drainer:
    """Drains dead owners' files from ``own``'s root through ``append``, pass after pass."""

    def __init__(
        self,
        own: spool.Spool,
        append: spool.AppendFn,
        metrics: DrainerMetrics,
        *,
        interval: float,
        max_backoff: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.own = own
        self._append = append
        self.metrics = metrics
        self.interval = interval
        self.max_backoff = max_backoff
        self._clock = clock
        self.stop = threading.Event()
        self._outcome = PassOutcome()
        own.on_skip = self._counted_skip

    def _counted_skip(self, reason: str) -> None:
        self.metrics.skipped.labels(reason=reason).inc()

    def _counted_append(self, records: list[SpoolRecord]) -> None:
        if self.stop.is_set():
            raise DrainerStopping("the drainer is stopping")
        try:
            self._append(records)
        except Exception:
            self._outcome.errors += 1
            self.metrics.errors.inc()
            raise
        self._outcome.appended += len(records)
        self.metrics.drained.inc(len(records))

    def drain_once(self) -> PassOutcome:
        """One pass: adopt and append what dead owners left; never raises for a failure of
        Redis or of the volume (it is logged and counted)."""
        self._outcome = PassOutcome()
        try:
            spool.drain_dead_owners(
                self.own,
                self._counted_append,
                may_try=lambda: not self.stop.is_set(),
                batch=DRAIN_BATCH,
                refused_session=_refused_session,
            )
        except Exception as exc:  # the volume (adopt, list, rename): the next pass retries
            log.warning("spool drainer: the pass failed: %s", exc, exc_info=True)
            self._outcome.errors += 1
            self.metrics.errors.inc()
        return self._outcome

    def observe(self) -> spool.SpoolSurvey | None:
        try:
            seen = spool.survey(self.own.root)
        except OSError as exc:
            log.warning("spool drainer: cannot count %s: %s", self.own.root, exc)
            self.metrics.errors.inc()
            return None
        self.metrics.observe(seen, self._clock())
        return seen

    def run(self) -> int:
        """Pass after pass until ``stop`` is set; returns the entries appended."""
        appended = 0
        failed_in_a_row = 0
        self.observe()
        while not self.stop.is_set():
            outcome = self.drain_once()
            appended += outcome.appended
            failed_in_a_row = failed_in_a_row + 1 if outcome.errors else 0
            seen = self.observe()
            self.metrics.pass_timestamp.set(self._clock())
            wait = next_wait(self.interval, self.max_backoff, failed_in_a_row)
            if outcome.appended or outcome.errors:
                log.info(
                    "spool drainer: appended %d entries, %d errors; %s; next pass in %.1f s",
                    outcome.appended,
                    outcome.errors,
                    _waiting(seen),
                    wait,
                )
            self.stop.wait(wait)
        return appended


def _refused_session(exc: BaseException) -> bool:
    """Redis refused that session's key (``WRONGTYPE``: a collision): the other sessions
    go on. Redis away, the volume failing or the drainer stopping end the pass."""
    return isinstance(exc, redis_store.REDIS_ERRORS) and not redis_store.is_outage(exc)


def _waiting(seen: spool.SpoolSurvey | None) -> str:
    if seen is None:
        return "the directory could not be counted"
    if seen.oldest_mtime is None:
        return f"{seen.files} entries wait"
    age = time.time() - seen.oldest_mtime
    return f"{seen.files} entries ({seen.bytes} bytes) wait, the oldest {age:.0f} s old"


def _heartbeat(own: spool.Spool, stop: threading.Event) -> None:
    """Touch the drainer's lease well within AUDIOSYNC_SPOOL_LEASE_SECONDS until stopped."""
    period = min(1.0, own.lease_seconds / 3)
    while not stop.wait(period):
        try:
            own.heartbeat()
        except OSError as exc:  # the volume away: its flock still says it lives
            log.warning("spool drainer: cannot touch its lease: %s", exc)


def watch(
    settings: Settings,
    root: str,
    *,
    interval: float,
    max_backoff: float,
    metrics_port: int | None,
) -> int:
    """Run the drainer on ``root`` until SIGTERM or SIGINT; exit status 0."""
    registry = CollectorRegistry()
    metrics = DrainerMetrics(registry)
    register_build_info(registry)
    own = spool.Spool(
        root, max_bytes=settings.spool_max_bytes, lease_seconds=settings.spool_lease_seconds
    )
    append = redis_append(settings)
    drainer = Drainer(own, append, metrics, interval=interval, max_backoff=max_backoff)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("spool drainer: %s received, stopping", signal.Signals(signum).name)
        drainer.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    heartbeat = threading.Thread(target=_heartbeat, args=(own, drainer.stop), daemon=True)
    heartbeat.start()
    if metrics_port is not None:
        start_http_server(metrics_port, registry=registry)
    log.info(
        "spool drainer %s: watching %s every %.1f s (backoff at most %.1f s)%s",
        own.owner,
        Path(root),
        interval,
        max(interval, max_backoff),
        "" if metrics_port is None else f", metrics on port {metrics_port}",
    )
    try:
        appended = drainer.run()
    finally:
        drainer.stop.set()
        heartbeat.join()
        own.close()
    log.info("spool drainer: stopped; appended %d entries since it started", appended)
    return 0
