"""What the pusher calls: open a session, push PCM, switch conversation, close.

Per chunk (every ``AUDIOSYNC_CHUNK_SECONDS`` of audio, or earlier at a gap, a switch or
the end): Opus-encode, seal for ``enhanced``, and append to the session's Redis stream in
one round trip (XADD + due-time bookkeeping, one MULTI). Nothing touches Redis per frame.

If Redis fails, the chunks stay in the session, in order, and go with the next chunk; a
``close`` that still cannot reach Redis raises ``EnqueueError`` and keeps them
(ROADMAP 1 replaces this with a local disk spool that survives the process).

The ``a*`` methods are for the pusher's event loop: pushing only buffers bytes on the
loop; encoding, sealing and the Redis round trip run on the client's thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis

from backend_hooks import container, envelope, redis_store, usage
from backend_hooks.chunker import Chunker, RawChunk, timestamp_to_us
from backend_hooks.codec import ChunkEncoder, validate_rate
from backend_hooks.entries import (
    ENHANCED,
    KIND_CHUNK,
    KIND_END,
    PROTECTION_LEVELS,
    STANDARD,
    NewEntry,
)
from backend_hooks.errors import ConfigError, EnqueueError, InvalidInputError, SessionClosedError
from backend_hooks.ids import validate_id
from backend_hooks.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["ENHANCED", "PROTECTION_LEVELS", "STANDARD", "AudioSyncClient", "Session"]
_CLOSE_ATTEMPTS = 3


class AudioSyncClient:
    """One per pusher process: settings, the Redis connection pool, user keys, a thread pool."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis_client: redis_store.RedisClient | None = None,
        clock: Callable[[], float] = time.time,
        max_threads: int = 4,
    ) -> None:
        self.settings = settings
        self.redis = redis_client or redis_store.connect(
            settings.redis_url, cluster=settings.redis_cluster
        )
        self.appender = redis_store.Appender(self.redis, settings.due_shards)
        self.clock = clock
        self.keys = (
            envelope.UserKeys(settings.encryption_secret) if settings.encryption_secret else None
        )
        self.executor = ThreadPoolExecutor(max_threads, thread_name_prefix="audiosync")
        self._sessions: set[Session] = set()
        self._counters: set[usage.UsageCounter] = set()  # until their final flush wrote
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> AudioSyncClient:
        return cls(Settings.from_env(role="pusher"))

    def open_session(
        self,
        uid: str,
        conversation_id: str,
        sample_rate: int = 16000,
        protection_level: str = ENHANCED,
    ) -> Session:
        session = Session(self, uid, conversation_id, sample_rate, protection_level)
        with self._lock:
            self._sessions.add(session)
        return session

    def usage_counter(
        self,
        uid: str,
        *,
        enabled: bool,
        limit_ms: int,
        redis_client: redis_store.RedisClient | None = None,
    ) -> usage.UsageCounter:
        """A batched speech-to-text usage counter for ``uid`` (backend_hooks/usage.py), on
        the backend's Redis (default: this client's); ``close()`` flushes it once more."""
        client = redis_client if redis_client is not None else self.redis
        counter = usage.UsageCounter(
            client,
            uid,
            enabled=enabled,
            limit_ms=limit_ms,
            clock=self.clock,
            on_done=self._counter_done,
        )
        with self._lock:
            self._counters.add(counter)
        return counter

    def _counter_done(self, counter: usage.UsageCounter) -> None:
        with self._lock:
            self._counters.discard(counter)

    def _flush_counters(self) -> None:
        with self._lock:
            counters, self._counters = self._counters, set()
        kept = set()
        for counter in counters:
            try:
                counter.flush()
            except redis.RedisError as exc:
                log.warning("usage of %s not written at shutdown: %s", counter.uid, exc)
                kept.add(counter)
        with self._lock:
            self._counters |= kept  # a retried close() writes them

    def _forget(self, session: Session) -> None:
        with self._lock:
            self._sessions.discard(session)

    def close(self) -> None:
        """Close every open session (pusher shutdown): their tails are enqueued."""
        with self._lock:
            sessions = list(self._sessions)
        errors = []
        for session in sessions:
            try:
                session.close()
            except EnqueueError as exc:
                errors.append(exc)
        self._flush_counters()
        self.executor.shutdown(wait=True)
        if errors:
            raise EnqueueError(f"{len(errors)} sessions could not enqueue their tail: {errors[0]}")

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)


