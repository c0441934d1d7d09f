"""What operators ask of the fleet's Redis: how far behind it is, and putting work back.

``celery -A workers audiosync status|replay`` (workers/cli/status.py, workers/cli/replay.py)
is a thin shell over this.
Every read is bounded (``scan_limit`` keys, ``QUARANTINE_READ`` entries a session); times
are Redis server time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, cast

from backend_hooks.contract.redis_keys import (
    blind_uploads_key,
    deletion_failures_key,
    deletion_recheck_key,
    due_key,
    quarantine_index_key,
)
from workers import quarantine
from workers.store import QuarantinedEntry, WorkerStore

SCAN_LIMIT = 100_000
#: The largest ``scan_limit`` status takes: the largest fleet docs/CAPACITY.md sizes holds
#: 2,000,000 sessions, and status keeps the id of each session it reads in memory.
MAX_SCAN_LIMIT = 2_000_000
#: Sessions one read of the exporter (workers/exporter.py) looks at in all to tell the
#: oldest audio and the bytes held (two commands each, pipelined), shared evenly among
#: the shards, at least ``HELD_SAMPLE_MIN`` a shard (``held_audio``).
HELD_SAMPLE = 20_000
HELD_SAMPLE_MIN = 2
QUARANTINE_READ = 1000
PIPELINE = 1000  # keys read per round trip
ENTRY_READ = 2000  # entries of one stream looked at to match a user or conversation
PARKED_PREFIX = "parked after"


class SessionRef(NamedTuple):
    """A session where it lives: its shard (the hash tag of its keys) and its id."""

    shard: int
    session_id: str


@dataclass(frozen=True)
class ShardStatus:
    shard: int  # -1: the keys of the release before shards (upgrades)
    sessions: int  # in the due index: every session with entries in Redis
    due: int  # whose due time has come
    oldest_due_seconds: float  # how long the longest-waiting due session has waited


@dataclass(frozen=True)
class DeletionBacklog:
    """What deleted conversations still ask of the fleet (workers/deletions.py)."""

    rechecks: int = 0  # queued re-checks (most are waiting for their time)
    recheck_overdue_seconds: float = 0.0  # how long past its due time the most overdue waits
    blind_uploads: int = 0  # uploads made while the mark could not be read, not settled
    blind_oldest_seconds: float = 0.0  # age of the oldest of them
    failing: int = 0  # re-checks and notes that failed at least once (they stay, retried)


def deletion_backlog(
    store: WorkerStore, now: float, shards: list[int] | None = None
) -> DeletionBacklog:
    """The re-check queues and blind-upload notes of every shard (or of ``shards``), in one
    round trip."""
    shards = store.all_shards() if shards is None else shards
    pipe = store.client.pipeline(transaction=False)
    for shard in shards:
        pipe.zcard(deletion_recheck_key(shard))
        pipe.zrange(deletion_recheck_key(shard), 0, 0, withscores=True)
        pipe.zcard(blind_uploads_key(shard))
        pipe.zrange(blind_uploads_key(shard), 0, 0, withscores=True)
        pipe.hlen(deletion_failures_key(shard))
    answers = pipe.execute()
    now_ms = now * 1000
    rechecks = blind = failing = 0
    overdue = oldest = 0.0
    for i in range(len(shards)):
        count, first, notes, first_note, failures = answers[5 * i : 5 * i + 5]
        rechecks, blind, failing = rechecks + count, blind + notes, failing + failures
        overdue = max(overdue, _seconds_since(first, now_ms))
        oldest = max(oldest, _seconds_since(first_note, now_ms))
    return DeletionBacklog(rechecks, overdue, blind, oldest, failing)


def _seconds_since(head: list[tuple[bytes, float]], now_ms: float) -> float:
    """How long ago (s, at least 0) the score (Unix ms) of a sorted set's first member was."""
    return max(0.0, (now_ms - head[0][1]) / 1000) if head else 0.0


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
    truncated: bool = False  # more sessions than scan_limit: the counts are lower bounds
    reasons: dict[str, int] = field(default_factory=dict)  # quarantine reasons, first words
    deletions: DeletionBacklog = field(default_factory=DeletionBacklog)

    @property
    def lag_seconds(self) -> float:
        """How far behind: the longest a due session has waited, or the age of the oldest
        audio still in Redis (a failing session backs off, so it is not due, but its
        audio waits). In steady state about AUDIOSYNC_BATCH_MAX_AGE_SECONDS."""
        due = max((s.oldest_due_seconds for s in self.shards), default=0.0)
        return max(due, self.oldest_entry_seconds)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lag_seconds": self.lag_seconds}


