"""Flow control of the shard tasks (workers/drain.py, tasks.py).

The promise (workers/tasks.py, drain.py): "at most one shard task is queued or running
per shard"; "however long the backlog, a shard has at most one task in the queue: a sweep
never multiplies work". The dispatch hold that keeps it lasts
``shard_task_seconds + 2 * lease`` when the sweep sets it, and one lease when the running
task renews it. Two ways it lapses while the task it stands for still exists:

- after its budget a task waits for its flushes in flight *without renewing
  the hold*. A flush may take several leases (up to 8 uploads of half a lease each, the
  lease renewed before each), so the hold runs out one lease after the last renewal, the
  claims of the sessions in flight (one lease) run out too, and the next sweep sends a
  second task of the shard while the first is still running: two tasks drain one shard.
- a task waiting in a backed-up queue (all pool processes busy) longer than
  the hold: the next sweep (or the dispatch at the end of any shard task) sends another
  task of the same shard. The queue then holds several tasks of one shard, and the older
  one, when it finally runs, finds the newer token holding and does nothing (the no-op
  still walks every shard's dispatch: 4096 script calls at the maximum).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from typing import cast

import pytest
import redis

from audiosync_dev.localstack import StackInfo
from backend_hooks.contract import redis_keys
from backend_hooks.contract.settings import Settings
from tests.integration.fleet.test_shard_tasks import push_closed
from tests.integration.flushing import FakeClock
from tests.integration.flushing import flush as run_flush
from workers import tasks
from workers.context import WorkerContext
from workers.drain import DrainResult, drain_shard
from workers.flush import FlushResult

pytestmark = pytest.mark.integration


def _one_shard(stack: StackInfo, clock: FakeClock, **env: str) -> WorkerContext:
    settings = Settings.from_env({**stack.env(), "AUDIOSYNC_DUE_SHARDS": "1", **env})
    return WorkerContext.from_settings(settings, clock=clock)


def test_the_hold_is_kept_while_a_task_waits_for_its_last_flushes(
    stack: StackInfo, redis_client: redis.Redis, clock: FakeClock
) -> None:
    """The hold outlives the budget (else two tasks flush one shard). Lease
    1 s, budget 0.3 s; the one flush in flight takes 3 s (a slow upload: a flush may take
    up to about 4 leases). While the task is still running, the sweep must not be able to
    send a second task of the shard (the hold once expired 1 s after the budget)."""
    ctx = _one_shard(stack, clock)
    push_closed(ctx, clock, 3)
    started, release = threading.Event(), threading.Event()

    def slow_flush(session_id: str) -> FlushResult:
        started.set()
        release.wait(3.0)  # an upload that takes three leases
        view = replace(ctx, store=ctx.store.in_shard(0))
        return run_flush(view, session_id)

    outcome: list[DrainResult] = []
    first = threading.Thread(
        target=lambda: outcome.append(
            drain_shard(
                0,
                store=ctx.store,
                token="first-task",
                flush_one=slow_flush,
                concurrency=1,
                budget_seconds=0.3,
                lease_seconds=1.0,
                clock=ctx.store.time,
            )
        )
    )
    first.start()
    try:
        assert started.wait(5)
        time.sleep(2.0)  # budget spent; the first task waits for its flush in flight
        assert first.is_alive()
        holder = redis_client.get(redis_keys.dispatch_key(0))
        second = ctx.store.dispatch({0: "second-task"}, 60)
        assert not second, (
            f"the hold is {holder!r} while task 'first-task' still runs: the sweep sent a "
            "second task of shard 0"
        )
    finally:
        release.set()
        first.join(10)
    assert outcome and outcome[0].stopped == "budget"


def _queued_shard_tasks(broker: redis.Redis) -> list[tuple[str, str]]:
    """(argsrepr, task id) of every audiosync.flush_shard waiting in the broker's queue."""
    out = []
    for raw in broker.lrange("audiosync", 0, -1):
        headers = json.loads(raw)["headers"]
        if headers["task"] == "audiosync.flush_shard":
            out.append((headers["argsrepr"], headers["id"]))
    return out


def test_a_backed_up_queue_holds_at_most_one_more_task_per_shard_and_hold_period(
    stack: StackInfo, redis_client: redis.Redis, clock: FakeClock
) -> None:
    """A backed-up queue, bounded (docs/ARCHITECTURE.md, "Flow control"). A shard task waits in the
    queue (every pool process busy) longer than its hold (here 0.1 + 2 x 0.2 s; by
    default 10 + 2 x 30 s): the next dispatch may queue a second task of the shard, never
    more than one a hold period, and the late one, run, does nothing at all (not even the
    walk over every shard's dispatch)."""
    ctx = _one_shard(
        stack, clock, AUDIOSYNC_LEASE_SECONDS="0.2", AUDIOSYNC_SHARD_TASK_SECONDS="0.1"
    )
    push_closed(ctx, clock, 1)
    assert tasks.dispatch_due(ctx) == 1
    time.sleep(0.8)  # the task is still in the queue: no worker takes it yet
    assert tasks.dispatch_due(ctx) == 1  # the hold ran out: one more
    assert tasks.dispatch_due(ctx) == 0  # and no third within the new hold
    queued = _queued_shard_tasks(redis_client)
    assert len(queued) == 2, queued
    holder = cast(bytes, redis_client.get(redis_keys.dispatch_key(0))).decode()
    [older] = [task_id for _, task_id in queued if task_id != holder]
    late = drain_shard(
        0,
        store=ctx.store,
        token=older,  # the older task, run after the newer took the hold
        flush_one=lambda session_id: run_flush(ctx, session_id),
        concurrency=1,
        budget_seconds=1.0,
        lease_seconds=0.2,
        clock=ctx.store.time,
    )
    assert late.held_elsewhere and late.flushes == 0
