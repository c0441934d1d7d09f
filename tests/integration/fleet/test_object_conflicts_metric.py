"""An upload that meets its object name taken by other bytes is counted in
``audiosync_object_conflicts_total`` on the worker's metrics port: the object is not
overwritten, the entries stay in Redis, and an alert can name the cause (a 412 whose
object is not equal) instead of a generic flush failure.

Real valkey, fake-gcs-server, a real ``celery worker`` with the sweep embedded.
"""

from __future__ import annotations

import time
import urllib.error
from pathlib import Path

import pytest

from audiosync_dev import processes
from audiosync_dev.localstack import StackInfo, free_port
from tests.integration.commands import scrape
from tests.integration.flushing import CueBucket, FakeClock, die, flush, push_chunks, read_entries
from workers.context import WorkerContext
from workers.planner import RecordedObject

pytestmark = pytest.mark.integration
OTHER_BYTES = b"another writer's object under this name"


def _scrape_when_served(port: int, deadline: float) -> dict[str, float]:
    while True:  # the worker serves once it is ready
        try:
            return scrape(port)
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, "the worker's metrics port never answered"
            time.sleep(0.2)


def test_an_upload_meeting_its_name_taken_by_other_bytes_is_counted(
    ctx: WorkerContext, clock: FakeClock, stack: StackInfo, tmp_path: Path
) -> None:
    sid = push_chunks(ctx, clock, "conflicted-name", 10, close=True).session_id
    planned = flush(ctx, sid, CueBucket(ctx.bucket, before={0: die}))  # plan, no upload
    assert planned.failed
    [head] = ctx.store.read_plan(sid)
    name = RecordedObject.loads(head).name  # the name the next flush uploads to
    ctx.bucket.create_only(name, OTHER_BYTES, content_type="audio/ogg", metadata={})
    port = free_port()
    env = {
        **stack.env(),
        "AUDIOSYNC_METRICS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),  # this test's counters only
        "AUDIOSYNC_SWEEP_INTERVAL_SECONDS": "0.2",
    }

    with processes.worker(env, tmp_path, name="conflicts") as worker:
        deadline = time.monotonic() + 180  # a worker's start on a loaded machine
        samples = _scrape_when_served(port, deadline)
        # Served (at 0 before any conflict: test_gcs_outage_monitoring.py); the sweep may
        # have dispatched the flush before this first scrape on a busy machine.
        assert "audiosync_object_conflicts_total{}" in samples
        while samples["audiosync_object_conflicts_total{}"] < 1:
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
            samples = scrape(port)

    assert samples["audiosync_flush_failures_total{reason=ObjectConflictError}"] >= 1
    assert ctx.bucket.download(name) == OTHER_BYTES  # nothing overwritten
    assert len(read_entries(ctx, sid)) == 11  # 10 chunks and the end: all still in Redis
