"""The chaos run: the whole pipeline under faults, audited chunk by chunk.

    python -m audiosync_dev.chaos [--short | --long] [--cluster] [--sessions N] [--workers K]
        [--kills N] [--redis-restarts N] [--fault-rate F] [--poison N] [--seconds S] [--seed S]
        [--keep]

It starts its own valkey and fake-gcs-server (``LocalStack``), a ``GcsFaultProxy`` in front
of fake-gcs-server (the fleet's only way to GCS) and a ``RedisReplyDropProxy`` in front of
valkey (the pusher's only way to Redis; the fleet talks to valkey directly), K real
``celery -A workers worker`` processes and one ``celery -A workers beat``. It pushes N
sessions through the real ``AudioSyncClient`` while, from its own thread, it SIGKILLs
workers (and starts replacements), restarts Redis and injects poison entries; the proxies
fail, stall and lose GCS uploads and lose the replies of pusher appends all along.

It knows every chunk the pushers produced without reading Redis: the same pushes go into
a pure ``Chunker``, which cuts exactly the chunks the session cut. After the pushing, the
faults stop and the fleet drains; then every object in the bucket is read straight from
fake-gcs-server, its name and digest checked, opened, parsed and decoded, and every chunk
accounted for by identity (session, seq): stored exactly once, nothing lost, nothing
unexpected, no overlap; every poison entry quarantined with a reason and none stored.
The verdict is one table; the exit code is 0 only when every line passes. docs/CHAOS.md
explains each line.

``--cluster`` (``ChaosConfig.short_cluster()``): the stream store is a 3-master valkey Redis
Cluster (``LocalStack(cluster=True)``) and the plain valkey only the Celery broker; the
pusher reaches each node through its own reply-drop proxy (``RedisClusterReplyDropProxies``),
a "Redis restart" restarts one cluster node (each restart another), and everything the run
reads or writes in the store goes through a ``RedisCluster`` client, its scans over every
primary.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, cast
from urllib.parse import urlsplit

import numpy as np
import redis
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from audiosync_dev import processes
from audiosync_dev.faults import (
    GcsFaultProxy,
    GcsFaultStats,
    RedisClusterReplyDropProxies,
    RedisDropStats,
    RedisReplyDropProxy,
)
from audiosync_dev.localstack import LocalStack, StackInfo
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, container, envelope, naming, redis_store
from backend_hooks.chunker import Chunker, RawChunk, timestamp_to_us
from backend_hooks.codec import ChunkEncoder
from backend_hooks.errors import AudioSyncError, EnqueueError
from backend_hooks.redis_store import RedisClient
from backend_hooks.session import Session
from backend_hooks.settings import Settings

STANDARD = "standard"
ENHANCED = "enhanced"
SECRET = "chaos-run-secret-not-for-production-0123456789"
# The first session's audio starts 12 h before the run, inside the pusher's one-day
# AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS (farther, the pusher places it at its own clock).
AUDIO_START_AGO = 43_200.0
SESSION_SPACING = 300.0  # and each further session up to 5 minutes later (all in those 12 h)
POISON_SEQ_BASE = 1_000_000  # poison chunks carry seq >= this, so the audit knows them
POISON_KINDS = (
    "wrong_v",
    "missing_seq",
    "unknown_kind",
    "non_utf8_uid",
    "rate_zero",
    "negative_start_us",
    "absurd_start_us",
    "garbage_data",
)
STUCK_SECONDS = 30.0  # a drain that changes nothing for this long has stopped for good
WORKER_STOP_SECONDS = 15.0


def session_of_key(key: bytes | str) -> str:
    where = redis_store.session_of_key(key)
    if where is None:
        raise ValueError(f"{key!r} is not a session key")
    return where[1]


def scan_keys(r: RedisClient, pattern: str) -> list[bytes]:
    """Every key matching ``pattern``: on a Redis Cluster, of every primary."""
    if isinstance(r, RedisCluster):
        found = r.scan_iter(match=pattern, count=1000, target_nodes=RedisCluster.PRIMARIES)
    else:
        found = r.scan_iter(match=pattern, count=1000)
    return [cast(bytes, key) for key in found]


def due_members(r: RedisClient) -> int:
    """Sessions in any shard's due index (the legacy one included)."""
    legacy = redis_store.due_key(redis_store.LEGACY_SHARD)
    keys: list[bytes | str] = [*scan_keys(r, redis_store.DUE_KEY_PATTERN), legacy]
    return sum(int(r.zcard(k)) for k in keys)


def restart_order(rng: random.Random, nodes: int, restarts: int) -> list[int]:
    """Which cluster node (1 to ``nodes``) each of ``restarts`` restarts stops: a random
    order in which every node comes once before any comes again, and none twice in a row
    (when there are two or more)."""
    if nodes < 1:
        raise ValueError(f"a cluster has at least one node, got {nodes}")
    order: list[int] = []
    while len(order) < restarts:
        batch = list(range(1, nodes + 1))
        rng.shuffle(batch)
        if order and len(batch) > 1 and batch[0] == order[-1]:
            batch[0], batch[-1] = batch[-1], batch[0]
        order += batch
    return order[:restarts]


# -- configuration ------------------------------------------------------------------------


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


# -- what was pushed ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedChunk:
    session_id: str
    seq: int
    uid: str
    cid: str
    rate: int
    level: str
    start_us: int
    samples: int
    offset: int = field(default=0, compare=False)  # first sample in the session's audio
    audio: bytes = field(default=b"", compare=False, repr=False)  # the session's PCM

    @property
    def end_us(self) -> int:
        return self.start_us + self.samples * 1_000_000 // self.rate

    @property
    def pcm(self) -> bytes:
        return self.audio[2 * self.offset : 2 * (self.offset + self.samples)]


@dataclass(frozen=True)
class SessionPlan:
    index: int
    uid: str
    conversations: tuple[str, ...]  # the second one, if any, starts at switch_at
    rate: int
    level: str
    audio_seconds: float
    switch_at: float | None  # audio seconds
    gap_at: float | None  # audio seconds; the timestamps jump by gap_seconds there
    gap_seconds: float
    t0: float  # timestamp of the first sample
    start_after: float  # wall seconds into the push phase
    seed: int