def due_shards(
    store: WorkerStore, now: float, shards: list[int] | None = None
) -> list[ShardStatus]:
    """The lag per due shard (of every shard, or of ``shards``): three cheap commands
    each, in one round trip (the exporter reads this, workers/exporter.py)."""
    shards = store.all_shards() if shards is None else shards
    pipe = store.client.pipeline(transaction=False)
    for shard in shards:
        key = due_key(shard)
        pipe.zcard(key)
        pipe.zcount(key, "-inf", now)
        pipe.zrange(key, 0, 0, withscores=True)
    answers = pipe.execute()
    out = []
    for i, shard in enumerate(shards):
        count, due, oldest = answers[3 * i : 3 * i + 3]
        oldest = cast(list[tuple[bytes, float]], oldest)
        waited = max(0.0, now - oldest[0][1]) if oldest and oldest[0][1] <= now else 0.0
        out.append(ShardStatus(shard, int(count), int(due), waited))
    return out


@dataclass(frozen=True)
class HeldAudio:
    """The audio one shard's streams hold, read from a bounded sample of its sessions."""

    shard: int
    sessions: int  # in the due index: every session with entries in Redis
    sampled: int  # of them read: all of them when the shard holds no more than the sample
    oldest_seconds: float  # age of the oldest entry in the streams read (0: none)
    bytes_sampled: int  # MEMORY USAGE of the streams read

    @property
    def bytes_held(self) -> int:
        """The bytes of every stream of the shard: those read, scaled up to every session
        when the shard holds more than the sample (an estimate then)."""
        if not self.sampled or self.sampled >= self.sessions:
            return self.bytes_sampled
        return round(self.bytes_sampled * self.sessions / self.sampled)


