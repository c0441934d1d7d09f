"""Blind-upload notes whose mark can be read, queued behind notes whose mark's node is out.

A cluster master out: every flush of a session whose conversation's mark lives there
uploads blind and notes it in its own shard, so such notes pile up by the hundred while
the node is out. A note whose mark lives on a serving node (its look timed out once on a
busy node) lands behind them. The deletion run read a shard's oldest notes, at most its
budget (200), and counted the waiting ones against it: it read the same waiting notes at
every run and never reached the note behind them, so the blind upload into a conversation
deleted (and readable as deleted) stayed in the bucket for as long as the other node was
out. A node out must stop only the notes whose mark is on it.
"""

# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import time

import pytest
from redis.cluster import RedisCluster

from audiosync_dev.localstack import LocalStack
from backend_hooks.adapters import redis_store
from backend_hooks.contract import naming, redis_keys
from backend_hooks.contract.settings import Settings
from tests.integration.fleet.cluster_node_out import (
    OUT,
    SHARDS,
    UID,
    node_out_env,
    port_of,
    stalled,
)
from workers import deletions
from workers.context import WorkerContext

pytestmark = pytest.mark.integration
WAITING = deletions.RUN_LIMIT  # notes of marks on the node out, queued first


def _cids_marked(client: RedisCluster, port: int, on: bool, count: int, name: str) -> list[str]:
    """``count`` conversation ids whose deleted mark lives (``on``) or not on ``port``."""
    found = []
    for i in range(100_000):
        cid = f"{name}-{i}"
        node = client.get_node_from_key(redis_keys.deleted_conversation_key(UID, cid))
        if (node.port == port) == on:
            found.append(cid)
            if len(found) == count:
                return found
    raise AssertionError("not enough conversation ids hash there")


def test_a_note_whose_mark_answers_is_resolved_behind_a_budget_of_waiting_ones(
    cluster_stack: LocalStack, cluster_client: RedisCluster
) -> None:
    ctx = WorkerContext.from_settings(Settings.from_env(node_out_env(cluster_stack)))
    out_port = port_of(cluster_stack.cluster_node_urls[OUT])
    shard = next(
        s
        for s in range(SHARDS)
        if cluster_client.get_node_from_key(redis_keys.due_key(s)).port != out_port
    )
    store = ctx.store.in_shard(shard)
    [deleted] = _cids_marked(cluster_client, out_port, False, 1, "readable")
    redis_store.mark_conversation_deleted(cluster_client, UID, deleted, ttl_seconds=600)
    name = f"{naming.conversation_prefix(UID, deleted)}1700000000.000.bin"
    ctx.bucket.create_only(name, b"\0", content_type="application/octet-stream", metadata={})
    assert store.acquire_lease("noting-session", "token", 600)
    for cid in _cids_marked(cluster_client, out_port, True, WAITING, "waiting"):
        store.note_blind_upload("noting-session", "token", UID, cid, f"chunks/{UID}/{cid}/x")
    time.sleep(0.01)  # a later score: the note whose mark answers comes last
    store.note_blind_upload("noting-session", "token", UID, deleted, name)

    with stalled(cluster_stack, OUT):
        runs = [
            deletions.run(ctx.store, ctx.bucket, recheck_seconds=600, backoff_cap_seconds=60)
            for _ in range(3)
        ]
        left = [o.name for o in ctx.bucket.list(naming.conversation_prefix(UID, deleted))]

    assert any(r.blind_deleted for r in runs), runs
    assert left == []
