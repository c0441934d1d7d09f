"""The hard time limit and the shard task's budget.

``workers.celeryconfig.task_time_limit`` is ``10 * AUDIOSYNC_LEASE_SECONDS``, "a backstop, never
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

from tests.integration.commands import run_python


def test_a_shard_budget_the_time_limit_would_cut_is_refused_or_fits() -> None:
    """A configuration that guarantees hard kills is never accepted as such. Lease
    30 s, shard budget 300 s: shard tasks run under a hard limit longer than the budget
    plus the longest flush (4 leases) plus a lease of slack (workers.celeryconfig's
    task_annotations)."""
    env = {"AUDIOSYNC_LEASE_SECONDS": "30", "AUDIOSYNC_SHARD_TASK_SECONDS": "300"}
    code = "import workers.celeryconfig, workers.tasks as t\nprint(t.flush_shard.time_limit)"
    done = run_python(["-c", code], env)
    assert done.returncode == 0, done.stderr[-400:]
    limit = float(done.stdout.split()[-1])
    assert limit > 300 + 5 * 30, (
        f"shard tasks run under a hard time limit of {limit} s with a budget of 300 s: "
        "every busy shard task is killed mid-upload"
    )
