"""The pusher process's client: settings, the Redis pool, user keys, the thread pool, the
transport (circuit breaker, appends, disk spool: backend_hooks/pusher/transport.py), the sessions
and the maintenance thread (threads and outages: backend_hooks/pusher/session.py's docstring;
docs/ARCHITECTURE.md).

The client talks to a session through its public lifecycle only: ``Session.poll()`` from
the maintenance thread (and while closing), ``Session.begin_close()`` then
``Closing.join(deadline)`` to close them all at once, ``aclose()`` on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from backend_hooks.adapters import redis_store
from backend_hooks.contract import envelope
from backend_hooks.contract.entries import ENHANCED, PROTECTION_LEVELS
from backend_hooks.contract.errors import ConfigError, EnqueueError, SessionClosedError
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher import spool, usage
from backend_hooks.pusher.appender import Appender
from backend_hooks.pusher.breaker import BreakerStats, CircuitBreaker
from backend_hooks.pusher.session import Drain, Session, SessionContext
from backend_hooks.pusher.spool import SpoolStats
from backend_hooks.pusher.transport import DRAIN_BATCH, Transport

log = logging.getLogger("backend_hooks.client")

__all__ = ["AudioSyncClient", "PusherStats"]
_MAINTENANCE_SECONDS = 1.0  # heartbeat, spool drain and retries of entries held in memory
_CLOSING_RETRY_SECONDS = 0.05  # a closing client asks the breaker again this often


@dataclass(frozen=True)
class PusherStats:
    """A snapshot for metrics: what waits where."""

    sessions: int
    queued_chunks: int  # handed over, not yet encoded (the pool's backlog)
    held_entries: int  # encoded, waiting in memory for Redis (no spool, or spool full)
    spooled_entries: int  # in this process's sessions' spool files, waiting for Redis
    refused_pushes: int  # BufferFullError / SpoolFullError raised
    breaker: BreakerStats
    spool: SpoolStats | None


class AudioSyncClient:
    """One per pusher process: settings, the Redis connection pool, user keys, a thread
    pool, the transport (circuit breaker, appends, disk spool), the sessions and the
    maintenance thread."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis_client: redis_store.RedisClient | None = None,
        clock: Callable[[], float] = time.time,
        max_threads: int | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis_client or redis_store.connect(
            settings.redis_url, cluster=settings.redis_cluster
        )
        self.clock = clock
        self.keys = (
            envelope.UserKeys(settings.encryption_secret, settings.encryption_secret_previous)
            if settings.encryption_secret
            else None
        )
        threads = max_threads or settings.pusher_threads
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="audiosync")
        self.spool = (
            spool.Spool(
                settings.spool_dir,
                max_bytes=settings.spool_max_bytes,
                lease_seconds=settings.spool_lease_seconds,
            )
            if settings.spool_dir
            else None
        )
        self._wake = threading.Event()
        self.transport = Transport(
            settings,
            Appender(self.redis, settings.due_shards),
            spool_store=self.spool,
            max_calls=threads,
            clock=self._now,
            on_answer=self._wake.set,  # spooled entries can go now
        )
        self._session_context = SessionContext(
            settings=settings,
            transport=self.transport,
            executor=self.executor,
            keys=self.keys,
            clock=self._now,
            spool_enabled_for=self.spool_enabled_for,
            on_refused=self._count_refusal,
            on_held=self._ensure_maintenance,
            on_closed=self._forget,
        )
        # Registries: dict/set operations are atomic under the GIL, so the event loop adds
        # and removes without a lock; the maintenance thread iterates over copies.
        self._sessions: dict[str, Session] = {}
        self._counters: dict[int, usage.UsageCounter] = {}  # until their final flush wrote
        self.refused_pushes = 0
        self._stop = threading.Event()
        self._closing = False  # close()/aclose() began: no new sessions (they'd be left open)
        self._maintenance: threading.Thread | None = None
        self._maintenance_lock = threading.Lock()
        self._adoption_lock = threading.Lock()  # one drain of adopted directories at a time
        if self.spool is not None:  # drain what an earlier process left, from the start
            self._ensure_maintenance()

    @classmethod
    def from_env(cls, *, protection_levels: Collection[str] = PROTECTION_LEVELS) -> AudioSyncClient:
        """The process's client from the environment (the pusher's settings): call it at
        start-up, so that a bad deployment fails its readiness instead of users' sockets.

        ``protection_levels``: the levels this process opens sessions at. With
        ``enhanced`` among them (the default), a missing ``ENCRYPTION_SECRET`` is a
        ``ConfigError`` here, not one per socket later; a pusher that stores only
        ``standard`` audio passes ``("standard",)``."""
        settings = Settings.from_env(role="pusher")
        check_levels(settings, protection_levels)
        return cls(settings)

    # -- who is on audiosync, and on the spool (backend_hooks/contract/rollout.py) -----------
    def enabled_for(self, uid: str) -> bool:
        """Whether ``uid``'s audio goes through audiosync (``AUDIOSYNC_ROLLOUT_*``); if not,
        the backend keeps its old upload path for that user. Stable per uid."""
        return self.settings.rollout.includes(uid)

    def spool_enabled_for(self, uid: str) -> bool:
        """Whether ``uid``'s sessions may use the disk spool: ``AUDIOSYNC_SPOOL_DIR`` is set
        and ``AUDIOSYNC_SPOOL_*`` includes the uid."""
        included = self.settings.spool_rollout.includes(uid)  # validates uid either way
        return self.settings.spool_dir is not None and included

    def open_session(
        self,
        uid: str,
        conversation_id: str,
        sample_rate: int = 16000,
        protection_level: str = ENHANCED,
    ) -> Session:
        if self._stop.is_set() or self._closing:
            raise SessionClosedError(
                "this AudioSyncClient is closed or closing (close() was called); make a new one"
            )
        session = Session(
            self._session_context, uid, conversation_id, sample_rate, protection_level
        )
        self._sessions[session.session_id] = session
        return session

    def usage_counter(
        self,
        uid: str,
        *,
        enabled: bool,
        limit_ms: int,
        redis_client: redis_store.RedisClient | None = None,
    ) -> usage.UsageCounter:
        """A batched speech-to-text usage counter for ``uid`` (backend_hooks/pusher/usage.py), on
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
        self._counters[id(counter)] = counter
        return counter

    # -- the hooks a session calls (SessionContext) ----------------------------------------
    @property
    def appender(self) -> Appender:
        """The transport's appender (the one that speaks to the sessions' streams)."""
        return self.transport.appender

    @appender.setter
    def appender(self, appender: Appender) -> None:
        self.transport.appender = appender

    @property
    def breaker(self) -> CircuitBreaker:
        return self.transport.breaker

    def _now(self) -> float:
        return self.clock()

    def _count_refusal(self) -> None:
        self.refused_pushes += 1

    def _forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _counter_done(self, counter: usage.UsageCounter) -> None:
        self._counters.pop(id(counter), None)

    def _flush_counters(self) -> None:
        for key, counter in list(self._counters.items()):
            try:
                counter.flush()
            except redis_store.REDIS_ERRORS as exc:
                log.warning("usage of %s not written at shutdown: %s", counter.uid, exc)
            else:
                self._counters.pop(key, None)  # a retried close() writes the others

    def stats(self) -> PusherStats:
        sessions = list(self._sessions.values())
        breaker = self.transport.stats()
        return PusherStats(
            sessions=sum(1 for s in sessions if not s.closed),
            queued_chunks=sum(s.queued_chunks for s in sessions),
            held_entries=sum(s.held_entries for s in sessions),
            spooled_entries=sum(s.spooled_entries for s in sessions),
            refused_pushes=self.refused_pushes,
            breaker=breaker,
            spool=self.spool.stats() if self.spool else None,
        )

    # -- the maintenance thread ---------------------------------------------------------
    def _ensure_maintenance(self) -> None:
        """Start the maintenance thread (with a spool: at once; without: when a session
        first holds entries in memory). It holds the client weakly: a client dropped
        without close() does not keep a thread alive."""
        with self._maintenance_lock:
            if self._maintenance is None and not self._stop.is_set():
                self._maintenance = threading.Thread(
                    target=_maintenance_loop,
                    args=(weakref.ref(self), self._stop, self._wake),
                    name="audiosync-maintenance",
                    daemon=True,
                )
                self._maintenance.start()

    def _maintain_once(self, state: dict[str, float]) -> None:
        if self.spool is not None:
            self.spool.heartbeat()
        self._poll_sessions()
        if self.spool is not None:
            now = time.monotonic()
            if (
                now - state.get("last_adoption", float("-inf"))
                >= self.settings.spool_lease_seconds / 2
            ):
                state["last_adoption"] = now
                self._drain_dead_owners()

    def _poll_sessions(self, deadline: float | None = None) -> bool:
        """``Session.poll()`` each session: its spooled entries appended, its entries held
        in memory tried again; a closed session with nothing left is forgotten. Once a
        session's drain was not let through (the breaker is open again, or a call stalled)
        or Redis is away, or ``deadline`` passed, the later sessions of this pass only
        retry what they hold. False if a call failed or went unanswered (Redis is away),
        True otherwise (the breaker may only have said "not now")."""
        drain, away = True, False
        for session in list(self._sessions.values()):
            if deadline is not None and time.monotonic() >= deadline:
                drain = False
            outcome = session.poll(drain=drain)
            if outcome is Drain.NOT_TRIED:
                drain = False  # next pass
            elif outcome is Drain.REDIS_AWAY:
                drain, away = False, True
            # Drain.DONE (a session's own refusal included): the others' turn
            if session.closed and not session.held_entries and not session.spooled_entries:
                self._forget(session.session_id)
        return not away

    def _drain_dead_owners(self, deadline: float | None = None) -> int:
        """Append what dead pusher processes left in the spool; returns entries appended."""
        assert self.spool is not None
        # The maintenance thread and a closing thread; the latter waits until its deadline.
        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._adoption_lock.acquire(timeout=wait):
            return 0
        try:
            return spool.drain_dead_owners(
                self.spool,
                self.transport.append_spooled,
                may_try=self.transport.may_try,
                deadline=deadline,
                batch=DRAIN_BATCH,
            )
        finally:
            self._adoption_lock.release()

    # -- shutdown -----------------------------------------------------------------------
    def close(self) -> None:
        """Pusher shutdown: every session's tail goes to Redis or the spool, concurrently,
        within ``AUDIOSYNC_CLOSE_SECONDS``; then the usage counters are flushed. If some
        session could not, ``EnqueueError``: nothing is dropped and ``close()`` may be
        called again.

        A session driven by an event loop running in another thread is closed on that loop
        (``aclose`` scheduled there), so this thread never races the loop on it; on the
        loop's own thread, ``await client.aclose()`` instead (RuntimeError)."""
        deadline = time.monotonic() + self.settings.close_seconds
        self._closing = True
        closings = [s.begin_close() for s in list(self._sessions.values()) if not s.closed]
        # Those closing on the pool first, then those on their event loops: one deadline.
        closings.sort(key=lambda closing: closing.on_loop)
        errors = [exc for c in closings if (exc := c.join(deadline)) is not None]
        self._finish(errors, deadline)

    async def aclose(self) -> None:
        """``close()`` for the event loop: sessions close concurrently, nothing blocks it."""
        deadline = time.monotonic() + self.settings.close_seconds
        self._closing = True
        sessions = [s for s in list(self._sessions.values()) if not s.closed]
        results = await asyncio.gather(*(s.aclose() for s in sessions), return_exceptions=True)
        errors = [r for r in results if isinstance(r, EnqueueError)]
        unexpected = [r for r in results if isinstance(r, BaseException) and r not in errors]
        if unexpected:
            raise unexpected[0]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._finish, errors, deadline)

    def _drain_before_closing(self, deadline: float) -> None:
        """Best effort until ``deadline``: what Redis takes now need not wait for the next
        process on this spool (a spool that dies with its pod has none). Waits out an open
        breaker or a stalled call (the trial after it may succeed); stops at the first call
        that fails or goes unanswered: the rest stays in the spool."""
        while time.monotonic() < deadline:
            if not any(s.spooled_entries for s in list(self._sessions.values())):
                break
            if self.transport.may_try() and not self._poll_sessions(deadline):
                return
            time.sleep(_CLOSING_RETRY_SECONDS)
        self._drain_dead_owners(deadline)

    def _finish(self, errors: list[EnqueueError], deadline: float) -> None:
        self._flush_counters()
        if self.spool is not None:
            self._drain_before_closing(deadline)
        if not errors and any(not s.closed for s in list(self._sessions.values())):
            errors = [EnqueueError("a session was opened while the client closed")]
        if errors:
            raise EnqueueError(
                f"{len(errors)} sessions could not enqueue their tail: {errors[0]}; "
                "call close() again"
            )
        self._stop.set()
        self._wake.set()
        if self._maintenance is not None:
            self._maintenance.join()
        self.executor.shutdown(wait=True)
        self.transport.shutdown()
        if self.spool is not None:
            self.spool.close()  # files left stay for the next process (it adopts them)