def held_audio(
    store: WorkerStore, now: float, budget: int = HELD_SAMPLE, shards: list[int] | None = None
) -> list[HeldAudio]:
    """The oldest audio and the bytes held per shard (of every shard, or of ``shards``),
    reading at most ``budget`` sessions (at least ``HELD_SAMPLE_MIN`` a shard): the whole
    shard when it holds no more, else
    the half of the sample due first and the half due last. The age is the age of a
    stream's first entry, as ``fleet_status`` tells it, so a session backing off (not due)
    counts. Why the two ends of the due index hold the oldest audio: a session that is not
    failing is due at most AUDIOSYNC_BATCH_MAX_AGE_SECONDS after its oldest entry (the
    append and the planner set it so), so among those the one due first holds the oldest
    audio; a failing session's due time is pushed back by its backoff, up to
    AUDIOSYNC_FLUSH_BACKOFF_MAX_SECONDS ahead, past every healthy session's, so the ones
    failing longest are due last (docs/ARCHITECTURE.md, "Monitoring")."""
    shards = store.all_shards() if shards is None else shards
    per_shard = max(HELD_SAMPLE_MIN, budget // max(1, len(shards)))
    samples = _due_index_ends(store, shards, per_shard)
    refs = [ref for _, _, shard_refs in samples for ref in shard_refs]
    read = dict(zip(refs, _ages_and_sizes(store, refs, now), strict=True))
    out = []
    for shard, count, shard_refs in samples:
        streams = [read[ref] for ref in shard_refs]
        oldest = max((age for age, _ in streams), default=0.0)
        size = sum(size for _, size in streams)
        out.append(HeldAudio(shard, count, len(shard_refs), oldest, size))
    return out


def _due_index_ends(
    store: WorkerStore, shards: list[int], per_shard: int
) -> list[tuple[int, int, list[SessionRef]]]:
    """Per shard: its session count and at most ``per_shard`` of its sessions, half of
    them due first, half due last (all of them when it holds no more), in one round trip."""
    first, last = per_shard - per_shard // 2, per_shard // 2
    pipe = store.client.pipeline(transaction=False)
    for shard in shards:
        key = due_key(shard)
        pipe.zcard(key)
        pipe.zrange(key, 0, first - 1)
        pipe.zrange(key, -last, -1)
    answers = pipe.execute()
    out = []
    for i, shard in enumerate(shards):
        count, head, tail = answers[3 * i : 3 * i + 3]
        members = dict.fromkeys(cast(list[bytes], head) + cast(list[bytes], tail))
        out.append((shard, int(count), [SessionRef(shard, m.decode()) for m in members]))
    return out


def _ages_and_sizes(
    store: WorkerStore, refs: list[SessionRef], now: float
) -> Iterator[tuple[float, int]]:
    """Per session: the age of its stream's first entry (0.0 if empty) and the stream's
    MEMORY USAGE, ``PIPELINE`` sessions a round trip."""
    for start in range(0, len(refs), PIPELINE):
        pipe = store.client.pipeline(transaction=False)
        for ref in refs[start : start + PIPELINE]:
            chunks = store.in_shard(ref.shard).keys(ref.session_id).chunks
            pipe.xrange(chunks, count=1)
            pipe.memory_usage(chunks)
        answers = pipe.execute()
        for i in range(0, len(answers), 2):
            first, size = answers[i : i + 2]
            yield _first_entry_age(first, now), int(size or 0)


def _first_entry_age(first: list[tuple[bytes, Any]], now: float) -> float:
    """How long ago a stream's first entry (an ``XRANGE COUNT 1`` answer) was appended:
    its id is the Redis server time of the append, in milliseconds; 0.0 if it is empty."""
    if not first:
        return 0.0
    return max(0.0, now - int(first[0][0].split(b"-", 1)[0]) / 1000)


def held_sessions(store: WorkerStore, limit: int) -> Iterator[SessionRef]:
    """Sessions with entries in Redis: the members of every shard's due index (a session
    with entries is always in its due index), at most ``limit``, read in pages."""
    seen = 0
    for shard in store.all_shards():
        key = due_key(shard)
        start = 0
        while seen < limit:
            page = cast(
                list[bytes],
                store.client.zrange(key, start, start + min(PIPELINE, limit - seen) - 1),
            )
            for member in page:
                yield SessionRef(shard, member.decode())
            seen += len(page)
            start += len(page)
            if len(page) < PIPELINE:
                break


def quarantined_refs(
    store: WorkerStore, limit: int, shards: list[int] | None = None
) -> list[SessionRef]:
    """Sessions in the quarantine indexes (of every shard, or of ``shards``; they
    over-cover: some may be empty now)."""
    out: list[SessionRef] = []
    for shard in store.all_shards() if shards is None else shards:
        if len(out) >= limit:  # before asking: a ZRANGE 0 -1 would read the whole index
            break
        out += [SessionRef(shard, s) for s in store.quarantined_sessions(shard, limit - len(out))]
    return out


def quarantined_count(store: WorkerStore, limit: int, shards: list[int] | None = None) -> int:
    """Sessions of the quarantine indexes (their first ``limit``; of every shard, or of
    ``shards``) whose quarantine is not empty (the index over-covers: a refused
    quarantine still bumped it). Three pipelined round trips whatever the shard count
    (the exporter reads it at every read): the sizes of the indexes, the members of those
    not empty, the length of each member's quarantine."""
    shards = store.all_shards() if shards is None else shards
    pipe = store.client.pipeline(transaction=False)
    for shard in shards:
        pipe.zcard(quarantine_index_key(shard))
    taken: list[tuple[int, int]] = []  # (shard, members to read), the first ``limit``
    for shard, size in zip(shards, pipe.execute(), strict=True):
        left = limit - sum(n for _, n in taken)
        if size and left > 0:
            taken.append((shard, min(int(size), left)))
    pipe = store.client.pipeline(transaction=False)
    for shard, count in taken:
        pipe.zrange(quarantine_index_key(shard), 0, count - 1)
    refs = [
        SessionRef(shard, member.decode())
        for (shard, _), members in zip(taken, pipe.execute(), strict=True)
        for member in cast(list[bytes], members)
    ]
    pipe = store.client.pipeline(transaction=False)
    for ref in refs:
        pipe.xlen(store.in_shard(ref.shard).keys(ref.session_id).quarantine)
    return sum(1 for length in pipe.execute() if length)


def fleet_status(store: WorkerStore, *, scan_limit: int = SCAN_LIMIT) -> FleetStatus:
    if not 1 <= scan_limit <= MAX_SCAN_LIMIT:
        raise ValueError(f"scan_limit must be 1 to {MAX_SCAN_LIMIT:,}, got {scan_limit!r}")
    now = store.time()
    client = store.client
    status = FleetStatus(now=now, shards=due_shards(store, now))
    status.deletions = deletion_backlog(store, now)
    refs = list(held_sessions(store, scan_limit + 1))
    status.truncated = len(refs) > scan_limit
    refs = refs[:scan_limit]
    for start in range(0, len(refs), PIPELINE):
        pipe = client.pipeline(transaction=False)
        for ref in refs[start : start + PIPELINE]:
            keys = store.in_shard(ref.shard).keys(ref.session_id)
            pipe.xlen(keys.chunks)
            pipe.memory_usage(keys.chunks)
            pipe.xrange(keys.chunks, count=1)
            pipe.exists(keys.plan)
        answers = pipe.execute()
        for i in range(0, len(answers), 4):
            length, size, first, plan = answers[i : i + 4]
            if length:
                status.streams += 1
                status.entries += int(length)
                status.bytes_held += int(size or 0)
            status.plans += int(plan)
            age = _first_entry_age(first, now)
            status.oldest_entry_seconds = max(status.oldest_entry_seconds, age)
    for ref in quarantined_refs(store, scan_limit):
        view = store.in_shard(ref.shard)
        entries = view.read_quarantine(ref.session_id, QUARANTINE_READ)
        if not entries:
            continue
        status.quarantined_sessions += 1
        status.quarantined_entries += int(client.xlen(view.keys(ref.session_id).quarantine))
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


def locate(store: WorkerStore, session_id: str) -> list[SessionRef]:
    """The shards where a session has entries or a quarantine (normally one; a session
    can be in two only across an upgrade). Looks in every shard, in one round trip."""
    shards = store.all_shards()
    pipe = store.client.pipeline(transaction=False)
    for shard in shards:
        keys = store.in_shard(shard).keys(session_id)
        pipe.zscore(keys.due, session_id)
        pipe.zscore(keys.quarantine_index, session_id)
    answers = pipe.execute()
    return [
        SessionRef(shard, session_id)
        for i, shard in enumerate(shards)
        if answers[2 * i] is not None or answers[2 * i + 1] is not None
    ]


def sessions_of(
    store: WorkerStore, uid: str, cid: str | None = None, *, scan_limit: int = SCAN_LIMIT
) -> list[SessionRef]:
    """Sessions with entries in Redis of ``uid`` (and, if given, with an entry of ``cid``:
    a session that switched conversation holds several)."""
    out = []
    want_uid, want_cid = uid.encode(), None if cid is None else cid.encode()
    for ref in held_sessions(store, scan_limit):
        key = store.in_shard(ref.shard).keys(ref.session_id).chunks
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]], store.client.xrange(key, count=ENTRY_READ)
        )
        if any(
            f.get(b"uid") == want_uid and (want_cid is None or f.get(b"cid") == want_cid)
            for _, f in entries
        ):
            out.append(ref)
    return out


