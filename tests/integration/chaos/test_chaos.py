"""The short chaos runs, in-process: every chunk stored exactly once under faults.

Kills workers (between an upload and its commit), pauses flushes mid-upload past their
lease (zombies), restarts Redis, injects poison entries and exact copies of real chunk
entries, fails/stalls/loses GCS uploads and loses pusher append replies
(audiosync_dev/chaos/, docs/CHAOS.md); the verdict must pass. Once on one valkey, once
with the streams on a 3-master Redis Cluster (a restart is then one node's, two different
nodes; a reply-drop proxy in front of each node).
Each starts its own servers and fleet, so neither shares the session's local stacks.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from audiosync_dev.chaos import ChaosConfig, Verdict, run

pytestmark = pytest.mark.integration


def _check_passed(config: ChaosConfig, verdict: Verdict) -> str:
    report = verdict.render(problems=30)
    print(report)
    # Not vacuous: the run really pushed audio and really applied every kind of fault.
    assert verdict.counts["expected"] > 0, report
    assert verdict.counts["poison_injected"] == config.poison > 0, report
    assert verdict.counts["faulted"] > 0 and verdict.counts["stalls_past_lease"] > 0, report
    assert verdict.counts["kills"] == config.kills > 0, report
    assert 2 * verdict.counts["kills_mid_upload"] >= config.kills, report
    assert verdict.counts["pauses"] == config.pauses > 0, report
    assert verdict.counts["lease_lost_lines"] >= config.pauses, report
    assert verdict.counts["duplicates"] == config.duplicates > 0, report
    assert verdict.counts["redis_restarts"] == config.redis_restarts > 0, report
    assert verdict.counts["drops"] > 0, report
    assert verdict.passed, report
    return report


@pytest.mark.timeout(400)
def test_short_chaos_run_stores_every_chunk_exactly_once(tmp_path: Path) -> None:
    config = replace(ChaosConfig.short(), workdir=tmp_path / "chaos")
    _check_passed(config, run(config, say=print))


@pytest.mark.timeout(400)
def test_short_chaos_run_on_a_redis_cluster_stores_every_chunk_exactly_once(
    tmp_path: Path,
) -> None:
    config = replace(ChaosConfig.short_cluster(), workdir=tmp_path / "chaos")
    assert config.cluster and config.redis_restarts == 2
    verdict = run(config, say=print)
    report = _check_passed(config, verdict)
    assert verdict.counts["cluster_nodes_restarted"] == 2, report  # two different nodes
    assert verdict.counts["cluster_nodes_with_sessions"] >= 2, report