def make_plans(config: ChaosConfig, now: float | None = None) -> list[SessionPlan]:
    """The sessions of a run; their audio is timestamped in the 12 h before ``now``.

    Timestamps are synthetic (the audio is pushed faster than real time) but recent, so a
    worker that refuses implausible timestamps accepts them.
    """
    rng = random.Random(config.seed)
    base = float(int(time.time() if now is None else now) - AUDIO_START_AGO)
    spacing = min(SESSION_SPACING, 0.9 * AUDIO_START_AGO / max(1, config.sessions))
    lengths = [
        round(config.audio_seconds * rng.uniform(0.75, 1.25), 2) for _ in range(config.sessions)
    ]
    order = list(range(config.sessions))
    rng.shuffle(order)
    plans = []
    for i in range(config.sessions):
        audio = lengths[i]
        window = min(audio / config.speed, config.seconds)
        slot = order[i] / max(1, config.sessions - 1)
        uid = f"chaos-u{i:03d}"
        switch = round(audio * rng.uniform(0.3, 0.7), 2) if i % 3 == 1 else None
        convs = (f"chaos-c{i:03d}a", f"chaos-c{i:03d}b") if switch else (f"chaos-c{i:03d}a",)
        plans.append(
            SessionPlan(
                index=i,
                uid=uid,
                conversations=convs,
                rate=16000 if i % 2 == 0 else 8000,
                level=ENHANCED if (i // 2) % 2 == 0 else STANDARD,
                audio_seconds=audio,
                switch_at=switch,
                gap_at=round(audio / 2, 2) if i % 5 == 2 else None,
                gap_seconds=2.5,
                t0=base + spacing * i,
                start_after=slot * (config.seconds - window),
                seed=config.seed * 1000 + i,
            )
        )
    return plans


@dataclass
class LiveSession:
    session_id: str
    shard: int
    uid: str
    cid: str
    rate: int
    level: str
    t0: float


class LiveRegistry:
    """Sessions being pushed right now, for the poison injector."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, LiveSession] = {}

    def update(self, live: LiveSession) -> None:
        with self._lock:
            self._live[live.session_id] = replace(live)

    def remove(self, session_id: str) -> None:
        with self._lock:
            self._live.pop(session_id, None)

    def snapshot(self) -> list[LiveSession]:
        with self._lock:
            return [replace(s) for s in self._live.values()]


class SessionPusher:
    """Pushes one session's audio, paced, and mirrors every push into a pure Chunker."""

    def __init__(
        self,
        plan: SessionPlan,
        client: AudioSyncClient,
        chunk_seconds: float,
        speed: float,
        registry: LiveRegistry,
    ) -> None:
        self.plan = plan
        self.client = client
        self.speed = speed
        self.registry = registry
        settings = client.settings
        self.chunker = Chunker(
            plan.rate,
            round(chunk_seconds * plan.rate),
            tolerance_us=round(settings.timestamp_tolerance_ms * 1000),
            window_us=round(settings.push_timestamp_window_seconds * 1_000_000),
        )
        self.rng = random.Random(plan.seed)
        self.total = round(plan.audio_seconds * plan.rate)  # samples
        self.pcm = b""
        self.pos = 0  # samples pushed
        self.conv = 0
        self.shift = 0.0
        self.session: Session | None = None
        self.expected: list[ExpectedChunk] = []
        self.done = False
        self.pushes = 0
        self.recorded = 0  # samples in self.expected
        self.switch_pos: int | None = None  # sample where the second conversation starts
        self.gap_pos: int | None = None  # first sample pushed with the shifted timestamps

    @property
    def cid(self) -> str:
        return self.plan.conversations[self.conv]

    def _record(self, chunks: Iterable[RawChunk], cid: str) -> None:
        assert self.session is not None
        for c in chunks:
            self.expected.append(
                ExpectedChunk(
                    session_id=self.session.session_id,
                    seq=c.seq,
                    uid=self.plan.uid,
                    cid=cid,
                    rate=self.plan.rate,
                    level=self.plan.level,
                    start_us=c.start_us,
                    samples=c.sample_count,
                    offset=self.recorded,
                    audio=self.pcm,
                )
            )
            self.recorded += c.sample_count

    def _live(self) -> LiveSession:
        assert self.session is not None
        return LiveSession(
            self.session.session_id,
            self.session.redis_keys.shard,
            self.plan.uid,
            self.cid,
            self.plan.rate,
            self.plan.level,
            self.plan.t0,
        )

    def step(self, now: float) -> None:
        """Push until the audio position catches up with ``now`` (wall seconds in)."""
        plan = self.plan
        if self.done or now < plan.start_after:
            return
        if self.session is None:
            self.pcm = speech_like(plan.audio_seconds, plan.rate, seed=plan.seed)
            self.total = len(self.pcm) // 2
            self.session = self.client.open_session(plan.uid, self.cid, plan.rate, plan.level)
            self.registry.update(self._live())
        target = min(self.total, round((now - plan.start_after) * self.speed * plan.rate))
        while self.pos < target:
            at = self.pos / plan.rate
            if plan.switch_at is not None and self.conv == 0 and at >= plan.switch_at:
                old = self.cid
                self.session.switch_conversation(plan.conversations[1])
                self._record(self.chunker.flush(), old)
                self.conv = 1
                self.switch_pos = self.pos
                self.registry.update(self._live())
            if plan.gap_at is not None and self.shift == 0.0 and at >= plan.gap_at:
                self.shift = plan.gap_seconds
                self.gap_pos = self.pos
            n = min(self.rng.randint(plan.rate // 50, plan.rate), self.total - self.pos)
            piece = self.pcm[2 * self.pos : 2 * (self.pos + n)]
            timestamp = plan.t0 + at + self.shift
            self.session.push(piece, timestamp)
            now_us = round(self.client.clock() * 1_000_000)  # plausible times: unused
            self._record(
                self.chunker.push(piece, timestamp_to_us(timestamp), now_us=now_us), self.cid
            )
            self.pos += n
            self.pushes += 1
        if self.pos >= self.total:
            self.close()

    def close(self) -> None:
        assert self.session is not None
        deadline = time.monotonic() + 60.0
        while True:
            try:
                self.session.close()
                break
            except EnqueueError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        self._record(self.chunker.flush(), self.cid)
        self.registry.remove(self.session.session_id)
        self.done = True

    def model_problems(self) -> list[str]:
        """The expected chunks against a model that does not use the Chunker: they must
        tile exactly the audio pushed, seq 0, 1, 2, ..., each at t0 + offset / rate (plus
        the gap once past it), in the conversation in force at its first sample."""
        plan, out = self.plan, []
        if [e.seq for e in self.expected] != list(range(len(self.expected))):
            out.append(f"{plan.uid}: seqs are not 0..{len(self.expected) - 1}")
        if self.recorded != self.pos:
            out.append(f"{plan.uid}: chunks hold {self.recorded} samples, {self.pos} pushed")
        for e in self.expected:
            shift = plan.gap_seconds if self.gap_pos is not None and e.offset >= self.gap_pos else 0
            want_us = timestamp_to_us(plan.t0 + e.offset / plan.rate + shift)
            conv = 1 if self.switch_pos is not None and e.offset >= self.switch_pos else 0
            if abs(e.start_us - want_us) > 50 or e.cid != plan.conversations[conv]:
                out.append(f"{plan.uid} seq {e.seq}: start/conversation not where it was pushed")
            if not 0 < e.samples <= self.chunker.chunk_samples:
                out.append(f"{plan.uid} seq {e.seq}: {e.samples} samples")
        return out


# -- the fleet ----------------------------------------------------------------------------


class Fleet:
    """The celery workers and the beat; every process it started is stopped by ``stop``."""

    def __init__(self, env: dict[str, str], workdir: Path, concurrency: int) -> None:
        self.env = env
        self.workdir = workdir
        self.concurrency = concurrency
        self._lock = threading.Lock()
        self._workers: list[processes.CeleryProcess] = []
        self._beat: processes.CeleryProcess | None = None
        self._started = 0

    def _name(self) -> str:
        with self._lock:
            self._started += 1
            return f"w{self._started}"

    def add_worker(self) -> processes.CeleryProcess:
        worker = processes.worker(
            self.env, self.workdir, beat=False, name=self._name(), concurrency=self.concurrency
        )
        with self._lock:
            self._workers.append(worker)
        return worker

    def start(self, workers: int) -> None:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for future in [pool.submit(self.add_worker) for _ in range(workers)]:
                future.result()
        self._beat = processes.beat(self.env, self.workdir)

    def running(self) -> list[processes.CeleryProcess]:
        with self._lock:
            return [w for w in self._workers if w.running()]

    def owner_of(
        self, address: tuple[str, int], server_port: int
    ) -> tuple[processes.CeleryProcess, int] | None:
        """The running worker, and the process of its group, that holds the TCP socket
        from ``address`` to ``server_port`` (Linux /proc): the sender of a request the
        proxy is holding. Both ends count: the kernel gives one local port to connections
        to different servers (a worker's Redis socket can share the sender's port)."""
        local_hex, remote_hex = f":{address[1]:04X}", f":{server_port:04X}"
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as f:
                for line in list(f)[1:]:
                    cols = line.split()
                    if cols[1].endswith(local_hex) and cols[2].endswith(remote_hex):
                        inodes.add(f"socket:[{cols[9]}]")
        for worker in self.running():
            for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
                try:
                    if os.getpgid(pid) != worker.pid:
                        continue
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                            return worker, pid
        return None

    def replace_killed(self, victim: processes.CeleryProcess) -> tuple[str, str]:
        """Forget a worker killed already and start a replacement; (killed, started)."""
        with self._lock:
            self._workers.remove(victim)
        return victim.name, self.add_worker().name

    def kill_one(self, rng: random.Random) -> tuple[str, str]:
        """SIGKILL a random worker and start a replacement; (killed, started) names."""
        candidates = self.running()
        if not candidates:
            raise RuntimeError("no running worker to kill")
        victim = rng.choice(candidates)
        victim.kill()
        with self._lock:
            self._workers.remove(victim)
        return victim.name, self.add_worker().name

    def stop(self) -> None:
        with self._lock:
            everything = [*self._workers, *([self._beat] if self._beat else [])]
            self._workers, self._beat = [], None
        if not everything:
            return
        with ThreadPoolExecutor(len(everything)) as pool:
            list(pool.map(lambda p: p.stop(WORKER_STOP_SECONDS), everything))


# -- chaos --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Poison:
    k: int
    kind: str
    session_id: str
    entry_id: str
    data: bytes  # searched for in every object


@dataclass
class ChaosLog:
    kills: int = 0
    kills_mid_upload: int = 0
    pauses: int = 0
    lease_lost_lines: int = 0  # "lost its lease" in the worker logs: zombie writes refused
    duplicates: list[tuple[str, int]] = field(default_factory=list)  # (session, seq)
    redis_restarts: int = 0
    # (cluster node, sessions of it being pushed then), one per restart, in order
    restarted_nodes: list[tuple[int, int]] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: int = 0


def _container(live: LiveSession, seq: int, keys: envelope.UserKeys, seed: int) -> bytes:
    """A valid (sealed, for enhanced) chunk container with the given seq: 0.4 s of audio."""
    pcm = speech_like(0.4, live.rate, seed=seed)
    encoder = ChunkEncoder(live.rate)
    info = container.ChunkInfo(
        session_id=live.session_id,
        seq=seq,
        start_us=round(live.t0 * 1_000_000),
        sample_rate=live.rate,
        sample_count=len(pcm) // 2,
    )
    data = container.build_chunk(info, encoder.encode(pcm), encoder.pre_skip)
    if live.level == ENHANCED:
        data = envelope.seal(keys, live.uid, info, data)
    return data


def poison_fields(
    kind: str,
    k: int,
    live: LiveSession,
    keys: envelope.UserKeys,
    rng: random.Random,
    real: dict[bytes, bytes] | None = None,
) -> dict[bytes, bytes]:
    """The fields of poison entry ``k``: well-formed but for the one thing ``kind`` breaks.

    ``garbage_data`` copies ``real`` (a real chunk entry's fields) when given.
    """
    if kind == "garbage_data" and real is not None:
        fields = {key: value for key, value in real.items() if key != b"poison"}
        fields[b"data"] = rng.randbytes(max(64, len(real.get(b"data", b""))))
    else:
        data = _container(live, POISON_SEQ_BASE + k, keys, seed=50_000 + k)
        fields = {
            b"v": b"1",
            b"kind": b"chunk",
            b"uid": live.uid.encode(),
            b"cid": live.cid.encode(),
            b"enq_us": str(round(time.time() * 1_000_000)).encode(),
            b"level": live.level.encode(),
            b"rate": str(live.rate).encode(),
            b"seq": str(POISON_SEQ_BASE + k).encode(),
            b"start_us": str(round(live.t0 * 1_000_000)).encode(),
            b"samples": str(round(0.4 * live.rate)).encode(),
            b"data": data,
        }
        if kind == "wrong_v":
            fields[b"v"] = b"9"
        elif kind == "missing_seq":
            del fields[b"seq"]
        elif kind == "unknown_kind":
            fields[b"kind"] = b"chunk-v9"
        elif kind == "non_utf8_uid":
            fields[b"uid"] = b"\xff\xfe\x80chaos"
        elif kind == "rate_zero":
            fields[b"rate"] = b"0"
        elif kind == "negative_start_us":
            fields[b"start_us"] = b"-5000000"
        elif kind == "absurd_start_us":
            fields[b"start_us"] = str(10**12 * 1_000_000).encode()  # 1e12 s in the future
        elif kind == "garbage_data":
            fields[b"data"] = rng.randbytes(len(data))
        else:
            raise ValueError(f"unknown poison kind {kind!r}")
    fields[b"poison"] = str(k).encode()
    return fields


def _keys(live: LiveSession) -> redis_store.SessionKeys:
    return redis_store.SessionKeys(live.session_id, live.shard)


def _last_real_chunk(r: RedisClient, live: LiveSession) -> dict[bytes, bytes] | None:
    raw = cast(
        list[tuple[bytes, dict[bytes, bytes]]],
        r.xrevrange(_keys(live).chunks, count=50),
    )
    for _, fields in raw:
        if fields.get(b"kind") == b"chunk" and b"poison" not in fields and b"data" in fields:
            return fields
    return None


def inject_poison(
    r: RedisClient,
    k: int,
    kind: str,
    registry: LiveRegistry,
    keys: envelope.UserKeys,
    rng: random.Random,
    give_up_at: float,
) -> Poison | None:
    """XADD poison entry ``k`` into a live session's stream and make the session due now."""
    while True:
        live = registry.snapshot()
        rng.shuffle(live)
        real = None
        target = live[0] if live else None
        if kind == "garbage_data":  # wants a real entry to copy, if one is still there
            for candidate in live:
                real = _last_real_chunk(r, candidate)
                if real is not None:
                    target = candidate
                    break
        last_try = time.monotonic() >= give_up_at
        if target is not None and (real is not None or kind != "garbage_data" or last_try):
            fields = poison_fields(kind, k, target, keys, rng, real)
            entry_id = cast(bytes, r.xadd(_keys(target).chunks, fields))  # type: ignore[arg-type]
            r.zadd(_keys(target).due, {target.session_id: time.time()})
            return Poison(k, kind, target.session_id, entry_id.decode(), fields[b"data"])
        if last_try:
            return None
        time.sleep(0.3)


def count_in_logs(workdir: Path, text: str) -> int:
    """How often ``text`` appears in the worker logs of the run (killed workers' too)."""
    return sum(
        log.read_text(errors="replace").count(text)
        for log in workdir.glob("*.log")
        if log.name.startswith("w")
    )


ZOMBIE_GRACE = 1.0  # seconds a woken zombie gets to try its writes before the next action


def pause_mid_upload(
    proxy: GcsFaultProxy, fleet: Fleet, seconds: float, stop: threading.Event
) -> bool:
    """SIGSTOP the process that sends the next upload, once it is stored and before its
    answer; SIGCONT it ``seconds`` later. Its lease runs out meanwhile and another worker
    takes the session over; woken up, the flush reads its answer and tries to commit: a
    zombie, which the lease's fence must stop from writing anything."""
    paused: list[int] = []

    def act(address: tuple[str, int]) -> bool:
        owner = fleet.owner_of(address, proxy.port)
        if owner is not None:
            os.kill(owner[1], signal.SIGSTOP)
            paused.append(owner[1])
        return owner is not None

    proxy.hold_next_upload(act, 15.0, cut=False)
    if not paused:
        return False
    try:
        stop.wait(seconds)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(paused[0], signal.SIGCONT)
    stop.wait(ZOMBIE_GRACE)  # before the next action (a Redis restart, say): it writes now
    return True


def inject_duplicate(
    r: RedisClient, registry: LiveRegistry, rng: random.Random, give_up_at: float
) -> tuple[str, int] | None:
    """XADD an exact copy of a live session's latest real chunk entry (as a pusher whose
    append mark was lost would) and make the session due now; (session, seq) of it. Tries
    until ``give_up_at`` (monotonic) for a session whose stream holds a chunk."""
    while True:
        live = registry.snapshot()
        rng.shuffle(live)
        for candidate in live:
            real = _last_real_chunk(r, candidate)
            if real is not None and b"seq" in real:
                r.xadd(_keys(candidate).chunks, real)  # type: ignore[arg-type]
                r.zadd(_keys(candidate).due, {candidate.session_id: time.time()})
                return candidate.session_id, int(real[b"seq"])
        if time.monotonic() >= give_up_at:
            return None
        time.sleep(0.1)


@dataclass(frozen=True)
class ChaosEvent:
    at: float  # wall seconds into the push phase
    kind: str  # kill | pause | duplicate | restart | poison
    k: int = 0


def chaos_schedule(config: ChaosConfig) -> list[ChaosEvent]:
    rng = random.Random(config.seed + 7)
    s = config.seconds
    events = []
    for j in range(config.kills):
        lo, hi = 0.10 + 0.75 * j / config.kills, 0.10 + 0.75 * (j + 1) / config.kills
        events.append(ChaosEvent(s * rng.uniform(lo, hi), "kill"))
    for j in range(config.redis_restarts):
        events.append(ChaosEvent(s * (j + 1) / (config.redis_restarts + 1), "restart"))
    for k in range(config.poison):  # kinds in turn: k % len(POISON_KINDS)
        events.append(ChaosEvent(s * rng.uniform(0.10, 0.80), "poison", k))
    for _ in range(config.pauses):
        events.append(ChaosEvent(s * rng.uniform(0.10, 0.80), "pause"))
    for _ in range(config.duplicates):
        events.append(ChaosEvent(s * rng.uniform(0.10, 0.85), "duplicate"))
    return sorted(events, key=lambda e: e.at)


def run_chaos(
    config: ChaosConfig,
    events: list[ChaosEvent],
    *,
    phase_start: float,
    stop: threading.Event,
    fleet: Fleet,
    stack: LocalStack,
    r: RedisClient,
    registry: LiveRegistry,
    keys: envelope.UserKeys,
    record: ChaosLog,
    say: Callable[[str], None],
    gcs_proxy: GcsFaultProxy | None = None,
) -> None:
    rng = random.Random(config.seed + 11)
    late_limit = config.seconds + 60.0
    order: list[int] = []  # the cluster nodes to restart, in turn
    if config.cluster:
        nodes = len(stack.cluster_node_urls)
        if not nodes:
            raise ValueError("a cluster run needs a LocalStack with a cluster")
        order = restart_order(random.Random(config.seed + 13), nodes, config.redis_restarts)
    restarts = iter(order)
    for event in events:
        delay = phase_start + event.at - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return
        if time.monotonic() - phase_start > late_limit:
            record.skipped += 1
            continue
        try:
            if event.kind == "kill":
                # Kill the sender of the next upload, once the object is stored and before
                # the flush hears so (and commits); a random worker if none comes in 15 s.
                victims: list[processes.CeleryProcess] = []

                def act(address: tuple[str, int], victims: list[Any] = victims) -> bool:
                    assert gcs_proxy is not None
                    owner = fleet.owner_of(address, gcs_proxy.port)
                    if owner is not None:
                        owner[0].kill()  # at once: the replacement starts below
                        victims.append(owner[0])
                    return owner is not None

                held = gcs_proxy.hold_next_upload(act, 15.0) if gcs_proxy else None
                if victims:
                    killed, started = fleet.replace_killed(victims[0])
                    record.kills_mid_upload += 1
                else:
                    killed, started = fleet.kill_one(rng)
                record.kills += 1
                say(
                    f"SIGKILLed worker {killed}"
                    + (" between an upload and its commit" if victims else f" (held {held})")
                    + f"; started {started}"
                )
            elif event.kind == "pause":
                if gcs_proxy is not None and pause_mid_upload(
                    gcs_proxy, fleet, config.lease_seconds + 3.0, stop
                ):
                    record.pauses += 1
                    say(f"paused a flush mid-upload for {config.lease_seconds + 3:.0f} s")
                else:
                    record.errors.append("pause: no upload whose sender was found in 15 s")
            elif event.kind == "duplicate":
                give_up = min(time.monotonic() + 10.0, phase_start + late_limit)
                dup = inject_duplicate(r, registry, rng, give_up)
                if dup is None:
                    record.errors.append("duplicate: no live session with a chunk entry")
                else:
                    record.duplicates.append(dup)
                    say(f"appended again: chunk {dup[0][:8]}/{dup[1]}")
            elif event.kind == "restart" and config.cluster:
                # One primary (SIGTERM, its AOF complete); back with its slots from its
                # nodes file, writable ~2 s later: its shards' commands fail meanwhile.
                number = next(restarts)
                assert isinstance(r, RedisCluster)
                live = [s.shard for s in registry.snapshot()]
                on_node = sessions_by_node(r, stack.cluster_node_urls, live)[number]
                begun = time.monotonic()
                stack.restart_redis_cluster_node(number)
                record.redis_restarts += 1
                record.restarted_nodes.append((number, on_node))
                say(
                    f"restarted cluster node {number} ({on_node} sessions of it being pushed; "
                    f"SIGTERM, AOF); cluster ok again after {time.monotonic() - begun:.1f} s"
                )
            elif event.kind == "restart":
                stack.restart_redis()
                record.redis_restarts += 1
                say("restarted Redis (SIGTERM, AOF) on the same port")
            else:
                kind = POISON_KINDS[event.k % len(POISON_KINDS)]
                give_up = min(time.monotonic() + 10.0, phase_start + late_limit)
                poison = inject_poison(r, event.k, kind, registry, keys, rng, give_up)
                if poison is None:
                    record.errors.append(f"poison {event.k} ({kind}): no live session to poison")
                else:
                    record.poison.append(poison)
                    say(f"poison {event.k} ({kind}) -> session {poison.session_id[:8]}")
        except Exception as exc:  # a failed action is reported, the run goes on
            record.errors.append(f"{event.kind}: {type(exc).__name__}: {exc}"[:300])
            say(f"chaos action {event.kind} failed: {exc!r}"[:300])


# -- draining -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisLeft:
    streams: int = 0
    entries: int = 0
    plans: int = 0
    intents: int = 0
    due: int = 0
    chunk_ids: frozenset[tuple[str, int]] = frozenset()  # (session, seq) still in streams

    @property
    def empty(self) -> bool:
        return not (self.streams or self.entries or self.plans or self.intents or self.due)

    def signature(self) -> tuple[int, ...]:
        return (self.streams, self.entries, self.plans, self.intents, self.due)


def _count(r: RedisClient, pattern: str) -> int:
    return len(scan_keys(r, pattern))


def redis_left(r: RedisClient, *, with_ids: bool = False) -> RedisLeft:
    streams = scan_keys(r, redis_store.session_key_pattern("chunks"))
    entries = 0
    ids: set[tuple[str, int]] = set()
    for key in streams:
        entries += r.xlen(key)
        if with_ids:
            raw = cast(list[tuple[bytes, dict[bytes, bytes]]], r.xrange(key))
            for _, fields in raw:
                with contextlib.suppress(KeyError, ValueError):
                    if b"poison" not in fields and fields.get(b"kind") == b"chunk":
                        ids.add((session_of_key(key), int(fields[b"seq"])))
    return RedisLeft(
        streams=len(streams),
        entries=entries,
        plans=_count(r, redis_store.session_key_pattern("plan")),
        intents=_count(r, redis_store.session_key_pattern("intent")),
        due=due_members(r),
        chunk_ids=frozenset(ids),
    )


def wait_drained(r: RedisClient, timeout: float) -> tuple[bool, float]:
    """Until nothing is left in Redis; False after ``timeout`` or once stuck (no change)."""
    started = time.monotonic()
    last: tuple[int, ...] | None = None
    changed = started
    while True:
        now = time.monotonic()
        try:
            left = redis_left(r)
        except redis.RedisError:
            left = None
        if left is not None and left.empty:
            return True, now - started
        if left is not None and left.signature() != last:
            last, changed = left.signature(), now
        if now - started > timeout or now - changed > STUCK_SECONDS:
            return False, now - started
        time.sleep(0.3)


# -- the audit ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FoundChunk:
    session_id: str
    seq: int
    start_us: int
    samples: int
    rate: int
    pcm: bytes = field(default=b"", compare=False, repr=False)  # decoded

    @property
    def end_us(self) -> int:
        return self.start_us + self.samples * 1_000_000 // self.rate


SILENCE_RMS = 50.0  # below this (about -56 dBFS) a piece of the test speech is a pause


def same_audio(pushed: bytes, decoded: bytes) -> bool:
    """Opus is lossy: the decoded chunk must correlate with what was pushed (0.84-0.92 on
    this speech; another piece of it correlates ~0). A pause (a short chunk cut at a
    switch can be nothing else) must come back as near silence: the codec adds a little
    noise to digital silence, and noise does not correlate with zeros."""
    a = np.frombuffer(pushed, "<i2").astype(np.float64)
    b = np.frombuffer(decoded, "<i2").astype(np.float64)
    if len(a) != len(b) or not len(a):
        return False
    rms_a, rms_b = float(np.sqrt(np.mean(a * a))), float(np.sqrt(np.mean(b * b)))
    if rms_a < SILENCE_RMS:
        return rms_b < 4 * SILENCE_RMS
    if rms_b == 0.0:
        return False
    return bool(float(np.dot(a, b)) / (rms_a * rms_b * len(a)) >= 0.5)


@dataclass
class ObjectAudit:
    name: str
    size: int
    uid: str | None = None
    cid: str | None = None
    sealed: bool = False
    name_problem: str | None = None
    undecodable: str | None = None
    bad_chunks: int = 0
    chunks: list[FoundChunk] = field(default_factory=list)

    @property
    def in_order(self) -> bool:
        """Chunks of one object in time order (a reader plays the chain as stored)."""
        keys = [(c.session_id, c.start_us, c.seq) for c in self.chunks]
        return all(
            a[0] != b[0] or (a[1] < b[1] and a[2] < b[2]) for a, b in itertools.pairwise(keys)
        )


def _decode_into(audit: ObjectAudit, plaintext: bytes) -> None:
    """Parse and decode the chunks of one plaintext; failures count, never raise."""
    try:
        parsed = container.parse_chunks(plaintext)
    except (AudioSyncError, ValueError) as exc:
        audit.bad_chunks += 1
        audit.undecodable = audit.undecodable or f"chunks do not parse: {exc}"[:200]
        return
    for chunk in parsed:
        info = chunk.info
        pcm = b""
        try:
            pcm = chunk.decode()
            ok = len(pcm) == 2 * info.sample_count
        except (AudioSyncError, ValueError) as exc:
            ok = False
            audit.undecodable = audit.undecodable or f"chunk does not decode: {exc}"[:200]
        if not ok:
            audit.bad_chunks += 1
            continue
        audit.chunks.append(
            FoundChunk(
                info.session_id, info.seq, info.start_us, info.sample_count, info.sample_rate, pcm
            )
        )


def _open_sealed(audit: ObjectAudit, keys: envelope.UserKeys, uid: str, data: bytes) -> None:
    """Each record on its own, so one bad record does not hide the others before it."""
    pos = 0
    index = 0
    while pos < len(data):
        try:
            record = envelope.frame_at(data, pos, index=index, name=audit.name)
        except AudioSyncError as exc:
            audit.bad_chunks += 1
            audit.undecodable = audit.undecodable or f"sealed record framing: {exc}"[:200]
            return  # nothing after a broken frame can be found
        pos, index = record.end, index + 1
        try:
            plaintext = envelope.open_record(keys, uid, record, name=audit.name)
            if record.info is not None:  # v1: the chunk must say what the header says
                [chunk] = container.parse_chunks(plaintext)
                if chunk.info != record.info:
                    raise ValueError(f"chunk {chunk.info} under header {record.info}")
        except (AudioSyncError, ValueError) as exc:
            audit.bad_chunks += 1
            audit.undecodable = audit.undecodable or f"sealed record: {exc}"[:200]
            continue
        _decode_into(audit, plaintext)


def _split_ogg_chain(data: bytes) -> list[bytes]:
    """Cut a chained Ogg file at each beginning-of-stream page (to salvage around garbage)."""
    marks = [i for i in range(len(data)) if data.startswith(b"OggS\x00\x02", i)]
    if not marks or marks[0] != 0:
        marks = [0, *marks]
    return [data[a:b] for a, b in zip(marks, [*marks[1:], len(data)], strict=True)]


def _first_stream(data: bytes) -> bytes:
    """The pages of ``data`` up to its first end-of-stream page (what follows may be junk)."""
    pos = 0
    while pos + 27 <= len(data) and data.startswith(b"OggS", pos):
        segments = data[pos + 26]
        end = pos + 27 + segments + sum(data[pos + 27 : pos + 27 + segments])
        if end > len(data):
            break
        if data[pos + 5] & 0x04:  # EOS
            return data[:end]
        pos = end
    return data


def audit_object(name: str, data: bytes, keys: envelope.UserKeys) -> ObjectAudit:
    audit = ObjectAudit(name=name, size=len(data))
    parts = name.split("/")
    try:
        parsed = naming.parse_object_name(name)
    except AudioSyncError as exc:
        audit.name_problem = f"name does not parse: {exc}"
        parsed = None
    if len(parts) == 4 and parts[0] == "chunks":
        audit.uid, audit.cid = parts[1], parts[2]
    elif audit.name_problem is None:
        audit.name_problem = "not at chunks/{uid}/{conversation}/{file}"
    if parsed is not None and audit.name_problem is None:
        if not parsed.is_new:
            audit.name_problem = "a legacy name (no digest)"
        elif parsed.digest != naming.content_digest(data):
            audit.name_problem = f"digest {parsed.digest} is not the content's"
    audit.sealed = sealed = parsed.sealed if parsed is not None else name.endswith(".enc")
    if sealed:
        if audit.uid is None:
            audit.undecodable = "sealed, but no uid in the name to open it with"
            return audit
        _open_sealed(audit, keys, audit.uid, data)
    else:
        try:
            container.parse_chunks(data)
            _decode_into(audit, data)
        except (AudioSyncError, ValueError) as exc:
            audit.undecodable = f"not a chained Ogg Opus file: {exc}"[:200]
            for piece in _split_ogg_chain(data):
                _decode_into(audit, _first_stream(piece))
    if parsed is not None and audit.chunks and not audit.name_problem and not audit.undecodable:
        start = min(c.start_us for c in audit.chunks)
        end = max(c.end_us for c in audit.chunks)
        if parsed.start_us != start // 1000 * 1000 or parsed.end_us != end // 1000 * 1000:
            audit.name_problem = "name's times are not its chunks' times"
    return audit


@dataclass
class Audit:
    objects: int = 0
    bytes: int = 0
    expected: int = 0
    conversations: int = 0
    found: int = 0
    lost: int = 0
    lost_in_redis: int = 0
    twice: int = 0
    twice_in_one_object: int = 0
    mismatched: int = 0
    overlaps: int = 0
    undecodable_objects: int = 0
    undecodable_chunks: int = 0
    bad_names: int = 0
    unexpected: int = 0
    wrong_audio: int = 0
    out_of_order: int = 0
    empty_objects: int = 0
    model_problems: int = 0
    poison_injected: int = 0
    poison_quarantined: int = 0
    poison_in_bucket: int = 0
    real_quarantined: int = 0
    duplicates_quarantined: int = 0
    quarantine_malformed: int = 0
    quarantine_unindexed: int = 0
    left: RedisLeft = field(default_factory=RedisLeft)
    problems: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.problems) < 2000:
            self.problems.append(text)


def list_bucket(gcs_url: str, bucket: str) -> dict[str, bytes]:
    """Every object of the bucket, read straight from fake-gcs-server."""
    client: Any = storage.Client(
        project="local",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_url},
    )
    try:
        handle = client.bucket(bucket)
        names = [b.name for b in client.list_blobs(handle)]

        def download(name: str) -> bytes:
            return bytes(handle.blob(name).download_as_bytes())

        with ThreadPoolExecutor(8) as pool:
            return dict(zip(names, pool.map(download, names), strict=True))
    finally:
        client.close()


def audit_run(
    expected: dict[tuple[str, int], ExpectedChunk],
    poisons: list[Poison],
    objects: dict[str, bytes],
    r: RedisClient,
    keys: envelope.UserKeys,
    duplicates: Sequence[tuple[str, int]] = (),
) -> Audit:
    """``duplicates``: (session, seq) of the chunk entries appended again on purpose."""
    a = Audit(objects=len(objects), bytes=sum(len(d) for d in objects.values()))
    duplicated = set(duplicates)
    a.expected = len(expected)
    a.conversations = len({(e.uid, e.cid) for e in expected.values()})
    a.poison_injected = len(poisons)
    poison_ids = {(p.session_id, p.k) for p in poisons}
    places: dict[tuple[str, int], list[str]] = defaultdict(list)
    in_bucket: set[tuple[str, int]] = set()
    spans: dict[tuple[str, str], list[tuple[int, int, str]]] = defaultdict(list)

    for name in sorted(objects):
        data = objects[name]
        obj = audit_object(name, data, keys)
        if obj.name_problem:
            a.bad_names += 1
            a.note(f"bad name {name}: {obj.name_problem}")
        if obj.undecodable:
            a.undecodable_objects += 1
            a.note(f"undecodable {name}: {obj.undecodable}")
        a.undecodable_chunks += obj.bad_chunks
        if not obj.chunks and not obj.undecodable:
            a.empty_objects += 1
            a.note(f"object {name} holds no chunk")
        if not obj.in_order:
            a.out_of_order += 1
            a.note(f"object {name}: chunks not in time order")
        for poison in poisons:
            if len(poison.data) >= 32 and poison.data in data:
                in_bucket.add((poison.session_id, poison.k))
                a.note(f"poison {poison.k} ({poison.kind}) stored in {name}")
        real: list[FoundChunk] = []
        for chunk in obj.chunks:
            key = (chunk.session_id, chunk.seq)
            if chunk.seq >= POISON_SEQ_BASE:
                in_bucket.add((chunk.session_id, chunk.seq - POISON_SEQ_BASE))
                continue
            exp = expected.get(key)
            if exp is None:
                a.unexpected += 1
                a.note(f"unexpected chunk {chunk.session_id[:8]}/{chunk.seq} in {name}")
                continue
            places[key].append(name)
            real.append(chunk)
            pushed = (exp.uid, exp.cid, exp.level == ENHANCED, exp.rate, exp.start_us, exp.samples)
            found = (obj.uid, obj.cid, obj.sealed, chunk.rate, chunk.start_us, chunk.samples)
            if pushed != found:
                a.mismatched += 1
                a.note(f"chunk {chunk.session_id[:8]}/{chunk.seq} differs from what was pushed")
            elif not same_audio(exp.pcm, chunk.pcm):
                a.wrong_audio += 1
                a.note(f"chunk {chunk.session_id[:8]}/{chunk.seq} in {name}: not its audio")
        if real and obj.uid is not None and obj.cid is not None:
            start = min(c.start_us for c in real)
            end = max(c.end_us for c in real)
            spans[(obj.uid, obj.cid)].append((start, end, name))

    for conversation, items in spans.items():
        items.sort()
        for i, (_, end_i, name_i) in enumerate(items):
            for start_j, _, name_j in items[i + 1 :]:
                if start_j >= end_i:
                    break
                a.overlaps += 1
                a.note(
                    f"overlap in {conversation[1]}: {name_i.rsplit('/', 1)[-1]} and "
                    f"{name_j.rsplit('/', 1)[-1]}"
                )

    # quarantine
    quarantined: set[tuple[str, int]] = set()
    for qkey in scan_keys(r, redis_store.session_key_pattern("quarantine")):
        located = redis_store.session_of_key(qkey)
        assert located is not None
        shard, session_id = located
        index_key = redis_store.quarantine_index_key(shard)
        if r.zscore(index_key, session_id) is None:
            a.quarantine_unindexed += 1
            a.note(f"quarantine of {session_id[:8]} is not in {index_key}")
        raw = cast(list[tuple[bytes, dict[bytes, bytes]]], r.xrange(qkey))
        for qid, fields in raw:
            reason = fields.get(b"reason", b"").strip()
            well_formed = bool(reason) and b"entry_id" in fields and b"at_ms" in fields
            if not well_formed:
                a.quarantine_malformed += 1
                a.note(
                    f"quarantine entry {qid.decode()} of {session_id[:8]} lacks reason/"
                    "entry_id/at_ms"
                )
            if b"f:poison" in fields:
                with contextlib.suppress(ValueError):
                    pid = (session_id, int(fields[b"f:poison"]))
                    if pid in poison_ids and reason:
                        quarantined.add(pid)
                continue
            seq_text = fields.get(b"f:seq", b"?")
            with contextlib.suppress(ValueError):
                if (session_id, int(seq_text)) in duplicated and b"already" in reason:
                    a.duplicates_quarantined += 1  # the copy, after its original was stored
                    continue
            a.real_quarantined += 1
            a.note(
                f"real entry {session_id[:8]}/{seq_text.decode(errors='replace')} "
                f"quarantined: {reason.decode(errors='replace')[:160]}"
            )
            if fields.get(b"f:kind") == b"chunk":
                with contextlib.suppress(ValueError):
                    places[(session_id, int(seq_text))].append("quarantine")
    a.poison_quarantined = len(quarantined)
    a.poison_in_bucket = len(in_bucket)
    for poison in poisons:
        if (poison.session_id, poison.k) not in quarantined:
            a.note(
                f"poison {poison.k} ({poison.kind}) in {poison.session_id[:8]} "
                "is not in its session's quarantine"
            )

    a.left = redis_left(r, with_ids=True)
    for key, exp in sorted(expected.items()):
        where = places.get(key, [])
        stored = [p for p in where if p != "quarantine"]
        if stored:
            a.found += 1
        if not where:
            a.lost += 1
            still = key in a.left.chunk_ids
            a.lost_in_redis += still
            a.note(
                f"lost {exp.uid}/{exp.cid} seq {key[1]}" + (" (still in Redis)" if still else "")
            )
        elif len(where) > 1:
            a.twice += 1
            if len(set(stored)) < len(stored):
                a.twice_in_one_object += 1
            a.note(f"stored {len(where)}x: {exp.uid}/{exp.cid} seq {key[1]}")
    return a


# -- the verdict --------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    label: str
    value: str
    ok: bool | None  # None: for information only


@dataclass
class Verdict:
    title: str
    checks: list[Check]
    problems: list[str] = field(default_factory=list)
    counts: dict[str, float] = field(default_factory=dict)
    workdir: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok is not False for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]

    def render(self, problems: int = 8) -> str:
        width = max(len(c.label) for c in self.checks)
        value_width = max(len(c.value) for c in self.checks)
        lines = [self.title]
        for c in self.checks:
            mark = "" if c.ok is None else ("PASS" if c.ok else "FAIL")
            lines.append(f"  {c.label:<{width}}  {c.value:<{value_width}}  {mark}".rstrip())
        failed = self.failed
        if failed:
            where = f"; logs kept in {self.workdir}" if self.workdir else ""
            lines.append(f"VERDICT: FAIL ({len(failed)} of {len(self.checks)} lines){where}")
        else:
            lines.append("VERDICT: PASS (every chunk stored exactly once)")
        if failed and self.problems and problems > 0:
            lines.append(f"first problems ({len(self.problems)} noted; all in verdict.txt):")
            lines += [f"  - {p}" for p in self.problems[:problems]]
        return "\n".join(lines)


