"""Shard tasks (workers/drain.py, workers/tasks.py): many sessions per task, bounded
flushes in flight, one task per shard however long the backlog, and the keys of the
release before shards still drained during an upgrade."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.faults import GcsFaultProxy
from audiosync_dev.localstack import StackInfo
from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract import redis_keys
from backend_hooks.contract.settings import Settings
from tests.integration.flushing import CHUNK, RATE, FakeClock
from tests.integration.flushing import flush as run_flush
from workers.context import WorkerContext
from workers.drain import DrainResult, drain_shard
from workers.flush import FlushResult

pytestmark = pytest.mark.integration


@pytest.fixture
def ctx2(stack: StackInfo, redis_client: redis.Redis, clock: FakeClock) -> WorkerContext:
    """A worker context whose fleet has two shards."""
    settings = Settings.from_env({**stack.env(), "AUDIOSYNC_DUE_SHARDS": "2"})
    return WorkerContext.from_settings(settings, clock=clock)


def push_closed(ctx: WorkerContext, clock: FakeClock, count: int) -> dict[int, list[str]]:
    """``count`` closed one-chunk sessions (due now); their ids by shard."""
    client = AudioSyncClient(ctx.settings, clock=clock)
    by_shard: dict[int, list[str]] = {}
    for i in range(count):
        session = client.open_session(f"shard-user-{i}", "conv", RATE, "standard")
        session.push(CHUNK, time.time())
        session.close()
        by_shard.setdefault(session.redis_keys.shard, []).append(session.session_id)
    client.close()
    clock.sync(ctx.store.client)
    return by_shard


class Tracked:
    """A flush_one that records how many flushes run at once."""

    def __init__(self, ctx: WorkerContext, shard: int, pause: float = 0.0) -> None:
        self.ctx, self.shard, self.pause = ctx, shard, pause
        self.lock = threading.Lock()
        self.active = self.most = 0
        self.flushed: list[str] = []

    def __call__(self, session_id: str) -> FlushResult:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            time.sleep(self.pause)
            view = replace(self.ctx, store=self.ctx.store.in_shard(self.shard))
            result = run_flush(view, session_id)
            with self.lock:
                self.flushed.append(session_id)
            return result
        finally:
            with self.lock:
                self.active -= 1


def drain(ctx: WorkerContext, shard: int, flush_one: Tracked, **kwargs: object) -> DrainResult:
    options: dict[str, object] = {
        "token": "task-1",
        "concurrency": 3,
        "budget_seconds": 30.0,
        "lease_seconds": 30.0,
    }
    options.update(kwargs)
    return drain_shard(
        shard,
        store=ctx.store,
        flush_one=flush_one,
        clock=ctx.clock,
        **options,  # type: ignore[arg-type]
    )


def test_one_task_drains_its_shard_with_bounded_concurrency(
    ctx2: WorkerContext, clock: FakeClock
) -> None:
    by_shard = push_closed(ctx2, clock, 16)
    mine, other = by_shard[0], by_shard.get(1, [])
    tracked = Tracked(ctx2, 0, pause=0.1)
    result = drain(ctx2, 0, tracked)
    assert result.stopped == "idle" and result.errors == 0
    assert sorted(tracked.flushed) == sorted(mine)  # every due session of shard 0, once
    assert result.flushes == len(mine) and result.objects == len(mine)
    assert 2 <= tracked.most <= 3  # flushes overlapped, never more than the concurrency
    client = ctx2.store.client
    assert not client.exists(redis_keys.dispatch_key(0))  # the hold is released
    for sid in other:  # the other shard's sessions are not touched
        assert client.zscore(redis_keys.due_key(1), sid) is not None


def test_a_second_task_of_a_held_shard_does_nothing(ctx2: WorkerContext, clock: FakeClock) -> None:
    by_shard = push_closed(ctx2, clock, 4)
    shard = next(iter(by_shard))
    assert ctx2.store.dispatch({0: "first", 1: "first"}, 60) == sorted(by_shard)  # sent
    assert ctx2.store.dispatch({shard: "again"}, 60) == []  # and no second one
    tracked = Tracked(ctx2, shard)
    late = drain(ctx2, shard, tracked, token="sent-after-the-hold-ran-out")
    assert late.held_elsewhere and tracked.flushed == []
    result = drain(ctx2, shard, tracked, token="first")
    assert result.stopped == "idle" and sorted(tracked.flushed) == sorted(by_shard[shard])


def test_a_task_stops_claiming_at_its_budget_and_the_shard_is_sent_again(
    ctx2: WorkerContext, clock: FakeClock
) -> None:
    by_shard = push_closed(ctx2, clock, 12)
    shard = max(by_shard, key=lambda s: len(by_shard[s]))
    assert len(by_shard[shard]) >= 4
    tracked = Tracked(ctx2, shard, pause=0.4)
    result = drain(ctx2, shard, tracked, concurrency=1, budget_seconds=0.5)
    assert result.stopped == "budget"
    assert 1 <= result.flushes < len(by_shard[shard])  # what it started, it finished
    assert ctx2.store.dispatch({shard: "next"}, 60) == [shard]  # still due, hold free: again


def test_a_task_stops_claiming_when_the_worker_shuts_down(
    ctx2: WorkerContext, clock: FakeClock
) -> None:
    by_shard = push_closed(ctx2, clock, 8)
    shard = max(by_shard, key=lambda s: len(by_shard[s]))
    tracked = Tracked(ctx2, shard)
    result = drain(ctx2, shard, tracked, should_stop=lambda: len(tracked.flushed) >= 1)
    assert result.stopped == "shutdown"
    assert 1 <= result.flushes <= 3 < len(by_shard[shard]) + 3


def test_a_flush_that_fails_is_an_error_of_its_shard_task(
    stack: StackInfo, redis_client: redis.Redis, clock: FakeClock
) -> None:
    """GCS answers every upload 503: each flush fails, is counted in Redis and backs off,
    and returns instead of raising. The task's result counts it as an error, not a flush."""
    with GcsFaultProxy(stack.gcs_url, error_rate=1.0) as proxy:
        env = {
            **stack.env(),
            "STORAGE_EMULATOR_HOST": proxy.url,
            "AUDIOSYNC_DUE_SHARDS": "2",
            "AUDIOSYNC_LEASE_SECONDS": "4",  # an upload's retries give up within 1 s
        }
        ctx = WorkerContext.from_settings(Settings.from_env(env), clock=clock)
        by_shard = push_closed(ctx, clock, 4)
        shard = max(by_shard, key=lambda s: len(by_shard[s]))
        result = drain(ctx, shard, Tracked(ctx, shard), lease_seconds=4.0)
    mine = by_shard[shard]
    assert result.stopped == "idle"
    assert (result.errors, result.flushes, result.objects) == (len(mine), 0, 0)
    view = ctx.store.in_shard(shard)
    assert [view.failures(sid).count for sid in mine] == [1] * len(mine)


