"""flush_session against real Redis and the GCS emulator, with an injected clock.

These drive the flush logic directly (no Celery) to stop it at the points where a
process can die, which a real worker cannot be made to do on cue.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from audiosync_dev.legacy import legacy_opus_container
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.adapters.redis_store import connect
from backend_hooks.contract import container, envelope, naming
from backend_hooks.contract.errors import ConfigError, DecryptionError, SampleRateUnknownError
from backend_hooks.contract.redis_keys import due_key
from tests.integration.flushing import FakeClock, keys, read_entries
from tests.integration.flushing import flush as run_flush
from workers.context import WorkerContext
from workers.flush import content_type, flush_session
from workers.planner import plan_flush
from workers.store import WorkerStore

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))  # synthetic pushes start now: the worker refuses far-off times


def flush(ctx: WorkerContext, session_id: str) -> tuple[int, int]:
    result = run_flush(ctx, session_id)
    assert result.failed is None, result
    return result.objects_created, result.objects_already_stored


def stored_chunks(ctx: WorkerContext, uid: str, cid: str) -> list[tuple[int, int]]:
    """(seq, samples) of every chunk stored for a conversation, across objects."""
    out = []
    sctx = storage.StorageContext(ctx.settings, ctx.bucket, None)
    for item in storage.list_audio_chunks(uid, cid, context=sctx):
        for chunk in container.parse_chunks(ctx.bucket.download(item["path"])):
            out.append((chunk.info.seq, chunk.info.sample_count))
    return sorted(out)


def test_killed_between_upload_and_commit(ctx: WorkerContext, clock: FakeClock) -> None:
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session("crash-user", "crash-conv", 16000, "standard")
    audio = speech_like(77, 16000, seed=9)
    session.push(audio[: 2 * 16000 * 42], T0)  # 8 chunks of 5 s reach Redis
    clock.sync(ctx.store.client)
    clock.now += 61  # the oldest chunk is due by age

    # A flush records its plan, gets as far as its upload and dies before committing.
    entries = read_entries(ctx, session.session_id)
    plan = plan_flush(entries, clock(), ctx.policy)
    assert len(plan.objects) == 1 and len(plan.objects[0].entries) == 8
    first = plan.objects[0]
    data = first.data()
    assert ctx.store.acquire_lease(session.session_id, "dying-flush", 30)
    ctx.store.record_plan(
        session.session_id, "dying-flush", [first.record(first.name(data)).dumps()]
    )
    ctx.bucket.create_only(
        first.name(data),
        data,
        content_type=content_type(False),
        metadata=first.metadata(session.session_id),
    )

    ctx.store.client.delete(keys(session.session_id).lease)  # it died: lease ends

    # Meanwhile more audio arrives; then the sweep retries the session: the successor
    # carries out the recorded plan (412, checked equal), then the next flush the rest.
    session.push(audio[2 * 16000 * 42 :], T0 + 42)
    session.close()
    assert flush(ctx, session.session_id) == (0, 1)
    assert flush(ctx, session.session_id) == (1, 0)

    chunks = stored_chunks(ctx, "crash-user", "crash-conv")
    assert [seq for seq, _ in chunks] == list(range(16))  # every chunk once, none twice
    assert sum(n for _, n in chunks) == len(audio) // 2
    assert read_entries(ctx, session.session_id) == []
    assert ctx.store.read_plan(session.session_id) == []
    names = [
        naming.parse_object_name(o["path"])
        for o in storage.list_audio_chunks(
            "crash-user",
            "crash-conv",
            context=storage.StorageContext(ctx.settings, ctx.bucket, None),
        )
    ]
    assert first.name(data) in {n.path for n in names}


def test_young_audio_waits_and_is_rescheduled(ctx: WorkerContext, clock: FakeClock) -> None:
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session("young-user", "young-conv", 8000, "standard")
    session.push(bytes(2 * 8000 * 20), T0)  # 4 chunks, enqueued "now"
    clock.sync(ctx.store.client)
    assert flush(ctx, session.session_id) == (0, 0)
    due = ctx.store.client.zscore(keys(session.session_id).due, session.session_id)
    assert due == pytest.approx(clock.now + ctx.settings.batch_max_age_seconds, abs=1)
    clock.now += ctx.settings.batch_max_age_seconds - 1
    assert flush(ctx, session.session_id) == (0, 0)  # ages count from the append's Redis time
    clock.now += 2
    assert flush(ctx, session.session_id) == (1, 0)
    assert ctx.store.client.zscore(keys(session.session_id).due, session.session_id) is None


def test_a_held_lease_skips_the_flush(ctx: WorkerContext, clock: FakeClock) -> None:
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session("lease-user", "lease-conv", 16000, "standard")
    session.push(bytes(2 * 16000 * 5), T0)
    session.close()
    assert ctx.store.acquire_lease(session.session_id, "other-worker", 30)
    result = flush_session(
        session.session_id,
        store=ctx.store,
        bucket=ctx.bucket,
        policy=ctx.policy,
        config=ctx.config,
        clock=clock,
    )
    assert result.skipped and len(read_entries(ctx, session.session_id)) == 2
    ctx.store.release_lease(session.session_id, "not-the-holder")  # does not release it
    assert not ctx.store.acquire_lease(session.session_id, "third", 30)


def test_sweep_claims_due_sessions_once(ctx: WorkerContext, clock: FakeClock) -> None:
    store: WorkerStore = ctx.store
    store = store.in_shard(3)
    store.schedule("due-now", clock.now - 1)
    store.schedule("due-later", clock.now + 100)
    assert store.claim_due(clock.now, 100, clock.now + 30, 3) == ["due-now"]
    assert store.claim_due(clock.now, 100, clock.now + 30, 3) == []  # claimed, not due again
    assert store.claim_due(clock.now + 31, 100, clock.now + 61, 3) == ["due-now"]  # lease ended
    store.schedule("due-now", clock.now)  # a pusher lowers it (ZADD LT)
    assert store.claim_due(clock.now, 100, clock.now + 30, 3) == ["due-now"]
    assert store.claim_due(clock.now + 1000, 100, clock.now + 1030, 2) == []  # another shard
    assert connect(ctx.settings.redis_url).zcard(due_key(3)) == 2


def test_legacy_and_new_objects_merge_together(ctx: WorkerContext, clock: FakeClock) -> None:
    """Old single-chunk .opus/.opus.enc objects and new 60 s objects in one conversation."""
    uid, cid = "mixed-user", "mixed-conv"
    secret = b"mixed-conversation-secret-0123456789"
    keys = envelope.UserKeys(secret)
    first, second = speech_like(5, 16000, seed=21), speech_like(5, 16000, seed=22)
    prefix = naming.conversation_prefix(uid, cid)
    ctx.bucket.create_only(
        f"{prefix}{T0:.3f}.opus",
        legacy_opus_container(first),
        content_type="application/octet-stream",
        metadata={},
    )
    sealed = envelope.seal_v0(keys.cipher(uid), legacy_opus_container(second))
    ctx.bucket.create_only(
        f"{prefix}{T0 + 5:.3f}.opus.enc",
        sealed,
        content_type="application/octet-stream",
        metadata={},
    )

    settings = replace(ctx.settings, encryption_secret=secret)
    client = AudioSyncClient(settings, clock=clock)
    session = client.open_session(uid, cid, 16000, "enhanced")
    new = speech_like(7.5, 16000, seed=23)
    session.push(new, T0 + 10)
    session.close()
    assert flush(ctx, session.session_id) == (1, 0)

    sctx = storage.StorageContext.from_settings(settings)
    listed = storage.list_audio_chunks(uid, cid, context=sctx)
    kinds = [naming.parse_object_name(o["path"]) for o in listed]
    assert [(n.extension, n.is_new) for n in kinds] == [
        (".opus", False),
        (".opus.enc", False),
        (".opus.enc", True),
    ]
    merged = storage.download_merged_audio(uid, cid, context=sctx)
    assert merged.sample_rate == 16000 and merged.start_us == round(T0 * 1_000_000)
    assert merged.sample_count == 17.5 * 16000  # 5 s + 5 s + 7.5 s, back to back

    wrong = storage.StorageContext.from_settings(
        replace(settings, encryption_secret=b"another-secret-entirely-0123456789")
    )
    with pytest.raises(DecryptionError):
        storage.download_merged_audio(uid, cid, context=wrong)
    no_key = storage.StorageContext.from_settings(replace(settings, encryption_secret=None))
    with pytest.raises(ConfigError, match="ENCRYPTION_SECRET"):
        storage.download_merged_audio(uid, cid, context=no_key)


def test_legacy_raw_pcm_is_listed_but_not_guessed(ctx: WorkerContext) -> None:
    prefix = naming.conversation_prefix("raw-user", "raw-conv")
    ctx.bucket.create_only(
        f"{prefix}{T0:.3f}.bin", bytes(80000), content_type="application/octet-stream", metadata={}
    )
    ctx.bucket.create_only(
        f"{prefix}notes.txt", b"not audio", content_type="text/plain", metadata={}
    )
    sctx = storage.StorageContext(ctx.settings, ctx.bucket, None)
    listed = storage.list_audio_chunks("raw-user", "raw-conv", context=sctx)
    assert [(o["timestamp"], o["size"], o["duration"]) for o in listed] == [(T0, 80000, None)]
    with pytest.raises(SampleRateUnknownError, match="pass sample_rate="):
        storage.download_merged_audio("raw-user", "raw-conv", context=sctx)
    assert storage.download_merged_audio(
        "raw-user", "raw-conv", sample_rate=8000, context=sctx
    ).pcm == bytes(80000)


def test_finish_sees_entries_appended_after_the_read(ctx: WorkerContext, clock: FakeClock) -> None:
    """A pusher appending between a flush's read and its finish: due now, never dropped."""
    client = AudioSyncClient(ctx.settings, clock=clock)
    session = client.open_session("race-user", "race-conv", 8000, "standard")
    session.push(bytes(2 * 8000 * 5), T0)  # one chunk
    sid = session.session_id
    store = ctx.store
    assert store.acquire_lease(sid, "t", 30)
    read = read_entries(ctx, sid)
    session.push(bytes(2 * 8000 * 5), T0 + 5)  # arrives after the read
    store.finish(
        sid,
        "t",
        drop_ids=[read[0].entry_id],
        last_read_id=read[-1].entry_id,
        next_due=None,
        now=clock.now,
    )
    assert store.client.zscore(keys(sid).due, sid) == clock.now
    assert [e.entry_id for e in read_entries(ctx, sid)] != [read[0].entry_id]

    # Nothing new after the read: the computed due time is set as it is.
    read = read_entries(ctx, sid)
    store.finish(
        sid, "t", drop_ids=[], last_read_id=read[-1].entry_id, next_due=clock.now + 42, now=0
    )
    assert store.client.zscore(keys(sid).due, sid) == clock.now + 42

    # Everything gone: the stream key and the due entry go together.
    store.finish(
        sid,
        "t",
        drop_ids=[read[0].entry_id],
        last_read_id=read[-1].entry_id,
        next_due=None,
        now=clock.now,
    )
    assert store.client.zscore(keys(sid).due, sid) is None
    assert not store.client.exists(keys(sid).chunks)
