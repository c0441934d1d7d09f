"""Shared by bench_latency.py and bench_commands.py: live sessions paced in real time.

Each planned session appends one 5 s, 16 kHz ``standard`` chunk every 5 s of wall time,
through the pusher's own append script (``appender.Appender.append``), with the urgent
rule of ``Session._send``: an append is urgent when an object's worth of audio
(``AUDIOSYNC_OBJECT_SECONDS``) or of bytes (``AUDIOSYNC_BATCH_MAX_BYTES``) has accumulated
since the last urgent one. After its last chunk a session closes: one more append holding
only its end entry, urgent, as ``Session.close()`` sends it when no partial chunk is left.
An append that fails keeps its entries and sends them with the next one, as the pusher
does.

Session ``i`` of ``N`` starts ``i * stagger / N`` seconds after the run's start, so appends
(and, with a stagger of one object period, flushes) are spread evenly. Its chunk ``k`` is
appended when it ends, at ``start + offset_i + 5 (k + 1)``.

The chunk containers are built before the run from one set of Opus packets
(``container.build_chunk``, as bench_flush.py does): no encoding and no container work
happens in the paced loop. Their audio timestamps are fixed then (the planning time plus
each chunk's offset), so they run some seconds ahead of the wall clock of the appends;
nothing but object names depends on them.

Redis time of an append: the script takes the stream id (``*``, Redis's clock) and
returns only a count, so each append is bracketed by ``time.time()`` right before the
call and right after its reply. Redis and fake-gcs-server run on this machine and read
the same clock (``clock_offset`` checks it against ``TIME``), so the entry's Redis time lies
in ``[before, after]``; delays measured from ``before`` are upper bounds, off by at most
``after - before``.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redis.cluster
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from audiosync_dev.speech import speech_like
from backend_hooks.adapters import redis_store
from backend_hooks.adapters.redis_store import RedisClient
from backend_hooks.contract import container, naming, redis_keys
from backend_hooks.contract.codec import ChunkEncoder
from backend_hooks.contract.entries import KIND_CHUNK, KIND_END, STANDARD, NewEntry
from backend_hooks.contract.redis_keys import SessionKeys
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher.appender import Appender

RATE = 16000
PUSHER_NAME = "bench-pusher"  # CLIENT SETNAME of the pusher's connections
BENCH_NAME = "bench-stats"  # ... and of the bench's own polling / INFO connections
POLL_SECONDS = 1.0


# -- the plan ----------------------------------------------------------------------------
@dataclass
class PlannedSession:
    index: int
    keys: SessionKeys
    uid: str
    cid: str
    offset: float  # seconds after the run's start of its start (its first append: + 5 s)
    audio_start_us: int  # start_us of chunk 0
    data: list[bytes]  # chunk k's container bytes


@dataclass
class Plan:
    settings: Settings  # the pusher's settings (chunk, object, batch limits, shards)
    sessions: list[PlannedSession]
    chunks: int  # per session
    stagger: float
    built_in: float  # seconds spent building the containers

    @property
    def chunk_seconds(self) -> float:
        return self.settings.chunk_seconds

    @property
    def chunk_us(self) -> int:
        return round(self.settings.chunk_seconds * 1_000_000)

    def due_at(self, t0: float, session: PlannedSession, k: int) -> float:
        """Wall time of chunk ``k``'s append: when it ends."""
        return t0 + session.offset + (k + 1) * self.chunk_seconds

    def last_append_at(self, t0: float) -> float:
        return max(self.due_at(t0, s, self.chunks - 1) for s in self.sessions)

    def all_live(self, t0: float) -> tuple[float, float]:
        """The span in which every session is open and has appended (no opens, no closes)."""
        first_close = min(self.due_at(t0, s, self.chunks - 1) for s in self.sessions)
        last_open = max(self.due_at(t0, s, 0) for s in self.sessions)
        return last_open, first_close

    @property
    def audio_hours(self) -> float:
        return len(self.sessions) * self.chunks * self.chunk_seconds / 3600


def pusher_settings(env: dict[str, str]) -> Settings:
    """The settings a pusher started with ``env`` would have."""
    return Settings.from_env(env, role="pusher")


