"""An upload attempt its client gave up on, landing in a conversation after its delete, is
found and removed by the fleet's re-check of that conversation.

google-cloud-storage abandons an upload attempt after its per-attempt timeout and retries;
the abandoned request can still reach GCS and be stored at any later time. Here the proxy
in front of the real emulator parks the flush's first attempt (``park_next_upload``): the
client times out and its retry is stored; the test lets the parked request land only
after the flush has returned, i.e. after the object it stands for was deleted, by the
flush that found its conversation deleted, or by ``delete_conversation_audio``. Only a
later listing of the conversation can find it: a real ``celery worker`` (with beat) runs
the re-check.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.faults import GcsFaultProxy, ParkedUpload
from audiosync_dev.localstack import StackInfo
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.adapters.gcs import GcsBucket
from backend_hooks.adapters.redis_store import mark_conversation_deleted
from backend_hooks.contract import naming
from backend_hooks.contract.settings import Settings
from tests.integration.flushing import CueBucket, FakeClock, flush
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
LEASE = 40  # each upload attempt gets lease / 8 = 5 s, the upload lease / 2 = 20 s
T0 = float(int(time.time()))
RECHECK = "1"  # AUDIOSYNC_DELETE_RECHECK_SECONDS


@pytest.fixture
def proxy(stack: StackInfo) -> Iterator[GcsFaultProxy]:
    with GcsFaultProxy(stack.gcs_url) as running:
        yield running


@pytest.fixture
def proxied(
    stack: StackInfo, redis_client: redis.Redis, clock: FakeClock, proxy: GcsFaultProxy
) -> WorkerContext:
    """A worker context whose uploads go through ``proxy``."""
    env = {
        **stack.env(),
        "STORAGE_EMULATOR_HOST": proxy.url,
        "AUDIOSYNC_LEASE_SECONDS": str(LEASE),
        "AUDIOSYNC_DELETE_RECHECK_SECONDS": RECHECK,  # past when the test lands the attempt:
    }  # the fleet that runs the re-checks starts only after it
    return WorkerContext.from_settings(Settings.from_env(env), clock=clock)


def objects(bucket: GcsBucket, uid: str, cid: str) -> list[str]:
    return [o.name for o in bucket.list(naming.conversation_prefix(uid, cid))]


def push_seven_seconds(ctx: WorkerContext, clock: FakeClock, uid: str, cid: str) -> str:
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session(uid, cid, 16000, "standard")
    session.push(speech_like(7, 16000, seed=11), T0)
    session.close()
    client.close()
    clock.sync(ctx.store.client)
    return session.session_id


def land_late(parked: ParkedUpload, bucket: GcsBucket, uid: str, cid: str) -> list[str]:
    """Let the parked (long abandoned) attempt reach the emulator; what it stored."""
    assert parked.arrived.is_set(), "the flush's first upload attempt was not parked"
    parked.release()
    assert parked.landed.wait(60), "the parked upload never reached the emulator"
    assert parked.status == 200, f"the late attempt was not stored: {parked.status}"
    return objects(bucket, uid, cid)


def rechecked_by_the_fleet(
    stack: StackInfo, tmp_path: Path, bucket: GcsBucket, uid: str, cid: str
) -> None:
    """A real worker with beat runs the re-checks; the conversation must end up empty."""
    env = {
        **stack.env(),
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.3",
        "AUDIOSYNC_DELETE_RECHECK_SECONDS": RECHECK,
    }
    with processes.worker(env, tmp_path, name="recheck") as worker:
        deadline = time.monotonic() + 120
        while left := objects(bucket, uid, cid):
            assert time.monotonic() < deadline, f"still there: {left}\n{worker.tail()}"
            time.sleep(0.3)


def test_an_abandoned_attempt_landing_after_the_flush_dropped_its_object_is_removed(
    stack: StackInfo, proxied: WorkerContext, proxy: GcsFaultProxy, clock: FakeClock, tmp_path: Path
) -> None:
    uid, cid = "late-user", "late-conv"
    sid = push_seven_seconds(proxied, clock, uid, cid)
    # The delete's mark lands after the flush looked, before its upload (the delete's own
    # re-check is left out: only the one the flush queues can find the late attempt).
    bucket = CueBucket(
        proxied.bucket,
        before={
            0: lambda: mark_conversation_deleted(proxied.store.client, uid, cid, ttl_seconds=3600)
        },
    )
    parked = proxy.park_next_upload()
    result = flush(proxied, sid, bucket)
    assert result.failed is None and result.chunks_dropped_deleted == 2, result
    assert objects(proxied.bucket, uid, cid) == []  # the retry's object: deleted by the flush

    assert len(land_late(parked, proxied.bucket, uid, cid)) == 1  # back, from the old attempt
    rechecked_by_the_fleet(stack, tmp_path, proxied.bucket, uid, cid)


def test_an_abandoned_attempt_landing_after_the_delete_listed_the_conversation_is_removed(
    stack: StackInfo, proxied: WorkerContext, proxy: GcsFaultProxy, clock: FakeClock, tmp_path: Path
) -> None:
    uid, cid = "listed-user", "listed-conv"
    sid = push_seven_seconds(proxied, clock, uid, cid)
    parked = proxy.park_next_upload()
    result = flush(proxied, sid)  # its first attempt parked, its retry stored and committed
    assert result.failed is None and result.objects_created == 1, result
    reader = storage.StorageContext(proxied.settings, proxied.bucket, None)
    assert storage.delete_conversation_audio(uid, cid, context=reader)["chunks"] == 1
    assert objects(proxied.bucket, uid, cid) == []

    assert len(land_late(parked, proxied.bucket, uid, cid)) == 1  # back, from the old attempt
    rechecked_by_the_fleet(stack, tmp_path, proxied.bucket, uid, cid)
