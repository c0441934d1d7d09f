"""Adversarial review 5: the sweep at AUDIOSYNC_DUE_SHARDS = 4096 (the documented maximum).

``dispatch_due`` (the sweep, and the end of every shard task) makes one script call per
shard, one after the other, and one broker publish per shard it sends. Measured on the
local valkey of this machine (loopback, no network): 4096 shards with nothing due take
about 1.1 s (1.5 s on the 3-master cluster); with every shard due, about 13 s (15 s on the
cluster), nearly three sweep intervals (AUDIOSYNC_SWEEP_INTERVAL_SECONDS, 5 by default).
Beat keeps sending a sweep every interval, so sweeps overlap and each holds a pool process
for that long, on top of every shard task's own dispatch at its end. Over a real network
(a round trip of a millisecond or more per call) even the idle walk outlasts the interval.
"""

from __future__ import annotations

import time

import pytest
import redis

from audiosync_dev.localstack import StackInfo
from backend_hooks import redis_store
from backend_hooks.settings import MAX_DUE_SHARDS, Settings
from tests.integration.flushing import FakeClock
from workers import tasks
from workers.context import WorkerContext

pytestmark = pytest.mark.integration


def test_a_sweep_of_4096_due_shards_ends_within_its_interval(
    stack: StackInfo, redis_client: redis.Redis, clock: FakeClock
) -> None:
    """Finding 6 (medium: the sweep outlasts its interval at the maximum shard count).
    Every one of 4096 shards has a due session (4096 shards are meant for fleets where
    that is the normal case); one sweep must send their tasks within the 5 s interval."""
    settings = Settings.from_env({**stack.env(), "AUDIOSYNC_DUE_SHARDS": str(MAX_DUE_SHARDS)})
    ctx = WorkerContext.from_settings(settings, clock=clock)
    now = ctx.store.time()
    pipe = redis_client.pipeline(transaction=False)
    for shard in range(MAX_DUE_SHARDS):
        pipe.zadd(redis_store.due_key(shard), {f"adv5-due-{shard}": now - 1})
    pipe.execute()
    started = time.monotonic()
    sent = tasks.dispatch_due(ctx)
    took = time.monotonic() - started
    assert sent == MAX_DUE_SHARDS
    assert took < settings.sweep_interval_seconds, (
        f"one sweep of {MAX_DUE_SHARDS} due shards took {took:.1f} s, longer than "
        f"AUDIOSYNC_SWEEP_INTERVAL_SECONDS ({settings.sweep_interval_seconds} s)"
    )
