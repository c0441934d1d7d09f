# mypy: disable-error-code="no-untyped-call"
"""A Redis Cluster master out stops only its own shards, also for the deleted marks.

A conversation's deleted mark (``audiosync:deleted:D``) lives on whichever node its key
hashes to, not with the session's shard. Here the master holding the marks is stalled
(SIGSTOP: it accepts connections and never answers, as a master hanging or failing over
does), with ``cluster-require-full-coverage no`` so the other masters keep serving. The
sessions live on serving masters. Their flushes must not wait on the stalled node: each
looks at the mark once, briefly, and uploads without it, with a note in its own shard.
Once the node answers again, the object uploaded into the conversation that was deleted
before the node went out is deleted by the fleet; the other conversation's stay.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from audiosync_dev import processes
from audiosync_dev.localstack import LocalStack
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, EnqueueError, naming, redis_store, storage
from backend_hooks.gcs import GcsBucket
from backend_hooks.session import Session
from backend_hooks.settings import Settings

pytestmark = pytest.mark.integration
SHARDS = 6
OUT = 3  # the node stalled: neither the seed, nor the node of the sweep's own keys
UID = "node-out-user"
T0 = float(int(time.time()))


def _env(cluster_stack: LocalStack) -> dict[str, str]:
    return {
        **cluster_stack.info.env(),
        "AUDIOSYNC_DUE_SHARDS": str(SHARDS),
        "AUDIOSYNC_BATCH_MAX_AGE_SECONDS": "1",
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.3",
        "AUDIOSYNC_LEASE_SECONDS": "10",
        "AUDIOSYNC_DELETE_RECHECK_SECONDS": "1",
    }


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _cluster_ok(urls: list[str]) -> bool:
    try:
        for url in urls:
            with redis.Redis.from_url(url, socket_timeout=1) as node:
                if node.cluster("info")["cluster_state"] != "ok":
                    return False
    except redis.RedisError:
        return False
    return True


def _full_coverage(urls: list[str], value: str) -> None:
    """``cluster-require-full-coverage``: "no" lets the masters that serve go on serving
    their slots while another is out (valkey's default "yes" stops every node then)."""
    for url in urls:
        with redis.Redis.from_url(url) as node:
            node.config_set("cluster-require-full-coverage", value)


@contextlib.contextmanager
def stalled(cluster_stack: LocalStack, number: int) -> Iterator[None]:
    """Cluster node ``number`` stopped (SIGSTOP) while the others keep serving their slots
    (``cluster-require-full-coverage no``); on exit it runs again and every node is ok."""
    urls = list(cluster_stack.cluster_node_urls.values())
    _full_coverage(urls, "no")
    pid = cluster_stack.pids[f"valkey-cluster-{number}"]
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while not _cluster_ok(urls):
            assert time.monotonic() < deadline, "the cluster was not ok again after the stall"
            time.sleep(0.2)
        _full_coverage(urls, "yes")


def _conversation_marked_on(client: RedisCluster, port: int, name: str) -> str:
    """A conversation id whose deleted mark lives on the node at ``port``."""
    for i in range(10_000):
        cid = f"{name}-{i}"
        if client.get_node_from_key(redis_store.deleted_conversation_key(UID, cid)).port == port:
            return cid
    raise AssertionError("no conversation id hashes to that node")


def _session_served(client: AudioSyncClient, cluster: RedisCluster, cid: str, out: int) -> Session:
    """A session of ``cid`` whose shard lives on a node other than the one at ``out``."""
    for _ in range(100):
        session = client.open_session(UID, cid, 16000, "standard")
        node = cluster.get_node_from_key(redis_store.due_key(session.redis_keys.shard))
        if node.port != out:
            return session
        session.close()  # (appends an end marker only: the fleet drops it)
    raise AssertionError("no session landed on a serving node")


def _close(session: Session, seconds: float = 90) -> None:
    """Close as the docs say a pusher does when Redis is slow: ``EnqueueError`` keeps the
    tail, so close again. The pusher's breaker is one per client: a call stuck on the
    stalled node holds every append back until it returns (docs/ARCHITECTURE.md, "A
    stalled Redis"), which on a loaded machine can outlast one close budget."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            session.close()
            return
        except EnqueueError:
            assert time.monotonic() < deadline, "the close never got its tail into Redis"


def _objects(bucket: GcsBucket, cid: str) -> list[str]:
    return [o.name for o in bucket.list(naming.conversation_prefix(UID, cid))]


def _held(cluster: RedisCluster, sessions: list[Session]) -> list[str]:
    return [s.session_id for s in sessions if cluster.exists(s.redis_keys.chunks)]


def test_flushes_go_on_while_the_marks_node_is_out_and_blind_uploads_of_deleted_ones_go_after(
    cluster_stack: LocalStack, cluster_client: RedisCluster, tmp_path: Path
) -> None:
    env = _env(cluster_stack)
    settings = Settings.from_env(env)
    reader = storage.StorageContext.from_settings(Settings.from_env(env, role="reader"))
    out_port = _port(cluster_stack.cluster_node_urls[OUT])
    seed_port = _port(env["AUDIOSYNC_REDIS_URL"])
    for key in (redis_store.SWEPT_KEY, redis_store.SHARD_COUNTS_KEY):
        assert cluster_client.get_node_from_key(key).port != out_port
    assert seed_port != out_port
    gone = _conversation_marked_on(cluster_client, out_port, "gone")
    kept = _conversation_marked_on(cluster_client, out_port, "kept")
    pusher = AudioSyncClient(settings)
    first, late, more = (
        _session_served(pusher, cluster_client, cid, out_port) for cid in (kept, gone, kept)
    )
    audio = speech_like(3, 16000, seed=21)

    with processes.worker(env, tmp_path, name="node-out") as worker:
        # Everything up: a first flush (the fleet's scripts are loaded on every node).
        first.push(audio, T0)
        first.close()
        deadline = time.monotonic() + 60
        while _held(cluster_client, [first]) or not _objects(reader.bucket, kept):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        assert storage.delete_conversation_audio(UID, gone, context=reader)["chunks"] == 0

        with stalled(cluster_stack, OUT):
            # Audio of both conversations arrives late (a replay, a spool drained).
            late.push(audio, T0 + 100)
            more.push(audio, T0 + 200)
            _close(late)
            _close(more)
            deadline = time.monotonic() + 90
            while held := _held(cluster_client, [late, more]):
                assert time.monotonic() < deadline, f"not flushed: {held}\n{worker.tail()}"
                time.sleep(0.2)
            assert len(_objects(reader.bucket, gone)) == 1  # uploaded blind, noted
            assert len(_objects(reader.bucket, kept)) == 2
            notes = redis_store.blind_uploads_key(late.redis_keys.shard)
            assert cluster_client.zcard(notes) >= 1

        deadline = time.monotonic() + 90  # the mark answers again: the blind upload goes
        while (left := _objects(reader.bucket, gone)) or cluster_client.zcard(notes):
            assert time.monotonic() < deadline, f"still there: {left}\n{worker.tail()}"
            time.sleep(0.2)
    pusher.close()
    assert len(_objects(reader.bucket, kept)) == 2  # not deleted: its notes just dropped