class Session:
    """One live audio session of one user; conversations may change along the way."""

    def __init__(
        self,
        client: AudioSyncClient,
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
        if protection_level == ENHANCED and client.keys is None:
            raise ConfigError(
                "protection level 'enhanced' needs ENCRYPTION_SECRET (at least 32 bytes) "
                "in the environment"
            )
        self.protection_level = protection_level
        self.session_id = uuid.uuid4().hex
        # Its shard is fixed for its life: the fleet flushes it where this puts it.
        self.redis_keys = redis_store.SessionKeys(
            self.session_id,
            redis_store.shard_of(self.session_id, client.settings.due_shards),
        )
        self._client = client
        settings = client.settings
        self._chunker = Chunker(sample_rate, round(settings.chunk_seconds * sample_rate))
        self._encoder = ChunkEncoder(sample_rate)
        self._unsent: list[NewEntry] = []
        self._next_n = 0  # append number of the first unsent entry (redis_store docstring)
        self._bytes_since_bump = 0
        self._samples_since_bump = 0
        self._closed = False
        self._tail_staged = False
        self._lock = threading.Lock()
        self._alock = asyncio.Lock()

    # -- the synchronous API -------------------------------------------------------------
    def push(self, pcm: bytes, timestamp: float) -> None:
        """Add PCM16LE mono audio at the session rate; ``timestamp`` = its first sample."""
        with self._lock:
            self._check_open()
            chunks = self._chunker.push(pcm, timestamp_to_us(timestamp))
            if chunks:
                self._ship(chunks, end_of=None)

    def switch_conversation(self, new_conversation_id: str) -> None:
        """Later audio belongs to ``new_conversation_id``; the old one's tail is flushed."""
        new_id = validate_id(new_conversation_id, "conversation_id")
        with self._lock:
            self._check_open()
            if new_id == self.conversation_id:
                return
            self._ship(self._chunker.flush(), end_of=self.conversation_id)
            self.conversation_id = new_id

    def close(self) -> None:
        """End of the conversation: the tail is enqueued and flushed promptly. Idempotent."""
        with self._lock:
            if self._closed:
                return
            if not self._tail_staged:  # a retried close must not add a second end marker
                if self._chunker.dangling_byte:
                    log.warning(
                        "session %s closes with half a sample pending; it is not audio and "
                        "is dropped",
                        self.session_id,
                    )
                self._stage(self._chunker.flush(), end_of=self.conversation_id)
                self._tail_staged = True
            for attempt in range(_CLOSE_ATTEMPTS):
                try:
                    self._send(urgent=True, raise_errors=True)
                    break
                except EnqueueError:
                    if attempt == _CLOSE_ATTEMPTS - 1:
                        raise
                    time.sleep(0.2 * (attempt + 1))
            self._closed = True
        self._client._forget(self)

    # -- the asyncio API -----------------------------------------------------------------
    async def apush(self, pcm: bytes, timestamp: float) -> None:
        async with self._alock:
            with self._lock:
                self._check_open()
                chunks = self._chunker.push(pcm, timestamp_to_us(timestamp))
            if chunks:
                await self._in_thread(self._ship_locked, chunks)

    async def aswitch_conversation(self, new_conversation_id: str) -> None:
        async with self._alock:
            await self._in_thread(self.switch_conversation, new_conversation_id)

    async def aclose(self) -> None:
        async with self._alock:
            await self._in_thread(self.close)

    async def _in_thread(self, func: Callable[..., None], *args: object) -> None:
        await asyncio.get_running_loop().run_in_executor(self._client.executor, func, *args)

    # -- internals -----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def unsent_chunks(self) -> int:
        return sum(1 for e in self._unsent if e.kind == KIND_CHUNK)

    def _check_open(self) -> None:
        if self._closed or self._tail_staged:
            raise SessionClosedError(
                f"session {self.session_id} is closed; open a new one with open_session()"
            )

    def _ship_locked(self, chunks: list[RawChunk]) -> None:
        with self._lock:
            self._ship(chunks, end_of=None)

    def _entry(self, chunk: RawChunk, now_us: int) -> NewEntry:
        info = container.ChunkInfo(
            session_id=self.session_id,
            seq=chunk.seq,
            start_us=chunk.start_us,
            sample_rate=self.sample_rate,
            sample_count=chunk.sample_count,
        )
        data = container.build_chunk(info, self._encoder.encode(chunk.pcm), self._encoder.pre_skip)
        if self.protection_level == ENHANCED:
            assert self._client.keys is not None
            data = envelope.seal(self._client.keys.cipher(self.uid), data)
        return NewEntry(
            kind=KIND_CHUNK,
            uid=self.uid,
            cid=self.conversation_id,
            enq_us=now_us,
            level=self.protection_level,
            rate=self.sample_rate,
            seq=chunk.seq,
            start_us=chunk.start_us,
            samples=chunk.sample_count,
            data=data,
        )

    def _ship(self, chunks: list[RawChunk], *, end_of: str | None) -> None:
        self._stage(chunks, end_of=end_of)
        self._send(urgent=end_of is not None, raise_errors=False)

    def _stage(self, chunks: list[RawChunk], *, end_of: str | None) -> None:
        """Encode and seal ``chunks`` (and an end marker) into the unsent queue."""
        now_us = round(self._client.clock() * 1_000_000)
        for chunk in chunks:
            entry = self._entry(chunk, now_us)
            self._unsent.append(entry)
            self._bytes_since_bump += len(entry.data)
            self._samples_since_bump += chunk.sample_count
        if end_of is not None:
            self._unsent.append(NewEntry(kind=KIND_END, uid=self.uid, cid=end_of, enq_us=now_us))

    def _send(self, *, urgent: bool, raise_errors: bool) -> None:
        """Append the unsent queue in one round trip; keep it on failure.

        The entries keep their append numbers until Redis has them, so resending a batch
        whose reply was lost adds nothing twice (redis_store.Appender). The due time is
        computed by Redis from its own clock: ``urgent`` (a conversation end, or an
        object's worth of audio or bytes since the last urgent append) makes it now,
        otherwise now + ``AUDIOSYNC_BATCH_MAX_AGE_SECONDS``.
        """
        if not self._unsent:
            return
        settings = self._client.settings
        due_now = (
            urgent
            or self._bytes_since_bump >= settings.batch_max_bytes
            or self._samples_since_bump >= settings.object_seconds * self.sample_rate
        )
        try:
            self._client.appender.append(
                self.redis_keys,
                self._unsent,
                first_n=self._next_n,
                urgent=due_now,
                max_age_seconds=settings.batch_max_age_seconds,
            )
        except redis.RedisError as exc:
            then = (
                "they are kept: call close() again once Redis answers"
                if raise_errors
                else "they go with the next append"
            )
            message = (
                f"session {self.session_id}: {self.unsent_chunks} chunks wait for "
                f"Redis ({exc}); {then}"
            )
            if raise_errors:
                raise EnqueueError(message) from exc
            log.warning(message)
            return
        self._next_n += len(self._unsent)
        self._unsent.clear()
        if due_now:
            self._bytes_since_bump = self._samples_since_bump = 0