def _required(configured: float, ok: bool) -> bool | None:
    """A fault the run was asked for must have happened; one switched off (0) is shown only.

    The presets switch every fault on, so a preset run cannot pass without them.
    """
    return ok if configured > 0 else None


def build_verdict(
    config: ChaosConfig,
    audit: Audit,
    *,
    gcs: GcsFaultStats,
    drops: RedisDropStats,
    chaos: ChaosLog,
    pusher_errors: list[str],
    drained: bool,
    drain_seconds: float,
    push_seconds: float,
    total_seconds: float,
    pushes: int,
    sessions_by_node: dict[int, int] | None = None,
    drops_by_node: Sequence[RedisDropStats] = (),
) -> Verdict:
    """On a cluster, ``sessions_by_node``: the sessions that lived on each node (by number);
    ``drops_by_node``: the stats of each node's reply-drop proxy (``drops`` adds them up)."""
    a, left = audit, audit.left
    lease = config.lease_seconds
    long_stalls = gcs.stalls_longer_than(lease)
    needs_stalls = (
        config.require_stalls_past_lease
        and config.stall_seconds[1] > lease
        and config.fault_rate > 0
    )
    min_fraction = min(config.min_fault_fraction, config.fault_rate / 2)
    kinds = len({p.kind for p in chaos.poison})
    longest = max(gcs.stall_durations, default=0.0)
    by_node = sessions_by_node or {}
    restarted = ""
    if chaos.restarted_nodes:
        restarted = ": cluster node " + ", ".join(
            f"{n} ({live} live sessions)" for n, live in chaos.restarted_nodes
        )
    cluster_checks = []
    if config.cluster:
        spread = sum(1 for count in by_node.values() if count)
        cluster_checks.append(
            Check(
                "sessions by cluster node",
                ", ".join(f"node {n}: {c}" for n, c in sorted(by_node.items())) or "unknown",
                spread >= min(2, len(by_node), config.sessions) and spread > 0,
            )
        )
    checks = [
        Check(
            "chunks expected",
            f"{a.expected} in {config.sessions} sessions, {a.conversations} conversations, "
            f"{pushes} pushes",
            a.expected > 0,
        ),
        Check("objects in the bucket", f"{a.objects} ({a.bytes:,} bytes)", a.objects > 0),
        Check("chunks found in objects", f"{a.found} of {a.expected}", a.found == a.expected),
        Check("lost (found nowhere)", f"{a.lost} ({a.lost_in_redis} still in Redis)", a.lost == 0),
        Check(
            "stored more than once",
            f"{a.twice} ({a.twice_in_one_object} twice in one object)",
            a.twice == 0,
        ),
        Check("wrong uid/conv/level/rate/time/length", str(a.mismatched), a.mismatched == 0),
        Check("objects overlapping in time", f"{a.overlaps} pairs", a.overlaps == 0),
        Check(
            "undecodable objects / chunks",
            f"{a.undecodable_objects} / {a.undecodable_chunks}",
            a.undecodable_objects == 0 and a.undecodable_chunks == 0,
        ),
        Check("bad object names or digests", str(a.bad_names), a.bad_names == 0),
        Check("unexpected chunks", str(a.unexpected), a.unexpected == 0),
        Check("chunks whose audio is not what was pushed", str(a.wrong_audio), a.wrong_audio == 0),
        Check(
            "objects with chunks out of order / empty",
            f"{a.out_of_order} / {a.empty_objects}",
            a.out_of_order == 0 and a.empty_objects == 0,
        ),
        Check(
            "expected set vs the audio pushed (no Chunker)",
            f"{a.model_problems} problems",
            a.model_problems == 0,
        ),
        Check(
            "drained after the faults stopped",
            f"in {drain_seconds:.1f} s" if drained else f"NO (gave up after {drain_seconds:.0f} s)",
            drained,
        ),
        Check(
            "left in Redis",
            f"{left.entries} entries in {left.streams} streams, {left.plans} plans, "
            f"{left.intents} intents, {left.due} due",
            left.empty,
        ),
        Check(
            "poison injected",
            f"{a.poison_injected} of {config.poison} ({kinds} kinds)",
            _required(config.poison, a.poison_injected > 0 and a.poison_injected == config.poison),
        ),
        Check(
            "poison quarantined with a reason",
            f"{a.poison_quarantined} of {a.poison_injected}",
            a.poison_quarantined == a.poison_injected,
        ),
        Check("poison stored in the bucket", str(a.poison_in_bucket), a.poison_in_bucket == 0),
        Check("real entries in quarantine", str(a.real_quarantined), a.real_quarantined == 0),
        Check(
            "quarantine format / index",
            f"{a.quarantine_malformed} malformed, {a.quarantine_unindexed} not indexed",
            a.quarantine_malformed == 0 and a.quarantine_unindexed == 0,
        ),
        Check(
            "uploads faulted",
            f"{gcs.faulted} of {gcs.matched} ({gcs.faulted_fraction:.0%}): {gcs.errors} x 503, "
            f"{gcs.stalls_before}+{gcs.stalls_after} stalls, {gcs.lost_responses} lost",
            _required(config.fault_rate, gcs.faulted > 0 and gcs.faulted_fraction >= min_fraction),
        ),
        Check(
            "stalls past the lease",
            f"{long_stalls} (> {lease:g} s; longest {longest:.1f} s)",
            _required(float(needs_stalls), long_stalls > 0),
        ),
        Check(
            "workers SIGKILLed",
            f"{chaos.kills} of {config.kills}",
            _required(config.kills, chaos.kills == config.kills),
        ),
        Check(
            "kills between an upload and its commit",
            f"{chaos.kills_mid_upload} of {config.kills} (at least half)",
            _required(config.kills, 2 * chaos.kills_mid_upload >= config.kills > 0),
        ),
        Check(
            "flushes paused mid-upload past their lease",
            f"{chaos.pauses} of {config.pauses}",
            _required(config.pauses, chaos.pauses == config.pauses),
        ),
        Check(
            "zombie writes refused by the fence",
            f"{chaos.lease_lost_lines} 'lost its lease' in the worker logs",
            _required(config.pauses, chaos.lease_lost_lines >= chaos.pauses),
        ),
        Check(
            "chunks appended again (exact copies)",
            f"{len(chaos.duplicates)} of {config.duplicates}; "
            f"{a.duplicates_quarantined} quarantined as already stored, the rest dropped "
            "with their original",
            _required(config.duplicates, len(chaos.duplicates) == config.duplicates),
        ),
        Check(
            "Redis restarts",
            f"{chaos.redis_restarts} of {config.redis_restarts}" + restarted,
            _required(config.redis_restarts, chaos.redis_restarts == config.redis_restarts),
        ),
        Check(
            "append replies dropped",
            f"{drops.drops} of {drops.matched} appends"
            + (
                " (by node: " + ", ".join(f"{d.drops} of {d.matched}" for d in drops_by_node) + ")"
                if drops_by_node
                else ""
            ),
            _required(config.drop_rate, drops.drops > 0),
        ),
        *cluster_checks,
        Check(
            "pusher / chaos errors",
            f"{len(pusher_errors)} / {len(chaos.errors) + chaos.skipped}",
            not pusher_errors and not chaos.errors and not chaos.skipped,
        ),
        Check(
            "time",
            f"push {push_seconds:.0f} s, drain {drain_seconds:.0f} s, total {total_seconds:.0f} s",
            None,
        ),
    ]
    problems = [*pusher_errors, *chaos.errors, *a.problems]
    counts: dict[str, float] = {
        "expected": a.expected,
        "found": a.found,
        "lost": a.lost,
        "twice": a.twice,
        "overlaps": a.overlaps,
        "undecodable_objects": a.undecodable_objects,
        "unexpected": a.unexpected,
        "poison_injected": a.poison_injected,
        "poison_quarantined": a.poison_quarantined,
        "poison_in_bucket": a.poison_in_bucket,
        "real_quarantined": a.real_quarantined,
        "uploads": gcs.matched,
        "faulted": gcs.faulted,
        "stalls_past_lease": long_stalls,
        "kills": chaos.kills,
        "kills_mid_upload": chaos.kills_mid_upload,
        "pauses": chaos.pauses,
        "lease_lost_lines": chaos.lease_lost_lines,
        "duplicates": len(chaos.duplicates),
        "duplicates_quarantined": a.duplicates_quarantined,
        "wrong_audio": a.wrong_audio,
        "out_of_order": a.out_of_order,
        "redis_restarts": chaos.redis_restarts,
        "cluster_nodes_restarted": len({n for n, _ in chaos.restarted_nodes}),
        "cluster_nodes_with_sessions": sum(1 for count in by_node.values() if count),
        "drops": drops.drops,
        "left_entries": left.entries,
        "total_seconds": total_seconds,
    }
    title = (
        f"audiosync chaos run ({config.name}, seed {config.seed}): {config.sessions} sessions, "
        f"{config.workers} workers, {total_seconds:.0f} s"
    )
    return Verdict(title, checks, problems, counts)


