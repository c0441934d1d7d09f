"""The pusher process's client: settings, the Redis pool, user keys, the thread pool, the
circuit breaker, the disk spool and its maintenance thread (threads and outages:
backend_hooks/session.py's docstring; docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import weakref
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import redis

from backend_hooks import envelope, redis_store, spool, usage
from backend_hooks.breaker import (
    ANSWERED,
    FAILED,
    NO_VERDICT,
    OPEN,
    BreakerStats,
    CircuitBreaker,
)
from backend_hooks.entries import ENHANCED, PROTECTION_LEVELS
from backend_hooks.errors import ConfigError, EnqueueError, SessionClosedError
from backend_hooks.session import DRAIN_BATCH, Session
from backend_hooks.settings import Settings
from backend_hooks.spool import SpoolStats
from backend_hooks.spool_format import SpoolRecord, consecutive_runs

log = logging.getLogger(__name__)

__all__ = ["AudioSyncClient", "PusherStats"]
_MAINTENANCE_SECONDS = 1.0  # heartbeat, spool drain and retries of entries held in memory
_REFUSAL_LOG_SECONDS = 60.0  # a session's append refused (not an outage): logged this often
_CLOSING_RETRY_SECONDS = 0.05  # a closing client asks the breaker again this often
_T = TypeVar("_T")


class RedisNotTried(redis.exceptions.ConnectionError):
    """A Redis call the breaker did not let through (open, or a call in flight stalled):
    nothing was sent. A ``redis.ConnectionError`` so that callers treat it as Redis away."""


class RedisNoAnswer(redis.exceptions.TimeoutError):
    """A Redis call not answered within ``AUDIOSYNC_REDIS_STALL_SECONDS``: its caller stops
    waiting and keeps its entries (spool or memory); the call goes on on a Redis thread and
    may still land, which the append mark makes harmless (redis_store docstring)."""


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
    pool, the circuit breaker, the disk spool and its maintenance thread."""

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
        self.appender = redis_store.Appender(self.redis, settings.due_shards)
        self.clock = clock
        self.keys = (
            envelope.UserKeys(settings.encryption_secret, settings.encryption_secret_previous)
            if settings.encryption_secret
            else None
        )
        threads = max_threads or settings.pusher_threads
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="audiosync")
        self.breaker = CircuitBreaker(
            settings.breaker_seconds,
            time.monotonic,
            max_calls=threads,
            stall_seconds=settings.redis_stall_seconds,
        )
        # Never held across I/O; waited on (released) by a caller waiting for a place.
        # Pool, Redis, maintenance and closing threads only, never the event loop.
        self._breaker_lock = threading.Condition()
        # The calls a caller may stop waiting for run here: one thread per breaker place.
        self._redis_threads = ThreadPoolExecutor(threads, thread_name_prefix="audiosync-redis")
        self.spool = (
            spool.Spool(
                settings.spool_dir,
                max_bytes=settings.spool_max_bytes,
                lease_seconds=settings.spool_lease_seconds,
            )
            if settings.spool_dir
            else None
        )
        # Registries: dict/set operations are atomic under the GIL, so the event loop adds
        # and removes without a lock; the maintenance thread iterates over copies.
        self._sessions: dict[str, Session] = {}
        self._counters: dict[int, usage.UsageCounter] = {}  # until their final flush wrote
        self.refused_pushes = 0
        self._refusal_logged_at = float("-inf")
        self._stalls_logged = 0
        self._stop = threading.Event()
        self._closing = False  # close()/aclose() began: no new sessions (they'd be left open)
        self._wake = threading.Event()
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

    # -- who is on audiosync, and on the spool (backend_hooks/rollout.py) -------------------
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
        session = Session(self, uid, conversation_id, sample_rate, protection_level)
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
        self._counters[id(counter)] = counter
        return counter

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
        with self._breaker_lock:
            breaker = self.breaker.stats()
        return PusherStats(
            sessions=sum(1 for s in sessions if not s.closed),
            queued_chunks=sum(s.queued_chunks for s in sessions),
            held_entries=sum(s.held_entries for s in sessions),
            spooled_entries=sum(s.spooled_entries for s in sessions),
            refused_pushes=self.refused_pushes,
            breaker=breaker,
            spool=self.spool.stats() if self.spool else None,
        )

    # -- Redis through the breaker (pool, Redis, maintenance and closing threads) ----------
    def _may_try_redis(self, *, force: bool = False) -> bool:
        """Whether the breaker would let a call through now (no place taken): asked before
        work that a skipped call would waste (claiming spool files)."""
        with self._breaker_lock:
            allowed = self.breaker.would_allow(force=force)
            stalls = self.breaker.stalls
        self._log_stall(stalls)
        return allowed

    def _call_redis(self, call: Callable[[], _T], *, force: bool = False) -> _T:
        """Make one Redis call through the breaker (backend_hooks/breaker.py).

        ``RedisNotTried`` if the breaker says no. The call runs on a Redis thread and the
        caller waits at most ``AUDIOSYNC_REDIS_STALL_SECONDS``, its wait for a place
        included, then raises ``RedisNoAnswer``: no pool, maintenance or closing thread
        waits on a stalled Redis longer than that, so the closes queued behind a stalled
        call still reach the spool within their budget."""
        patience = self.settings.redis_stall_seconds
        give_up_at = time.monotonic() + patience
        ticket = self._enter_redis(force, give_up_at)
        try:
            future = self._redis_threads.submit(self._run_call, ticket, call)
        except BaseException:  # shut down under us: the ticket must come back
            self._end_call(ticket, NO_VERDICT)
            raise
        try:
            return future.result(timeout=max(0.0, give_up_at - time.monotonic()))
        except concurrent.futures.TimeoutError:
            raise RedisNoAnswer(
                f"Redis did not answer within {patience:g} s (AUDIOSYNC_REDIS_STALL_SECONDS); "
                "the call goes on in the background"
            ) from None

    def _enter_redis(self, force: bool, give_up_at: float) -> int:
        """A ticket of the breaker, waiting for a place while every one is taken (at most
        until ``give_up_at``); ``RedisNotTried`` if the breaker says no."""
        with self._breaker_lock:
            while True:
                decision = self.breaker.begin(force=force)
                if decision.ticket is not None:
                    return decision.ticket
                wait = min(decision.wait, give_up_at - time.monotonic())
                if wait <= 0:
                    break
                self._breaker_lock.wait(wait)
            state, stalls = self.breaker.state, self.breaker.stalls
        self._log_stall(stalls)
        raise RedisNotTried(
            "a call in flight to Redis is stalled" if decision.stalled else f"breaker {state}"
        )

    def _log_stall(self, stalls: int) -> None:
        if stalls > self._stalls_logged:  # once per stalled call, not per caller
            self._stalls_logged = stalls
            log.warning(
                "Redis has not answered a call for %g s (AUDIOSYNC_REDIS_STALL_SECONDS): no "
                "other call is sent until one returns; chunks go to %s meanwhile",
                self.settings.redis_stall_seconds,
                "the spool" if self.spool else "memory",
            )

    def _run_call(self, ticket: int, call: Callable[[], _T]) -> _T:
        """Make the call and hand the ticket back with its outcome, whatever happens."""
        outcome, failure = NO_VERDICT, None
        try:
            result = call()
            outcome = ANSWERED
            return result
        except redis_store.REDIS_ERRORS as exc:
            outcome = FAILED if redis_store.is_outage(exc) else ANSWERED
            failure = exc
            raise
        finally:
            opened = self._end_call(ticket, outcome)
            if failure is not None:
                self._log_failure(failure, opened=opened)

    def _end_call(self, ticket: int, outcome: str) -> bool:
        """Hand ``ticket`` back; whether this outcome opened the breaker."""
        with self._breaker_lock:
            was = self.breaker.state
            self.breaker.end(ticket, outcome)
            self._breaker_lock.notify_all()  # a place is free
        if outcome == ANSWERED:
            self._wake.set()  # spooled entries can go now
        return outcome == FAILED and was != OPEN

    def _log_failure(self, exc: Exception, *, opened: bool) -> None:
        if opened:
            log.warning(
                "Redis did not take a call (%s): appends skip it for %g s "
                "(AUDIOSYNC_BREAKER_SECONDS); chunks go to %s meanwhile",
                exc,
                self.settings.breaker_seconds,
                "the spool" if self.spool else "memory",
            )
        elif not redis_store.is_outage(exc):  # one session's trouble, not Redis's
            now = time.monotonic()
            if now - self._refusal_logged_at >= _REFUSAL_LOG_SECONDS:  # not once a second
                self._refusal_logged_at = now
                log.error(
                    "Redis refused an append (%s); that session's entries are kept (spool "
                    "or memory) and retried, the other sessions go on",
                    exc,
                )

    def _append_spooled(self, records: list[SpoolRecord], *, force: bool = False) -> None:
        """Append one session's spooled records (consecutive runs of ``n``)."""
        now_us = round(self.clock() * 1_000_000)
        max_age_us = self.settings.batch_max_age_seconds * 1_000_000
        for run in consecutive_runs(records):
            first = run[0]
            urgent = any(r.urgent for r in run) or now_us - first.entry.enq_us >= max_age_us
            self._call_redis(
                partial(
                    self.appender.append,
                    redis_store.SessionKeys(first.session_id, first.shard),
                    [r.entry for r in run],
                    first_n=first.n,
                    urgent=urgent,
                    max_age_seconds=self.settings.batch_max_age_seconds,
                ),
                force=force,
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
            self._drain_sessions()
            now = time.monotonic()
            if (
                now - state.get("last_adoption", float("-inf"))
                >= self.settings.spool_lease_seconds / 2
            ):
                state["last_adoption"] = now
                self._drain_dead_owners()
        for session in list(self._sessions.values()):
            if session.held_entries:
                session._retry()  # entries held in memory: try Redis again
            elif session.closed and not session.spooled_entries:
                self._sessions.pop(session.session_id, None)

    def _drain_sessions(self, deadline: float | None = None) -> bool:
        """Append the sessions' spooled entries; False if a call failed or went unanswered
        (Redis is away), True otherwise (the breaker may only have said "not now")."""
        for session in list(self._sessions.values()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if session.spooled_entries and self._may_try_redis():
                try:
                    session._drain_spooled()
                except RedisNotTried:
                    break  # the breaker is open again, or a call stalled; next pass
                except redis_store.REDIS_ERRORS as exc:
                    if redis_store.is_outage(exc):
                        return False
                    # that session's own refusal: the others' turn
        return True

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
                self._append_spooled,
                may_try=self._may_try_redis,
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
        waits: list[tuple[Session, concurrent.futures.Future[int]]] = []
        on_loops: list[concurrent.futures.Future[None]] = []
        for session in list(self._sessions.values()):
            if session.closed:
                continue
            loop = session._running_loop_elsewhere()
            if loop is not None:
                on_loops.append(asyncio.run_coroutine_threadsafe(session.aclose(), loop))
            else:
                waits.append((session, session._start_close()))
        errors = [exc for s, f in waits if (exc := s._finish_close(f, deadline)) is not None]
        for future in on_loops:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except EnqueueError as exc:
                errors.append(exc)
            except concurrent.futures.TimeoutError:
                errors.append(EnqueueError("a session's close on its event loop ran out of time"))
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
            if self._may_try_redis() and not self._drain_sessions(deadline):
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
        # A call whose caller stopped waiting ends within its socket timeout, on its own.
        self._redis_threads.shutdown(wait=False)
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