def plan(settings: Settings, sessions: int, chunks: int, stagger: float) -> Plan:
    """``sessions`` sessions of ``chunks`` chunks; every container built now."""
    started = time.monotonic()
    samples = round(settings.chunk_seconds * RATE)
    encoder = ChunkEncoder(RATE)
    packets = encoder.encode(speech_like(settings.chunk_seconds, RATE, seed=1))
    chunk_us = round(settings.chunk_seconds * 1_000_000)
    base_us = int(time.time()) * 1_000_000
    planned = []
    for i in range(sessions):
        sid = f"{i:032x}"
        offset_ms = round(i * stagger * 1000 / sessions)
        audio_start = base_us + offset_ms * 1000
        data = [
            container.build_chunk(
                container.ChunkInfo(sid, k, audio_start + k * chunk_us, RATE, samples),
                packets,
                encoder.pre_skip,
            )
            for k in range(chunks)
        ]
        planned.append(
            PlannedSession(
                index=i,
                keys=SessionKeys(sid, redis_keys.shard_of(sid, settings.due_shards)),
                uid=f"bench-u{i}",
                cid=f"bench-c{i}",
                offset=offset_ms / 1000,
                audio_start_us=audio_start,
                data=data,
            )
        )
    return Plan(settings, planned, chunks, stagger, time.monotonic() - started)


# -- the pushers -------------------------------------------------------------------------
def pusher_client(settings: Settings, name: str = PUSHER_NAME) -> RedisClient:
    """``redis_store.connect`` with the same options, plus a client name on every
    connection, so the server can tell the pusher's commands from the others."""
    if settings.redis_cluster:
        return redis.cluster.RedisCluster.from_url(
            settings.redis_url,
            decode_responses=False,
            socket_timeout=redis_store.SOCKET_TIMEOUT,
            socket_connect_timeout=redis_store.SOCKET_TIMEOUT,
            client_name=name,
        )
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=False,
        health_check_interval=30,
        socket_timeout=redis_store.SOCKET_TIMEOUT,
        socket_connect_timeout=redis_store.SOCKET_TIMEOUT,
        client_name=name,
    )


@dataclass
class _State:
    unsent: list[NewEntry] = field(default_factory=list)
    next_n: int = 0
    bytes_since_bump: int = 0
    samples_since_bump: int = 0


@dataclass
class PushResult:
    before: list[list[float]]  # [session][chunk]: time.time() right before its append
    after: list[list[float]]  # ... and right after the reply
    urgent_chunk: list[list[bool]]  # [session][chunk]: its append was urgent
    closed: list[float]  # [session]: time.time() right before its close (end entry) append
    lateness: list[float]  # per append: start of the call - its scheduled time
    appends: list[float]  # per append call (successful or not): time.time() before it
    urgent: int  # urgent appends (the close included)
    errors: int  # appends that raised (their entries went with the next one)
    finished_at: float = 0.0