def test_a_fleet_drains_many_sessions_per_task_and_the_legacy_keys(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = {
        **stack.env(),
        "AUDIOSYNC_DUE_SHARDS": "2",
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.5",
        "AUDIOSYNC_FLUSH_CONCURRENCY": "4",
    }
    settings = Settings.from_env(env)
    client = AudioSyncClient(settings)
    for i in range(40):
        session = client.open_session(f"many-{i}", "conv", RATE, "standard")
        session.push(CHUNK, time.time())
        session.close()
    # A session of the release before shards, written with its keys during an upgrade.
    legacy = client.open_session("legacy-user", "legacy-conv", RATE, "standard")
    legacy.redis_keys = redis_keys.SessionKeys(legacy.session_id, redis_keys.LEGACY_SHARD)
    legacy.push(CHUNK * 2, time.time())
    legacy.close()
    client.close()
    assert redis_client.zcard(redis_keys.due_key(redis_keys.LEGACY_SHARD)) == 1

    with processes.worker(env, tmp_path, name="many", concurrency=2) as worker:
        deadline = time.monotonic() + 90
        streams = redis_keys.session_key_pattern("chunks")
        while redis_client.keys(streams) or redis_client.keys(redis_keys.DUE_KEY_PATTERN):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.3)
        time.sleep(1.0)  # the last task's log line
    log = worker.log.read_text(errors="replace")
    flushes = re.findall(r"shard -?\d+: (\d+) flushes", log)
    tasks = len(flushes)
    assert sum(int(n) for n in flushes) >= 41
    assert 3 <= tasks <= 14, f"{tasks} shard tasks for 41 sessions"  # ~3 to 4 flushes a task
    assert redis_client.zcard(redis_keys.due_key(redis_keys.LEGACY_SHARD)) == 0
    context = storage.StorageContext.from_settings(Settings.from_env(env, role="reader"))
    merged = storage.download_merged_audio("legacy-user", "legacy-conv", context=context)
    assert merged.sample_count == len(CHUNK)  # two chunks of samples, from the legacy keys


def test_a_capped_dispatch_holds_only_the_shards_it_sends(
    stack: StackInfo, redis_client: redis.Redis, clock: FakeClock
) -> None:
    settings = Settings.from_env({**stack.env(), "AUDIOSYNC_DUE_SHARDS": "6"})
    ctx = WorkerContext.from_settings(settings, clock=clock)
    now = ctx.store.time()
    for shard in range(6):
        redis_client.zadd(redis_keys.due_key(shard), {f"s-{shard}": now - 1})
    order = {shard: f"t{shard}" for shard in (4, 1, 5, 0, 2, 3)}
    assert ctx.store.dispatch(order, 60, limit=2) == [4, 1]  # the first due, in that order
    assert ctx.store.dispatch(order, 60) == [5, 0, 2, 3]  # the others were left free


def test_one_walk_over_every_shard_per_sweep_interval(ctx2: WorkerContext) -> None:
    """Beat's sweep and the end of each shard task share it: a task that ends within the
    interval of another walk sends only its own shard again (workers/tasks.py)."""
    assert ctx2.store.take_sweep(0.3)
    assert not ctx2.store.take_sweep(0.3)
    time.sleep(0.4)
    assert ctx2.store.take_sweep(0.3)
