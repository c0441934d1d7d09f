"""The pusher's way out of a session: Redis through the circuit breaker, or the disk spool.

A session (backend_hooks/pusher/session.py) hands its entries to the process's one ``Transport``
and calls only its public methods:

- ``may_try``: whether the breaker would let a Redis call through now (no place taken);
- ``append``: one session's entries to its stream, in one script call through the breaker;
- ``write_spool``: one entry to the disk spool (one fsynced file);
- ``drain_spooled``: spooled files to Redis in order, ``DRAIN_BATCH`` per call through the
  breaker (``append_spooled`` is that call, also used for the spools of dead processes).

**The breaker** (backend_hooks/pusher/breaker.py) is asked by every call and told its outcome;
its lock is held only for those few instructions and waited on (released) by a caller
waiting for a place. Every call runs on one of the transport's Redis threads (one per
breaker place), and its caller waits at most ``AUDIOSYNC_REDIS_STALL_SECONDS`` for the
answer, its wait for a place included: no pool, maintenance or closing thread waits on a
stalled Redis longer than that, so the closes queued behind a stalled call still reach
the spool within their budget (``AUDIOSYNC_CLOSE_SECONDS``). ``RedisNotTried`` when the
breaker says no, ``RedisNoAnswer`` when the wait ran out (the call goes on and may still
land: the append mark makes that harmless, backend_hooks/pusher/appender.py).

The transport knows nothing of sessions or of the maintenance thread: the client
(backend_hooks/pusher/client.py) builds it and is told through ``on_answer`` that Redis answered
(spooled entries can go now).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

import redis

from backend_hooks.adapters import redis_store
from backend_hooks.contract import redis_keys
from backend_hooks.contract.entries import NewEntry
from backend_hooks.contract.settings import Settings
from backend_hooks.pusher import spool
from backend_hooks.pusher.appender import Appender
from backend_hooks.pusher.breaker import (
    ANSWERED,
    FAILED,
    NO_VERDICT,
    OPEN,
    BreakerStats,
    CircuitBreaker,
)
from backend_hooks.pusher.spool_format import SpoolRecord, consecutive_runs

log = logging.getLogger("backend_hooks.transport")

__all__ = ["DRAIN_BATCH", "RedisNoAnswer", "RedisNotTried", "Transport"]
DRAIN_BATCH = 32  # spooled entries per append
_REFUSAL_LOG_SECONDS = 60.0  # a session's append refused (not an outage): logged this often
_T = TypeVar("_T")


class RedisNotTried(redis.exceptions.ConnectionError):
    """A Redis call the breaker did not let through (open, or a call in flight stalled):
    nothing was sent. A ``redis.ConnectionError`` so that callers treat it as Redis away."""


class RedisNoAnswer(redis.exceptions.TimeoutError):
    """A Redis call not answered within ``AUDIOSYNC_REDIS_STALL_SECONDS``: its caller stops
    waiting and keeps its entries (spool or memory); the call goes on on a Redis thread and
    may still land, which the append mark makes harmless (appender docstring)."""


def _nothing() -> None:
    pass


class Transport:
    """One per pusher process: the circuit breaker, its Redis threads, the appender and the
    disk spool (``None`` without ``AUDIOSYNC_SPOOL_DIR``)."""

    def __init__(
        self,
        settings: Settings,
        appender: Appender,
        *,
        spool_store: spool.Spool | None,
        max_calls: int,
        clock: Callable[[], float] = time.time,
        on_answer: Callable[[], None] = _nothing,
    ) -> None:
        self.settings = settings
        self.appender = appender  # replaceable: the next call uses the new one
        self.spool = spool_store
        self.clock = clock  # wall clock: how old a spooled entry is
        self.breaker = CircuitBreaker(
            settings.breaker_seconds,
            time.monotonic,
            max_calls=max_calls,
            stall_seconds=settings.redis_stall_seconds,
        )
        self._on_answer = on_answer
        # Never held across I/O; waited on (released) by a caller waiting for a place.
        # Pool, Redis, maintenance and closing threads only, never the event loop.
        self._breaker_lock = threading.Condition()
        # The calls a caller may stop waiting for run here: one thread per breaker place.
        self._redis_threads = ThreadPoolExecutor(max_calls, thread_name_prefix="audiosync-redis")
        self._refusal_logged_at = float("-inf")
        self._stalls_logged = 0

    # -- what a session (and the client's maintenance) calls ------------------------------
    def may_try(self, *, force: bool = False) -> bool:
        """Whether the breaker would let a call through now (no place taken): asked before
        work that a skipped call would waste (claiming spool files)."""
        with self._breaker_lock:
            allowed = self.breaker.would_allow(force=force)
            stalls = self.breaker.stalls
        self._log_stall(stalls)
        return allowed

    def append(
        self,
        keys: redis_keys.SessionKeys,
        entries: Sequence[NewEntry],
        *,
        first_n: int,
        urgent: bool,
        force: bool = False,
    ) -> int:
        """One session's entries (append numbers from ``first_n``) to its stream, in one
        script call through the breaker; the entries Redis added. ``force``: a close the
        caller retries explicitly (breaker.py)."""
        return self._call(
            partial(
                self.appender.append,
                keys,
                list(entries),
                first_n=first_n,
                urgent=urgent,
                max_age_seconds=self.settings.batch_max_age_seconds,
            ),
            force=force,
        )

    def append_spooled(self, records: list[SpoolRecord], *, force: bool = False) -> None:
        """Append one session's spooled records (consecutive runs of ``n``)."""
        now_us = round(self.clock() * 1_000_000)
        max_age_us = self.settings.batch_max_age_seconds * 1_000_000
        for run in consecutive_runs(records):
            first = run[0]
            urgent = any(r.urgent for r in run) or now_us - first.entry.enq_us >= max_age_us
            self._call(
                partial(
                    self.appender.append,
                    redis_keys.SessionKeys(first.session_id, first.shard),
                    [r.entry for r in run],
                    first_n=first.n,
                    urgent=urgent,
                    max_age_seconds=self.settings.batch_max_age_seconds,
                ),
                force=force,
            )

    def write_spool(self, record: SpoolRecord) -> Path:
        """One entry to the disk spool (``SpoolFullError``, ``OSError``: not written)."""
        assert self.spool is not None
        return self.spool.write(record)

    def drain_spooled(self, files: list[Path], *, force: bool = False) -> int:
        """Append one session's spooled ``files`` in order, ``DRAIN_BATCH`` per call; the
        first failed call stops it and raises (its files stay)."""
        assert self.spool is not None
        return spool.drain_files(
            self.spool, files, partial(self.append_spooled, force=force), DRAIN_BATCH
        )

    def stats(self) -> BreakerStats:
        with self._breaker_lock:
            return self.breaker.stats()

    def shutdown(self) -> None:
        """No new call; a call whose caller stopped waiting ends within its socket timeout,
        on its own."""
        self._redis_threads.shutdown(wait=False)

    # -- Redis through the breaker (pool, Redis, maintenance and closing threads) ----------
    def _call(self, call: Callable[[], _T], *, force: bool = False) -> _T:
        """Make one Redis call through the breaker (backend_hooks/pusher/breaker.py).

        ``RedisNotTried`` if the breaker says no. The call runs on a Redis thread and the
        caller waits at most ``AUDIOSYNC_REDIS_STALL_SECONDS``, its wait for a place
        included, then raises ``RedisNoAnswer``."""
        patience = self.settings.redis_stall_seconds
        give_up_at = time.monotonic() + patience
        ticket = self._enter(force, give_up_at)
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

    def _enter(self, force: bool, give_up_at: float) -> int:
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
            self._on_answer()  # spooled entries can go now
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
