"""What operators ask of the fleet's Redis: how far behind it is, and putting work back.

``celery -A workers audiosync status|replay`` (workers/cli.py) is a thin shell over this.
Every read is bounded (``scan_limit`` keys, ``QUARANTINE_READ`` entries a session); times
are Redis server time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from backend_hooks.redis_store import due_key, quarantine_key, stream_key
from workers import quarantine
from workers.store import QuarantinedEntry, WorkerStore

DUE_SHARDS = 1  # one shard today (backend_hooks.redis_store.shard_of)
SCAN_LIMIT = 100_000
QUARANTINE_READ = 1000
PIPELINE = 1000  # keys read per round trip
ENTRY_READ = 2000  # entries of one stream looked at to match a user or conversation
PARKED_PREFIX = "parked after"


@dataclass(frozen=True)
class ShardStatus:
    shard: int
    sessions: int  # in the due index: every session with entries in Redis
    due: int  # whose due time has come
    oldest_due_seconds: float  # how long the longest-waiting due session has waited


@dataclass
class FleetStatus:
    now: float
    shards: list[ShardStatus]
    streams: int = 0
    entries: int = 0
    bytes_held: int = 0
    plans: int = 0
    quarantined_sessions: int = 0
    quarantined_entries: int = 0
    parked_sessions: int = 0
    oldest_entry_seconds: float = 0.0  # age of the oldest entry still in a stream
    truncated: bool = False  # more keys than scan_limit: the counts are lower bounds
    reasons: dict[str, int] = field(default_factory=dict)  # quarantine reasons, first words

    @property
    def lag_seconds(self) -> float:
        """How far behind: the longest a due session has waited, or the age of the oldest
        audio still in Redis (a failing session backs off, so it is not due, but its
        audio waits). In steady state about AUDIOSYNC_BATCH_MAX_AGE_SECONDS."""
        due = max((s.oldest_due_seconds for s in self.shards), default=0.0)
        return max(due, self.oldest_entry_seconds)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lag_seconds": self.lag_seconds}


def _scan(store: WorkerStore, pattern: str, limit: int) -> Iterator[bytes]:
    for count, key in enumerate(store.client.scan_iter(match=pattern, count=1000)):
        if count >= limit:
            return
        yield cast(bytes, key)


def due_shards(store: WorkerStore, now: float) -> list[ShardStatus]:
    """The lag per due shard: three cheap commands each (metrics read this every scrape)."""
    client = store.client
    shards = []
    for shard in range(DUE_SHARDS):
        key = due_key(shard)
        due = int(client.zcount(key, "-inf", now))
        oldest = cast(list[tuple[bytes, float]], client.zrange(key, 0, 0, withscores=True))
        waited = max(0.0, now - oldest[0][1]) if oldest and oldest[0][1] <= now else 0.0
        shards.append(ShardStatus(shard, int(client.zcard(key)), due, waited))
    return shards


def quarantined_count(store: WorkerStore, limit: int) -> int:
    """Sessions of the quarantine index (its first ``limit``) whose quarantine is not empty
    (the index over-covers: a refused quarantine still bumped it)."""
    sessions = store.quarantined_sessions(limit)
    pipe = store.client.pipeline(transaction=False)
    for session_id in sessions:
        pipe.xlen(quarantine_key(session_id))
    return sum(1 for length in pipe.execute() if length)


def fleet_status(store: WorkerStore, *, scan_limit: int = SCAN_LIMIT) -> FleetStatus:
    now = store.time()
    client = store.client
    status = FleetStatus(now=now, shards=due_shards(store, now))
    keys = list(_scan(store, "audiosync:{*}:chunks", scan_limit + 1))
    status.truncated = len(keys) > scan_limit
    for start in range(0, min(len(keys), scan_limit), PIPELINE):
        batch = keys[start : min(start + PIPELINE, scan_limit)]
        pipe = client.pipeline(transaction=False)
        for stream in batch:
            pipe.xlen(stream)
            pipe.memory_usage(stream)
            pipe.xrange(stream, count=1)
        answers = pipe.execute()
        for length, size, first in zip(answers[0::3], answers[1::3], answers[2::3], strict=True):
            status.streams += 1
            status.entries += int(length)
            status.bytes_held += int(size or 0)
            if first:
                age = now - int(first[0][0].split(b"-", 1)[0]) / 1000
                status.oldest_entry_seconds = max(status.oldest_entry_seconds, age)
    status.plans = sum(1 for _ in _scan(store, "audiosync:{*}:plan", scan_limit))
    for session_id in store.quarantined_sessions(scan_limit):
        entries = store.read_quarantine(session_id, QUARANTINE_READ)
        if not entries:
            continue
        status.quarantined_sessions += 1
        status.quarantined_entries += int(client.xlen(quarantine_key(session_id)))
        if any(e.reason.startswith(PARKED_PREFIX) for e in entries):
            status.parked_sessions += 1
        for entry in entries:
            head = " ".join(entry.reason.split()[:3])
            status.reasons[head] = status.reasons.get(head, 0) + 1
    return status


@dataclass(frozen=True)
class ReplayItem:
    session_id: str
    entries: int  # quarantined entries put back (or that would be, in a dry run)


def sessions_of(
    store: WorkerStore, uid: str, cid: str | None = None, *, scan_limit: int = SCAN_LIMIT
) -> list[str]:
    """Sessions with entries in Redis of ``uid`` (and, if given, with an entry of ``cid``:
    a session that switched conversation holds several)."""
    out = []
    want_uid, want_cid = uid.encode(), None if cid is None else cid.encode()
    for key in _scan(store, "audiosync:{*}:chunks", scan_limit):
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]], store.client.xrange(key, count=ENTRY_READ)
        )
        if any(
            f.get(b"uid") == want_uid and (want_cid is None or f.get(b"cid") == want_cid)
            for _, f in entries
        ):
            out.append(_session_of_key(key))
    return out


def quarantined_sessions_of(
    store: WorkerStore, uid: str, cid: str | None = None, *, scan_limit: int = SCAN_LIMIT
) -> list[str]:
    """Sessions whose quarantine holds an entry of ``uid`` (and ``cid``)."""
    out = []
    for session_id in store.quarantined_sessions(scan_limit):
        for entry in store.read_quarantine(session_id, QUARANTINE_READ):
            f = entry.fields
            if f.get(b"uid") == uid.encode() and (cid is None or f.get(b"cid") == cid.encode()):
                out.append(session_id)
                break
    return out


def _session_of_key(key: bytes) -> str:
    return key.decode().split("{", 1)[1].split("}", 1)[0]


def flush_now(store: WorkerStore, session_ids: list[str], *, dry_run: bool = False) -> list[str]:
    """Make sessions with entries in Redis due now (the next sweep flushes them)."""
    now = store.time()
    found = [s for s in session_ids if store.client.exists(stream_key(s))]
    if not dry_run:
        for session_id in found:
            store.schedule(session_id, now)
    return found


def requeue_session(
    store: WorkerStore, session_id: str, *, reason: str | None = None, dry_run: bool = False
) -> int:
    """Put a session's quarantined entries back (those whose reason contains ``reason``,
    or all); it is due at once. Returns how many (would) move; a second run finds none."""
    if reason is None:
        if dry_run:
            return int(store.client.xlen(quarantine_key(session_id)))
        return quarantine.replay(store, session_id)
    chosen = [e.quarantine_id for e in _all_quarantined(store, session_id) if reason in e.reason]
    if dry_run or not chosen:
        return len(chosen)
    return quarantine.replay(store, session_id, chosen)


def _all_quarantined(store: WorkerStore, session_id: str) -> Iterator[QuarantinedEntry]:
    """Every entry of a session's quarantine, read in pages of QUARANTINE_READ."""
    after: bytes | None = None
    while True:
        page = store.read_quarantine(session_id, QUARANTINE_READ, after=after)
        yield from page
        if len(page) < QUARANTINE_READ:
            return
        after = page[-1].quarantine_id


def requeue(
    store: WorkerStore,
    *,
    sessions: list[str] | None = None,
    reason: str | None = None,
    dry_run: bool = False,
) -> list[ReplayItem]:
    """``requeue_session`` over ``sessions`` (default: every quarantined session)."""
    targets = sessions if sessions is not None else store.quarantined_sessions(SCAN_LIMIT)
    out = []
    for session_id in targets:
        moved = requeue_session(store, session_id, reason=reason, dry_run=dry_run)
        if moved:
            out.append(ReplayItem(session_id, moved))
    return out
