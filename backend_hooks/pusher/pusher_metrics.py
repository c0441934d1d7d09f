"""Prometheus metrics of a pusher process, read from ``AudioSyncClient.stats()`` at scrape
time (nothing is counted on the push path).

The backend registers them on its own registry (prometheus-client comes with the
``[pusher]`` extra)::

    from backend_hooks.pusher import pusher_metrics
    pusher_metrics.register(client)            # prometheus_client.REGISTRY by default

Names (all gauges but the ``_total`` counters): ``audiosync_pusher_sessions``,
``audiosync_pusher_queued_chunks`` (handed over, not yet encoded: the pool's queue depth),
``audiosync_pusher_held_entries`` (waiting in memory for Redis),
``audiosync_pusher_spooled_entries``, ``audiosync_pusher_spool_bytes``,
``audiosync_pusher_spool_max_bytes``, ``audiosync_pusher_breaker_open`` (1 while appends
skip Redis), ``audiosync_pusher_breaker_trips_total``,
``audiosync_pusher_redis_calls_in_flight``, ``audiosync_pusher_redis_stalls_total`` (calls
unanswered past ``AUDIOSYNC_REDIS_STALL_SECONDS``: Redis counted as stalled),
``audiosync_pusher_refused_pushes_total`` (BufferFullError/SpoolFullError),
``audiosync_pusher_spool_full_total``, ``audiosync_pusher_spool_adopted_owners_total``,
``audiosync_pusher_spool_quarantined_files_total``; and ``audiosync_build_info{version}``
(backend_hooks/contract/build_info.py: once per registry, however many clients register).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from backend_hooks.contract.build_info import register_build_info
from backend_hooks.pusher.breaker import CLOSED

if TYPE_CHECKING:
    from backend_hooks.pusher.client import AudioSyncClient


class PusherCollector:
    def __init__(self, client: AudioSyncClient) -> None:
        self._client = client

    def describe(self) -> list[Any]:
        return []  # described at collect time: no scrape at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self._client.stats()

        def gauge(name: str, text: str, value: float) -> Any:
            return GaugeMetricFamily(f"audiosync_pusher_{name}", text, value=value)

        def counter(name: str, text: str, value: float) -> Any:
            return CounterMetricFamily(f"audiosync_pusher_{name}", text, value=value)

        yield gauge("sessions", "open sessions", stats.sessions)
        yield gauge("queued_chunks", "chunks handed over, not yet encoded", stats.queued_chunks)
        yield gauge("held_entries", "entries waiting in memory for Redis", stats.held_entries)
        yield gauge("spooled_entries", "this process's entries in the spool", stats.spooled_entries)
        yield gauge("breaker_open", "1 while appends skip Redis", stats.breaker.state != CLOSED)
        yield counter("breaker_trips", "times the breaker opened", stats.breaker.trips)
        yield gauge("redis_calls_in_flight", "Redis calls in flight", stats.breaker.in_flight)
        yield counter(
            "redis_stalls",
            "calls unanswered past AUDIOSYNC_REDIS_STALL_SECONDS",
            stats.breaker.stalls,
        )
        yield counter("refused_pushes", "pushes refused: memory buffer full", stats.refused_pushes)
        if stats.spool is not None:
            yield gauge("spool_bytes", "bytes in the spool", stats.spool.bytes)
            yield gauge("spool_max_bytes", "AUDIOSYNC_SPOOL_MAX_BYTES", stats.spool.max_bytes)
            yield counter("spool_full", "spool writes refused: full", stats.spool.full_refusals)
            yield counter(
                "spool_adopted_owners",
                "dead owners' directories adopted",
                stats.spool.adopted_owners,
            )
            yield counter(
                "spool_quarantined_files",
                "spool files that did not decode",
                stats.spool.quarantined_files,
            )


def register(client: AudioSyncClient, registry: Any = None) -> PusherCollector:
    """Register the client's metrics on ``registry`` (default: prometheus_client's)."""
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    collector = PusherCollector(client)
    registry.register(collector)
    register_build_info(registry)
    return collector
