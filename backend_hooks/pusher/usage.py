"""Batched usage counters: speech-to-text milliseconds per user and UTC day.

The backend used to write ``INCRBY`` + ``EXPIRE`` on every audio chunk (~50 a second a
session). Here ``add(ms)`` only adds in memory; ``flush()`` writes what accumulated in one
pipelined round trip::

    INCRBY fair_use:dg_budget:{uid}:{YYYYMMDD}  <ms>     (the UTC day of the flush)
    EXPIREAT fair_use:dg_budget:{uid}:{YYYYMMDD} <next UTC midnight + 1 h>

``periodic(counter)`` flushes every ``interval`` seconds (60) in an asyncio task and once
more when its block ends, however it ends (normally, by an exception, by cancellation).
``AudioSyncClient.close()`` flushes every counter made by ``client.usage_counter``.

A flush is a no-op when the counter is disabled, the user's limit is ≤ 0 (no budget to
count against) or nothing accumulated. A flush that fails keeps its amount for the next
one, so no millisecond is lost. A write whose reply was lost may have been applied and
is then counted again by the next flush (the old per-chunk path had that window at every
chunk; here it is at most once a minute).

Milliseconds accumulated across a UTC midnight count for the day of the flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable

from backend_hooks.adapters.redis_store import REDIS_ERRORS, RedisClient
from backend_hooks.contract.errors import InvalidInputError
from backend_hooks.contract.ids import validate_id

log = logging.getLogger("backend_hooks.usage")
FLUSH_INTERVAL_SECONDS = 60.0
EXPIRY_AFTER_MIDNIGHT_SECONDS = 3600


def budget_key(uid: str, now: float) -> str:
    """``fair_use:dg_budget:{uid}:{YYYYMMDD}`` of the UTC day of ``now`` (Unix seconds)."""
    day = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%d")
    return f"fair_use:dg_budget:{uid}:{day}"


def expires_at(now: float) -> int:
    """Unix seconds of the next UTC midnight after ``now``, plus one hour."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)
    return int(midnight.timestamp()) + EXPIRY_AFTER_MIDNIGHT_SECONDS


class UsageCounter:
    """One session's speech-to-text milliseconds, written to Redis in batches."""

    def __init__(
        self,
        client: RedisClient,
        uid: str,
        *,
        enabled: bool,
        limit_ms: int,
        clock: Callable[[], float] = time.time,
        on_done: Callable[[UsageCounter], None] | None = None,
    ) -> None:
        """``on_done`` is called once its final flush (``periodic``'s end) wrote
        everything: its owner (``AudioSyncClient``) stops holding it."""
        self.client, self.uid = client, validate_id(uid, "uid")
        self.enabled, self.limit_ms, self.clock = enabled, limit_ms, clock
        self.on_done = on_done
        self._pending = 0
        self._lock = threading.Lock()  # held for additions only, never across I/O

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def add(self, ms: int) -> None:
        """Count ``ms`` milliseconds (memory only)."""
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise InvalidInputError(f"usage must be a whole number of ms >= 0, got {ms!r}")
        with self._lock:
            self._pending += ms

    def flush(self) -> int:
        """Write what accumulated (one pipelined INCRBY + EXPIREAT); returns the amount
        written. Blocking I/O: from the event loop, ``await counter.aflush()``. Raises the
        Redis error of a failed write, the amount kept for the next flush."""
        with self._lock:
            amount, self._pending = self._pending, 0
        if amount == 0 or not self.enabled or self.limit_ms <= 0:
            return 0
        now = self.clock()
        key = budget_key(self.uid, now)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.incrby(key, amount)
            pipe.expireat(key, expires_at(now))
            pipe.execute()
        except REDIS_ERRORS:
            with self._lock:
                self._pending += amount
            raise
        return amount

    async def aflush(self) -> int:
        """``flush`` off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, self.flush)


@contextlib.asynccontextmanager
async def periodic(
    counter: UsageCounter, interval: float = FLUSH_INTERVAL_SECONDS
) -> AsyncIterator[UsageCounter]:
    """Flush ``counter`` every ``interval`` seconds while the block runs, and once more at
    its end, whichever way it ends. A failed flush is logged, its amount kept: the next
    periodic one, or ``AudioSyncClient.close()``, writes it. The block's own exception
    (or cancellation) is never replaced by a flush's."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await counter.aflush()
            except REDIS_ERRORS as exc:
                log.warning(
                    "usage of %s not written yet (%s); kept for the next flush", counter.uid, exc
                )

    task = asyncio.create_task(loop())
    try:
        yield counter
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # The final flush runs even when the block was cancelled: shielded, so a second
        # cancellation cannot cut it off halfway.
        try:
            await asyncio.shield(counter.aflush())
        except REDIS_ERRORS as exc:
            log.warning(
                "usage of %s not written at the end (%s); %d ms kept",
                counter.uid,
                exc,
                counter.pending,
            )
        else:
            if counter.on_done is not None:
                counter.on_done(counter)
