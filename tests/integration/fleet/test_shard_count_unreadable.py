"""On a Redis Cluster, a sweep that cannot read the pushers' shard counts sweeps its own
count and says so in one formatted line (workers/store.py ``shard_count``)."""

from __future__ import annotations

import logging

import pytest
from redis.cluster import RedisCluster

from backend_hooks.contract import redis_keys
from workers.store import WorkerStore

pytestmark = pytest.mark.integration


def test_an_unreadable_shard_count_set_is_logged_as_one_line(
    cluster_client: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    cluster_client.set(redis_keys.SHARD_COUNTS_KEY, "not a set")  # SMEMBERS: WRONGTYPE
    caplog.set_level(logging.WARNING, logger="workers.store")
    try:
        assert WorkerStore(cluster_client, 16).shard_count() == 16
    finally:  # the cluster is shared: a pusher's SADD after this test must not meet it
        cluster_client.delete(redis_keys.SHARD_COUNTS_KEY)
    [record] = [r for r in caplog.records if r.name == "workers.store"]
    message = record.getMessage()  # raised "not all arguments converted" before
    assert message.startswith(f"cannot read the shard counts in {redis_keys.SHARD_COUNTS_KEY}")
    assert "WRONGTYPE" in message and message.endswith("sweeping 16 shards")
