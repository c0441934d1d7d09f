"""The fleet-wide gauges, served by one process: ``celery -A workers audiosync exporter``.

The lag per shard, the audio held, the quarantine and the state of Redis describe the
whole fleet, so one process reads them for everybody, instead of every worker pod reading
every shard's indexes at each scrape (100 pods and 4,096 shards: real Redis load, and 100
copies of one number). The workers' ``AUDIOSYNC_METRICS_PORT`` serves only their own
counters and histograms (workers/metrics.py).

Bounded, so that a scrape always answers, also while a Redis Cluster master is stalled,
when the gauges matter most:

- Redis is read at most once per ``AUDIOSYNC_EXPORTER_CACHE_SECONDS``, however many
  Prometheus replicas scrape: a scrape in between is served the last read.
- One read takes at most ``AUDIOSYNC_EXPORTER_READ_SECONDS``. The shards are read node by
  node, each node's in a thread of its own, at the node's own clock, with a client that
  gives every command one attempt of at most a quarter of that budget (no retry, no
  cluster retry loop). A node that has not answered when the budget is spent is reported
  ``audiosync_redis_node_up{node="host:port"} 0`` and ``audiosync_redis_up 0``; the gauges of
  the shards of every node that answered are served. A node whose read of an earlier
  scrape is still running is not read again until that read ends (it is reported out
  meanwhile): at most one read thread per node, however long it stalls.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend_hooks.adapters import redis_store
from backend_hooks.contract.settings import Settings
from workers import operations
from workers.operations import DeletionBacklog, HeldAudio, ShardStatus
from workers.store import NOEVICTION, WorkerStore

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

#: The port when neither ``--port`` nor AUDIOSYNC_METRICS_PORT says one.
DEFAULT_PORT = 9808
#: Nodes read at once (a Redis Cluster seldom has more masters; more wait their turn).
READ_THREADS = 32
#: Quarantined sessions a read looks at in all (shared among the nodes by their shards).
QUARANTINE_GAUGE_LIMIT = 10_000
#: The share of the read budget one command may take (its socket timeout).
COMMAND_SHARE = 0.25
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeRead:
    """What one node's shards hold, read at the node's clock."""

    shards: list[ShardStatus]
    audio: list[HeldAudio]
    quarantined: int
    deletions: DeletionBacklog
    noeviction: bool | None  # None: its maxmemory-policy could not be read


def read_node(store: WorkerStore, node: str, shards: list[int], total: int) -> NodeRead:
    """Every gauge of the shards ``node`` holds; the session samples and the quarantine
    read are this node's share (by its shards, of ``total``) of the fleet's."""
    now = store.in_shard(shards[0]).time()  # the clock that stamped these shards' entries
    share = len(shards) / max(1, total)
    return NodeRead(
        shards=operations.due_shards(store, now, shards),
        audio=operations.held_audio(
            store, now, budget=max(1, int(operations.HELD_SAMPLE * share)), shards=shards
        ),
        quarantined=operations.quarantined_count(
            store, max(1, math.ceil(QUARANTINE_GAUGE_LIMIT * share)), shards
        ),
        deletions=operations.deletion_backlog(store, now, shards),
        noeviction=_noeviction(store, node),
    )


def _noeviction(store: WorkerStore, node: str) -> bool | None:
    try:
        return store.memory_policy_of(node) == NOEVICTION
    except redis_store.REDIS_ERRORS as exc:  # INFO refused: the other gauges still count
        log.warning("exporter: cannot read the maxmemory-policy of %s: %s", node, exc)
        return None


class FleetCollector:
    """The fleet-wide gauges, for a prometheus-client registry (``collect``)."""

    def __init__(
        self,
        store_factory: Callable[[], WorkerStore],
        *,
        cache_seconds: float,
        read_seconds: float,
    ) -> None:
        self._store_factory = store_factory
        self._cache_seconds = cache_seconds
        self._read_seconds = read_seconds
        self._lock = threading.Lock()  # one read at a time; scrapes meanwhile wait for it
        self._store: WorkerStore | None = None
        self._last: list[Metric] = []
        self._read_at: float | None = None  # time.monotonic() of the last read's end
        self._reading: dict[str, concurrent.futures.Future[NodeRead]] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(
            READ_THREADS, thread_name_prefix="audiosync-exporter-read"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> FleetCollector:
        """Reading the stream store of ``settings`` with one bounded attempt a command."""

        def store() -> WorkerStore:
            client = redis_store.connect_one_attempt(
                settings.redis_url,
                cluster=settings.redis_cluster,
                seconds=settings.exporter_read_seconds * COMMAND_SHARE,
            )
            return WorkerStore(client, settings.due_shards)

        return cls(
            store,
            cache_seconds=settings.exporter_cache_seconds,
            read_seconds=settings.exporter_read_seconds,
        )

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            fresh = self._read_at is not None and (
                time.monotonic() - self._read_at < self._cache_seconds
            )
            if not fresh:
                self._last = self._read()
                self._read_at = time.monotonic()
            return iter(list(self._last))

    def close(self) -> None:
        """Stop reading: reads still running are left to their socket timeout."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _read(self) -> list[Metric]:
        deadline = time.monotonic() + self._read_seconds
        try:
            if self._store is None:
                self._store = self._store_factory()
            store = self._store
            shards = store.all_shards()
            nodes = store.shards_by_node(shards)
        except redis_store.REDIS_ERRORS as exc:  # a scrape must answer when Redis is away
            log.warning("exporter: cannot read Redis: %s", exc)
            return [_redis_up(0)]
        started = {
            node: self._start(store, node, group, len(shards)) for node, group in nodes.items()
        }
        running = [f for f in started.values() if f is not None]
        concurrent.futures.wait(running, timeout=max(0.0, deadline - time.monotonic()))
        return fleet_metrics({node: _answer(node, f) for node, f in started.items()})

    def _start(
        self, store: WorkerStore, node: str, shards: list[int], total: int
    ) -> concurrent.futures.Future[NodeRead] | None:
        """A read of ``node``'s shards, or None while an earlier read of it still runs."""
        earlier = self._reading.get(node)
        if earlier is not None and not earlier.done():
            return None
        future = self._pool.submit(read_node, store, node, shards, total)
        self._reading[node] = future
        return future


