"""What the pusher calls: open a session, push PCM, switch conversation, close.

Per chunk (every ``AUDIOSYNC_CHUNK_SECONDS`` of audio, or earlier at a gap, a switch or
the end): Opus-encode, seal for ``enhanced``, and append to the session's Redis stream in
one round trip (XADD + due-time bookkeeping, one script). Nothing touches Redis per frame.

**Threads.** The caller's side (``push``/``apush``) only cuts PCM into chunks in memory
and hands them to the session's ``SerialQueue`` (backend_hooks/pusher/handoff.py); encoding,
sealing, the Redis append and the spool run on the client's pool of
``AUDIOSYNC_PUSHER_THREADS`` threads, one task per session at a time, so a session's
entries keep their order. On the event loop nothing waits on a lock held across I/O, a
socket or a sleep: ``apush`` returns as soon as its chunks are handed over, and awaits
(never blocks) only when the session's unencoded audio exceeds
``AUDIOSYNC_SESSION_BUFFER_SECONDS``.

**The pipeline.** A session talks to the process's one ``Transport``
(backend_hooks/pusher/transport.py: circuit breaker, Redis appends, disk spool) through its public
methods, and to its client only through a ``SessionContext`` of settings and hooks; it
never imports the client. The client drives it by a small lifecycle (the model is arroyo's
``ProcessingStrategy``: submit / poll / close / join): ``push``/``apush`` submit audio,
``poll()`` is the maintenance thread's one call (spooled entries appended, entries held in
memory tried again), ``begin_close()`` hands the tail over without waiting and
``Closing.join(deadline)`` waits for it.

**Redis away.** Every Redis call goes through the transport's circuit breaker
(backend_hooks/pusher/breaker.py) and runs on one of the transport's Redis threads; the pool thread
waits at most ``AUDIOSYNC_REDIS_STALL_SECONDS`` for its answer, so a stalled Redis holds
Redis threads, never the pool (the call goes on; landing twice adds nothing, see below).
One failed call opens the breaker for ``AUDIOSYNC_BREAKER_SECONDS``: appends skip Redis
meanwhile, and so they do while a call in flight is stalled. A session's entries that Redis
did not take go to the disk spool (``AUDIOSYNC_SPOOL_DIR``, backend_hooks/pusher/spool.py) and,
once a session has spooled, all its later entries follow them there until the client's
maintenance thread has appended the spooled ones, in order. Without a spool (or with the
spool full) they wait in memory, up to ``AUDIOSYNC_SESSION_BUFFER_SECONDS`` of audio a
session; beyond that a push is refused with ``BufferFullError`` (``SpoolFullError``), never
dropped silently.

**Exactly once.** Every entry has a per-session append number ``n``; the append script
skips numbers at or below the highest it has appended (backend_hooks/pusher/appender.py), so
an append repeated after a lost reply, or a spooled file appended again after a crash
between its append and its rename, adds nothing.

**Closing.** ``close``/``aclose`` hand the tail and an end marker over and wait until they
are in Redis or in the spool, at most ``AUDIOSYNC_CLOSE_SECONDS``; otherwise they raise
``EnqueueError`` and keep everything: call them again. ``AudioSyncClient.close``/``aclose``
close every session concurrently within the same budget; the pool is shut down only once
all succeeded, so a failed close can be retried from the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from backend_hooks.adapters import redis_store
from backend_hooks.contract import container, envelope, redis_keys
from backend_hooks.contract.codec import ChunkEncoder, validate_rate
from backend_hooks.contract.entries import (
    ENHANCED,
    KIND_CHUNK,
    KIND_END,
    PROTECTION_LEVELS,
    STANDARD,
    NewEntry,
)
from backend_hooks.contract.errors import (
    BufferFullError,
    ConfigError,
    EnqueueError,
    InvalidInputError,
    SessionClosedError,
    SpoolFullError,
)
from backend_hooks.contract.ids import validate_id
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher.chunker import Chunker, RawChunk, timestamp_to_us
from backend_hooks.pusher.handoff import SerialQueue
from backend_hooks.pusher.spool_format import SpoolRecord
from backend_hooks.pusher.transport import DRAIN_BATCH, RedisNotTried, Transport

log = logging.getLogger("backend_hooks.session")

__all__ = [
    "ENHANCED",
    "PROTECTION_LEVELS",
    "STANDARD",
    "Closing",
    "Drain",
    "Session",
    "SessionContext",
]
_CLOSE_RETRY_SECONDS = 0.2  # a close whose tail is still held tries Redis again this often


@dataclass(frozen=True)
class SessionContext:
    """What a session needs of its pusher process; the client builds one for all its
    sessions (the session never sees the client)."""

    settings: Settings
    transport: Transport  # Redis through the breaker, or the disk spool
    executor: Executor  # the pool: encoding and delivery
    keys: envelope.UserKeys | None  # for ``enhanced``
    clock: Callable[[], float]  # wall clock, seconds
    spool_enabled_for: Callable[[str], bool]  # may this uid's sessions use the spool?
    on_refused: Callable[[], None]  # a push was refused (BufferFullError, SpoolFullError)
    on_held: Callable[[], None]  # entries wait in memory: maintenance must run to retry them
    on_closed: Callable[[str], None]  # closed with nothing spooled: forget this session id


class Drain(enum.Enum):
    """How ``Session.poll`` found Redis while appending the session's spooled entries."""

    DONE = "done"  # nothing to drain, drained, or Redis refused this session's entries
    NOT_TRIED = "not-tried"  # the breaker let no call through (open again, or a stall)
    REDIS_AWAY = "redis-away"  # a call failed or went unanswered: Redis is away


