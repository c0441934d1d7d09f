"""The short chaos run, in-process: every chunk stored exactly once under faults.

Kills workers (between an upload and its commit), pauses flushes mid-upload past their
lease (zombies), restarts Redis, injects poison entries and exact copies of real chunk
entries, fails/stalls/loses GCS uploads and loses pusher append replies
(audiosync_dev/chaos.py, docs/CHAOS.md); the verdict must pass.
It starts its own servers and fleet, so it does not share the session's local stack.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from audiosync_dev.chaos import ChaosConfig, run

pytestmark = pytest.mark.integration


@pytest.mark.timeout(400)
def test_short_chaos_run_stores_every_chunk_exactly_once(tmp_path: Path) -> None:
    config = replace(ChaosConfig.short(), workdir=tmp_path / "chaos")
    verdict = run(config, say=print)
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