def _answer(node: str, future: concurrent.futures.Future[NodeRead] | None) -> NodeRead | None:
    """The node's read, or None when it did not answer within the budget (or failed)."""
    if future is None:
        log.warning("exporter: %s: the read of an earlier scrape is still waiting", node)
        return None
    if not future.done():
        log.warning("exporter: %s did not answer within the read budget", node)
        return None
    error = future.exception()
    if error is not None:
        log.warning("exporter: cannot read %s: %s", node, error)
        return None
    return future.result()


def fleet_metrics(reads: Mapping[str, NodeRead | None]) -> list[Metric]:
    """Every fleet-wide gauge from the reads of the nodes (None: a node out). They describe
    the whole fleet: one exporter serves them (README, "Metrics")."""
    from prometheus_client.core import GaugeMetricFamily

    answered = [r for r in reads.values() if r is not None]
    nodes = GaugeMetricFamily(
        "audiosync_redis_node_up",
        "1 if the node (host:port) answered the last read within the budget; its shards' "
        "gauges are missing while it is 0.",
        labels=["node"],
    )
    for node, read in sorted(reads.items()):
        nodes.add_metric([node], int(read is not None))
    out: list[Metric] = [_redis_up(int(len(answered) == len(reads))), nodes]
    out += _shard_gauges([s for r in answered for s in r.shards])
    out += _held_gauges([a for r in answered for a in r.audio])
    quarantined = GaugeMetricFamily(
        "audiosync_quarantined_sessions",
        f"Sessions with entries in quarantine (of the first {QUARANTINE_GAUGE_LIMIT} in the "
        "indexes, of the nodes that answered).",
    )
    quarantined.add_metric([], sum(r.quarantined for r in answered))
    out.append(quarantined)
    out += _deletion_gauges([r.deletions for r in answered])
    policies = [r.noeviction for r in answered if r.noeviction is not None]
    if policies:
        noeviction = GaugeMetricFamily(
            "audiosync_redis_noeviction",
            "1 if the stream store's maxmemory-policy is noeviction on every node read, else "
            "0 (status and the worker's log name the policy).",
        )
        noeviction.add_metric([], int(all(policies)))
        out.append(noeviction)
    return out


def _redis_up(value: int) -> Metric:
    from prometheus_client.core import GaugeMetricFamily

    up = GaugeMetricFamily(
        "audiosync_redis_up",
        "1 if the last read reached every node of the stream store within the budget "
        "(audiosync_redis_node_up says which did not).",
    )
    up.add_metric([], value)
    return up


