# mypy: disable-error-code="no-untyped-call"
"""A master whose script cache is empty (it restarted, or a replica took over) serves
appends and flushes while another master is out.

redis-py's ``register_script`` answers ``NOSCRIPT`` with ``SCRIPT LOAD`` sent to every
primary, which fails while one of them does not answer: the pusher's append and every
fleet script would then fail on the nodes that serve too. audiosync's scripts fall back to
``EVAL`` on the node of their keys only (``redis_store.run_script``).
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
from backend_hooks.contract import naming, redis_keys
from backend_hooks.contract.settings import Settings
from tests.integration.fleet.cluster_node_out import (
    OUT,
    held_sessions,
    node_out_env,
    objects_of,
    port_of,
    session_served,
    stalled,
)

pytestmark = pytest.mark.integration
UID = "node-out-user"


def test_appends_and_flushes_go_on_where_scripts_were_flushed_while_a_master_is_out(
    cluster_stack: LocalStack, cluster_client: RedisCluster, tmp_path: Path
) -> None:
    env = node_out_env(cluster_stack)
    settings = Settings.from_env(env)
    reader = storage.StorageContext.from_settings(Settings.from_env(env, role="reader"))
    out_port = port_of(cluster_stack.cluster_node_urls[OUT])
    cid = f"scripts-lost-{time.time_ns()}"
    pusher = AudioSyncClient(settings)
    session = session_served(pusher, cluster_client, cid, out_port)
    node = cluster_client.get_node_from_key(redis_keys.due_key(session.redis_keys.shard))
    audio = speech_like(3, 16000, seed=22)

    with (
        processes.worker(env, tmp_path, name="scripts-lost") as worker,
        stalled(cluster_stack, OUT),
    ):
        cluster_client.execute_command("SCRIPT FLUSH", target_nodes=node)  # a restart
        session.push(audio, float(int(time.time())))
        session.close()
        assert pusher.stats().breaker.trips == 0, "an append waited on the master that is out"
        # 13 s alone, 44 s beside another test process on a loaded machine: the flushes
        # meet the stalled master's socket timeouts
        deadline = time.monotonic() + 180
        while held_sessions(cluster_client, [session]) or not objects_of(reader.bucket, cid):
            assert time.monotonic() < deadline, f"not flushed\n{worker.tail()}"
            time.sleep(0.2)
    pusher.close()
    names = objects_of(reader.bucket, cid)
    assert len(names) == 1 and names[0].startswith(naming.conversation_prefix(UID, cid))
