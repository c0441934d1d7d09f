"""The stream store as the run itself reads it: keys on every primary of a cluster,
the run's own patient client, the pusher's client through the reply-drop proxies and
which cluster node holds which sessions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from audiosync_dev.faults import RedisClusterReplyDropProxies
from audiosync_dev.localstack import StackInfo
from backend_hooks.adapters import redis_store
from backend_hooks.adapters.redis_store import RedisClient
from backend_hooks.contract import redis_keys


def session_of_key(key: bytes | str) -> str:
    where = redis_keys.session_of_key(key)
    if where is None:
        raise ValueError(f"{key!r} is not a session key")
    return where[1]


def scan_keys(r: RedisClient, pattern: str) -> list[bytes]:
    """Every key matching ``pattern``: on a Redis Cluster, of every primary."""
    if isinstance(r, RedisCluster):
        found = r.scan_iter(match=pattern, count=1000, target_nodes=RedisCluster.PRIMARIES)
    else:
        found = r.scan_iter(match=pattern, count=1000)
    return [cast(bytes, key) for key in found]


def due_members(r: RedisClient) -> int:
    """Sessions in any shard's due index (the legacy one included)."""
    legacy = redis_keys.due_key(redis_keys.LEGACY_SHARD)
    keys: list[bytes | str] = [*scan_keys(r, redis_keys.DUE_KEY_PATTERN), legacy]
    return sum(int(r.zcard(k)) for k in keys)


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


def store_client(info: StackInfo) -> RedisClient:
    """The chaos thread's and the audit's own client of the stream store: straight to it
    (to every node of a cluster), and patient across the restarts the run causes itself."""
    if info.redis_cluster_url is not None:
        # RedisCluster retries without backoff: a refused connection at once, a
        # CLUSTERDOWN (a restarted node is not writable for ~2 s) after 0.25 s; 30 tries
        # outlast a node restart.
        return RedisCluster.from_url(
            info.redis_cluster_url,
            socket_timeout=10,
            socket_connect_timeout=10,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 30),
        )
    return redis.Redis.from_url(
        info.redis_url,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 8),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def pusher_cluster_client(proxies: RedisClusterReplyDropProxies) -> RedisCluster:
    """The pusher's client on a cluster: what ``redis_store.connect(url, cluster=True)``
    makes (the same options), but reaching every node through its reply-drop proxy."""
    client = RedisCluster.from_url(
        proxies.url,
        decode_responses=False,
        socket_timeout=redis_store.SOCKET_TIMEOUT,
        socket_connect_timeout=redis_store.SOCKET_TIMEOUT,
        address_remap=proxies.address_remap,
    )
    known = {(n.host, int(n.port)) for n in client.get_primaries()}  # type: ignore[no-untyped-call]
    wanted = {("127.0.0.1", proxy.port) for proxy in proxies.proxies}
    if known != wanted:  # a node reached directly would lose no reply
        client.close()
        raise RuntimeError(f"the pusher's cluster client knows {known}, not the proxies {wanted}")
    return client


def sessions_by_node(
    r: RedisCluster, node_urls: dict[int, str], shards: Iterable[int]
) -> dict[int, int]:
    """How many of the sessions (by their shards) live on each cluster node (by number)."""
    number_of = {host_port(url): number for number, url in node_urls.items()}
    counts = dict.fromkeys(node_urls, 0)
    for shard in shards:
        node = r.get_node_from_key(redis_keys.due_key(shard))  # type: ignore[no-untyped-call]
        counts[number_of[(node.host, int(node.port))]] += 1
    return counts