# -- the run ------------------------------------------------------------------------------


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


def store_client(info: StackInfo) -> RedisClient:
    """The chaos thread's and the audit's own client of the stream store: straight to it
    (to every node of a cluster), and patient across the restarts the run causes itself."""
    if info.redis_cluster_url is not None:
        # RedisCluster retries without backoff: a refused connection at once, a
        # CLUSTERDOWN (a restarted node is not writable for ~2 s) after 0.25 s; 30 tries
        # outlast a node restart.
        return RedisCluster.from_url(
            info.redis_cluster_url,
            socket_timeout=10,
            socket_connect_timeout=10,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 30),
        )
    return redis.Redis.from_url(
        info.redis_url,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 8),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def pusher_cluster_client(proxies: RedisClusterReplyDropProxies) -> RedisCluster:
    """The pusher's client on a cluster: what ``redis_store.connect(url, cluster=True)``
    makes (the same options), but reaching every node through its reply-drop proxy."""
    client = RedisCluster.from_url(
        proxies.url,
        decode_responses=False,
        socket_timeout=redis_store.SOCKET_TIMEOUT,
        socket_connect_timeout=redis_store.SOCKET_TIMEOUT,
        address_remap=proxies.address_remap,
    )
    known = {(n.host, int(n.port)) for n in client.get_primaries()}  # type: ignore[no-untyped-call]
    wanted = {("127.0.0.1", proxy.port) for proxy in proxies.proxies}
    if known != wanted:  # a node reached directly would lose no reply
        client.close()
        raise RuntimeError(f"the pusher's cluster client knows {known}, not the proxies {wanted}")
    return client


