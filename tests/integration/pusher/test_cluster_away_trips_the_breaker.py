"""The whole Redis Cluster away (AUDIOSYNC_REDIS_CLUSTER=1).

With every node unreachable, redis-py's cluster client raises ``RedisClusterException``
("Redis Cluster cannot be connected"), which is not a ``redis.RedisError``: the pusher's
breaker never opened, its spool was never used, the chunks piled up in memory and the
pushes were finally refused with ``SpoolFullError`` while the spool was empty. Real
cluster nodes stopped and started again (the shared cluster is restored afterwards)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from redis.cluster import RedisCluster

from audiosync_dev.localstack import LocalStack
from backend_hooks import AudioSyncClient
from backend_hooks.contract.entries import ChunkEntry, parse_entry
from backend_hooks.contract.redis_keys import SessionKeys
from tests.integration.pusher.pusher_outage import (
    CHUNK,
    RATE,
    SECRET,
    T0,
    expected,
    noise,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.integration


def _stream(url: str, keys: SessionKeys) -> list[tuple[str, int, int]]:
    client = RedisCluster.from_url(url)
    try:
        raw = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(keys.chunks))
    finally:
        client.close()
    out = []
    for entry_id, fields in raw:
        entry = parse_entry(entry_id, fields)
        out.append(
            ("chunk", entry.seq, entry.samples) if isinstance(entry, ChunkEntry) else ("end", -1, 0)
        )
    return out


def test_a_cluster_that_is_away_trips_the_breaker_and_chunks_go_to_the_spool(
    cluster_stack: LocalStack, tmp_path: Path
) -> None:
    url = cluster_stack.info.redis_cluster_url
    assert url is not None
    settings = settings_for(
        cluster_stack.info.env(),
        url,
        tmp_path / "spool",
        AUDIOSYNC_REDIS_CLUSTER="1",
        ENCRYPTION_SECRET=SECRET,
    )
    client = AudioSyncClient(settings)
    nodes = list(cluster_stack._cluster_nodes.values())
    try:
        session = client.open_session("u1", "c1", RATE, "enhanced")
        session.push(noise(CHUNK), T0)  # the cluster answers: appended
        for node in nodes:
            node.stop()
        try:
            for k in range(1, 4):
                session.push(noise(CHUNK, seed=k), T0 + 5 * k)
            # The pushes do not wait for the failing call (AUDIOSYNC_REDIS_STALL_SECONDS at
            # most): its failure trips the breaker when it ends.
            wait_for(lambda: client.stats().breaker.trips >= 1, 30)
            stats = client.stats()
        finally:
            for node in nodes:
                node.start(LocalStack._valkey_ready(node))
            LocalStack._wait_for_cluster(nodes)
        assert stats.breaker.trips >= 1, "the breaker never opened"
        assert stats.spooled_entries == 3 and stats.held_entries == 0, stats
        session.close()
        assert wait_for(lambda: _stream(url, session.redis_keys) == expected(4), 10)
    finally:
        client.close()
