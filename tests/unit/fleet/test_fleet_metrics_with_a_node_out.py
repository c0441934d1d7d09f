"""The fleet-wide gauges built from the nodes' reads (``exporter.fleet_metrics``), one of
them out: Redis is reported down and the node named, the other node's shards are served."""

from __future__ import annotations

from workers.exporter import NodeRead, fleet_metrics
from workers.operations import DeletionBacklog, HeldAudio, ShardStatus


def _read(shard: int, due: int, noeviction: bool | None = True) -> NodeRead:
    return NodeRead(
        shards=[ShardStatus(shard, sessions=due + 1, due=due, oldest_due_seconds=7.0)],
        audio=[
            HeldAudio(
                shard, sessions=due + 1, sampled=due + 1, oldest_seconds=9.0, bytes_sampled=100
            )
        ],
        quarantined=1,
        deletions=DeletionBacklog(rechecks=2, recheck_overdue_seconds=3.0),
        noeviction=noeviction,
    )


def _samples(reads: dict[str, NodeRead | None]) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in fleet_metrics(reads)
        for s in family.samples
    }


def test_a_node_out_makes_redis_down_and_leaves_its_shards_out() -> None:
    samples = _samples({"a:1": _read(0, due=2), "b:2": None})
    assert samples["audiosync_redis_up[]"] == 0
    assert samples["audiosync_redis_node_up[('node', 'a:1')]"] == 1
    assert samples["audiosync_redis_node_up[('node', 'b:2')]"] == 0
    assert samples["audiosync_due_sessions[('shard', '0')]"] == 2
    assert not any("('shard', '1')" in key for key in samples)
    assert samples["audiosync_quarantined_sessions[]"] == 1
    assert samples["audiosync_redis_noeviction[]"] == 1


def test_every_node_answering_is_redis_up_with_sums_and_maxima() -> None:
    samples = _samples({"a:1": _read(0, due=2), "b:2": _read(1, due=3, noeviction=False)})
    assert samples["audiosync_redis_up[]"] == 1
    assert samples["audiosync_due_sessions[('shard', '1')]"] == 3
    assert samples["audiosync_quarantined_sessions[]"] == 2
    assert samples["audiosync_deletion_rechecks[]"] == 4
    assert samples["audiosync_deletion_recheck_overdue_seconds[]"] == 3.0
    assert samples["audiosync_redis_noeviction[]"] == 0  # one node may evict


def test_a_policy_no_node_told_serves_no_noeviction_gauge() -> None:
    samples = _samples({"a:1": _read(0, due=0, noeviction=None)})
    assert not any(key.startswith("audiosync_redis_noeviction") for key in samples)
