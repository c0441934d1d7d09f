"""A flush worker (``celery -A workers worker``, queue ``audiosync``) registers every task
of the fleet, the backfill's included, under the names operators and the chart use,
although it imports the backfill's read-side code only when a backfill task runs
(workers/tasks.py; docs/ARCHITECTURE.md, "Who imports whom")."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo
from tests.integration.commands import as_json, celery

pytestmark = pytest.mark.integration

TASKS = [
    "audiosync.backfill_conversation",
    "audiosync.flush_session",
    "audiosync.flush_shard",
    "audiosync.recheck_deletions",
    "audiosync.sweep",
]


def test_inspect_registered_lists_every_task_on_a_flush_worker(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with processes.worker(stack.env(), tmp_path, name="flush-only", beat=False):
        # Asked by name, celery returns on the worker's answer instead of waiting out the
        # whole timeout for other workers; the timeout is for a loaded machine's late answer.
        destination = f"flush-only@{socket.gethostname()}"
        done = celery(
            *("inspect", "registered", "--json", "--timeout", "30"),
            *("--destination", destination),
            env=stack.env(),
        )
        (registered,) = as_json(done).values()
    assert sorted(registered) == TASKS
