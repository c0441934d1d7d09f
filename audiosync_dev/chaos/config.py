"""What a chaos run is asked to do: the presets (``ChaosConfig``), the fault proxy
they configure and the names every phase shares (levels, the fleet's secret)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from audiosync_dev.faults import GcsFaultProxy

STANDARD = "standard"
ENHANCED = "enhanced"
SECRET = "chaos-run-secret-not-for-production-0123456789"


@dataclass(frozen=True)
class ChaosConfig:
    """One chaos run. ``short()``, ``long()`` and their ``..._cluster()`` twins (the stream
    store on a 3-master Redis Cluster) are the documented presets."""

    name: str = "short"
    sessions: int = 16
    workers: int = 3
    kills: int = 3
    redis_restarts: int = 1
    fault_rate: float = 0.2  # share of uploads faulted (503, stalls, lost responses)
    poison: int = 8
    pauses: int = 2  # SIGSTOP a flush mid-upload for longer than its lease: a zombie
    duplicates: int = 4  # exact copies of real chunk entries (a retry past the pusher's mark)
    seconds: float = 80.0  # how long the pushing lasts (wall clock)
    audio_seconds: float = 40.0  # mean audio per session (each is 75-125 % of it)
    speed: float = 1.5  # audio seconds pushed per wall second, per session
    push_threads: int = 4
    drop_rate: float = 0.05  # share of pusher appends whose reply is lost
    stall_seconds: tuple[float, float] = (4.0, 8.0)
    lease_seconds: float = 3.0
    batch_max_age_seconds: float = 2.0
    sweep_interval_seconds: float = 0.3
    worker_concurrency: int = 2
    drain_timeout: float = 120.0
    min_fault_fraction: float = 0.10
    require_stalls_past_lease: bool = True
    seed: int = 1
    cluster: bool = False  # the streams on a 3-master Redis Cluster, the broker a plain valkey
    workdir: Path | None = None  # default: a temp dir, removed after a passing run
    keep_workdir: bool = False

    @classmethod
    def short(cls) -> ChaosConfig:
        """About 2 minutes on 2 cores (when the fleet drains)."""
        return cls()

    @classmethod
    def long(cls) -> ChaosConfig:
        return cls(
            name="long",
            sessions=200,
            workers=4,
            kills=24,
            redis_restarts=2,
            fault_rate=0.15,
            poison=40,
            pauses=10,
            duplicates=20,
            seconds=600.0,
            audio_seconds=60.0,
            speed=1.5,
            push_threads=8,
            drop_rate=0.03,
            stall_seconds=(5.0, 10.0),
            drain_timeout=300.0,
        )

    @classmethod
    def short_cluster(cls) -> ChaosConfig:
        """The short run on a Redis Cluster; two node restarts (two different nodes)."""
        return replace(cls.short(), name="short-cluster", cluster=True, redis_restarts=2)

    @classmethod
    def long_cluster(cls) -> ChaosConfig:
        return replace(cls.long(), name="long-cluster", cluster=True)

    def gcs_proxy(self, upstream_url: str) -> GcsFaultProxy:
        """The fault proxy of this run: ``fault_rate`` split over the four faults."""
        f = self.fault_rate
        return GcsFaultProxy(
            upstream_url,
            error_rate=0.30 * f,
            stall_before_rate=0.25 * f,
            stall_after_rate=0.25 * f,
            lost_response_rate=0.20 * f,
            stall_seconds=self.stall_seconds,
            seed=self.seed,
        )