def check_levels(settings: Settings, protection_levels: Collection[str]) -> None:
    """``ConfigError`` unless ``settings`` can open sessions at every one of the levels."""
    unknown = sorted(set(protection_levels) - set(PROTECTION_LEVELS))
    if unknown or not protection_levels:
        raise ConfigError(
            f"protection_levels must be some of {PROTECTION_LEVELS}, got {protection_levels!r}"
        )
    if ENHANCED in protection_levels and settings.encryption_secret is None:
        raise ConfigError(
            "ENCRYPTION_SECRET is not set, so no session could be opened at protection level "
            "'enhanced': set it (at least 32 bytes; the read side opens with the same), or, "
            "if this pusher stores only unsealed audio, start it with "
            "AudioSyncClient.from_env(protection_levels=('standard',))"
        )


def _maintenance_loop(
    ref: weakref.ref[AudioSyncClient], stop: threading.Event, wake: threading.Event
) -> None:
    state: dict[str, float] = {}
    while not stop.is_set():
        wake.wait(_MAINTENANCE_SECONDS)
        wake.clear()
        client = ref()
        if client is None:
            return
        try:
            client._maintain_once(state)
        except RuntimeError:
            if client.executor._shutdown:  # the pool was shut down under us: stop too
                return
            log.exception("audiosync maintenance pass failed; retrying")
        except Exception:  # never let the thread die: log, try again next time
            log.exception("audiosync maintenance pass failed; retrying")
        finally:
            del client
