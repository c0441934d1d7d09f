# mypy: disable-error-code="no-untyped-call"
"""On a Redis Cluster, one node out must not stop the sweep for every shard.

The sweep (``WorkerStore.dispatch``, run by ``audiosync.sweep`` and at the end of every
shard task) reads the due index of every shard in one cluster pipeline. When one node
does not serve (a restarted master is not writable for ~2 s; a master failing over is out
for ``cluster-node-timeout``, 15 s by default; with ``cluster-require-full-coverage no``
a node that is down stays out for as long as it is down) that node's commands fail, the
pipeline raises, and the sweep sends no task at all, also for the shards of the nodes that
serve. The chaos run's worker logs show it at each node restart ("Command # 7
(ZRANGEBYSCORE audiosync:{s3}:due ...) of pipeline caused error: The cluster is down").
A shard lives on one node "as a Kafka partition lives on one broker"
(docs/ARCHITECTURE.md): a node out should stop its own shards, not the whole fleet.

The test keeps a node down (with ``cluster-require-full-coverage no``) until the sweep has
run: a restart's 2 s writable delay would make the measurement a race with the machine's
speed, lost on a busy machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from audiosync_dev.localstack import LocalStack
from backend_hooks.adapters import redis_store
from backend_hooks.contract import redis_keys
from workers.store import WorkerStore

pytestmark = pytest.mark.integration
SHARDS = 16


def _set_full_coverage(stack: LocalStack, value: str) -> None:
    for url in stack.cluster_node_urls.values():
        with redis.Redis.from_url(url, socket_timeout=5) as node:
            node.config_set("cluster-require-full-coverage", value)


@pytest.fixture
def partial_coverage(cluster_stack: LocalStack) -> Iterator[LocalStack]:
    """``cluster_stack`` with ``cluster-require-full-coverage no``: a node down stops only
    its own slots, for as long as it is down (valkey's default again afterwards)."""
    _set_full_coverage(cluster_stack, "no")
    try:
        yield cluster_stack
    finally:
        _set_full_coverage(cluster_stack, "yes")


def test_the_sweep_dispatches_the_shards_of_serving_nodes_while_one_node_is_out(
    partial_coverage: LocalStack, cluster_client: RedisCluster
) -> None:
    cluster_stack = partial_coverage
    seed = cluster_stack.info.redis_cluster_url
    assert seed is not None
    client = redis_store.connect(seed, cluster=True)  # the fleet's own client
    assert isinstance(client, RedisCluster)
    store = WorkerStore(client, SHARDS)
    counts_node = client.get_node_from_key(redis_keys.SHARD_COUNTS_KEY).port
    node_of = {s: client.get_node_from_key(redis_keys.due_key(s)).port for s in range(SHARDS)}
    # The node to take out: not the one of the shard-count set the sweep reads first.
    number, url = next(
        (n, u)
        for n, u in cluster_stack.cluster_node_urls.items()
        if not u.endswith(f":{counts_node}")
    )
    out_port = int(url.rsplit(":", 1)[1])
    serving = sorted(s for s, port in node_of.items() if port != out_port)
    for shard in range(SHARDS):  # a due session in every shard
        store.in_shard(shard).schedule(f"node-down-{shard}", 0)
    # Down until the sweep has run, however long the sweep takes on this machine.
    cluster_stack.stop_redis_cluster_node(number)
    try:
        tokens = dict.fromkeys(range(SHARDS), "sweep")
        try:
            chosen = store.dispatch(tokens, 30)
            error = None
        except redis.RedisError as exc:
            chosen, error = [], exc
    finally:
        client.close()
        cluster_stack.start_redis_cluster_node(number)
    assert set(serving) <= set(chosen), (
        f"with cluster node {number} out, the sweep sent {sorted(chosen)} of the due shards "
        f"{serving} of the serving nodes ({error!r})"
    )
    assert not set(chosen) - set(serving), f"shards of the node out sent: {sorted(chosen)}"