@dataclass
class _Work:
    """A hand-over from the caller to the session's sender."""

    chunks: list[RawChunk]
    cid: str
    end_of: str | None = None  # a conversation end marker after the chunks
    retry: bool = False  # try Redis even if the breaker is open (an explicit close)
    done: concurrent.futures.Future[int] = field(default_factory=concurrent.futures.Future)

    @property
    def samples(self) -> int:
        return sum(c.sample_count for c in self.chunks)


@dataclass(frozen=True)
class _Pending:
    n: int
    entry: NewEntry


def _resolve(future: concurrent.futures.Future[int], value: int | BaseException) -> None:
    if future.done():
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


class Closing:
    """A close under way (``Session.begin_close``): ``join`` waits for it."""

    def __init__(
        self,
        session: Session,
        *,
        tail: concurrent.futures.Future[int] | None = None,
        on_loop: concurrent.futures.Future[None] | None = None,
    ) -> None:
        self._session = session
        self._tail = tail
        self._on_loop = on_loop

    @property
    def on_loop(self) -> bool:
        """Whether it runs as ``aclose`` on the event loop that drives the session."""
        return self._on_loop is not None

    def join(self, deadline: float) -> EnqueueError | None:
        """Wait until the tail is in Redis or the spool, at most until ``deadline``
        (``time.monotonic()``); the error ``close()`` would raise, or None."""
        if self._on_loop is not None:
            try:
                self._on_loop.result(timeout=max(0.0, deadline - time.monotonic()))
            except EnqueueError as exc:
                return exc
            except concurrent.futures.TimeoutError:
                return EnqueueError("a session's close on its event loop ran out of time")
            return None
        assert self._tail is not None
        return self._session._finish_close(self._tail, deadline)


