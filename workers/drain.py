"""Draining one shard: many sessions per task, a bounded number of flushes in flight.

A shard task (``audiosync.flush_shard``, workers/tasks.py) runs ``drain_shard``:

1. Hold the shard's dispatch key for this task (the sweep set it when it sent the task;
   a second task of the same shard, sent after the hold ran out, finds it held and ends
   at once: a backlog never multiplies work).
2. Claim due sessions of the shard, no more than there are free flush slots, and flush
   each in a thread (uploads overlap: GCS latency, not CPU, bounds one flush at a time).
3. Keep claiming as flushes end, until nothing of the shard is due, the task's time
   budget (``AUDIOSYNC_SHARD_TASK_SECONDS``) is spent, or the worker is shutting down;
   then wait for the flushes in flight and release the hold. A shard still due is sent
   again by the next sweep, so shards take turns on the pool's processes.

What if the process is killed here? Each flush is exactly-once on its own (workers/flush.py);
the claimed sessions come due again when their claim (one lease) ends, and the hold
expires after one lease, so the next sweep sends the shard again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from workers.flush import FlushResult
from workers.store import WorkerStore

log = logging.getLogger(__name__)


@dataclass
class DrainResult:
    shard: int
    flushes: int = 0
    objects: int = 0
    errors: int = 0  # flushes that failed (GCS down, say) or raised; not in ``flushes``
    held_elsewhere: bool = False  # another task of the shard held it: nothing done
    stopped: str = ""  # why it stopped claiming: "idle", "budget", "shutdown"


def drain_shard(
    shard: int,
    *,
    store: WorkerStore,
    token: str,
    flush_one: Callable[[str], FlushResult],
    concurrency: int,
    budget_seconds: float,
    lease_seconds: float,
    clock: Callable[[], float],
    should_stop: Callable[[], bool] = lambda: False,
    monotonic: Callable[[], float] = time.monotonic,
) -> DrainResult:
    """Flush the due sessions of ``shard`` (see the module docstring)."""
    result = DrainResult(shard)
    if not store.hold_dispatch(shard, token, lease_seconds):
        result.held_elsewhere = True
        return result
    deadline = monotonic() + budget_seconds
    renew_every = lease_seconds / 4
    renewed = monotonic()
    waiting: deque[str] = deque()  # claimed, not started: at most one batch
    running: set[Future[FlushResult]] = set()
    try:
        with ThreadPoolExecutor(concurrency, thread_name_prefix=f"shard{shard}") as pool:
            while True:
                if should_stop():
                    result.stopped = "shutdown"
                elif monotonic() >= deadline:
                    result.stopped = "budget"
                else:
                    if not waiting and len(running) < concurrency:
                        # One claim a batch, not one a flush: what a batch's flushes wait
                        # for is well inside the claim (one lease).
                        now = clock()
                        waiting.extend(
                            store.claim_due(now, concurrency, now + lease_seconds, shard)
                        )
                    while waiting and len(running) < concurrency:
                        running.add(pool.submit(flush_one, waiting.popleft()))
                    if not running:
                        result.stopped = "idle"
                if result.stopped:
                    break
                # Wake when a flush ends, or after a while to claim what has come due and
                # to keep the hold (it lasts one lease).
                done, running = _wait(running, renew_every)
                _collect(done, result)
                if monotonic() - renewed >= renew_every:
                    if not store.hold_dispatch(shard, token, lease_seconds):
                        log.warning("shard %s: another task took its hold; claims stop", shard)
                        result.stopped = "taken over"
                        break
                    renewed = monotonic()
            for session_id in waiting:  # claimed but not started: due again at once
                store.in_shard(shard).schedule(session_id, clock())
            while running:  # the last flushes, the hold kept: no second task meanwhile
                done, running = _wait(running, renew_every)
                _collect(done, result)
                if running and monotonic() - renewed >= renew_every:
                    store.hold_dispatch(shard, token, lease_seconds)
                    renewed = monotonic()
    finally:
        store.release_dispatch(shard, token)
    return result


def _wait(
    running: set[Future[FlushResult]], timeout: float | None
) -> tuple[set[Future[FlushResult]], set[Future[FlushResult]]]:
    if not running:
        return set(), set()
    if timeout is None:
        done, _ = wait(running)
        return set(done), set()
    done, pending = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
    return set(done), set(pending)


def _collect(done: set[Future[FlushResult]], result: DrainResult) -> None:
    for future in done:
        try:
            flushed = future.result()
        except Exception:  # Redis refusing writes, say: the flush's own error path logs it
            log.exception("shard %s: a flush raised", result.shard)
            result.errors += 1
            continue
        result.objects += flushed.objects_created + flushed.objects_already_stored
        if flushed.failed:  # it returned, backed off, instead of raising: still an error
            result.errors += 1
        else:
            result.flushes += 1