class Pushers:
    """``threads`` threads, each appending for every ``threads``-th session on its schedule
    (AudioSyncClient's pool has 4 threads too)."""

    def __init__(self, plan: Plan, client: RedisClient, threads: int = 4) -> None:
        self.plan = plan
        self.appender = Appender(client)
        self.threads = threads
        n, c = len(plan.sessions), plan.chunks
        self.result = PushResult(
            before=[[math.nan] * c for _ in range(n)],
            after=[[math.nan] * c for _ in range(n)],
            urgent_chunk=[[False] * c for _ in range(n)],
            closed=[math.nan] * n,
            lateness=[],
            appends=[],
            urgent=0,
            errors=0,
        )
        self._state = [_State() for _ in range(n)]
        self._lock = threading.Lock()

    def run(self, t0: float) -> PushResult:
        """Push every session on its schedule from ``t0`` (wall time); returns when done."""
        workers = [
            threading.Thread(target=self._thread, args=(t0, j), name=f"pusher-{j}", daemon=True)
            for j in range(self.threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        self.result.finished_at = time.time()
        return self.result

    def _thread(self, t0: float, j: int) -> None:
        plan = self.plan
        mine = plan.sessions[j :: self.threads]
        events = sorted(
            (plan.due_at(t0, s, k), s.index, k) for s in mine for k in range(plan.chunks)
        )
        late: list[float] = []
        calls: list[float] = []
        urgent = errors = 0
        for when, i, k in events:
            wait = when - time.time()
            if wait > 0:
                time.sleep(wait)
            session = plan.sessions[i]
            late.append(time.time() - when)
            u, e = self._append(session, calls, self._chunk_entry(session, k))
            urgent, errors = urgent + u, errors + e
            if k == plan.chunks - 1:  # close: the end entry, urgent
                end = NewEntry(kind=KIND_END, uid=session.uid, cid=session.cid, enq_us=_now_us())
                u, e = self._append(session, calls, end, close=True)
                urgent, errors = urgent + u, errors + e
        while any(self._state[s.index].unsent for s in mine):  # Redis refused a close
            for s in mine:
                if self._state[s.index].unsent:
                    u, e = self._append(s, calls, None, close=True)
                    urgent, errors = urgent + u, errors + e
            time.sleep(0.2)
        with self._lock:
            self.result.lateness += late
            self.result.appends += calls
            self.result.urgent += urgent
            self.result.errors += errors

    def _chunk_entry(self, session: PlannedSession, k: int) -> NewEntry:
        settings = self.plan.settings
        return NewEntry(
            kind=KIND_CHUNK,
            uid=session.uid,
            cid=session.cid,
            enq_us=_now_us(),
            level=STANDARD,
            rate=RATE,
            seq=k,
            start_us=session.audio_start_us + k * self.plan.chunk_us,
            samples=round(settings.chunk_seconds * RATE),
            data=session.data[k],
        )

    def _append(
        self,
        session: PlannedSession,
        calls: list[float],
        entry: NewEntry | None,
        *,
        close: bool = False,
    ) -> tuple[int, int]:
        """``Session._stage`` + ``Session._send``; (urgent appends, errors)."""
        settings = self.plan.settings
        state = self._state[session.index]
        if entry is not None:
            state.unsent.append(entry)
            if entry.kind == KIND_CHUNK:
                state.bytes_since_bump += len(entry.data)
                state.samples_since_bump += entry.samples
        due_now = (
            close
            or state.bytes_since_bump >= settings.batch_max_bytes
            or state.samples_since_bump >= settings.object_seconds * RATE
        )
        before = time.time()
        calls.append(before)
        try:
            self.appender.append(
                session.keys,
                state.unsent,
                first_n=state.next_n,
                urgent=due_now,
                max_age_seconds=settings.batch_max_age_seconds,
            )
        except redis.RedisError:
            return 0, 1
        after = time.time()
        for sent in state.unsent:
            if sent.kind == KIND_CHUNK:
                self.result.before[session.index][sent.seq] = before
                self.result.after[session.index][sent.seq] = after
                self.result.urgent_chunk[session.index][sent.seq] = due_now
            else:
                self.result.closed[session.index] = before
        state.next_n += len(state.unsent)
        state.unsent.clear()
        if due_now:
            state.bytes_since_bump = state.samples_since_bump = 0
        return int(due_now), 0


def _now_us() -> int:
    return round(time.time() * 1_000_000)


# -- the store ---------------------------------------------------------------------------
def bench_client(settings: Settings) -> RedisClient:
    """The bench's own connection to the store (named, so its commands are told apart)."""
    return pusher_client(settings, BENCH_NAME)


def node_clients(settings: Settings, name: str = BENCH_NAME) -> list[redis.Redis]:
    """One plain client per store node (the cluster's masters, or the one Redis)."""
    if not settings.redis_cluster:
        return [redis.Redis.from_url(settings.redis_url, client_name=name)]
    cluster = redis.cluster.RedisCluster.from_url(settings.redis_url, client_name=name)
    try:
        nodes = cluster.get_primaries()  # type: ignore[no-untyped-call]
        return [redis.Redis(host=n.host, port=n.port, client_name=name) for n in nodes]
    finally:
        cluster.close()


def clock_offset(client: RedisClient, samples: int = 20) -> tuple[float, float]:
    """(Redis TIME - time.time(), at the middle of the round trip; that round trip) of the
    quickest of ``samples`` warm round trips, seconds: the offset is known to within half
    the round trip."""
    client.ping()  # connect first: the handshake would widen the first round trip
    best: tuple[float, float] | None = None
    for _ in range(samples):
        before = time.time()
        server = redis_store.redis_time(client)
        after = time.time()
        if best is None or after - before < best[1]:
            best = (server - (before + after) / 2, after - before)
    assert best is not None
    return best


def due_sessions(client: RedisClient, shards: int) -> int:
    """Sessions in every shard's due index: 0 once every stream is drained."""
    return sum(int(client.zcard(redis_keys.due_key(s))) for s in range(shards))


def wait_drained(client: RedisClient, shards: int, timeout: float) -> float | None:
    """Poll the due indexes until empty; the wall time it was seen empty, None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if due_sessions(client, shards) == 0:
            return time.time()
        time.sleep(POLL_SECONDS)
    return None


def commandstats(client: redis.Redis) -> Counter[str]:
    """INFO commandstats: calls per command (inside scripts included)."""
    stats = client.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


# -- GCS ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredObject:
    name: str
    created: float  # timeCreated, Unix seconds
    size: int
    session: int
    first_seq: int
    chunks: int


def list_objects(gcs_url: str, bucket: str, plan: Plan) -> list[StoredObject]:
    """Every object of the run (official client), each mapped to the chunks it holds:
    its name's start/end times against the plan's chunk timestamps."""
    client = storage.Client(
        project="local",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_url},
    )
    out = []
    by_cid = {s.cid: s for s in plan.sessions}
    for blob in client.list_blobs(bucket, prefix="chunks/bench-u"):
        parts = blob.name.split("/")
        session = by_cid.get(parts[2]) if len(parts) == 4 else None
        if session is None:
            raise ValueError(f"an object the bench did not plan: {blob.name}")
        name = naming.parse_object_name(blob.name)
        if name.end_us is None:
            raise ValueError(f"not a v1 object name: {blob.name}")
        first, rest = divmod(name.start_us - session.audio_start_us, plan.chunk_us)
        count, rest2 = divmod(name.end_us - name.start_us, plan.chunk_us)
        if rest or rest2 or count < 1:
            raise ValueError(f"{blob.name} does not hold whole planned chunks")
        created = blob.time_created
        assert isinstance(created, datetime.datetime)
        out.append(
            StoredObject(
                blob.name, created.timestamp(), int(blob.size or 0), session.index, first, count
            )
        )
    return out


@dataclass
class Coverage:
    durable: list[list[float]]  # [session][chunk]: timeCreated of the object holding it
    missing: int
    duplicated: int


def coverage(plan: Plan, objects: Iterable[StoredObject]) -> Coverage:
    durable = [[math.nan] * plan.chunks for _ in plan.sessions]
    duplicated = 0
    for obj in objects:
        for k in range(obj.first_seq, obj.first_seq + obj.chunks):
            if not math.isnan(durable[obj.session][k]):
                duplicated += 1
            durable[obj.session][k] = obj.created
    missing = sum(math.isnan(t) for row in durable for t in row)
    return Coverage(durable, missing, duplicated)


# -- CPU of the processes ----------------------------------------------------------------
def pid_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick


# -- numbers -----------------------------------------------------------------------------
def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


_ERROR_LINE = re.compile(r": (ERROR|CRITICAL)[/\]]|Traceback")


def log_errors(log: Path) -> int:
    """ERROR/CRITICAL lines and tracebacks in a worker's log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if _ERROR_LINE.search(line))


_SHARD_TASK = re.compile(r"shard -?\d+: (\d+) flushes, (\d+) objects, (\d+) errors, stopped: (.+)$")
_FLUSHED = re.compile(
    r"flushed \w+: FlushResult\(session_id='\w+', objects_created=(\d+), "
    r"objects_already_stored=(\d+)"
)


@dataclass
class WorkerLog:
    shard_tasks: int = 0
    flushes: int = 0
    empty_flushes: int = 0  # flushes that wrote no object
    objects: int = 0
    stopped: Counter[str] = field(default_factory=Counter)  # why shard tasks stopped

    def summary(self) -> str:
        why = ", ".join(f"{n} {reason}" for reason, n in self.stopped.most_common())
        return (
            f"{self.shard_tasks:,} shard tasks ({why}), {self.flushes:,} flushes "
            f"({self.empty_flushes:,} wrote nothing), {self.objects:,} objects: "
            f"{self.flushes / max(1, self.shard_tasks):.2f} flushes a task"
        )


def worker_log(log: Path) -> WorkerLog:
    """What the worker's INFO lines say it did (workers/tasks.py logs each flush and task)."""
    out = WorkerLog()
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        if m := _SHARD_TASK.search(line):
            out.shard_tasks += 1
            out.stopped[m[4].strip()] += 1
        elif m := _FLUSHED.search(line):
            out.flushes += 1
            made = int(m[1]) + int(m[2])
            out.objects += made
            out.empty_flushes += made == 0
    return out
