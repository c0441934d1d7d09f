"""``celery -A workers audiosync backfill --fleet`` says when no worker consumes the
``audiosync.backfill`` queue: its tasks would wait there unseen, since the flush fleet
(``celery -A workers worker``, queue ``audiosync``) never takes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo
from tests.integration.commands import celery
from workers import app, tasks

pytestmark = pytest.mark.integration
SECRET = "backfill-queue-secret-0123456789abcdef"


def test_backfill_tasks_go_to_the_prefixed_queue() -> None:
    route = app.amqp.router.route({}, "audiosync.backfill_conversation")
    assert route["queue"].name == tasks.BACKFILL_QUEUE == "audiosync.backfill"
    assert app.conf.task_default_queue == "audiosync"


def test_fleet_mode_warns_when_only_flush_workers_run(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = {**stack.env(), "ENCRYPTION_SECRET": SECRET}
    with processes.worker(stack.env(), tmp_path, name="flush-only", beat=False) as worker:
        done = celery(
            *("audiosync", "backfill", "--uid", "u1", "--conversation", "c1", "--fleet"),
            *("--json", "--inspect-timeout", "10"),  # the worker's answer is awaited
            env=env,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["enqueued"] == ["c1"] and report["queue"] == "audiosync.backfill"
        assert report["consumers"] == []
        (warning,) = report["warnings"]
        assert "no worker consumes the 'audiosync.backfill' queue" in warning
        assert "1 worker(s) answered" in warning  # the flush worker was asked, and said no
        assert f"WARNING: {warning}" in done.stderr
        assert redis_client.llen("audiosync.backfill") == 1  # waiting, not taken
        assert "Received task: audiosync.backfill" not in worker.log.read_text()