def sessions_by_node(
    r: RedisCluster, node_urls: dict[int, str], shards: Iterable[int]
) -> dict[int, int]:
    """How many of the sessions (by their shards) live on each cluster node (by number)."""
    number_of = {_host_port(url): number for number, url in node_urls.items()}
    counts = dict.fromkeys(node_urls, 0)
    for shard in shards:
        node = r.get_node_from_key(redis_store.due_key(shard))  # type: ignore[no-untyped-call]
        counts[number_of[(node.host, int(node.port))]] += 1
    return counts


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _CountingHandler(logging.Handler):
    """Counts the pusher's "chunks wait for Redis" warnings instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@contextlib.contextmanager
def _quiet_pusher_log() -> Iterator[_CountingHandler]:
    logger = logging.getLogger("backend_hooks.session")
    handler = _CountingHandler()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _join_all(threads: list[threading.Thread], deadline: float) -> bool:
    """Join (in small steps, so Ctrl-C gets through) until ``deadline``; True if all ended."""
    for thread in threads:
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.5)
    return not any(t.is_alive() for t in threads)


def _push_thread(
    pushers: list[SessionPusher],
    phase_start: float,
    deadline: float,
    stop: threading.Event,
    errors: list[str],
) -> None:
    while not stop.is_set():
        now = time.monotonic() - phase_start
        active = [p for p in pushers if not p.done]
        if not active:
            return
        if time.monotonic() > deadline:
            errors.append(f"{len(active)} sessions still pushing at the deadline")
            return
        for pusher in active:
            try:
                pusher.step(now)
            except Exception as exc:
                errors.append(f"session {pusher.plan.uid}: {type(exc).__name__}: {exc}"[:300])
                pusher.done = True
        stop.wait(0.02)


def run(config: ChaosConfig, *, say: Callable[[str], None] = _stderr) -> Verdict:
    """One chaos run; every process and server it starts is stopped before it returns."""
    started = time.monotonic()

    def log(text: str) -> None:
        say(f"[{time.monotonic() - started:6.1f}s] {text}")

    own_workdir = config.workdir is None
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="audiosync-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(workdir=workdir / "stack", cluster=config.cluster)
    gcs_proxy: GcsFaultProxy | None = None
    redis_proxy: RedisReplyDropProxy | RedisClusterReplyDropProxies | None = None
    fleet: Fleet | None = None
    client: AudioSyncClient | None = None
    pusher_redis: RedisClient | None = None  # None: the pusher connects by its settings
    stop = threading.Event()
    threads: list[threading.Thread] = []
    passed = False
    try:
        info: StackInfo = stack.start()
        gcs_proxy = config.gcs_proxy(info.gcs_url).start()
        if config.cluster:
            # One proxy per node: a cluster client connects to every node it learns of.
            nodes = [_host_port(url) for url in stack.cluster_node_urls.values()]
            redis_proxy = RedisClusterReplyDropProxies(
                nodes, drop_rate=config.drop_rate, seed=config.seed + 1
            ).start()
            pusher_redis = pusher_cluster_client(redis_proxy)
        else:
            redis_proxy = RedisReplyDropProxy(
                *_host_port(info.redis_url), drop_rate=config.drop_rate, seed=config.seed + 1
            ).start()
        fleet_env = {
            **info.env(),
            "STORAGE_EMULATOR_HOST": gcs_proxy.url,
            "ENCRYPTION_SECRET": SECRET,
            "AUDIOSYNC_LEASE_SECONDS": f"{config.lease_seconds:g}",
            "AUDIOSYNC_BATCH_MAX_AGE_SECONDS": f"{config.batch_max_age_seconds:g}",
            "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": f"{config.sweep_interval_seconds:g}",
        }
        pusher_env = {**fleet_env, "AUDIOSYNC_REDIS_URL": redis_proxy.url}
        if isinstance(redis_proxy, RedisClusterReplyDropProxies):
            ports = ", ".join(str(port) for _, port in redis_proxy.nodes)
            proxies = ", ".join(str(proxy.port) for proxy in redis_proxy.proxies)
            where = (
                f"a valkey cluster on ports {ports} (pusher via {proxies}), the broker "
                f"{info.redis_url}"
            )
        else:
            where = f"valkey {info.redis_url} (pusher via {redis_proxy.url})"
        log(
            f"stack up in {workdir}: {where}, fake-gcs-server {info.gcs_url} "
            f"(fleet via {gcs_proxy.url})"
        )
        fleet = Fleet(fleet_env, workdir, config.worker_concurrency)
        fleet.start(config.workers)
        log(f"{config.workers} workers and beat ready")

        r = store_client(info)
        settings = Settings.from_env(pusher_env)
        keys = envelope.UserKeys(SECRET.encode())
        registry = LiveRegistry()
        client = AudioSyncClient(settings, redis_client=pusher_redis)
        pushers = [
            SessionPusher(p, client, settings.chunk_seconds, config.speed, registry)
            for p in make_plans(config)
        ]
        pusher_errors: list[str] = []
        chaos = ChaosLog()
        phase_start = time.monotonic()
        push_deadline = phase_start + config.seconds + 120.0
        groups = [pushers[i :: config.push_threads] for i in range(config.push_threads)]
        threads = [
            threading.Thread(
                target=_push_thread,
                args=(g, phase_start, push_deadline, stop, pusher_errors),
                name=f"chaos-push-{i}",
                daemon=True,
            )
            for i, g in enumerate(groups)
            if g
        ]
        chaos_thread = threading.Thread(
            target=run_chaos,
            args=(config, chaos_schedule(config)),
            kwargs={
                "phase_start": phase_start,
                "stop": stop,
                "fleet": fleet,
                "stack": stack,
                "r": r,
                "registry": registry,
                "keys": keys,
                "record": chaos,
                "say": log,
                "gcs_proxy": gcs_proxy,
            },
            name="chaos",
            daemon=True,
        )
        threads.append(chaos_thread)
        log(f"pushing {config.sessions} sessions for ~{config.seconds:.0f} s with chaos")
        with _quiet_pusher_log() as deferred:
            for t in threads:
                t.start()
            if not _join_all(threads, push_deadline + 30.0):
                pusher_errors.append("push or chaos threads did not end in time")
                stop.set()
            client.close()
        push_seconds = time.monotonic() - phase_start
        log(
            f"pushing done in {push_seconds:.0f} s ({deferred.count} appends failed and were "
            "sent again with a later one); faults off, draining"
        )
        gcs_proxy.pause_faults()
        redis_proxy.set_drop_rate(0.0)
        drained, drain_seconds = wait_drained(r, config.drain_timeout)
        log("drained" if drained else f"NOT drained after {drain_seconds:.0f} s")
        fleet.stop()
        if not gcs_proxy.wait_idle(30.0):  # a stalled upload still in the proxy may land
            pusher_errors.append("the GCS proxy still had requests in flight after 30 s")
        log("fleet stopped; auditing")

        expected = {(e.session_id, e.seq): e for p in pushers for e in p.expected}
        by_node = None
        if isinstance(r, RedisCluster):
            shards = [p.session.redis_keys.shard for p in pushers if p.session is not None]
            by_node = sessions_by_node(r, stack.cluster_node_urls, shards)
        objects = list_bucket(info.gcs_url, info.bucket)
        audit = audit_run(expected, chaos.poison, objects, r, keys, chaos.duplicates)
        chaos.lease_lost_lines = count_in_logs(workdir, "lost its lease")
        model = [m for p in pushers if p.done and p.session is not None for m in p.model_problems()]
        audit.model_problems = len(model)
        for m in model:
            audit.note(f"expected set: {m}")
        r.close()
        verdict = build_verdict(
            config,
            audit,
            gcs=gcs_proxy.stats,
            drops=redis_proxy.stats,
            chaos=chaos,
            pusher_errors=pusher_errors,
            drained=drained,
            drain_seconds=drain_seconds,
            push_seconds=push_seconds,
            total_seconds=time.monotonic() - started,
            pushes=sum(p.pushes for p in pushers),
            sessions_by_node=by_node,
            drops_by_node=(
                [p.stats for p in redis_proxy.proxies]
                if isinstance(redis_proxy, RedisClusterReplyDropProxies)
                else ()
            ),
        )
        passed = verdict.passed
        if not passed or config.keep_workdir or not own_workdir:
            verdict.workdir = workdir
            (workdir / "verdict.txt").write_text(
                verdict.render(problems=0)
                + "\n\nevery problem noted:\n"
                + "".join(f"- {p}\n" for p in verdict.problems)
            )
        return verdict
    finally:
        stop.set()
        _join_all(threads, time.monotonic() + 10.0)
        if client is not None:
            with contextlib.suppress(Exception):
                client.executor.shutdown(wait=False)
        if fleet is not None:
            fleet.stop()
        if pusher_redis is not None:
            with contextlib.suppress(Exception):
                pusher_redis.close()
        if redis_proxy is not None:
            redis_proxy.close()
        if gcs_proxy is not None:
            gcs_proxy.close()
        stack.stop()
        if own_workdir and passed and not config.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


# -- command line -------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> ChaosConfig:
    parser = argparse.ArgumentParser(
        prog="python -m audiosync_dev.chaos",
        description="Fault-injection run of the whole pipeline: every chunk stored exactly once?",
    )
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--short", action="store_true", help="~2 minutes (default)")
    preset.add_argument("--long", action="store_true", help="200+ sessions, 20+ kills")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the streams on a 3-master valkey Redis Cluster (the broker a plain valkey); "
        "each Redis restart restarts one cluster node",
    )
    parser.add_argument("--sessions", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--kills", type=int)
    parser.add_argument("--redis-restarts", type=int)
    parser.add_argument("--fault-rate", type=float, help="share of uploads faulted, 0..1")
    parser.add_argument("--poison", type=int, help="poison entries to inject")
    parser.add_argument("--pauses", type=int, help="flushes to SIGSTOP past their lease")
    parser.add_argument("--duplicates", type=int, help="chunk entries to append again")
    parser.add_argument("--seconds", type=float, help="how long the pushing lasts")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--workdir", type=Path, help="keep servers' data and logs here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir after a pass")
    args = parser.parse_args(argv)
    if args.cluster:
        config = ChaosConfig.long_cluster() if args.long else ChaosConfig.short_cluster()
    else:
        config = ChaosConfig.long() if args.long else ChaosConfig.short()
    overrides: dict[str, Any] = {
        "sessions": args.sessions,
        "workers": args.workers,
        "kills": args.kills,
        "redis_restarts": args.redis_restarts,
        "fault_rate": args.fault_rate,
        "poison": args.poison,
        "pauses": args.pauses,
        "duplicates": args.duplicates,
        "seconds": args.seconds,
        "seed": args.seed,
        "workdir": args.workdir,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if args.keep:
        config = replace(config, keep_workdir=True)
    if config.sessions < 1 or config.workers < 1 or not 0 <= config.fault_rate <= 1:
        parser.error("need at least one session and one worker, and a fault rate in [0, 1]")
    return config


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        verdict = run(config)
    except KeyboardInterrupt:
        print("chaos run interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    print(verdict.render())
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
