"""Shared pieces of the flush tests: a settable clock, a bucket that fails on cue, sessions
pushed in whole chunks, audits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from backend_hooks import AudioSyncClient, Session, storage
from backend_hooks.adapters.gcs import GcsBucket, UploadOutcome
from backend_hooks.adapters.redis_store import RedisClient, redis_time
from backend_hooks.contract import container, naming
from backend_hooks.contract.entries import Entry, parse_entry
from backend_hooks.contract.redis_keys import SessionKeys, shard_of
from backend_hooks.contract.settings import Settings
from workers.context import WorkerContext
from workers.flush import FlushResult, flush_session

#: What ``push_chunks`` pushes: 8 kHz, whole chunks of 5 s of silence.
RATE = 8000
CHUNK = bytes(2 * RATE * 5)  # 5 s of silence: one chunk


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sync(self, client: RedisClient) -> None:
        """Back to Redis server time: call after appending, so that ages count from the
        append however long it took (a loaded machine can take seconds to encode)."""
        self.now = redis_time(client)


class Died(Exception):
    """Stands for a process dying (or any exception) at the point where it is raised."""


@dataclass
class CueBucket(GcsBucket):
    """A real bucket whose uploads can be stopped on cue, before or after they store.

    ``before[i]`` / ``after[i]`` run around upload number ``i`` (from 0) of this bucket:
    raise ``Died`` there to stop the flush at that exact point, or block on an event to
    stall it past its lease.
    """

    inner: GcsBucket
    before: dict[int, Callable[[], None]] = field(default_factory=dict)
    after: dict[int, Callable[[], None]] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client, self.bucket = self.inner.client, self.inner.bucket

    def create_only(
        self,
        name: str,
        data: bytes,
        *,
        content_type: str,
        metadata: dict[str, str],
        deadline: float = 60.0,
    ) -> UploadOutcome:
        index = len(self.uploads)
        self.uploads.append(name)
        if index in self.before:
            self.before[index]()
        outcome = self.inner.create_only(
            name, data, content_type=content_type, metadata=metadata, deadline=deadline
        )
        if index in self.after:
            self.after[index]()
        return outcome


def die() -> None:
    raise Died("killed here")


def stall_until(started: threading.Event, resume: threading.Event) -> Callable[[], None]:
    def stall() -> None:
        started.set()
        assert resume.wait(30), "the test never resumed the stalled flush"

    return stall


def flush(ctx: WorkerContext, session_id: str, bucket: GcsBucket | None = None) -> FlushResult:
    return flush_session(
        session_id,
        store=ctx.store,
        bucket=bucket or ctx.bucket,
        policy=ctx.policy,
        config=ctx.config,
        clock=ctx.clock,
    )


def read_entries(ctx: WorkerContext, session_id: str) -> list[Entry]:
    return [
        parse_entry(entry_id, fields) for entry_id, fields in ctx.store.read_raw(session_id, 10_000)
    ]


def lease_expires(ctx: WorkerContext, session_id: str) -> None:
    """What the lease's TTL does to a flush that stalls past it."""
    ctx.store.client.delete(keys(session_id).lease)


def stored_seqs(ctx: WorkerContext, uid: str, cid: str) -> list[int]:
    """Seq of every chunk stored for a (standard) conversation, across all its objects."""
    out = []
    sctx = storage.StorageContext(ctx.settings, ctx.bucket, None)
    for item in storage.list_audio_chunks(uid, cid, context=sctx):
        for chunk in container.parse_chunks(ctx.bucket.download(item["path"])):
            out.append(chunk.info.seq)
    return sorted(out)


def overlapping_objects(ctx: WorkerContext, uid: str, cid: str) -> list[tuple[str, str]]:
    """Pairs of stored objects of one conversation whose time ranges overlap."""
    sctx = storage.StorageContext(ctx.settings, ctx.bucket, None)
    names = [
        naming.parse_object_name(o["path"])
        for o in storage.list_audio_chunks(uid, cid, context=sctx)
    ]
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert a.end_us is not None and b.end_us is not None
            if a.start_us < b.end_us and b.start_us < a.end_us:
                pairs.append((a.filename, b.filename))
    return pairs


def keys(session_id: str) -> SessionKeys:
    """A session's keys where a pusher with the test environment's settings puts them."""
    return SessionKeys(session_id, shard_of(session_id, Settings.from_env().due_shards))


def push_chunks(
    ctx: WorkerContext, clock: FakeClock, uid: str, chunks: int, close: bool = True
) -> Session:
    """A standard session with ``chunks`` chunks of 5 s from now on, closed unless told."""
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session(uid, "conv", RATE, "standard")
    now = time.time()
    session.push(CHUNK * chunks, now)
    if close:
        session.close()
    return session


def in_thread(target: Callable[[], FlushResult]) -> tuple[threading.Thread, list[FlushResult]]:
    results: list[FlushResult] = []
    thread = threading.Thread(target=lambda: results.append(target()), daemon=True)
    thread.start()
    return thread, results


def raw_xadd(ctx: WorkerContext, session_id: str, fields: dict[bytes, bytes]) -> None:
    """An entry appended behind the pusher's back (a bug, an old pusher, an attacker)."""
    ctx.store.client.xadd(keys(session_id).chunks, dict(fields.items()))


def assert_exactly_once(ctx: WorkerContext, uid: str, session_id: str, chunks: int) -> None:
    assert stored_seqs(ctx, uid, "conv") == list(range(chunks))  # each chunk once, none lost
    assert overlapping_objects(ctx, uid, "conv") == []
    assert read_entries(ctx, session_id) == []
    assert ctx.store.read_plan(session_id) == []