class Session:
    """One live audio session of one user; conversations may change along the way.

    Use either the synchronous methods (from threads) or the ``a*`` methods (from one
    event loop) for a session, not both at once.
    """

    def __init__(
        self,
        context: SessionContext,
        uid: str,
        conversation_id: str,
        sample_rate: int,
        protection_level: str,
    ) -> None:
        self.uid = validate_id(uid, "uid")
        self.conversation_id = validate_id(conversation_id, "conversation_id")
        self.sample_rate = validate_rate(sample_rate)
        if protection_level not in PROTECTION_LEVELS:
            raise InvalidInputError(
                f"protection_level must be one of {PROTECTION_LEVELS}, got {protection_level!r}"
            )
        if protection_level == ENHANCED and context.keys is None:
            raise ConfigError(
                "protection level 'enhanced' needs ENCRYPTION_SECRET (at least 32 bytes) "
                "in the environment"
            )
        self.protection_level = protection_level
        self.session_id = uuid.uuid4().hex
        # Its shard is fixed for its life: the fleet flushes it where this puts it.
        self.redis_keys = redis_keys.SessionKeys(
            self.session_id,
            redis_keys.shard_of(self.session_id, context.settings.due_shards),
        )
        self._context = context
        self._clock = context.clock
        self._transport = context.transport
        settings = self._settings = context.settings
        self._buffer_samples = round(settings.session_buffer_seconds * sample_rate)
        # The spool if this user's sessions may use it (AUDIOSYNC_SPOOL_* rollout flags).
        self._spooling = context.spool_enabled_for(self.uid) and context.transport.spool is not None
        # The caller's side (the event loop, or the sync caller under _sync_lock).
        self._chunker = Chunker(
            sample_rate,
            round(settings.chunk_seconds * sample_rate),
            tolerance_us=round(settings.timestamp_tolerance_ms * 1000),
            window_us=round(settings.push_timestamp_window_seconds * 1_000_000),
        )
        self._queue: SerialQueue[_Work] = SerialQueue(context.executor, self._process)
        self._queued_samples = 0  # written by the caller only
        self._handed_chunks = 0  # written by the caller only
        self._closed = False
        self._tail_staged = False
        self._sync_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of the a* methods
        # The sender's side (one pool task at a time).
        self._encoder = ChunkEncoder.from_settings(sample_rate, settings)
        self._processed_samples = 0  # written by the sender only
        self._settled_chunks = 0  # in Redis or in the spool; written by the sender only
        self._next_n = 0  # append number of the next entry (appender docstring)
        self._held: deque[_Pending] = deque()  # encoded, neither in Redis nor spooled
        self._bytes_since_bump = 0
        self._samples_since_bump = 0
        self._logged_waiting = False
        self._spool_error = ""  # why the last spool write failed, for the refusal
        # Shared by the sender and the maintenance thread (never the loop).
        self._spooled: deque[Path] = deque()
        self._spool_lock = threading.Lock()
        self._drain_lock = threading.Lock()

    # -- the synchronous API -------------------------------------------------------------
    def push(self, pcm: bytes, timestamp: float) -> None:
        """Add PCM16LE mono audio at the session rate; ``timestamp`` = its first sample.

        Returns once its chunks are in Redis, in the spool or held in memory."""
        with self._sync_lock:
            self._check_open()
            self._check_room()
            chunks = self._chunk(pcm, timestamp)
            work = self._hand_over(chunks) if chunks else None
        if work is not None:
            work.done.result()

    def switch_conversation(self, new_conversation_id: str) -> None:
        """Later audio belongs to ``new_conversation_id``; the old one's tail is flushed."""
        new_id = validate_id(new_conversation_id, "conversation_id")
        with self._sync_lock:
            self._check_open()
            if new_id == self.conversation_id:
                return
            work = self._hand_over(self._chunker.flush(), end_of=self.conversation_id)
            self.conversation_id = new_id
        work.done.result()

    def close(self) -> None:
        """End of the conversation: the tail is enqueued and flushed promptly. Idempotent.

        ``EnqueueError`` if the tail is neither in Redis nor in the spool within
        ``AUDIOSYNC_CLOSE_SECONDS``: it is kept; call ``close()`` again."""
        loop = self._running_loop_elsewhere()
        if loop is not None:  # driven by a loop in another thread: close it there
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result()
            return
        deadline = time.monotonic() + self._settings.close_seconds
        with self._sync_lock:
            if self._closed:
                return
            future = self._start_close()
        error = self._finish_close(future, deadline)
        if error is not None:
            raise error

    def begin_close(self) -> Closing:
        """Start closing without waiting (a client closes all its sessions at once): the
        tail and the end marker are handed over, or, if an event loop in another thread
        drives this session, ``aclose`` is scheduled there. ``Closing.join(deadline)``
        waits for it. RuntimeError on that loop's own thread (as ``close``)."""
        loop = self._running_loop_elsewhere()
        if loop is not None:
            return Closing(self, on_loop=asyncio.run_coroutine_threadsafe(self.aclose(), loop))
        return Closing(self, tail=self._start_close())

    def _running_loop_elsewhere(self) -> asyncio.AbstractEventLoop | None:
        """The running event loop that drives this session if it is not this thread's;
        RuntimeError if this thread is that loop's (a blocking close there would stall
        it: use the ``a*`` methods)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return None
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            return loop
        if here is loop:
            raise RuntimeError(
                f"session {self.session_id} is driven by this event loop: "
                "await session.aclose() / client.aclose() instead of the blocking close()"
            )
        return loop

    # -- the asyncio API -----------------------------------------------------------------
    async def apush(self, pcm: bytes, timestamp: float) -> None:
        """As ``push``, for the event loop: returns once the chunks are handed over."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._closed or self._tail_staged:
            self._check_open()
        if self._held:
            self._check_room()
        chunks = self._chunk(pcm, timestamp)
        if not chunks:
            return
        work = self._hand_over(chunks)
        if self._queued_samples - self._processed_samples > self._buffer_samples:
            # The encoders are behind (a huge push, a slow pool): wait for ours, not block.
            # Cancelling this wait leaves the chunks handed over (shield).
            await asyncio.shield(asyncio.wrap_future(work.done))

    async def aswitch_conversation(self, new_conversation_id: str) -> None:
        self._loop = self._loop or asyncio.get_running_loop()
        new_id = validate_id(new_conversation_id, "conversation_id")
        self._check_open()
        if new_id == self.conversation_id:
            return
        self._hand_over(self._chunker.flush(), end_of=self.conversation_id)
        self.conversation_id = new_id

    async def aclose(self) -> None:
        """As ``close``, for the event loop. A failed ``aclose`` may be awaited again."""
        if self._closed:
            return
        self._loop = self._loop or asyncio.get_running_loop()
        deadline = time.monotonic() + self._settings.close_seconds
        future = self._start_close()
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result of a
            # future that finished as the task was cancelled, swallowing the cancellation
            # (a Ctrl-C, a shutdown's cancel) that the caller then never sees.
            if future.done():
                left = future.result()
            else:
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        left = await asyncio.shield(asyncio.wrap_future(future))
                except TimeoutError:
                    raise self._close_error(None) from None
            if not left:
                self._mark_closed()
                return
            if time.monotonic() + _CLOSE_RETRY_SECONDS >= deadline:
                raise self._close_error(left)
            await asyncio.sleep(_CLOSE_RETRY_SECONDS)
            future = self._hand_over([], retry=True).done

    # -- state ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def unsent_chunks(self) -> int:
        """Chunks neither in Redis nor in the spool (handed over, or held in memory)."""
        return self._handed_chunks - self._settled_chunks

    @property
    def queued_chunks(self) -> int:
        return sum(len(w.chunks) for w in self._queue.snapshot())

    @property
    def held_entries(self) -> int:
        return len(self._held)

    @property
    def spooled_entries(self) -> int:
        return len(self._spooled)

    @property
    def implausible_timestamps(self) -> int:
        """Pushes whose timestamp was outside AUDIOSYNC_PUSH_TIMESTAMP_WINDOW_SECONDS of the
        pusher's clock (or negative): their audio was placed by the pusher's clock shifted
        by the device's offset, never before the session's sample clock (chunker)."""
        return self._chunker.implausible_timestamps

    def _chunk(self, pcm: bytes, timestamp: float) -> list[RawChunk]:
        """The chunker's push on the pusher's clock; warns at the first implausible time."""
        chunker = self._chunker
        seen = chunker.implausible_timestamps
        now_us = round(self._clock() * 1_000_000)
        # timestamp_to_us of a finite float (the usual timestamp), without its checks.
        if type(timestamp) is float and (us := timestamp * 1_000_000) - us == 0.0:
            timestamp_us = round(us)
        else:
            timestamp_us = timestamp_to_us(timestamp)
        chunks = chunker.push(pcm, timestamp_us, now_us=now_us)
        if not seen and chunker.implausible_timestamps:
            log.warning(
                "session %s: timestamp %r is negative or more than %g s from the pusher's "
                "clock (%.6f); "
                "its audio is placed by the pusher's clock shifted by the device's offset, "
                "never before the session's sample clock (warned once a session; "
                "Session.implausible_timestamps counts them)",
                self.session_id,
                timestamp,
                self._settings.push_timestamp_window_seconds,
                now_us / 1_000_000,
            )
        return chunks

    # -- the caller's side ---------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed or self._tail_staged:
            raise SessionClosedError(
                f"session {self.session_id} is closed; open a new one with open_session()"
            )

    def _check_room(self) -> None:
        if not self._held:  # the usual case: nothing waits for Redis (no copy per push)
            return
        held = sum(p.entry.samples for p in list(self._held))
        if held <= self._buffer_samples:
            return
        self._context.on_refused()
        seconds = held / self.sample_rate
        limit = self._settings.session_buffer_seconds
        if self._spooling:
            raise SpoolFullError(
                f"session {self.session_id}: {seconds:.0f} s of audio wait in memory for "
                f"Redis (limit AUDIOSYNC_SESSION_BUFFER_SECONDS={limit:g}) and the spool "
                f"takes no more ({self._spool_error or 'AUDIOSYNC_SPOOL_MAX_BYTES'}); this "
                "push was refused: keep it on the old path, or retry once Redis answers"
            )
        raise BufferFullError(
            f"session {self.session_id}: {seconds:.0f} s of audio wait in memory for Redis "
            f"(limit AUDIOSYNC_SESSION_BUFFER_SECONDS={limit:g}) and no spool is set "
            "(AUDIOSYNC_SPOOL_DIR); this push was refused: keep it on the old path, or "
            "retry once Redis answers"
        )

    def _hand_over(
        self, chunks: list[RawChunk], *, end_of: str | None = None, retry: bool = False
    ) -> _Work:
        work = _Work(chunks=chunks, cid=self.conversation_id, end_of=end_of, retry=retry)
        self._queued_samples += work.samples
        self._handed_chunks += len(chunks)
        self._queue.put(work)
        return work

    def _start_close(self) -> concurrent.futures.Future[int]:
        """Hand the tail and the end marker over (once). A repeated close tries Redis even
        while the breaker is open: the caller asks for it explicitly."""
        if not self._tail_staged:
            if self._chunker.dangling_byte:
                log.warning(
                    "session %s closes with half a sample pending; it is not audio and is dropped",
                    self.session_id,
                )
            self._tail_staged = True
            return self._hand_over(self._chunker.flush(), end_of=self.conversation_id).done
        return self._hand_over([], retry=True).done

    def _finish_close(
        self, future: concurrent.futures.Future[int], deadline: float
    ) -> EnqueueError | None:
        """Wait for the tail; while entries are still held and time is left, try again."""
        while True:
            try:
                left = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                return self._close_error(None)
            except EnqueueError as exc:
                return exc
            if not left:
                self._mark_closed()
                return None
            if time.monotonic() + _CLOSE_RETRY_SECONDS >= deadline:
                return self._close_error(left)
            time.sleep(_CLOSE_RETRY_SECONDS)
            future = self._hand_over([], retry=True).done

    def _mark_closed(self) -> None:
        self._closed = True
        if not self._spooled:  # else the maintenance thread forgets it once drained
            self._context.on_closed(self.session_id)

    def _close_error(self, left: int | None) -> EnqueueError:
        if left is None:
            what = f"did not reach Redis or the spool within {self._settings.close_seconds:g} s"
        else:
            what = f"has {self.unsent_chunks} chunks waiting for Redis in memory"
        return EnqueueError(
            f"session {self.session_id} {what} (AUDIOSYNC_CLOSE_SECONDS); they are "
            "kept: call close() again once Redis answers"
        )

    def _retry(self) -> None:
        """Maintenance: try the entries held in memory again (on the pool)."""
        self._queue.put(_Work(chunks=[], cid=self.conversation_id))

    # -- the sender's side (pool thread, one at a time per session) ------------------------
    def _process(self, batch: list[_Work]) -> None:
        try:
            now_us = round(self._context.clock() * 1_000_000)
            urgent = False
            for work in batch:
                for chunk in work.chunks:
                    self._hold(self._entry(chunk, work.cid, now_us))
                if work.end_of is not None:
                    self._hold(
                        NewEntry(kind=KIND_END, uid=self.uid, cid=work.end_of, enq_us=now_us)
                    )
                    urgent = True
                self._processed_samples += work.samples
            self._deliver(urgent=urgent, force=any(w.retry for w in batch))
            left = len(self._held)
        except BaseException as exc:  # a bug or a codec failure: every waiter learns it
            log.exception("session %s: handing chunks over failed", self.session_id)
            failure = EnqueueError(f"session {self.session_id}: {exc!r}")
            for work in batch:
                _resolve(work.done, failure)
            return
        for work in batch:
            _resolve(work.done, left)

    def _hold(self, entry: NewEntry) -> None:
        self._held.append(_Pending(self._next_n, entry))
        self._next_n += 1
        self._bytes_since_bump += len(entry.data)
        self._samples_since_bump += entry.samples

    def _entry(self, chunk: RawChunk, cid: str, now_us: int) -> NewEntry:
        info = container.ChunkInfo(
            session_id=self.session_id,
            seq=chunk.seq,
            start_us=chunk.start_us,
            sample_rate=self.sample_rate,
            sample_count=chunk.sample_count,
        )
        data = container.build_chunk(info, self._encoder.encode(chunk.pcm), self._encoder.pre_skip)
        if self.protection_level == ENHANCED:
            assert self._context.keys is not None
            data = envelope.seal(self._context.keys, self.uid, info, data)  # envelope v1
        return NewEntry(
            kind=KIND_CHUNK,
            uid=self.uid,
            cid=cid,
            enq_us=now_us,
            level=self.protection_level,
            rate=self.sample_rate,
            seq=chunk.seq,
            start_us=chunk.start_us,
            samples=chunk.sample_count,
            data=data,
        )

    def _deliver(self, *, urgent: bool, force: bool) -> None:
        """Held entries to Redis in one round trip, else to the spool, else kept.

        The due time is computed by Redis from its own clock: ``urgent`` (a conversation
        end, or an object's worth of audio or bytes since the last urgent append) makes it
        now, otherwise now + ``AUDIOSYNC_BATCH_MAX_AGE_SECONDS``.
        """
        if not self._held:
            return
        settings = self._settings
        due_now = (
            urgent
            or self._bytes_since_bump >= settings.batch_max_bytes
            or self._samples_since_bump >= settings.object_seconds * self.sample_rate
        )
        with self._spool_lock:
            behind_spool = bool(self._spooled)  # order: spooled entries go first
        may_try = self._transport.may_try(force=force)
        if behind_spool and may_try:
            try:  # Redis answers again: our spooled entries first, from here
                self._drain_spooled(force=force)
            except redis_store.REDIS_ERRORS:
                may_try = False
            with self._spool_lock:
                behind_spool = bool(self._spooled)
        if not behind_spool and may_try:
            try:
                self._transport.append(
                    self.redis_keys,
                    [p.entry for p in self._held],
                    first_n=self._held[0].n,
                    urgent=due_now,
                    force=force,
                )
            except redis_store.REDIS_ERRORS:
                pass  # not tried, failed or not answered in time: the spool, or memory
            else:
                self._settled_chunks += sum(1 for p in self._held if p.entry.kind == KIND_CHUNK)
                self._held.clear()
                self._logged_waiting = False
                if due_now:
                    self._bytes_since_bump = self._samples_since_bump = 0
                return
        if self._spooling and self._to_spool(due_now):
            if due_now:
                self._bytes_since_bump = self._samples_since_bump = 0
            return
        self._context.on_held()  # the client's maintenance retries what is held here
        if not self._logged_waiting:
            self._logged_waiting = True
            log.warning(
                "session %s: %d entries wait in memory for Redis%s",
                self.session_id,
                len(self._held),
                " (the spool is full)" if self._spooling else "",
            )

    def _to_spool(self, urgent: bool) -> bool:
        """Spool every held entry, in order; False if some stay (spool full or failing)."""
        assert self._spooling
        with self._spool_lock:
            while self._held:
                pending = self._held[0]
                record = SpoolRecord(
                    session_id=self.session_id,
                    shard=self.redis_keys.shard,
                    n=pending.n,
                    urgent=urgent or pending.entry.kind == KIND_END,
                    entry=pending.entry,
                )
                try:
                    path = self._transport.write_spool(record)
                except (SpoolFullError, OSError) as exc:
                    self._spool_error = str(exc)
                    if not self._logged_waiting:  # once per outage, not per retry
                        log.error(
                            "session %s: not spooled, kept in memory: %s", self.session_id, exc
                        )
                    return False
                self._spool_error = ""
                self._spooled.append(path)
                self._held.popleft()
                self._settled_chunks += pending.entry.kind == KIND_CHUNK
        return True

    # -- the maintenance thread's side -----------------------------------------------------
    def poll(self, *, drain: bool = True) -> Drain:
        """Maintenance (the client's thread, about once a second, and a closing client):
        if ``drain`` and the transport may try Redis, this session's spooled entries are
        appended in order; then the entries held in memory are tried again (on the pool).
        Raises no Redis error: says how the drain went."""
        outcome = Drain.DONE
        if drain and self._spooled and self._transport.may_try():
            try:
                self._drain_spooled()
            except RedisNotTried:
                outcome = Drain.NOT_TRIED  # the breaker is open again, or a call stalled
            except redis_store.REDIS_ERRORS as exc:
                if redis_store.is_outage(exc):
                    outcome = Drain.REDIS_AWAY
                # else that session's own refusal: its entries stay spooled
        if self._held:  # held in memory (no spool, or it was full): try Redis again
            self._retry()
        return outcome

    def _drain_spooled(self, *, force: bool = False) -> None:
        """Append this session's spooled entries in order; ``RedisError`` stops it.

        The maintenance thread and the sender both drain (the sender when Redis answers
        again while entries wait behind the spool); ``_drain_lock`` lets one at a time, and
        nobody waits for it longer than one Redis call may last
        (``AUDIOSYNC_REDIS_STALL_SECONDS``): the entries stay spooled, for the next pass.
        ``force``: a close the caller retries explicitly (breaker.py)."""
        assert self._spooling
        if not self._drain_lock.acquire(timeout=self._settings.redis_stall_seconds):
            return
        try:
            while True:
                with self._spool_lock:
                    files = list(self._spooled)[:DRAIN_BATCH]
                if not files:
                    break
                self._transport.drain_spooled(files, force=force)
                with self._spool_lock:
                    for _ in files:
                        self._spooled.popleft()
        finally:
            self._drain_lock.release()
