"""Adversarial review 5: the hard time limit and the shard task's budget.

``celeryconfig.task_time_limit`` is ``10 * AUDIOSYNC_LEASE_SECONDS``, "a backstop, never
the normal end of a flush". Since shard tasks, one task runs for
``AUDIOSYNC_SHARD_TASK_SECONDS`` and then waits for the flushes in flight (a flush: up to
8 uploads of half a lease each, the lease renewed before each: about 4 leases), then
walks every shard's dispatch. Nothing bounds AUDIOSYNC_SHARD_TASK_SECONDS against the
limit: with a budget near or over ``10 * lease`` every busy shard task is SIGKILLed by
Celery in the middle of its uploads (up to AUDIOSYNC_FLUSH_CONCURRENCY flushes at once),
every time. Exactly-once survives (plans are adopted), progress does not: each task's
flushes die and are redone a lease later, and the task never reaches its own dispatch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_shard_budget_the_time_limit_would_cut_is_refused_or_fits() -> None:
    """Finding 7 (low: a configuration that guarantees hard kills is accepted). Lease
    30 s, shard budget 300 s: the worker must either refuse to start (a message naming
    AUDIOSYNC_SHARD_TASK_SECONDS) or run shard tasks under a hard limit longer than the
    budget plus the longest flush (4 leases) plus a lease of slack."""
    env = {**os.environ, "AUDIOSYNC_LEASE_SECONDS": "30", "AUDIOSYNC_SHARD_TASK_SECONDS": "300"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import celeryconfig, workers.tasks as t\n"
            "print(t.flush_shard.time_limit or celeryconfig.task_time_limit)",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        assert "AUDIOSYNC_SHARD_TASK_SECONDS" in done.stderr, done.stderr[-400:]
        return
    limit = float(done.stdout.split()[-1])
    assert limit > 300 + 5 * 30, (
        f"shard tasks run under a hard time limit of {limit} s with a budget of 300 s: "
        "every busy shard task is killed mid-upload"
    )
