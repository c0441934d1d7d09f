"""The fleet-wide gauges with one Redis Cluster master stalled.

A master stalled (SIGSTOP: it accepts connections and never answers, as a master hanging
or failing over does) with ``cluster-require-full-coverage no``: the other masters serve
their shards and the fleet drains them (test_deleted_mark_on_a_node_that_is_out.py). The
exporter reads node by node, each command one bounded attempt, within its read budget: a
scrape answers during the outage, when the gauges matter most, with the gauges of the
shards that serve, ``audiosync_redis_up 0`` and the stalled node named.
"""

# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import threading
from typing import Any

import pytest
from redis.cluster import RedisCluster

from audiosync_dev.localstack import LocalStack
from backend_hooks.contract import redis_keys
from backend_hooks.contract.settings import Settings
from tests.integration.fleet.cluster_node_out import (
    OUT,
    SHARDS,
    node_out_env,
    stalled,
)
from workers import exporter
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
#: far past Prometheus's default scrape timeout (10 s), so a loaded machine does not matter
SCRAPE_WAIT_SECONDS = 30


def test_a_scrape_answers_with_the_serving_shards_while_a_master_is_stalled(
    cluster_stack: LocalStack, cluster_client: RedisCluster
) -> None:
    ctx = WorkerContext.from_settings(Settings.from_env(node_out_env(cluster_stack)))
    out_port = int(cluster_stack.cluster_node_urls[OUT].rsplit(":", 1)[1])
    serving = [
        s
        for s in range(SHARDS)
        if cluster_client.get_node_from_key(redis_keys.due_key(s)).port != out_port
    ]
    assert serving and len(serving) < SHARDS
    for shard in range(SHARDS):
        ctx.store.in_shard(shard).schedule(f"gauged-{shard}", 0)
    collector = exporter.FleetCollector.from_settings(ctx.settings)
    scraped: list[Any] = []

    with stalled(cluster_stack, OUT):
        scrape = threading.Thread(target=lambda: scraped.extend(collector.collect()), daemon=True)
        scrape.start()
        scrape.join(SCRAPE_WAIT_SECONDS)
        answered = not scrape.is_alive()

    assert answered, f"the scrape did not answer within {SCRAPE_WAIT_SECONDS} s"
    collector.close()
    families = {m.name: m for m in scraped}
    due = families["audiosync_due_sessions"]
    assert {int(s.labels["shard"]) for s in due.samples if s.value} == set(serving)
    assert families["audiosync_redis_up"].samples[0].value == 0
    nodes = {s.labels["node"]: s.value for s in families["audiosync_redis_node_up"].samples}
    assert [node for node, up in nodes.items() if not up] == [f"127.0.0.1:{out_port}"], nodes