def quarantined_sessions_of(
    store: WorkerStore, uid: str, cid: str | None = None, *, scan_limit: int = SCAN_LIMIT
) -> list[SessionRef]:
    """Sessions whose quarantine holds an entry of ``uid`` (and ``cid``)."""
    out = []
    for ref in quarantined_refs(store, scan_limit):
        for entry in store.in_shard(ref.shard).read_quarantine(ref.session_id, QUARANTINE_READ):
            f = entry.fields
            if f.get(b"uid") == uid.encode() and (cid is None or f.get(b"cid") == cid.encode()):
                out.append(ref)
                break
    return out


def flush_now(
    store: WorkerStore, refs: list[SessionRef], *, dry_run: bool = False
) -> list[SessionRef]:
    """Make sessions with entries in Redis due now (the next sweep flushes them)."""
    now = store.time()
    found = [
        r for r in refs if store.client.exists(store.in_shard(r.shard).keys(r.session_id).chunks)
    ]
    if not dry_run:
        for ref in found:
            store.in_shard(ref.shard).schedule(ref.session_id, now)
    return found


def requeue_session(
    store: WorkerStore, ref: SessionRef, *, reason: str | None = None, dry_run: bool = False
) -> int:
    """Put a session's quarantined entries back (those whose reason contains ``reason``,
    or all); it is due at once. Returns how many (would) move; a second run finds none."""
    view = store.in_shard(ref.shard)
    if reason is None:
        if dry_run:
            return int(store.client.xlen(view.keys(ref.session_id).quarantine))
        return quarantine.replay(view, ref.session_id)
    chosen = [e.quarantine_id for e in _all_quarantined(view, ref.session_id) if reason in e.reason]
    if dry_run or not chosen:
        return len(chosen)
    return quarantine.replay(view, ref.session_id, chosen)


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
    sessions: list[SessionRef] | None = None,
    reason: str | None = None,
    dry_run: bool = False,
) -> list[ReplayItem]:
    """``requeue_session`` over ``sessions`` (default: every quarantined session)."""
    targets = sessions if sessions is not None else quarantined_refs(store, SCAN_LIMIT)
    out = []
    for ref in targets:
        moved = requeue_session(store, ref, reason=reason, dry_run=dry_run)
        if moved:
            out.append(ReplayItem(ref.session_id, moved))
    return out
