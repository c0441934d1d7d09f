"""``AUDIOSYNC_LOG_FORMAT=json``: a real worker logs one JSON object a line, the flush
outcome lines of its pool processes included."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo
from backend_hooks import AudioSyncClient
from backend_hooks.contract.settings import Settings

pytestmark = pytest.mark.integration


def test_a_worker_logs_json_lines_when_asked(
    stack: StackInfo, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = {
        **stack.env(),
        "AUDIOSYNC_LOG_FORMAT": "json",
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.2",
    }
    client = AudioSyncClient(Settings.from_env(env))
    session = client.open_session("json-logs", "conv", 8000, "standard")
    session.push(bytes(2 * 8000 * 10), time.time() - 10)
    session.close()
    client.close()
    with processes.worker(env, tmp_path, name="json-logs") as worker:
        deadline = time.monotonic() + 90
        while redis_client.keys("audiosync:{*:chunks"):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
    # Stopped (a warm shutdown lets the flush end): every line it logged is in the file.
    lines = worker.log.read_text(errors="replace").splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    flushed = [r for r in records if r["message"].startswith("flushed ")]
    assert flushed, "\n".join(lines[-20:])
    assert {"time", "level", "logger", "process", "message"} <= set(flushed[0])
    assert flushed[0]["level"] == "INFO" and flushed[0]["logger"] == "workers.tasks"
    ready = [r for r in records if r["message"].endswith(" ready.")]
    assert ready and ready[0]["processName"] == "MainProcess"  # the main process's too