def _shard_gauges(shards: list[ShardStatus]) -> list[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    due = GaugeMetricFamily(
        "audiosync_due_sessions", "Sessions whose due time has come.", labels=["shard"]
    )
    age = GaugeMetricFamily(
        "audiosync_due_oldest_age_seconds",
        "How long the longest-waiting due session has waited.",
        labels=["shard"],
    )
    held = GaugeMetricFamily(
        "audiosync_sessions_held", "Sessions with entries in Redis.", labels=["shard"]
    )
    for shard in sorted(shards, key=lambda s: s.shard):
        label = [str(shard.shard)]
        due.add_metric(label, shard.due)
        age.add_metric(label, shard.oldest_due_seconds)
        held.add_metric(label, shard.sessions)
    return [due, age, held]


def _held_gauges(audio: list[HeldAudio]) -> list[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    oldest = GaugeMetricFamily(
        "audiosync_oldest_audio_age_seconds",
        "Age of the oldest audio still in the shard's streams, sessions backing off "
        "included (of the sessions sampled).",
        labels=["shard"],
    )
    size = GaugeMetricFamily(
        "audiosync_bytes_held",
        "Bytes of the shard's streams (MEMORY USAGE; scaled up from the sample when the "
        "shard holds more sessions than it).",
        labels=["shard"],
    )
    sampled = GaugeMetricFamily(
        "audiosync_held_sessions_sampled",
        f"Sessions of the shard read for the two gauges above (a read looks at most at "
        f"{operations.HELD_SAMPLE} in all).",
        labels=["shard"],
    )
    for shard_audio in sorted(audio, key=lambda a: a.shard):
        label = [str(shard_audio.shard)]
        oldest.add_metric(label, shard_audio.oldest_seconds)
        size.add_metric(label, shard_audio.bytes_held)
        sampled.add_metric(label, shard_audio.sampled)
    return [oldest, size, sampled]


def _deletion_gauges(backlogs: list[DeletionBacklog]) -> list[Metric]:
    """What deleted conversations still ask of the fleet (``operations.DeletionBacklog``),
    summed over the nodes (the ages: their maximum)."""
    from prometheus_client.core import GaugeMetricFamily

    out: list[Metric] = []
    for name, text, value in (
        (
            "deletion_rechecks",
            "Queued re-checks of deleted conversations.",
            sum(b.rechecks for b in backlogs),
        ),
        (
            "deletion_recheck_overdue_seconds",
            "How long past its due time the most overdue re-check waits.",
            max((b.recheck_overdue_seconds for b in backlogs), default=0.0),
        ),
        (
            "blind_uploads_pending",
            "Uploads made while their deleted mark could not be read, not yet settled.",
            sum(b.blind_uploads for b in backlogs),
        ),
        (
            "blind_upload_oldest_age_seconds",
            "Age of the oldest unsettled blind upload.",
            max((b.blind_oldest_seconds for b in backlogs), default=0.0),
        ),
        (
            "deletion_items_failing",
            "Re-checks and blind-upload notes that failed at least once (they stay).",
            sum(b.failing for b in backlogs),
        ),
    ):
        gauge = GaugeMetricFamily(f"audiosync_{name}", text)
        gauge.add_metric([], value)
        out.append(gauge)
    return out


def serve_until(
    stop: threading.Event,
    collector: FleetCollector,
    port: int,
    address: str,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    """Serve ``collector`` on ``http://ADDRESS:PORT/metrics`` until ``stop`` is set (the
    command sets it on SIGTERM and SIGINT), then shut the server down. Raises OSError when
    the port cannot be bound; ``on_ready`` runs once it is."""
    from prometheus_client import CollectorRegistry, start_http_server

    from backend_hooks.contract.build_info import register_build_info

    registry = CollectorRegistry()
    registry.register(collector)
    register_build_info(registry)
    server, thread = start_http_server(port, addr=address, registry=registry)
    on_ready()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        collector.close()


def fleet_gauges(store: WorkerStore, *, read_seconds: float = 30.0) -> list[Metric]:
    """One read of every fleet-wide gauge from ``store``, uncached (tests, tools)."""
    collector = FleetCollector(lambda: store, cache_seconds=0.0, read_seconds=read_seconds)
    try:
        return list(collector.collect())
    finally:
        collector.close()
