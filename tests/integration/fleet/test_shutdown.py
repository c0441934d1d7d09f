"""A worker told to stop in the middle of a flush hands its session back at once.

SIGTERM to the worker's main process (Kubernetes' warm shutdown), and the same with
``REMAP_SIGTERM=SIGQUIT`` (Celery's soft shutdown, within AUDIOSYNC_SHUTDOWN_SECONDS):
the flush, whose plan holds several objects, finishes the upload it is in (GCS stalls
every upload here), commits it, and then gives the session back (due now, lease
released, the rest of its recorded plan left in Redis) instead of starting the next
upload. A warm shutdown is over within about one upload; a soft one takes its whole
budget (Celery sleeps it out) but the session was handed back long before. A successor
stores every chunk exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.faults import GcsFaultProxy
from audiosync_dev.localstack import StackInfo
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.adapters.redis_store import redis_time
from backend_hooks.contract import container
from backend_hooks.contract.settings import Settings
from tests.integration.flushing import (
    CueBucket,
    FakeClock,
    keys,
    overlapping_objects,
    read_entries,
    stored_seqs,
)
from workers.context import WorkerContext
from workers.flush import FlushResult, flush_session

pytestmark = pytest.mark.integration
STALL = 3.0  # every upload through the proxy waits this long before it is forwarded
SHUTDOWN_SECONDS = 8  # the soft shutdown's budget (Celery sleeps it out whole)
SECONDS = 200.0  # four objects of (at most) 60 s: one flush, one plan of four


@pytest.mark.parametrize("mode", ["warm", "soft"])
def test_a_stopped_worker_hands_its_flush_back(
    mode: str, stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with GcsFaultProxy(stack.gcs_url, stall_before_rate=1.0, stall_seconds=(STALL, STALL)) as proxy:
        env = {
            **stack.env(),
            "STORAGE_EMULATOR_HOST": proxy.url,
            "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.2",
            "AUDIOSYNC_LEASE_SECONDS": "60",  # the lease could hold the session for 60 s
            "AUDIOSYNC_SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS),
        }
        if mode == "soft":
            env["REMAP_SIGTERM"] = "SIGQUIT"
        settings = Settings.from_env(stack.env())
        uid = f"stop-user-{mode}"
        session = AudioSyncClient(settings).open_session(uid, "stop-conv", 8000, "standard")
        pcm = speech_like(SECONDS, 8000, seed=3)
        session.push(pcm, time.time() - SECONDS)
        session.close()
        sid = session.session_id
        lease, plan = keys(sid).lease, keys(sid).plan

        worker = processes.worker(env, tmp_path, name=f"stopped-{mode}")
        deadline = time.monotonic() + 90
        while not (redis_client.llen(plan) == 4 and proxy.stats.matched >= 1):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.02)  # the plan is recorded and its first upload is stalling
        started = time.monotonic()
        worker.stop(timeout=30)
        stopped = time.monotonic() - started
        log = worker.log.read_text(errors="replace")

        # warm: the upload in progress, then out; soft: Celery waits out its whole budget
        budget = STALL if mode == "warm" else SHUTDOWN_SECONDS
        assert stopped < budget + 4, f"{mode} shutdown took {stopped:.1f} s"
        assert "handed back" in log, worker.tail()
        assert not redis_client.exists(lease)  # released by the flush, not by its 60 s TTL
        left = redis_client.llen(plan)
        assert 1 <= left <= 3, f"{left} of 4 planned objects left"  # stopped mid-plan
        due = redis_client.zscore(keys(sid).due, sid)
        assert due is not None and due <= redis_time(redis_client)  # due now, not in 60 s
        assert redis_client.hget(keys(sid).failures, "count") is None

        proxy.pause_faults()
        with processes.worker(env, tmp_path, name=f"successor-{mode}") as successor:
            deadline = time.monotonic() + 90
            while redis_client.exists(keys(sid).chunks):
                assert time.monotonic() < deadline, successor.tail()
                time.sleep(0.1)

    ctx = storage.StorageContext.from_settings(settings)
    items = storage.list_audio_chunks(uid, "stop-conv", context=ctx)
    assert len(items) == 4
    seqs = sorted(
        chunk.info.seq
        for item in items
        for chunk in container.parse_chunks(ctx.bucket.download(item["path"]))
    )
    assert seqs == list(range(len(seqs)))  # every chunk once
    merged = storage.download_merged_audio(uid, "stop-conv", context=ctx)
    assert merged.sample_count == len(pcm) // 2
    assert not redis_client.exists(plan, lease)


# -- the same, in-process, at the exact points ------------------------------------------


def flush_told(ctx: WorkerContext, sid: str, stop: Callable[[], bool], **kw: Any) -> FlushResult:
    return flush_session(
        sid,
        store=ctx.store,
        bucket=kw.get("bucket", ctx.bucket),
        policy=ctx.policy,
        config=ctx.config,
        clock=ctx.clock,
        should_stop=stop,
    )


def closed_session(ctx: WorkerContext, clock: FakeClock, uid: str, chunks: int) -> str:
    session = AudioSyncClient(ctx.settings, clock=clock).open_session(uid, "c", 8000, "standard")
    session.push(bytes(2 * 8000 * 5 * chunks), time.time())
    session.close()
    clock.sync(ctx.store.client)
    return session.session_id


def test_a_flush_told_to_stop_before_it_starts_hands_the_session_back(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    sid = closed_session(ctx, clock, "stop-early", 4)
    claimed = ctx.store.claim_due(clock(), 10, clock() + 60, keys(sid).shard)  # as a task does
    assert claimed == [sid]
    result = flush_told(ctx, sid, lambda: True)
    assert result.skipped and "handed back" in result.skipped
    assert not ctx.store.client.exists(keys(sid).lease)  # never taken
    assert ctx.store.client.zscore(keys(sid).due, sid) == pytest.approx(clock())  # not in 60 s
    assert len(read_entries(ctx, sid)) == 5  # 4 chunks and the end marker, untouched

    assert flush_told(ctx, sid, lambda: False).objects_created == 1
    assert stored_seqs(ctx, "stop-early", "c") == [0, 1, 2, 3]


def test_a_flush_told_to_stop_mid_plan_commits_what_it_stored_and_hands_the_rest_back(
    ctx: WorkerContext, clock: FakeClock
) -> None:
    sid = closed_session(ctx, clock, "stop-mid", 30)  # 150 s: objects of 60, 60 and 30 s
    told = threading.Event()
    bucket = CueBucket(ctx.bucket, after={0: told.set})  # SIGTERM during the first upload
    result = flush_told(ctx, sid, told.is_set, bucket=bucket)
    assert result.skipped and "handed back" in result.skipped
    assert result.failed is None
    assert result.objects_created == 1
    assert ctx.store.client.llen(keys(sid).plan) == 2  # the rest of the plan, as recorded
    assert not ctx.store.client.exists(keys(sid).lease)
    assert ctx.store.client.zscore(keys(sid).due, sid) == pytest.approx(clock())
    assert not ctx.store.client.exists(keys(sid).failures)  # a hand-back is not a failure
    assert stored_seqs(ctx, "stop-mid", "c") == list(range(12))

    successor = flush_told(ctx, sid, lambda: False)
    assert successor.resumed_plan and successor.objects_created == 2
    assert stored_seqs(ctx, "stop-mid", "c") == list(range(30))  # each chunk once
    assert overlapping_objects(ctx, "stop-mid", "c") == []
    assert read_entries(ctx, sid) == []
