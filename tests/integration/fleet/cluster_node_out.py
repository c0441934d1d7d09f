# mypy: disable-error-code="no-untyped-call"
"""Shared by the tests that take a Redis Cluster master out (SIGSTOP) while the others
serve: the fleet's settings for them, the stall itself, and sessions, conversations and
objects placed relative to the node that is out."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import redis
from redis.cluster import RedisCluster

from audiosync_dev.localstack import LocalStack
from backend_hooks import AudioSyncClient, EnqueueError
from backend_hooks.adapters.gcs import GcsBucket
from backend_hooks.contract import naming, redis_keys
from backend_hooks.pusher.session import Session

SHARDS = 6
OUT = 3  # the node stalled: neither the seed, nor the node of the sweep's own keys
UID = "node-out-user"


def node_out_env(cluster_stack: LocalStack) -> dict[str, str]:
    return {
        **cluster_stack.info.env(),
        "AUDIOSYNC_DUE_SHARDS": str(SHARDS),
        "AUDIOSYNC_BATCH_MAX_AGE_SECONDS": "1",
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.3",
        "AUDIOSYNC_LEASE_SECONDS": "10",
        "AUDIOSYNC_DELETE_RECHECK_SECONDS": "1",
    }


def port_of(url: str) -> int:
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


def conversation_marked_on(client: RedisCluster, port: int, name: str) -> str:
    """A conversation id whose deleted mark lives on the node at ``port``."""
    for i in range(10_000):
        cid = f"{name}-{i}"
        if client.get_node_from_key(redis_keys.deleted_conversation_key(UID, cid)).port == port:
            return cid
    raise AssertionError("no conversation id hashes to that node")


def session_served(client: AudioSyncClient, cluster: RedisCluster, cid: str, out: int) -> Session:
    """A session of ``cid`` whose shard lives on a node other than the one at ``out``."""
    for _ in range(100):
        session = client.open_session(UID, cid, 16000, "standard")
        node = cluster.get_node_from_key(redis_keys.due_key(session.redis_keys.shard))
        if node.port != out:
            return session
        session.close()  # (appends an end marker only: the fleet drops it)
    raise AssertionError("no session landed on a serving node")


def close_patiently(session: Session, seconds: float = 90) -> None:
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


def objects_of(bucket: GcsBucket, cid: str) -> list[str]:
    return [o.name for o in bucket.list(naming.conversation_prefix(UID, cid))]


def held_sessions(cluster: RedisCluster, sessions: list[Session]) -> list[str]:
    return [s.session_id for s in sessions if cluster.exists(s.redis_keys.chunks)]
