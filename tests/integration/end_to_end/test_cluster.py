"""The stream store on a real 3-master Redis Cluster, the broker a plain Redis beside it.

Pushers append through ``redis.cluster.RedisCluster``; a real ``celery worker`` (with its
beat) drains every shard; every session reads back sample-exact. Each script touches one
slot (the shard's hash tag), so nothing here may raise CROSSSLOT.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import cast

import pytest
from redis.cluster import RedisCluster

from audiosync_dev import processes
from audiosync_dev.localstack import LocalStack
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract import redis_keys
from backend_hooks.contract.settings import Settings
from tests.integration.commands import as_json, celery
from workers.store import WorkerStore

pytestmark = pytest.mark.integration

SECRET = "cluster-test-secret-0123456789abcdef0123"
SHARDS = 6


def _env(cluster_stack: LocalStack) -> dict[str, str]:
    return {
        **cluster_stack.info.env(),
        "ENCRYPTION_SECRET": SECRET,
        "AUDIOSYNC_DUE_SHARDS": str(SHARDS),
        "AUDIOSYNC_BATCH_MAX_AGE_SECONDS": "2",
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.3",
        "AUDIOSYNC_LEASE_SECONDS": "10",
        "AUDIOSYNC_FLUSH_CONCURRENCY": "4",
    }


def _held(client: RedisCluster) -> list[bytes]:
    """Every stream or due index left on any node."""
    patterns = (redis_keys.session_key_pattern("chunks"), redis_keys.DUE_KEY_PATTERN)
    return [
        key
        for pattern in patterns
        for key in client.scan_iter(match=pattern, target_nodes=RedisCluster.PRIMARIES)
    ]


def test_sessions_across_every_shard_round_trip_on_a_cluster(
    cluster_stack: LocalStack, cluster_client: RedisCluster, tmp_path: Path
) -> None:
    env = _env(cluster_stack)
    settings = Settings.from_env(env)
    assert settings.redis_cluster and env["CELERY_BROKER_URL"] != env["AUDIOSYNC_REDIS_URL"]
    client = AudioSyncClient(settings)
    assert isinstance(client.redis, RedisCluster)
    t0 = float(int(time.time()))
    pushed: dict[tuple[str, str], tuple[float, bytes]] = {}
    shards: Counter[int] = Counter()
    i = 0
    while min(shards[s] for s in range(SHARDS)) < 2:  # session ids are random: until every
        assert i < 200  # shard has two (about 25 sessions)
        level = "enhanced" if i % 2 else "standard"
        session = client.open_session(f"cl-user-{i}", f"cl-conv-{i}", 16000, level)
        pcm = speech_like(5.5 + i % 3, 16000, seed=i)
        session.push(pcm, t0 + i)
        session.close()
        pushed[(f"cl-user-{i}", f"cl-conv-{i}")] = t0 + i, pcm
        shards[session.redis_keys.shard] += 1
        i += 1
    client.close()
    nodes = {
        cluster_client.get_node_from_key(redis_keys.due_key(s)).name  # type: ignore[no-untyped-call]
        for s in shards
    }
    assert len(nodes) >= 2  # the shards live on more than one node

    with processes.worker(env, tmp_path, name="cluster", concurrency=2):
        deadline = time.monotonic() + 90
        while _held(cluster_client):
            assert time.monotonic() < deadline, f"not drained: {_held(cluster_client)[:5]}"
            time.sleep(0.3)
        report = as_json(celery("audiosync", "status", "--json", env=env))

    context = storage.StorageContext.from_settings(Settings.from_env(env, role="reader"))
    for (uid, cid), (start, pcm) in pushed.items():  # Opus: every sample, not every bit
        merged = storage.download_merged_audio(uid, cid, context=context)
        assert merged.sample_count == len(pcm) // 2, (uid, cid)
        assert merged.start_us == round(start * 1_000_000), (uid, cid)
    assert [s["shard"] for s in report["shards"]] == list(range(SHARDS))  # no legacy shard
    assert report["streams"] == 0 and report["quarantined_entries"] == 0
    assert sorted(report["maxmemory_policy"].values()) == ["noeviction"] * 3  # each master
    assert report["warnings"] == []


def test_the_fleets_scripts_each_touch_one_slot_on_a_cluster(
    cluster_stack: LocalStack, cluster_client: RedisCluster
) -> None:
    """A flush's whole life, every fenced script, on the cluster (a CROSSSLOT would raise)."""
    store = WorkerStore(cluster_client, SHARDS).in_shard(4)
    sid = "one-slot"
    keys = store.keys(sid)
    stored_id = cast(bytes, cluster_client.xadd(keys.chunks, {"kind": "end", "v": "1"}))
    cluster_client.xadd(keys.chunks, {"kind": "end", "v": "1"})
    store.schedule(sid, 0)
    now = store.time()
    assert store.claim_due(now, 10, now + 30, 4) == [sid]
    token = "t"
    assert store.acquire_lease(sid, token, 30)
    store.renew_lease(sid, token, 30)
    store.record_plan(sid, token, ['{"name": "x"}'])
    assert store.commit_object(sid, token, '{"name": "x"}', [stored_id], [0, 5]) == 0
    assert 5 in store.stored_seqs(sid)
    [(entry_id, _)] = store.read_raw(sid, 10)
    assert store.quarantine(sid, token, [(entry_id, "a test")]) == 1
    store.record_failure(sid, token, "boom", now=now, base=1, cap=2, lease_seconds=30)
    store.finish(sid, token, drop_ids=[], last_read_id=None, next_due=None, now=now)
    store.hand_back(sid, token, now=now)
    assert store.replay_batch(sid, 10) == (1, 0)
    assert store.forget_if_empty(sid)
    tokens = dict.fromkeys(range(SHARDS), "task")
    assert store.dispatch(tokens, 5) == [4]  # the one shard with a due session
    assert store.dispatch({4: "other"}, 5) == []  # held: one task per shard
    assert store.hold_dispatch(4, "task", 5) and not store.hold_dispatch(4, "other", 5)
    store.release_dispatch(4, "task")
    assert store.hold_dispatch(4, "other", 5)
