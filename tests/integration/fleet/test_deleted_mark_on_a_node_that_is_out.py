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

import time
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from audiosync_dev import processes
from audiosync_dev.localstack import LocalStack
from audiosync_dev.speech import speech_like
from backend_hooks import AudioSyncClient, storage
from backend_hooks.contract import redis_keys
from backend_hooks.contract.settings import Settings
from tests.integration.fleet.cluster_node_out import (
    OUT,
    UID,
    close_patiently,
    conversation_marked_on,
    held_sessions,
    node_out_env,
    objects_of,
    port_of,
    session_served,
    stalled,
)

pytestmark = pytest.mark.integration
T0 = float(int(time.time()))


def test_flushes_go_on_while_the_marks_node_is_out_and_blind_uploads_of_deleted_ones_go_after(
    cluster_stack: LocalStack, cluster_client: RedisCluster, tmp_path: Path
) -> None:
    env = node_out_env(cluster_stack)
    settings = Settings.from_env(env)
    reader = storage.StorageContext.from_settings(Settings.from_env(env, role="reader"))
    out_port = port_of(cluster_stack.cluster_node_urls[OUT])
    seed_port = port_of(env["AUDIOSYNC_REDIS_URL"])
    for key in (redis_keys.SWEPT_KEY, redis_keys.SHARD_COUNTS_KEY):
        assert cluster_client.get_node_from_key(key).port != out_port
    assert seed_port != out_port
    gone = conversation_marked_on(cluster_client, out_port, "gone")
    kept = conversation_marked_on(cluster_client, out_port, "kept")
    pusher = AudioSyncClient(settings)
    first, late, more = (
        session_served(pusher, cluster_client, cid, out_port) for cid in (kept, gone, kept)
    )
    audio = speech_like(3, 16000, seed=21)

    with processes.worker(env, tmp_path, name="node-out") as worker:
        # Everything up: a first flush (the fleet's scripts are loaded on every node).
        first.push(audio, T0)
        first.close()
        deadline = time.monotonic() + 60
        while held_sessions(cluster_client, [first]) or not objects_of(reader.bucket, kept):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        assert storage.delete_conversation_audio(UID, gone, context=reader)["chunks"] == 0

        with stalled(cluster_stack, OUT):
            # Audio of both conversations arrives late (a replay, a spool drained).
            late.push(audio, T0 + 100)
            more.push(audio, T0 + 200)
            close_patiently(late)
            close_patiently(more)
            deadline = time.monotonic() + 90
            while held := held_sessions(cluster_client, [late, more]):
                assert time.monotonic() < deadline, f"not flushed: {held}\n{worker.tail()}"
                time.sleep(0.2)
            assert len(objects_of(reader.bucket, gone)) == 1  # uploaded blind, noted
            assert len(objects_of(reader.bucket, kept)) == 2
            notes = redis_keys.blind_uploads_key(late.redis_keys.shard)
            assert cluster_client.zcard(notes) >= 1

        deadline = time.monotonic() + 90  # the mark answers again: the blind upload goes
        while (left := objects_of(reader.bucket, gone)) or cluster_client.zcard(notes):
            assert time.monotonic() < deadline, f"still there: {left}\n{worker.tail()}"
            time.sleep(0.2)
    pusher.close()
    assert len(objects_of(reader.bucket, kept)) == 2  # not deleted: its notes just dropped
